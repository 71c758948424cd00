"""Plugin storage: cold start, first save and venv size with local storage vs an S3 store.

Installs the `storage` fixture plugin three times, each into a store of its own:

- baseline: the SDK of `--baseline-ref` (default `main`: run this on the branch before it is
  merged, or name the commit before the change), plugin storage local;
- local: this checkout's SDK, plugin storage local (the venv has no S3 client);
- s3: this checkout's SDK, plugin storage an object store (the venv gets the SDK's `s3`
  extra, boto3), saving to moto's S3 server on 127.0.0.1.

Then, interleaved over `--runs` rounds (medians): (a) cold start to the first result, a fresh
pool's first call of a tool that does not save; (b) cold start to the first saved file (the
object store's first save also imports boto3); (c) `import hiagent_plugin_sdk` alone in each
venv, the part of a cold start the SDK decides. (d) the venv's size (files under it, each
inode once). Prints ratios; asserts nothing. Target: local cold start within 10 % of the
baseline.

    .venv/bin/python bench/storage.py [--runs N] [--baseline-ref REF]

Offline: dependencies come from the test wheelhouse (fetched once per machine).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The checkout instead of bench/ itself on sys.path (tests' helpers are used).
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != ROOT / "bench"]

import argparse  # noqa: E402
import asyncio  # noqa: E402
import base64  # noqa: E402
import io  # noqa: E402
import logging  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tarfile  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from typing import Any, Final  # noqa: E402

import msgspec  # noqa: E402

from hiagent_host.config import Config, PluginStorageConfig, S3Storage  # noqa: E402
from hiagent_host.packages import PackageManager  # noqa: E402
from hiagent_host.packages.venv import disk_size  # noqa: E402
from hiagent_host.packages.wheelbuild import build_wheel  # noqa: E402
from hiagent_host.pool import Pool  # noqa: E402
from tests.support.configs import offline_config  # noqa: E402
from tests.support.s3 import ACCESS_KEY, SECRET_KEY, S3Server  # noqa: E402
from tests.support.wheelhouse import ensure_wheelhouse  # noqa: E402

FIXTURE: Final = ROOT / "tests" / "fixtures" / "plugins" / "storage"
PACKAGE: Final = "hiagent-plugin-storage"
BUCKET: Final = "bench"
PAYLOAD: Final = {"filename": "qr.png", "data_b64": base64.b64encode(b"x" * 4096).decode()}
GIT_TIMEOUT_S: Final = 60


def export_sdk(ref: str, dest: Path) -> Path:
    """`sdk/` as it is at `ref`, extracted under `dest`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", ref, "sdk"],
        check=True,
        capture_output=True,
        timeout=GIT_TIMEOUT_S,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(dest, filter="data")
    return dest / "sdk"


def store_config(
    root: Path, wheelhouse: Path, storage: PluginStorageConfig, sdk: Path | None
) -> Config:
    config = offline_config(root, wheelhouse, sdk_path=sdk)
    return msgspec.structs.replace(config, plugin_storage=storage)


def bare_import(venv: Path) -> float:
    start = time.perf_counter()
    python = venv / "bin" / "python"
    subprocess.run([str(python), "-c", "import hiagent_plugin_sdk"], check=True, cwd="/")
    return time.perf_counter() - start


async def first_result(config: Config, version: str, tool: str, tool_input: Any) -> float:
    """Seconds from a fresh pool's first call to its result (the child starts in between)."""
    async with Pool(config, PackageManager(config)) as pool:
        start = time.perf_counter()
        await pool.run_tool(PACKAGE, version, "storage", tool, tool_input, None)
        return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=7, help="interleaved rounds (medians)")
    parser.add_argument("--baseline-ref", default="main", help="git ref of the baseline SDK")
    args = parser.parse_args()
    wheelhouse = ensure_wheelhouse()
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's access log
    server = S3Server()
    server.start()
    try:
        server.create_bucket(BUCKET)
        s3 = S3Storage(
            ak=ACCESS_KEY, sk=SECRET_KEY, endpoint=server.endpoint, bucket=BUCKET, path_style=True
        )
        with tempfile.TemporaryDirectory(prefix="hiagent-bench-storage-") as tmp:
            root = Path(tmp)
            wheel = build_wheel(FIXTURE, root / "wheels")
            baseline_sdk = export_sdk(args.baseline_ref, root / "baseline")
            setups = {
                "baseline": (PluginStorageConfig(), baseline_sdk),
                "local": (PluginStorageConfig(), None),
                "s3": (PluginStorageConfig(backend="minio", s3=s3), None),
            }
            configs: dict[str, tuple[Config, str, Path]] = {}
            for name, (storage, sdk) in setups.items():
                config = store_config(root / name, wheelhouse, storage, sdk)
                record = PackageManager(config).install(wheel.as_uri(), wheel.name, force=False)
                configs[name] = (config, record.version, Path(record.venv_path))
            cold: dict[str, list[float]] = {name: [] for name in configs}
            save: dict[str, list[float]] = {name: [] for name in configs}
            imports: dict[str, list[float]] = {name: [] for name in configs}
            for _ in range(args.runs):  # interleaved, so load changes hit all alike
                for name, (config, version, venv) in configs.items():
                    cold[name].append(asyncio.run(first_result(config, version, "environment", {})))
                    save[name].append(asyncio.run(first_result(config, version, "save", PAYLOAD)))
                    imports[name].append(bare_import(venv))
            sizes = {name: disk_size(venv) for name, (_c, _v, venv) in configs.items()}
    finally:
        server.stop()
    lows = {name: min(values) for name, values in cold.items()}  # the least disturbed run
    med = {name: statistics.median(values) for name, values in cold.items()}
    first = {name: statistics.median(values) for name, values in save.items()}
    print(f"plugin storage, medians of {args.runs} interleaved rounds (baseline SDK: "
          f"{args.baseline_ref})")  # fmt: skip
    print("(a) cold start to the first result (no save)")
    for name in configs:
        print(f"    {name:9} {med[name] * 1e3:7.0f} ms  (fastest {lows[name] * 1e3:.0f} ms)")
    print(f"    local / baseline {med['local'] / med['baseline']:.2f}x (target <= 1.10x); "
          f"fastest runs {lows['local'] / lows['baseline']:.2f}x")  # fmt: skip
    print(f"    s3 / local       {med['s3'] / med['local']:.2f}x")
    print("(b) cold start to the first saved file")
    for name in configs:
        print(f"    {name:9} {first[name] * 1e3:7.0f} ms")
    print(f"    s3 / local       {first['s3'] / first['local']:.2f}x (boto3 imported, upload)")
    bare = {name: statistics.median(values) for name, values in imports.items()}
    print("(c) `import hiagent_plugin_sdk` alone")
    for name in configs:
        print(f"    {name:9} {bare[name] * 1e3:7.0f} ms")
    print(f"    local / baseline {bare['local'] / bare['baseline']:.2f}x")
    print("(d) venv size (files under the venv, each inode once)")
    for name in configs:
        print(f"    {name:9} {sizes[name] / 2**20:7.1f} MiB")
    print(f"    s3 - local       {(sizes['s3'] - sizes['local']) / 2**20:7.1f} MiB")


if __name__ == "__main__":
    main()
