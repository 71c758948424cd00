"""The process pool against the bare wire, measured in one run; prints, never asserts.

(a) warm call latency through `Pool.run_tool` (the echo fixture: `echo_async` on the child's
    event loop, and `echo`, a sync tool on its worker threads) vs. a raw JSON-RPC echo over a
    pipe to a bare stdlib child (`bench/rpc_echo.py`): p50 and p99 sequentially, and with 64
    calls in flight (throughput too);
(b) cold start to the first result (a fresh pool: spawn, handshake, plugin import, one call)
    vs. `python -c "import hiagent_plugin_sdk"` in the same venv;
(c) the resident memory of an idle child (and of the bare echo child);
(d) the sandbox's cost: the same pool with `pool.sandbox = "on"` vs `"off"`, interleaved in
    the same run: cold start to the first result, warm p50 and throughput of `echo_async`,
    and the idle memory per child (the plugin process, plus bwrap's two processes: RSS, and
    PSS, which shares their common pages out fairly).

For a breakdown, (a) also drives the shim itself with the raw client (no pool, no `RpcPeer`):
that is the floor any host side can reach with this shim.

Every path moves the same bytes: the raw client sends the very `run_tool` request the pool
sends (compact JSON) and the echo child answers with its input, as the plugin does. Each
measurement is warmed up first; the rounds are interleaved (pool, raw, shim, pool, …) so that
load from elsewhere hits them alike, and each figure is the median over the rounds.

Targets: warm p50 ≤ 1.5 × raw; pipelined throughput ≥ 50 % of raw; cold start ≤ 1.5 × the
bare SDK import; the sandbox adds ≤ 25 ms to a cold start and ≤ 2 MiB per idle child, and
keeps warm p50 and throughput within 5 %.

    .venv/bin/python bench/pool.py [--calls N] [--rounds N] [--cold-runs N]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The checkout instead of bench/ itself on sys.path (tests' wheelhouse helper is used).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import contextlib  # noqa: E402
import json  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Awaitable, Callable  # noqa: E402
from typing import Any, Final  # noqa: E402

import msgspec  # noqa: E402

from hiagent_host.config import Config  # noqa: E402
from hiagent_host.packages import PackageManager, sandbox  # noqa: E402
from hiagent_host.packages.wheelbuild import build_wheel  # noqa: E402
from hiagent_host.pool import Pool  # noqa: E402
from hiagent_host.pool.procfs import rss_bytes  # noqa: E402
from tests.support.configs import offline_config  # noqa: E402
from tests.support.wheelhouse import ensure_wheelhouse  # noqa: E402

ECHO_FIXTURE: Final = ROOT / "tests" / "fixtures" / "plugins" / "echo"
ECHO_PKG: Final = "hiagent-plugin-echo"
PAYLOAD: Final = {"text": "hello", "n": 42, "items": [1, 2, 3]}
RUN_PARAMS: Final = {"plugin": "echo", "tool": "echo_async", "input": PAYLOAD, "cfg": None}
WARM_UP_CALLS: Final = 200
IN_FLIGHT: Final = 64
RPC_ECHO: Final = ROOT / "bench" / "rpc_echo.py"


def quantiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p99) in milliseconds."""
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


class RawClient:
    """The baseline: a JSON-RPC client as thin as it gets, over a pipe to a child."""

    def __init__(self, argv: list[str], env: dict[str, str] | None = None) -> None:
        self.argv = argv
        self.env = env
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0

    async def __aenter__(self) -> RawClient:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=self.env, cwd="/"
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        await self.proc.wait()
        self._reader.cancel()

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            message = json.loads(line)
            self._pending.pop(message["id"]).set_result(message.get("result"))

    async def call(self, params: Any, method: str = "echo") -> Any:
        assert self.proc.stdin is not None
        self._next += 1
        future = asyncio.get_running_loop().create_future()
        self._pending[self._next] = future
        request = {"jsonrpc": "2.0", "id": self._next, "method": method, "params": params}
        self.proc.stdin.write(json.dumps(request, separators=(",", ":")).encode() + b"\n")
        await self.proc.stdin.drain()
        return await future


async def measure(call: Callable[[], Awaitable[Any]], n: int, in_flight: int) -> dict[str, float]:
    """p50/p99 latency (ms) and calls per second of `n` calls, `in_flight` at a time."""
    for _ in range(min(WARM_UP_CALLS, n)):
        await call()  # warm up
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(in_flight)))
    elapsed = time.perf_counter() - start
    p50, p99 = quantiles(latencies)
    return {"p50_ms": p50, "p99_ms": p99, "per_s": n / elapsed}


def medians(rounds: list[dict[str, dict[str, float]]]) -> dict[str, dict[str, float]]:
    """Each figure of each row: its median over the rounds."""
    return {
        row: {key: statistics.median(r[row][key] for r in rounds) for key in rounds[0][row]}
        for row in rounds[0]
    }


async def warm(config: Config, version: str, calls: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with Pool(config, PackageManager(config)) as pool:
        for tool in ("echo_async", "echo"):

            async def one(tool: str = tool) -> Any:
                return await pool.run_tool(ECHO_PKG, version, "echo", tool, PAYLOAD, None)

            for in_flight in (1, IN_FLIGHT):
                results[f"pool {tool} x{in_flight}"] = await measure(one, calls, in_flight)
        results["rss"] = {"child_bytes": float(pool.snapshot()[0].rss_bytes or 0)}
    return results


async def raw(python: str, calls: int) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    async with RawClient([python, str(RPC_ECHO)]) as echo:
        for in_flight in (1, IN_FLIGHT):
            results[f"raw x{in_flight}"] = await measure(
                lambda: echo.call(RUN_PARAMS, "run_tool"), calls, in_flight
            )
        results["rss"] = {"child_bytes": float(rss_bytes(echo.proc.pid) or 0)}
    return results


async def raw_shim(python: str, calls: int) -> dict[str, dict[str, float]]:
    """The raw client driving the shim directly: `ping`, and `run_tool` of echo_async."""
    results: dict[str, dict[str, float]] = {}
    env = {"HIAGENT_PACKAGE_NAME": ECHO_PKG, "PATH": "/usr/bin:/bin"}
    async with RawClient([python, "-m", "hiagent_shim"], env) as shim:
        await shim.call(
            {"host_version": "bench", "protocol_version": 1, "max_frame_bytes": 1 << 25,
             "stream_window": 64},
            "initialize",
        )  # fmt: skip
        for in_flight in (1, IN_FLIGHT):
            results[f"raw->shim ping x{in_flight}"] = await measure(
                lambda: shim.call({}, "ping"), calls, in_flight
            )
            results[f"raw->shim tool x{in_flight}"] = await measure(
                lambda: shim.call(RUN_PARAMS, "run_tool"), calls, in_flight
            )
    return results


async def cold_start(config: Config, version: str) -> float:
    """Seconds from a fresh pool's first call to its result (the child starts in between)."""
    async with Pool(config, PackageManager(config)) as pool:
        start = time.perf_counter()
        await pool.run_tool(ECHO_PKG, version, "echo", "echo_async", PAYLOAD, None)
        return time.perf_counter() - start


def with_sandbox(config: Config, mode: str) -> Config:
    return msgspec.structs.replace(config, pool=msgspec.structs.replace(config.pool, sandbox=mode))


def _ppid(pid: int) -> int:
    raw = Path(f"/proc/{pid}/stat").read_bytes()
    return int(raw[raw.rfind(b")") + 2 :].split()[1])


def _rollup(pid: int) -> dict[str, int]:
    """/proc/<pid>/smaps_rollup in bytes."""
    out = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, _, value = line.partition(":")
        out[key] = int(value.split()[0]) * 1024
    return out


def child_memory(pid: int, jailed: bool) -> dict[str, float]:
    """RSS of the plugin process; RSS, PSS and USS (its private pages) of it with its jail
    (bwrap's init and bwrap)."""
    pids = [pid]
    if jailed:
        init = _ppid(pid)
        pids += [init, _ppid(init)]
    return {
        "child_rss": float(rss_bytes(pid) or 0),
        "total_rss": float(sum(rss_bytes(p) or 0 for p in pids)),
        "total_pss": float(sum(_rollup(p)["Pss"] for p in pids)),
        "total_uss": float(
            sum(_rollup(p)["Private_Clean"] + _rollup(p)["Private_Dirty"] for p in pids)
        ),
    }


async def sandbox_warm(
    configs: dict[str, Config], version: str, calls: int, rounds: int
) -> dict[str, list[dict[str, dict[str, float]]]]:
    """Warm echo_async (1 and 64 in flight) on a pool per mode, open side by side and measured
    in alternation, round after round (load from elsewhere hits both alike); then each idle
    child's memory, for (d)."""
    results: dict[str, list[dict[str, dict[str, float]]]] = {mode: [] for mode in configs}
    async with contextlib.AsyncExitStack() as stack:
        pools = {
            mode: await stack.enter_async_context(Pool(cfg, PackageManager(cfg)))
            for mode, cfg in configs.items()
        }
        for i in range(rounds):
            for mode, pool in sorted(pools.items(), reverse=i % 2 == 1):  # each goes first

                async def one(pool: Pool = pool) -> Any:
                    return await pool.run_tool(
                        ECHO_PKG, version, "echo", "echo_async", PAYLOAD, None
                    )

                figures = {f"x{n}": await measure(one, calls, n) for n in (1, IN_FLIGHT)}
                results[mode].append(figures)
        for mode, pool in pools.items():
            [info] = pool.snapshot()
            memory = child_memory(info.pid or 0, pool.sandbox.active)
            for figures in results[mode]:
                figures["memory"] = memory
    return results


def record_python(config: Config) -> Path:
    manager = PackageManager(config)
    [record] = manager.list()
    return manager.venv_python(record)


def jail_setup(config: Config, python: Path, runs: int) -> float:
    """Median extra seconds bwrap takes to start /bin/true in the echo package's jail."""
    jail = sandbox.jail(with_sandbox(config, "on"))
    assert jail is not None
    venv = python.parent.parent.resolve()
    with tempfile.TemporaryDirectory() as data:
        argv = jail.command(["/bin/true"], venv=venv, data_dir=Path(data), network=True)
        extra = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run(["/bin/true"], check=True)
            plain = time.perf_counter() - start
            with sandbox.opened(argv) as (final, fds):
                start = time.perf_counter()
                subprocess.run(final, check=True, pass_fds=fds)
                extra.append(time.perf_counter() - start - plain)
    return statistics.median(extra)


def sandbox_cost(config: Config, version: str, args: argparse.Namespace) -> list[str]:
    """(d): sandbox on vs off, interleaved, medians; the lines to print."""
    out: list[str] = []
    configs = {"off": with_sandbox(config, "off"), "on": with_sandbox(config, "on")}
    warm_rounds = asyncio.run(sandbox_warm(configs, version, args.calls, args.rounds * 4))
    colds: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(args.cold_runs * 2):
        for mode, cfg in sorted(configs.items(), reverse=i % 2 == 1):
            colds[mode].append(asyncio.run(cold_start(cfg, version)))
    figures = {mode: medians(rounds) for mode, rounds in warm_rounds.items()}
    cold = {mode: statistics.median(values) for mode, values in colds.items()}
    # Each pair ran back to back: its difference is less at the mercy of load from elsewhere.
    paired = [on - off for on, off in zip(colds["on"], colds["off"], strict=True)]
    out.append(
        f"(d) sandbox on vs off (bubblewrap), alternating: medians of {args.rounds * 4} warm "
        f"rounds of {args.calls} calls, of {args.cold_runs * 2} cold starts"
    )
    out.append(
        f"    cold start to first result: off {cold['off'] * 1e3:.0f} ms, on "
        f"{cold['on'] * 1e3:.0f} ms; the sandbox's share, median of the back-to-back pairs' "
        f"differences: {statistics.median(paired) * 1e3:+.1f} ms (target <= +25)"
    )
    for row in ("x1", f"x{IN_FLIGHT}"):
        f_off, f_on = figures["off"][row], figures["on"][row]
        out.append(
            f"    echo_async {row:<4} p50 off {f_off['p50_ms']:.3f} on {f_on['p50_ms']:.3f} ms "
            f"({f_on['p50_ms'] / f_off['p50_ms'] - 1:+.1%}); throughput off "
            f"{f_off['per_s']:.0f} on {f_on['per_s']:.0f}/s "
            f"({f_on['per_s'] / f_off['per_s'] - 1:+.1%}) (target within 5%)"
        )
    setup = jail_setup(config, record_python(config), args.cold_runs * 4)
    out.append(
        f"    of which the jail's set-up alone (bwrap running /bin/true vs /bin/true): "
        f"{setup * 1e3:+.1f} ms"
    )
    m_off, m_on = figures["off"]["memory"], figures["on"]["memory"]
    mib = 2**20

    def delta(key: str) -> str:
        return f"off {m_off[key] / mib:.1f} on {m_on[key] / mib:.1f} MiB " + (
            f"({(m_on[key] - m_off[key]) / mib:+.1f})"
        )

    out.append(f"    idle child: the plugin process's RSS {delta('child_rss')}; with its jail:")
    out.append(f"      RSS {delta('total_rss')} (bwrap's two processes count the same libc pages)")
    out.append(f"      PSS {delta('total_pss')}, USS {delta('total_uss')} (target <= +2 MiB)")
    return out


def bare_import(python: Path) -> float:
    start = time.perf_counter()
    subprocess.run([str(python), "-c", "import hiagent_plugin_sdk"], check=True, cwd="/")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000, help="calls per warm measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians)")
    parser.add_argument("--cold-runs", type=int, default=7, help="cold starts to take a median of")
    parser.add_argument(
        "--only-sandbox", action="store_true", help="measure (d), the sandbox's cost, alone"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pool-") as tmp:
        root = Path(tmp)
        config = offline_config(root, ensure_wheelhouse())
        manager = PackageManager(config)
        wheel = build_wheel(ECHO_FIXTURE, root / "wheels")
        record = manager.install(wheel.as_uri(), wheel.name, force=True)
        python = manager.venv_python(record)
        if args.only_sandbox:
            print("\n".join(sandbox_cost(config, record.version, args)))
            return

        rounds: list[dict[str, dict[str, float]]] = []
        for _ in range(args.rounds):
            pool_figures = asyncio.run(warm(config, record.version, args.calls))
            raw_figures = asyncio.run(raw(str(python), args.calls))
            shim_figures = asyncio.run(raw_shim(str(python), args.calls))
            rounds.append(
                {f"pool {k}" if k == "rss" else k: v for k, v in pool_figures.items()}
                | {f"raw {k}" if k == "rss" else k: v for k, v in raw_figures.items()}
                | shim_figures
            )
        colds, imports = [], []
        for _ in range(args.cold_runs):  # interleaved, so load changes hit both alike
            colds.append(asyncio.run(cold_start(config, record.version)))
            imports.append(bare_import(python))
        sandbox_lines = sandbox_cost(config, record.version, args)

    figures = medians(rounds)
    print(
        f"(a) warm calls, {args.calls} each, median of {args.rounds} rounds "
        "(latency ms, throughput calls/s)"
    )
    order = ("raw x", "raw->shim", "pool ")
    rows = {k: v for p in order for k, v in figures.items() if k.startswith(p) and "rss" not in k}
    for name, f in rows.items():
        print(f"    {name:<24} p50 {f['p50_ms']:7.3f}  p99 {f['p99_ms']:7.3f}  {f['per_s']:9.0f}/s")
    for tool in ("echo_async", "echo"):
        seq = rows[f"pool {tool} x1"]["p50_ms"] / rows["raw x1"]["p50_ms"]
        tput = rows[f"pool {tool} x{IN_FLIGHT}"]["per_s"] / rows[f"raw x{IN_FLIGHT}"]["per_s"]
        print(
            f"    {tool}: warm p50 {seq:.2f}x raw (target <= 1.5x); "
            f"throughput at {IN_FLIGHT} in flight {tput:.0%} of raw (target >= 50%)"
        )
    shim_seq = rows["raw->shim tool x1"]["p50_ms"] / rows["raw x1"]["p50_ms"]
    shim_tput = rows[f"raw->shim tool x{IN_FLIGHT}"]["per_s"] / rows[f"raw x{IN_FLIGHT}"]["per_s"]
    host_seq = rows["pool echo_async x1"]["p50_ms"] / rows["raw->shim tool x1"]["p50_ms"]
    host_tput = (
        rows[f"pool echo_async x{IN_FLIGHT}"]["per_s"]
        / rows[f"raw->shim tool x{IN_FLIGHT}"]["per_s"]
    )
    print(
        f"    the shim alone (raw client -> shim, echo_async): p50 {shim_seq:.2f}x raw, "
        f"throughput {shim_tput:.0%} of raw"
    )
    print(
        f"    the host side alone (pool vs that raw client, same shim): p50 {host_seq:.2f}x, "
        f"throughput {host_tput:.0%}"
    )
    cold, bare = statistics.median(colds), statistics.median(imports)
    print(f"(b) cold start to first result: median of {args.cold_runs}")
    print(f"    pool {cold * 1e3:.0f} ms  vs  bare `import hiagent_plugin_sdk` {bare * 1e3:.0f} ms")
    print(f"    ratio {cold / bare:.2f}x (target <= 1.5x)")
    print("(c) idle resident memory")
    print(f"    plugin child {figures['pool rss']['child_bytes'] / 2**20:.1f} MiB")
    print(f"    bare echo child {figures['raw rss']['child_bytes'] / 2**20:.1f} MiB")
    print("\n".join(sandbox_lines))


if __name__ == "__main__":
    main()
