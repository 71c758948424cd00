"""The exit statuses of every `hiagent-host` command, in one place (docs/operations.md)."""

from __future__ import annotations

from typing import Final

EXIT_OK: Final = 0
EXIT_FAILED: Final = 1  # the command failed (or the server could not start)
EXIT_USAGE: Final = 2  # bad arguments or configuration (argparse's own status)
EXIT_NOT_FOUND: Final = 3  # the package, version or job asked for does not exist
EXIT_INTERRUPTED: Final = 130  # SIGINT (128 + 2), as shells report it
