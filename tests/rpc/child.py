"""A tiny stdlib child for peer tests over real pipes: `echo` answers its params, `exit` exits,
`hold` is answered (with its params) only when the notification `release` arrives.

Requests are answered in reverse order of arrival per batch of `batch` (from argv), so the
host sees answers out of order on a real pipe.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable


def main() -> None:
    batch = int(sys.argv[1]) if len(sys.argv) > 1 else 1
    held: list[dict[str, object]] = []
    on_hold: list[dict[str, object]] = []
    for line in sys.stdin.buffer:
        message = json.loads(line)
        if "id" not in message:
            if message["method"] == "release":
                answer(on_hold)
                on_hold.clear()
            continue
        if message["method"] == "exit":
            os._exit(3)
        if message["method"] == "hold":
            on_hold.append(message)
            continue
        held.append(message)
        if len(held) == batch:
            answer(reversed(held))
            held.clear()


def answer(requests: Iterable[dict[str, object]]) -> None:
    for request in requests:
        reply = {"jsonrpc": "2.0", "id": request["id"], "result": request["params"]}
        sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
