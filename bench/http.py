"""The HTTP request path against its parts, and today's server set-up against the new, in one run.

(a) a trivial JSON echo route on the same Starlette/Hypercorn stack (same app, same middleware),
(b) `POST /v1/RunPluginTool` on the echo fixture tool (HTTP → pool → child → back),
(c) a raw JSON-RPC echo over a pipe to a bare child (no HTTP, no pool, no SDK),
(d) MCP `tools/call` of the same tool at `/mcp` (one self-contained 2026-07-28 POST).

(a) and (b) run on two servers side by side: "before" (one worker on asyncio's loop: the set-up
before issue 17; with `--baseline-ref REF`, the code of that git commit too) and "after" (the
defaults of this checkout with `--workers` worker processes, or `--after-settings`); (d) on
"after". Each at concurrency 1 and 32 with a bounded loopback load generator (wrk when
installed, else a small asyncio HTTP/1.1 client), in interleaved rounds so that drift on the
machine hits every row alike; each figure is the median over the rounds, and the CPU the
server's processes (plugin processes included) spent per request is measured alongside.
Targets: after (b) p50 ≤ 1.3 × ((a) + (c)) at concurrency 1, and no worse than before (b);
after (b) req/s ≥ 0.9 × after (a) and ≥ 1.3 × before (b) at concurrency 32; (d) p50 − (b)
p50 ≤ 1 ms at concurrency 1 (what MCP adds over RunPluginTool).

    .venv/bin/python bench/http.py [--duration-s 2] [--rounds 7] [--tool echo_async|echo]
                                   [--workers 2] [--baseline-ref main]
                                   [--after-settings 'workers = 1\nevent_loop = "asyncio"']
                                   [--after-env HIAGENT_POOL_BUSY_POLL_US=0]
    .venv/bin/python bench/http.py --redaction   # secret redaction per request, before/after

Many short rounds rather than a few long ones: on a shared VM the machine's speed drifts over
seconds, and a slow spell then shifts one round's figures, not the medians. The load average
is printed first: with other work on the machine, req/s say little, CPU per request more.

Busy polling (`pool.busy_poll_us`) is on in both; the environment reaches the servers, so
`HIAGENT_POOL_BUSY_POLL_US=0 .venv/bin/python bench/http.py` measures without.
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
import contextlib
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
from collections.abc import Callable, Iterator
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

    import hiagent_host
    print("serving", hiagent_host.__file__, flush=True)
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
    cpu_ms: float = 0.0  # CPU of the server's processes, plugin processes included, per request


# ---- the server --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(root: Path, port: int, wheelhouse: Path, server: str) -> Path:
    path = root / "runtime.toml"
    path.write_text(
        textwrap.dedent(
            f"""
            [server]
            port = {port}
            {server}
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


def start_server(
    config: Path, log: Path, code: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    """The bench server on `config`, importing hiagent_host from the checkout at `code`."""
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", SERVER, str(config)], env={**os.environ, **env},
            cwd=code, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
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


@dataclass
class Server:
    """One server under test: its label, how it is set up, and where it listens."""

    label: str
    settings: str  # the [server] lines of its runtime.toml
    code: Path  # the checkout it runs
    env: dict[str, str] = field(default_factory=dict)  # e.g. HIAGENT_POOL_BUSY_POLL_US
    url: str = ""
    proc: subprocess.Popen[bytes] | None = None


Generator = Callable[[Target, int, float, str], Result]
TOOL_INPUT: Final = {"text": "hello, plugin"}
ARGS = argparse.Namespace()


def start(server: Server, root: Path, wheelhouse: Path, wheel: Path) -> bytes:
    """Start `server`, install the echo fixture on it, warm it up; the RunPluginTool body."""
    root.mkdir()
    port = free_port()
    server.url = f"http://127.0.0.1:{port}"
    config = write_config(root, port, wheelhouse, server.settings)
    log = root / "server.log"
    server.proc = start_server(config, log, server.code, server.env)
    wait_ready(server.url, server.proc, log)
    installed = httpx.post(
        f"{server.url}/v1/InstallPackage",
        json={"uri": wheel.as_uri(), "filename": wheel.name},
        timeout=INSTALL_TIMEOUT_S,
    ).json()
    if installed["error"]:
        raise SystemExit(f"install failed: {installed['error']}")
    call = {
        "pkg": ECHO_PKG, "version": installed["data"]["version"], "plugin": ECHO_PLUGIN,
        "tool": ARGS.tool, "input": TOOL_INPUT,
    }  # fmt: skip
    body = json.dumps(call, ensure_ascii=False).encode()
    for _ in range(ARGS.workers * 4):  # every worker's child started
        warm = httpx.post(f"{server.url}/v1/RunPluginTool", content=body, timeout=60).json()
        if warm["error"]:
            raise SystemExit(f"warm-up call failed: {warm['error']}")
    print(log.read_text(encoding="utf-8").splitlines()[0], f"({server.label})")
    return body


def measure(
    server: Server, generator: Generator, target: Target, concurrency: int, row: str
) -> Result:
    """One measurement of `target` on `server`, with the CPU its processes spent per request."""
    assert server.proc is not None
    before = tree_cpu_s(server.proc.pid)
    result = generator(target, concurrency, ARGS.duration_s, f"{row}, {server.label}")
    spent = tree_cpu_s(server.proc.pid) - before
    result.cpu_ms = spent * 1000 / max(1.0, result.rps * ARGS.duration_s)
    return result


def tree_cpu_s(root: int) -> float:
    """CPU seconds (user + system) of the live processes descending from `root`, `root`
    included: the server, its workers and their plugin processes (each in a session and
    sandbox of its own, but still their server's children)."""
    stats: dict[int, tuple[int, int]] = {}  # pid → (parent, ticks)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:
            continue  # it has just exited
        # the fields after the name: state ppid pgrp session … utime (12th) stime (13th)
        stats[int(stat.parent.name)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    ticks = 0
    for pid, (_, spent) in stats.items():
        ancestor = pid
        while ancestor in stats and ancestor != root:
            ancestor = stats[ancestor][0]
        if ancestor == root:
            ticks += spent
    return ticks / os.sysconf("SC_CLK_TCK")


@contextlib.contextmanager
def baseline_checkout(ref: str | None) -> Iterator[Path]:
    """The checkout the "before" server runs: this one, or a temporary worktree of `ref`."""
    if ref is None:
        yield ROOT
        return
    with tempfile.TemporaryDirectory(prefix="hiagent-bench-baseline-") as tmp:
        where = Path(tmp) / "checkout"
        git = ["git", "-C", str(ROOT)]
        subprocess.run([*git, "worktree", "add", "--detach", str(where), ref], check=True)
        try:
            yield where
        finally:
            subprocess.run([*git, "worktree", "remove", "--force", str(where)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration-s", type=float, default=2.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=7, help="interleaved rounds (median)")
    parser.add_argument("--tool", choices=ECHO_TOOLS, default=ECHO_TOOLS[0], help="(b)'s tool")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="after's")
    parser.add_argument("--baseline-ref", help="git commit the before server runs")
    parser.add_argument(
        "--after-settings", help="[server] lines of the after server (default: the workers)"
    )
    parser.add_argument(
        "--after-env", action="append", default=[], help="KEY=VALUE for the after server only"
    )
    parser.add_argument(
        "--redaction", action="store_true", help="only the redaction rows (many distinct secrets)"
    )
    parser.parse_args(namespace=ARGS)
    if ARGS.redaction:
        redaction_report()
        return
    generator: Generator = wrk if shutil.which("wrk") else python_client
    print(f"load generator: {'wrk' if generator is wrk else 'python asyncio client'}; "
          f"{ARGS.duration_s:g} s per measurement, {ARGS.rounds} interleaved rounds; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}; "
          f"(b) calls {ARGS.tool}")  # fmt: skip
    with (
        tempfile.TemporaryDirectory(prefix="hiagent-bench-http-") as tmp,
        baseline_checkout(ARGS.baseline_ref) as before_code,
    ):
        root = Path(tmp)
        wheelhouse = ensure_wheelhouse()
        wheel = build_wheel(ECHO_FIXTURE, root / "wheels")
        before = Server("before", "workers = 1" if ARGS.baseline_ref else
                        'workers = 1\nevent_loop = "asyncio"', before_code)  # fmt: skip
        settings = ARGS.after_settings or f"workers = {ARGS.workers}"
        env = dict(item.split("=", 1) for item in ARGS.after_env)
        after = Server("after", settings.replace("\\n", "\n"), ROOT, env)
        servers = (before, after)
        try:
            bodies = [start(server, root / server.label, wheelhouse, wheel) for server in servers]
            targets = [
                (Target(f"{s.url}/bench/echo", b), Target(f"{s.url}/v1/RunPluginTool", b))
                for s, b in zip(servers, bodies, strict=True)
            ]
            mcp = mcp_call(
                f"{after.url}/mcp", f"{ECHO_PKG}__{ECHO_PLUGIN}__{ARGS.tool}", TOOL_INPUT
            )
            mcp_warm = httpx.post(
                mcp.url, content=mcp.body, timeout=60,
                headers=mcp.headers | {"Content-Type": "application/json"},
            )  # fmt: skip
            if mcp_warm.status_code != 200 or mcp_warm.json()["result"]["isError"]:
                raise SystemExit(f"MCP warm-up call failed: {mcp_warm.text}")
            rounds: list[list[Result]] = [[] for _ in range(ARGS.rounds)]
            for concurrency in CONCURRENCY:
                for echo, run_tool in targets:
                    generator(echo, concurrency, 1.0, "warm-up")
                    generator(run_tool, concurrency, 1.0, "warm-up")
                generator(mcp, concurrency, 1.0, "warm-up")
                for measured in rounds:  # interleaved, so that drift hits every row alike
                    for server, (echo, run_tool) in zip(servers, targets, strict=True):
                        row = measure(server, generator, echo, concurrency, "(a) JSON echo route")
                        measured.append(row)
                        row = measure(
                            server, generator, run_tool, concurrency, "(b) RunPluginTool echo"
                        )
                        measured.append(row)
                    measured.append(pipe_echo(TOOL_INPUT, concurrency, ARGS.duration_s))
                    measured.append(
                        measure(after, generator, mcp, concurrency, "(d) MCP tools/call echo")
                    )
        finally:
            for server in servers:
                if server.proc is not None:
                    stop_server(server.proc)
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
    print(
        f"\n{'':36} {'conc':>4} {'p50 ms':>9} {'p99 ms':>9} {'req/s':>10} {'CPU ms/req':>11}"
        f" {'errors':>7}"
    )
    for r in results:
        cpu = f"{r.cpu_ms:>11.3f}" if r.cpu_ms else f"{'':>11}"
        print(
            f"{r.name:36} {r.concurrency:>4} {r.p50_ms:>9.3f} {r.p99_ms:>9.3f} {r.rps:>10.0f}"
            f" {cpu} {r.errors:>7}"
        )
    overall = ratios(results)
    per_round = [ratios(measured) for measured in rounds]
    for i, (label, target) in enumerate(RATIOS):
        print(
            f"{label:52} {overall[i]:6.2f}  (target {target})"
            f"  rounds: {', '.join(f'{r[i]:.2f}' for r in per_round)}"
        )


RATIOS: Final = (
    ("after (b) p50 / ((a) + (c)) p50 at concurrency 1:", "≤ 1.30"),
    ("after (b) p50 / before (b) p50 at concurrency 1:", "≤ 1.00"),
    ("after (b) / after (a) req/s at concurrency 32:", "≥ 0.90"),
    ("after (b) / before (b) req/s at concurrency 32:", "≥ 1.30"),
    ("before (b) / before (a) req/s at concurrency 32:", "for reference"),
    ("after (b) / before (b) CPU per request at conc. 32:", "for reference"),
    ("(d) p50 − after (b) p50 at concurrency 1, ms:", f"≤ {MCP_ADDED_TARGET_MS:.1f}"),
)


def _median(group: tuple[Result, ...]) -> Result:
    return Result(
        group[0].name,
        group[0].concurrency,
        statistics.median(r.p50_ms for r in group),
        statistics.median(r.p99_ms for r in group),
        statistics.median(r.rps for r in group),
        sum(r.errors for r in group),
        statistics.median(r.cpu_ms for r in group),
    )


def ratios(results: list[Result]) -> tuple[float, ...]:
    by = {(r.name, r.concurrency): r for r in results}

    def echo(label: str, concurrency: int) -> Result:
        return by[(f"(a) JSON echo route, {label}", concurrency)]

    def tool(label: str, concurrency: int) -> Result:
        return by[(f"(b) RunPluginTool echo, {label}", concurrency)]

    pipe = by[("(c) raw JSON-RPC pipe echo", 1)]
    mcp = by[("(d) MCP tools/call echo, after", 1)]
    return (
        tool("after", 1).p50_ms / (echo("after", 1).p50_ms + pipe.p50_ms),
        tool("after", 1).p50_ms / tool("before", 1).p50_ms,
        tool("after", 32).rps / echo("after", 32).rps,
        tool("after", 32).rps / tool("before", 32).rps,
        tool("before", 32).rps / echo("before", 32).rps,
        tool("after", 32).cpu_ms / tool("before", 32).cpu_ms,
        mcp.p50_ms - tool("after", 1).p50_ms,
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
    from hiagent_host.pool.stderr import RECENT_SECRET_VALUES
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
