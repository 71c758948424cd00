"""Benchmark: installing a plugin with the host vs. the historic `pip install --target`.

Builds two plugin wheels (no dependencies; one small dependency, six), then installs each
with a warm cache, several times, via the host's PackageManager (a fresh venv made from the
base venv, the shim and SDK, the plugin, and the probe: ready to serve) and via the historic
method (pip installing the wheel into a target directory). Before each timed run the previous
install is removed, untimed, on both sides (the host deletes the package, pip's target
directory is removed). Prints medians and ratios; asserts nothing.

Then the first install on a fresh host (an empty state directory: no shim/SDK wheels, no base
venv) against a later one: as the server does at start, the base venv is built in the
background (`PackageManager.warm_base`) while the host already serves; the first install
either comes once that is done (the usual case: the server has been up a few seconds) or at
the very start, when it waits for the build under way instead of starting a second one.
Target (issue 17): the first install no slower than a later one.

    .venv/bin/python bench/install.py [--runs N]

Offline: dependencies come from the test wheelhouse (fetched once per machine).
Targets (issue 3): host < 1.5 s for the no-dependency plugin, and >= 3x faster than pip.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

# The checkout instead of bench/ itself on sys.path: the test wheelhouse helper is found, and
# sibling scripts (bench/http.py) cannot shadow standard-library modules.
REPO = Path(__file__).resolve().parent.parent
sys.path[:] = [*(p for p in sys.path if Path(p or ".").resolve() != REPO / "bench"), str(REPO)]


from hiagent_host.packages import PackageManager  # noqa: E402
from hiagent_host.packages.shim_wheels import ensure_bundled_wheels  # noqa: E402
from hiagent_host.packages.wheelbuild import build_wheel  # noqa: E402
from tests.support.configs import offline_config  # noqa: E402
from tests.support.wheelhouse import ensure_wheelhouse  # noqa: E402

PIP_TIMEOUT_S = 600
PLUGIN = '''
from hiagent_plugin_sdk import BasePlugin
{imports}


class BenchPlugin(BasePlugin):
    """A benchmark plugin."""

    hiagent_tools = ["hello"]

    def hello(self) -> str:
        """Say hello."""
        return "hello"
'''


def make_wheel(root: Path, name: str, deps: list[str]) -> Path:
    module = name.replace("-", "_")
    project = root / name
    (project / module).mkdir(parents=True)
    dependencies = ", ".join(f'"{d}"' for d in deps)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "1.0"\ndependencies = [{dependencies}]\n'
        f'[project.entry-points."hiagent.plugins"]\nBench = "{module}:BenchPlugin"\n'
    )
    imports = "\n".join(f"import {d}" for d in deps)
    (project / module / "__init__.py").write_text(PLUGIN.format(imports=imports))
    return build_wheel(project, root / "wheels")


def host_install(pm: PackageManager, wheel: Path) -> tuple[float, dict[str, float]]:
    """One fresh install (the previous one is deleted first, untimed, as pip's target is)."""
    for record in pm.list():
        pm.delete(record.name, record.version)
    marks: list[tuple[str, float]] = []
    started = time.perf_counter()
    pm.install(
        wheel.as_uri(), wheel.name, force=False,
        progress=lambda phase: marks.append((phase, time.perf_counter())),
    )  # fmt: skip
    total = time.perf_counter() - started
    ends = [t for _, t in marks[1:]] + [started + total]
    return total, {phase: end - t for (phase, t), end in zip(marks, ends, strict=True)}


def fresh_host_install(
    root: Path, wheelhouse: Path, wheel: Path, *, at_once: bool = False
) -> float:
    """The first install on a fresh host whose base venv is being built in the background
    since start: once that is done, or `at_once` (waiting for it); the install's seconds.
    (`root` is spelt without spaces: a venv path that needs quoting goes without a base.)"""
    pm = PackageManager(offline_config(root, wheelhouse))
    warm = threading.Thread(target=pm.warm_base)
    warm.start()
    if not at_once:
        warm.join()
    started = time.perf_counter()
    pm.install(wheel.as_uri(), wheel.name, force=False)
    elapsed = time.perf_counter() - started
    warm.join()
    return elapsed


def pip_install(wheels: list[Path], wheelhouse: Path, target: Path) -> float:
    shutil.rmtree(target, ignore_errors=True)
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--no-index", "--find-links", str(wheelhouse), "--target", str(target),
         *map(str, wheels)],
        check=True, timeout=PIP_TIMEOUT_S,
    )  # fmt: skip
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="timed runs per method (median)")
    args = parser.parse_args()
    wheelhouse = ensure_wheelhouse()
    with tempfile.TemporaryDirectory(prefix="hiagent-bench-") as tmp:
        root = Path(tmp)
        pm = PackageManager(offline_config(root / "host", wheelhouse))
        cases = {
            "no dependencies": make_wheel(root, "bench-nodeps", []),
            "one dependency (six)": make_wheel(root, "bench-onedep", ["six"]),
        }
        print(
            f"{'plugin':<22}{'host: ready to serve':>22}{'pip: plugin':>13}{'ratio':>7}"
            f"{'pip: + SDK':>12}{'ratio':>7}"
        )
        for case, (label, wheel) in enumerate(cases.items()):
            host_install(pm, wheel)  # warm the caches and the shim/SDK wheelhouse
            bundled = ensure_bundled_wheels(pm.layout.wheelhouse_dir)
            same_contents = [wheel, bundled.shim, bundled.sdk]
            target = root / "target"
            pip_install([wheel], wheelhouse, target)
            pip_install(same_contents, wheelhouse, target)
            host_runs, fresh, at_once = [], [], []
            for i in range(args.runs):  # interleaved: drift on the machine hits all three alike
                host_runs.append(host_install(pm, wheel))
                fresh.append(fresh_host_install(root / f"fresh-{case}-{i}", wheelhouse, wheel))
                at_once.append(
                    fresh_host_install(root / f"start-{case}-{i}", wheelhouse, wheel, at_once=True)
                )
            pip_runs = [pip_install([wheel], wheelhouse, target) for _ in range(args.runs)]
            pip_all = [pip_install(same_contents, wheelhouse, target) for _ in range(args.runs)]
            host = statistics.median(t for t, _ in host_runs)
            pip, pip_sdk = statistics.median(pip_runs), statistics.median(pip_all)
            print(
                f"{label:<22}{host:>20.3f} s{pip:>11.3f} s{pip / host:>6.1f}x"
                f"{pip_sdk:>10.3f} s{pip_sdk / host:>6.1f}x"
            )
            phases = {p: statistics.median(r[1][p] for r in host_runs) for p in host_runs[0][1]}
            print("    host phases: " + ", ".join(f"{p} {s:.3f} s" for p, s in phases.items()))
            first, right_away = statistics.median(fresh), statistics.median(at_once)
            ratios = ", ".join(f"{f / h[0]:.2f}" for f, h in zip(fresh, host_runs, strict=True))
            print(
                f"    first install on a fresh host {first:.3f} s = {first / host:.2f} x a later"
                f" one (target ≤ 1.00; runs: {ratios}); at the very start, waiting for the"
                f" base: {right_away:.3f} s"
            )
        print("pip: plugin = the historic install (the SDK lived in the host's environment);")
        print("pip: + SDK  = the same distributions the host's venv receives (shim, SDK, deps).")
        print("targets: host < 1.5 s without dependencies; host >= 3x faster than pip --target")


if __name__ == "__main__":
    main()
