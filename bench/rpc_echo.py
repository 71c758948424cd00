"""A bare JSON-RPC child for pool benchmarks: answers every request with what it was given.

`python bench/rpc_echo.py` reads one request per line on stdin and writes
`{"jsonrpc":"2.0","id":N,"result":<params.input>}` per `run_tool` request (so the baseline
moves the same bytes as a pool call to the echo plugin), `<params>` for any other method, on
stdout; notifications are ignored; it exits at EOF. Standard library only, no plugin, no shim:
the cost of the wire alone.
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
        params = message.get("params")
        result = params.get("input") if message.get("method") == "run_tool" else params
        reply = {"jsonrpc": "2.0", "id": message["id"], "result": result}
        out.write(json.dumps(reply, separators=(",", ":")).encode() + b"\n")
        out.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
