"""`python -m hiagent_shim [--describe [--wait]]`: serve a package's plugins, or describe them.

The package is named by the environment variable HIAGENT_PACKAGE_NAME. The wire fds are
taken before any plugin code is imported; see docs/protocol.md.
"""

from __future__ import annotations

import sys

from hiagent_shim.describe import describe
from hiagent_shim.lifecycle import flush_and_exit
from hiagent_shim.report import say
from hiagent_shim.server import run
from hiagent_shim.wire import take_stdio

USAGE = "usage: python -m hiagent_shim [--describe [--wait]]"
EXIT_USAGE = 2


def main(argv: list[str]) -> int:
    if argv not in ([], ["--describe"], ["--describe", "--wait"]):
        say(USAGE)
        return EXIT_USAGE
    stdio = take_stdio()
    return describe(stdio, wait="--wait" in argv) if argv else run(stdio)


if __name__ == "__main__":
    flush_and_exit(main(sys.argv[1:]))
