"""A bare JSON-RPC child for pool benchmarks: answers every request with its own params.

`python bench/rpc_echo.py` reads one request per line on stdin and writes
`{"jsonrpc":"2.0","id":N,"result":<params>}` per request on stdout; notifications are ignored;
it exits at EOF. Standard library only, no plugin, no shim: the cost of the wire alone.
"""

from __future__ import annotations

import json
import sys


def main() -> int:
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        message = json.loads(line)
        if "id" not in message:
            continue
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": message.get("params")}
        out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
