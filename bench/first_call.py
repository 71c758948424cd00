"""The first call after an install, with and without `[pool] prewarm_on_install`; prints only.

Each round reinstalls the echo fixture (force) into a running pool and times its first tool
call: (a) without prewarming (a cold start: spawn, handshake, plugin import, the call);
(b) with prewarming, the call made the moment the install returns (an install in the pool's
process returns once the prewarmed process answers); (c) with prewarming, the call made once
the snapshot says ready (for an install by another process, noticed by the pool's scan); and,
as the baseline, (d) a warm call to an already running process. Rounds alternate the modes so
load from elsewhere hits them alike; figures are medians over the rounds.

Target: (b) at most a tenth of (a). (The issue measured 327 ms for a cold first call against
18 ms on the original host, which starts the process during the install. A fresh process's
first call stays above a warm call: the SDK builds the tool's validators on its first use.)

    .venv/bin/python bench/first_call.py [--rounds N]
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from functools import partial  # noqa: E402
from typing import Final  # noqa: E402

import anyio  # noqa: E402
import msgspec  # noqa: E402

from hiagent_host.config import Config  # noqa: E402
from hiagent_host.packages import PackageManager  # noqa: E402
from hiagent_host.packages.wheelbuild import build_wheel  # noqa: E402
from hiagent_host.pool import Pool  # noqa: E402
from tests.support.configs import offline_config  # noqa: E402
from tests.support.wheelhouse import ensure_wheelhouse  # noqa: E402

ECHO_FIXTURE: Final = ROOT / "tests" / "fixtures" / "plugins" / "echo"
PAYLOAD: Final = {"text": "hello"}
# The prewarmed process comes up well within this; a bound, not a pause.
READY_WAIT_S: Final = 60.0
READY_POLL_S: Final = 0.005


def _config(root: Path, prewarm: bool) -> Config:
    base = offline_config(root, ensure_wheelhouse())
    pool = msgspec.structs.replace(base.pool, prewarm_on_install=prewarm)
    return msgspec.structs.replace(base, pool=pool)


async def _first_call(root: Path, wheel: Path, *, prewarm: bool, wait_ready: bool) -> float:
    config = _config(root, prewarm)
    manager = PackageManager(config)
    async with Pool(config, manager) as pool:
        install = partial(manager.install, wheel.as_uri(), wheel.name, force=True)
        record = await anyio.to_thread.run_sync(install)
        if wait_ready:
            with anyio.fail_after(READY_WAIT_S):
                while [p.state for p in pool.snapshot()] != ["ready"]:  # noqa: ASYNC110
                    await anyio.sleep(READY_POLL_S)
        start = time.perf_counter()
        await pool.run_tool(record.name, record.version, "echo", "echo_async", PAYLOAD, None)
        return time.perf_counter() - start


async def _warm_call(root: Path, wheel: Path) -> float:
    config = _config(root, False)
    async with Pool(config, PackageManager(config)) as pool:
        name, version = "hiagent-plugin-echo", "0.1.0"
        await pool.run_tool(name, version, "echo", "echo_async", PAYLOAD, None)
        start = time.perf_counter()
        await pool.run_tool(name, version, "echo", "echo_async", PAYLOAD, None)
        return time.perf_counter() - start


async def main(rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hiagent-bench-first-call-") as tmp:
        root = Path(tmp)
        wheel = build_wheel(ECHO_FIXTURE, root / "wheels")
        seen: dict[str, list[float]] = {"cold": [], "prewarm_now": [], "prewarm_ready": []}
        seen["warm"] = []
        for _ in range(rounds):
            seen["cold"].append(await _first_call(root, wheel, prewarm=False, wait_ready=False))
            seen["prewarm_now"].append(
                await _first_call(root, wheel, prewarm=True, wait_ready=False)
            )
            seen["prewarm_ready"].append(
                await _first_call(root, wheel, prewarm=True, wait_ready=True)
            )
            seen["warm"].append(await _warm_call(root, wheel))
    ms = {k: statistics.median(v) * 1000 for k, v in seen.items()}
    print(f"first call after install, median of {rounds} rounds:")
    print(f"  (a) no prewarm (cold start)          {ms['cold']:8.1f} ms")
    print(f"  (b) prewarm, called at once          {ms['prewarm_now']:8.1f} ms")
    print(f"  (c) prewarm, called once it is ready {ms['prewarm_ready']:8.1f} ms")
    print(f"  (d) warm call (baseline)             {ms['warm']:8.1f} ms")
    print(f"ratios: (b)/(a) {ms['prewarm_now'] / ms['cold']:.3f} (target <= 0.1)   "
          f"(a)/(d) {ms['cold'] / ms['warm']:.0f}x   (b)/(d) {ms['prewarm_now'] / ms['warm']:.0f}x"
          f"   (c)/(d) {ms['prewarm_ready'] / ms['warm']:.0f}x")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    anyio.run(main, args.rounds)
