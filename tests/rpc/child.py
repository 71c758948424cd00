"""A tiny stdlib child for peer tests over real pipes: `echo` answers its params, `exit` exits.

Requests are answered in reverse order of arrival per batch of `batch` (from argv), so the
host sees answers out of order on a real pipe.
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    held: list[dict[str, object]] = []
    for line in sys.stdin.buffer:
        message = json.loads(line)
        if "id" not in message:
            continue
        if message["method"] == "exit":
            os._exit(3)
        held.append(message)
        if len(held) == batch:
            for request in reversed(held):
                reply = {"jsonrpc": "2.0", "id": request["id"], "result": request["params"]}
                sys.stdout.write(json.dumps(reply) + "\n")
            sys.stdout.flush()
            held.clear()


if __name__ == "__main__":
    main()
