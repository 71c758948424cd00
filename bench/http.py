"""The HTTP request path against its parts, measured in one run; prints, never asserts.

(a) a trivial JSON echo route on the same Starlette/Hypercorn stack (same app, same middleware),
(b) `POST /v1/RunPluginTool` on the echo fixture tool (HTTP → pool → child → back),
(c) a raw JSON-RPC echo over a pipe to a bare child (no HTTP, no pool, no SDK),
(d) MCP `tools/call` of the same tool at `/mcp` (one self-contained 2026-07-28 POST).

Each at concurrency 1 and 32 with a bounded loopback load generator (wrk when installed, else a
small asyncio HTTP/1.1 client), in interleaved rounds ((a), (b), (c), (d), (a), …) so that drift
on the machine hits all four alike; each figure is the median over the rounds. Targets:
(b) p50 ≤ 1.3 × ((a) + (c)) at concurrency 1; (b) req/s ≥ 70 % of (a) at concurrency 32;
(d) p50 − (b) p50 ≤ 1 ms at concurrency 1 (what MCP adds over RunPluginTool).

    .venv/bin/python bench/http.py [--duration-s 2] [--rounds 7] [--tool echo_async|echo]
    .venv/bin/python bench/http.py --redaction   # secret redaction per request, before/after

Many short rounds rather than a few long ones: on a shared VM the machine's speed drifts over
seconds, and a slow spell then shifts one round's figures, not the medians.

The server runs on its defaults, busy polling included (`pool.busy_poll_us`); the environment
reaches it, so `HIAGENT_POOL_BUSY_POLL_US=0 .venv/bin/python bench/http.py` measures without.
"""

# ruff: noqa: E402  (the sys.path fix below must run before anything imports `http`)
from __future__ import annotations

import sys
from pathlib import Path

# This file is named http.py: keep its directory off sys.path so `import http` is the stdlib's.
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from typing import Any, Final

import httpx
import msgspec

ROOT: Final = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hiagent_host.packages.wheelbuild import build_wheel
from tests.support.wheelhouse import ensure_wheelhouse

ECHO_FIXTURE: Final = ROOT / "tests" / "fixtures" / "plugins" / "echo"
ECHO_PKG: Final = "hiagent-plugin-echo"
ECHO_PLUGIN: Final = "echo"
# Both return their input: echo_async on the child's event loop, echo (sync) in a worker thread.
ECHO_TOOLS: Final = ("echo_async", "echo")
CONCURRENCY: Final = (1, 32)
MCP_VERSION: Final = "2026-07-28"
# What MCP may add to a tool call over /v1 RunPluginTool (p50, concurrency 1).
MCP_ADDED_TARGET_MS: Final = 1.0
# The server must answer /ping within this time after it was started.
START_TIMEOUT_S: Final = 60.0
# Installing the echo fixture (venv + probe) takes a second or two warm.
INSTALL_TIMEOUT_S: Final = 300.0
STOP_TIMEOUT_S: Final = 30.0

SERVER: Final = textwrap.dedent(
    """
    import sys
    from typing import Any
    from starlette.routing import Route
    from hiagent_host.api.endpoints import endpoint
    from hiagent_host.config import load_config
    from hiagent_host.serve import serve

    @endpoint(dict[str, Any])
    async def echo(request, services, body):
        return body

    config = load_config(sys.argv[1])
    route = Route("/bench/echo", echo, methods=["POST"])
    sys.exit(serve(config, extra_routes=[route]))
    """
)

PIPE_CHILD: Final = textwrap.dedent(
    """
    import json, sys
    out = sys.stdout.buffer
    for line in sys.stdin.buffer:
        msg = json.loads(line)
        reply = {"jsonrpc": "2.0", "id": msg["id"], "result": msg["params"]}
        out.write(json.dumps(reply).encode() + b"\\n")
        out.flush()
    """
)


@dataclass
class Result:
    name: str
    concurrency: int
    p50_ms: float
    p99_ms: float
    rps: float
    errors: int = 0


# ---- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, port: int, wheelhouse: Path) -> Path:
    path = root / "runtime.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [server]
            port = {port}
            graceful_shutdown_s = 5.0
            [paths]
            extensions_dir = "extensions"
            venvs_dir = "venvs"
            state_dir = "state"
            [packages]
            no_index = true
            find_links = [{json.dumps(str(wheelhouse))}]
            [pool]
            max_subprocess = 4
            """
        ),
        encoding="utf-8",
    )
    return path


def start_server(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SERVER, str(config)],
            cwd=ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ping", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            time.sleep(0.05)  # polling a probe, bounded by the deadline
    raise SystemExit(f"server did not answer /ping within {START_TIMEOUT_S} s")


def stop_server(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- load generators ---------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What a load generator sends: one POST, again and again."""

    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)  # besides Content-Type


def wrk(target: Target, concurrency: int, duration_s: float, name: str) -> Result:
    url = target.url
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\n'
            f"wrk.body = [==[{target.body.decode()}]==]\n"
            'wrk.headers["Content-Type"] = "application/json"\n'
            + "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in target.headers.items())
        )
    try:
        threads = min(concurrency, 2)
        seconds = max(1, round(duration_s))
        out = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{seconds}s", "--latency",
             "-s", script.name, url],
            capture_output=True, text=True, check=True, timeout=duration_s + 30,
        ).stdout  # fmt: skip
    finally:
        Path(script.name).unlink()
    p50 = _wrk_latency(out, "50%")
    p99 = _wrk_latency(out, "99%")
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    return Result(name, concurrency, p50, p99, rps, int(bad[1]) if bad else 0)


def _wrk_latency(out: str, pct: str) -> float:
    match = re.search(rf"^\s+{re.escape(pct)}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
    if match is None:
        raise SystemExit(f"cannot read wrk output:\n{out}")
    value, unit = float(match[1]), match[2]
    return value * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


async def _http_worker(
    host: str, port: int, request: bytes, stop_at: float, latencies: list[float], errors: list[int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            writer.write(request)
            try:
                head = await reader.readuntil(b"\r\n\r\n")
            except asyncio.IncompleteReadError:  # Hypercorn closes after N keep-alive requests
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            length = int(re.search(rb"(?i)content-length:\s*(\d+)", head)[1])  # type: ignore[index]
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(1)
    finally:
        writer.close()


def python_client(target: Target, concurrency: int, duration_s: float, name: str) -> Result:
    parts = httpx.URL(target.url)
    body = target.body
    extra = "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
    request = (
        f"POST {parts.raw_path.decode()} HTTP/1.1\r\nHost: {parts.host}:{parts.port}\r\n"
        f"Content-Type: application/json\r\n{extra}Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body
    latencies: list[float] = []
    errors: list[int] = []

    async def run() -> float:
        start = time.perf_counter()
        stop_at = start + duration_s
        await asyncio.gather(
            *(
                _http_worker(parts.host, parts.port or 80, request, stop_at, latencies, errors)
                for _ in range(concurrency)
            )
        )
        return time.perf_counter() - start

    elapsed = asyncio.run(run())
    return _summarise(name, concurrency, latencies, elapsed, len(errors))


def _summarise(
    name: str, concurrency: int, latencies: list[float], elapsed: float, errors: int = 0
) -> Result:
    ordered = sorted(latencies)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return Result(
        name, concurrency, statistics.median(ordered) * 1000, p99 * 1000,
        len(ordered) / elapsed, errors,
    )  # fmt: skip


def pipe_echo(params: Any, concurrency: int, duration_s: float) -> Result:
    """(c): JSON-RPC requests over a pipe to a bare child that answers each with its params."""
    encoder = msgspec.json.Encoder()
    decoder = msgspec.json.Decoder()

    async def run() -> tuple[list[float], float]:
        child = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PIPE_CHILD,
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        if child.stdin is None or child.stdout is None:
            raise SystemExit("the pipe child has no stdio")
        pending: dict[int, asyncio.Future[Any]] = {}
        stdout = child.stdout

        async def read() -> None:
            while line := await stdout.readline():
                msg = decoder.decode(line)
                pending.pop(msg["id"]).set_result(msg["result"])

        reader = asyncio.create_task(read())
        latencies: list[float] = []
        next_id = 0
        loop = asyncio.get_running_loop()
        stdin = child.stdin

        async def worker(stop_at: float) -> None:
            nonlocal next_id
            while time.perf_counter() < stop_at:
                next_id += 1
                call_id = next_id
                future: asyncio.Future[Any] = loop.create_future()
                pending[call_id] = future
                start = time.perf_counter()
                frame = {"jsonrpc": "2.0", "id": call_id, "method": "echo", "params": params}
                stdin.write(encoder.encode(frame) + b"\n")
                await stdin.drain()
                await future
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(worker(start + duration_s) for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        stdin.close()
        await child.wait()
        reader.cancel()
        return latencies, elapsed

    latencies, elapsed = asyncio.run(run())
    return _summarise("(c) raw JSON-RPC pipe echo", concurrency, latencies, elapsed)


# ---- the run -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    parser.add_argument("--tool", choices=ECHO_TOOLS, default=ECHO_TOOLS[0], help="(b)'s tool")
    parser.add_argument(
        "--redaction", action="store_true", help="only the redaction rows (many distinct secrets)"
    )
    args = parser.parse_args()
    if args.redaction:
        redaction_report()
        return
    generator = wrk if shutil.which("wrk") else python_client
    print(f"load generator: {'wrk' if generator is wrk else 'python asyncio client'}; "
          f"{args.duration_s:g} s per measurement, {args.rounds} interleaved rounds; "
          f"{os.cpu_count()} CPUs; (b) calls {args.tool}")  # fmt: skip

    tool_input = {"text": "hello, plugin"}
    with tempfile.TemporaryDirectory(prefix="hiagent-bench-http-") as tmp:
        root = Path(tmp)
        wheelhouse = ensure_wheelhouse()
        wheel = build_wheel(ECHO_FIXTURE, root / "wheels")
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        config = write_config(root, port, wheelhouse)
        log = root / "server.log"
        proc = start_server(config, log)
        try:
            wait_ready(url, proc, log)
            installed = httpx.post(
                f"{url}/v1/InstallPackage",
                json={"uri": wheel.as_uri(), "filename": wheel.name},
                timeout=INSTALL_TIMEOUT_S,
            ).json()
            if installed["error"]:
                raise SystemExit(f"install failed: {installed['error']}")
            version = installed["data"]["version"]
            call = {
                "pkg": ECHO_PKG, "version": version, "plugin": ECHO_PLUGIN, "tool": args.tool,
                "input": tool_input,
            }  # fmt: skip
            body = json.dumps(call, ensure_ascii=False).encode()
            warm = httpx.post(f"{url}/v1/RunPluginTool", content=body, timeout=60).json()
            if warm["error"]:
                raise SystemExit(f"warm-up call failed: {warm['error']}")
            mcp = mcp_call(f"{url}/mcp", f"{ECHO_PKG}__{ECHO_PLUGIN}__{args.tool}", tool_input)
            mcp_warm = httpx.post(
                mcp.url, content=mcp.body, timeout=60,
                headers=mcp.headers | {"Content-Type": "application/json"},
            )  # fmt: skip
            echo = Target(f"{url}/bench/echo", body)
            run_tool = Target(f"{url}/v1/RunPluginTool", body)
            if mcp_warm.status_code != 200 or mcp_warm.json()["result"]["isError"]:
                raise SystemExit(f"MCP warm-up call failed: {mcp_warm.text}")
            rounds: list[list[Result]] = [[] for _ in range(args.rounds)]
            for concurrency in CONCURRENCY:
                for target in (echo, run_tool, mcp):
                    generator(target, concurrency, 1.0, "warm-up")
                for measured in rounds:  # interleaved, so that drift hits all four alike
                    duration = args.duration_s
                    measured.append(generator(echo, concurrency, duration, "(a) JSON echo route"))
                    measured.append(
                        generator(run_tool, concurrency, duration, "(b) RunPluginTool echo")
                    )
                    measured.append(pipe_echo(tool_input, concurrency, duration))
                    measured.append(
                        generator(mcp, concurrency, duration, "(d) MCP tools/call echo")
                    )
        finally:
            stop_server(proc)
    report(rounds)


def mcp_call(url: str, tool: str, arguments: dict[str, Any]) -> Target:
    """A 2026-07-28 `tools/call`: one POST that needs no session, as the specification has it."""
    meta = {
        "io.modelcontextprotocol/protocolVersion": MCP_VERSION,
        "io.modelcontextprotocol/clientInfo": {"name": "bench", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    }
    body = {
        "jsonrpc": "2.0", "id": 1, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments, "_meta": meta},
    }  # fmt: skip
    headers = {
        "Accept": "application/json, text/event-stream",
        "MCP-Protocol-Version": MCP_VERSION,
        "Mcp-Method": "tools/call",
        "Mcp-Name": tool,
    }
    return Target(url, json.dumps(body).encode(), headers)


def report(rounds: list[list[Result]]) -> None:
    """Each figure is the median over the rounds; the ratios are taken per round too."""
    results = [_median(group) for group in zip(*rounds, strict=True)]
    print(f"\n{'':32} {'conc':>4} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>10} {'errors':>7}")
    for r in results:
        print(
            f"{r.name:32} {r.concurrency:>4} {r.p50_ms:>9.3f} {r.p99_ms:>9.3f} {r.rps:>10.0f}"
            f" {r.errors:>7}"
        )
    latency, throughput, mcp_added = ratios(results)
    per_round = [ratios(measured) for measured in rounds]
    print(
        f"\n(b) p50 / ((a) + (c)) p50 at concurrency 1: {latency:.2f}  (target ≤ 1.30)"
        f"  rounds: {', '.join(f'{r[0]:.2f}' for r in per_round)}"
        f"\n(b) / (a) req/s at concurrency 32:          {throughput:.2f}  (target ≥ 0.70)"
        f"  rounds: {', '.join(f'{r[1]:.2f}' for r in per_round)}"
        f"\n(d) p50 − (b) p50 at concurrency 1:         {mcp_added:.3f} ms"
        f"  (target ≤ {MCP_ADDED_TARGET_MS:.1f} ms)"
        f"  rounds: {', '.join(f'{r[2]:.3f}' for r in per_round)}"
    )


def _median(group: tuple[Result, ...]) -> Result:
    return Result(
        group[0].name,
        group[0].concurrency,
        statistics.median(r.p50_ms for r in group),
        statistics.median(r.p99_ms for r in group),
        statistics.median(r.rps for r in group),
        sum(r.errors for r in group),
    )


def ratios(results: list[Result]) -> tuple[float, float, float]:
    by = {(r.name[:3], r.concurrency): r for r in results}
    a1, b1, c1, d1 = by[("(a)", 1)], by[("(b)", 1)], by[("(c)", 1)], by[("(d)", 1)]
    return (
        b1.p50_ms / (a1.p50_ms + c1.p50_ms),
        by[("(b)", 32)].rps / by[("(a)", 32)].rps,
        d1.p50_ms - b1.p50_ms,
    )


# ---- redaction: the old process-wide registry against per-call secrets ----------------------

REDACTION_REGISTRY_SIZES: Final = (64, 1024, 4096)
# Per request: the access log line, one debug line and one stderr line of the plugin.
REDACTION_LINE: Final = (
    '2026-12-05T03:40:00.123Z info hiagent_host.access: 127.0.0.1 "POST /v1/RunPluginTool '
    'HTTP/1.1" 200 1.234 ms pkg=hiagent-plugin-secret plugin=secret tool=has_key'
)
REDACTION_REQUESTS: Final = 2000
SECRET_SCHEMA: Final = {
    "properties": {"api_key": {"type": "string", "x-hiagent-secret": True}},
}


class OldRegistry:
    """The registry before #12, as it was: every line scans every secret, re-sorted per add."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._values: dict[str, None] = {}
        self._sorted: list[str] = []

    def add(self, values: list[str]) -> None:
        for value in values:
            self._values.pop(value, None)
            self._values[value] = None
        while len(self._values) > self._size:
            del self._values[next(iter(self._values))]
        self._sorted = sorted(self._values, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for value in self._sorted:
            if value in text:
                text = text.replace(value, "***")
        return text


def _old_request(registry: OldRegistry, secret: str) -> None:
    header = json.dumps({"api_key": secret})
    registry.add([header])  # every raw cfg header was registered
    registry.add([secret])
    for _ in range(3):
        registry.redact(REDACTION_LINE)


def _new_request(recent: Any, secret: str) -> None:
    from hiagent_host import redact
    from hiagent_host.pool.secrets import secret_values

    secrets = redact.Secrets(secret_values(SECRET_SCHEMA, {"api_key": secret}))
    recent.add(secrets)
    with redact.scope(secrets):
        for _ in range(2):
            redact.active().redact(REDACTION_LINE)  # the server log's lines
    recent.redact(REDACTION_LINE)  # a stderr line of the child


def redaction_report() -> None:
    """µs per request with a registry (or window) already full of distinct secrets."""
    from hiagent_host.pool.logs import RECENT_SECRET_VALUES
    from hiagent_host.redact import Secrets, SecretWindow

    print(f"{'':44} {'secrets':>8} {'µs/request':>11}")
    for size in REDACTION_REGISTRY_SIZES:
        distinct = (f"sk-{i:08d}-{os.urandom(8).hex()}" for i in range(10**9))
        registry = OldRegistry(size)
        for _ in range(size):
            registry.add([next(distinct)])
        recent = SecretWindow(RECENT_SECRET_VALUES)
        for _ in range(size):
            recent.add(Secrets([next(distinct)]))
        timings = {}
        for name, run, state in (
            ("before: one registry, every line scans all", _old_request, registry),
            ("after: the call's secrets + child's window", _new_request, recent),
        ):
            start = time.perf_counter()
            for _ in range(REDACTION_REQUESTS):
                run(state, next(distinct))
            timings[name] = (time.perf_counter() - start) / REDACTION_REQUESTS * 1e6
            print(f"{name:44} {size:>8} {timings[name]:>11.1f}")
        before, after = timings.values()
        print(f"{'before / after':44} {size:>8} {before / after:>11.1f}x")


if __name__ == "__main__":
    main()
