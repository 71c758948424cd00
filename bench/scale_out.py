"""Benchmark: two API nodes and two workers with separate data directories, one S3 store.

Starts a redis-server, moto's S3 server, two `hiagent-host serve` processes (A, B) and two
`hiagent-host worker` processes, each node with its own data directory, all on 127.0.0.1.
For each of N fresh package versions it measures, from B's point of view:

- async install: InstallPackageAsync on A → the first successful call on B (the worker
  builds the venv and commits it to the store; B hears of it and materialises its own);
- first call on a node that must materialise the venv (a version installed synchronously
  through A, then called on B for the first time), against a warm call on B (the baseline,
  measured in the same run);
- delete propagation: DeletePackage on A returns → B answers 404 for it.

Prints medians and ratios; asserts nothing.

    .venv/bin/python bench/scale_out.py [--runs N]
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

# The checkout instead of bench/ itself on sys.path (see bench/install.py).
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [*(p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"), str(REPO)]

import httpx  # noqa: E402

from tests.api.support import LiveServer, free_port, write_config  # noqa: E402
from tests.cluster.support import call, post, timed_plugin, wait_until  # noqa: E402
from tests.jobs.helpers import RedisServer, WorkerProcess  # noqa: E402
from tests.support.s3 import PackagesS3  # noqa: E402
from tests.support.wheelhouse import ensure_wheelhouse  # noqa: E402

WAIT_S = 300.0
WARM_CALLS = 200


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    wheelhouse = ensure_wheelhouse()
    with tempfile.TemporaryDirectory(prefix="hiagent-bench-") as tmp:
        root = Path(tmp)
        redis = RedisServer(root)
        redis.start()
        s3 = PackagesS3(port=free_port(), bucket="hiagent-bench")
        s3.start()
        s3.client().create_bucket(Bucket=s3.bucket)
        queue = {"backend": "redis", "redis_url": redis.url, "queue_name": "hiagent:bench"}
        servers: list[LiveServer] = []
        workers: list[WorkerProcess] = []
        try:
            for name in ("a", "b", "w1", "w2"):
                port = free_port()
                config = write_config(
                    root / f"{name}.toml", root / name, wheelhouse, port,
                    queue=queue, store=s3.store_settings(),
                    logging={"level": "warning", "access_log": False},
                )  # fmt: skip
                if name.startswith("w"):
                    workers.append(WorkerProcess(config, root / f"{name}.log"))
                else:
                    servers.append(LiveServer(config, port, root / f"{name}.log").start())
            run(servers[0].url, servers[1].url, root, args.runs)
        finally:
            for server in servers:
                server.stop()
            for worker in workers:
                worker.stop()
            s3.stop()
            redis.stop()


def run(a: str, b: str, root: Path, runs: int) -> None:
    figures: dict[str, list[float]] = {}
    with httpx.Client() as client:
        for i in range(runs):
            name = f"hiagent-plugin-bench-{i}-{secrets.token_hex(3)}"
            for what, seconds in one_version(client, a, b, root, name, i).items():
                figures.setdefault(what, []).append(seconds)
        warm = []
        for _ in range(WARM_CALLS):
            started = time.perf_counter()
            call(client, b, name).raise_for_status()
            warm.append(time.perf_counter() - started)
    warm_s = statistics.median(warm)
    print(f"runs: {runs} (median of each)")
    for what, values in figures.items():
        print(f"{what:<58} {statistics.median(values) * 1000:8.0f} ms")
    print(f"{f'warm call on B (baseline, {WARM_CALLS} calls)':<58} {warm_s * 1000:8.2f} ms")
    first_s = statistics.median(figures[FIRST_CALL])
    print(f"{'first call / warm call':<58} {first_s / warm_s:8.0f}x")


FIRST_CALL = "first call on B (it materialises the venv)"


def one_version(
    client: httpx.Client, a: str, b: str, root: Path, name: str, i: int
) -> dict[str, float]:
    """The figures of one run, each in seconds."""
    found: dict[str, float] = {}
    wheel = timed_plugin(root / "wheels", name, "1.0", f"b{i}")
    started = time.perf_counter()
    post(client, a, "InstallPackageAsync", {"uri": wheel.as_uri(), "filename": wheel.name})
    wait_until(lambda: call(client, b, name).status_code == 200, timeout_s=WAIT_S, what="B")
    found["InstallPackageAsync on A -> first successful call on B"] = time.perf_counter() - started

    other = f"{name}-sync"
    wheel = timed_plugin(root / "wheels", other, "1.0", f"s{i}")
    body = {"uri": wheel.as_uri(), "filename": wheel.name, "force": False}
    post(client, a, "InstallPackage", body).raise_for_status()
    wait_until(lambda: _listed(client, b, other), timeout_s=WAIT_S, what="B's view")
    started = time.perf_counter()
    call(client, b, other).raise_for_status()
    found[FIRST_CALL] = time.perf_counter() - started

    post(client, a, "DeletePackage", {"pkg": other, "version": "1.0"}).raise_for_status()
    started = time.perf_counter()
    wait_until(lambda: call(client, b, other).status_code == 404, timeout_s=WAIT_S, what="404")
    found["DeletePackage on A returned -> 404 on B"] = time.perf_counter() - started
    wait_until(lambda: not _running(client, b, other), timeout_s=WAIT_S, what="B's process")
    found["DeletePackage on A returned -> B's process gone"] = time.perf_counter() - started
    return found


def _running(client: httpx.Client, url: str, name: str) -> bool:
    response = post(client, url, "ListProcesses", {})
    return any(p["pkg"] == name for p in response.json()["data"])


def _listed(client: httpx.Client, url: str, name: str) -> bool:
    response = post(client, url, "ListPackages", {})
    return any(p["name"] == name for p in response.json()["data"])


if __name__ == "__main__":
    main()
