"""Build a plugin venv: create it, then install everything in one resolver call (uv or pip).

uv (a dependency of the host) creates the venv without seeding pip and installs from its
cache, which makes a warm install take a fraction of a second; `packages.installer = "pip"`,
or a missing uv binary under "auto", falls back to `python -m venv` plus the venv's own pip.
The installer runs under `runner.run` with the configured inactivity and hard timeouts and an
allow-listed environment: locale, home, proxies, certificates, and the installer's own
`UV_*`/`PIP_*` settings (an operator's cache directory, link mode or mirror).
"""

from __future__ import annotations

import enum
import functools
import json
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec
from uv import find_uv_bin

from hiagent_host.config import PackagesConfig
from hiagent_host.packages.errors import Cancelled, InstallFailed
from hiagent_host.packages.runner import Completed, RunOutcome, run

ENV_ALLOW: Final = (
    "PATH", "HOME", "USER", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "SSL_CERT_FILE",
    "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "NETRC", "XDG_CACHE_HOME", "XDG_CONFIG_HOME",
    "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
    "http_proxy", "https_proxy", "no_proxy", "all_proxy",
)  # fmt: skip
ENV_ALLOW_PREFIXES: Final = ("UV_", "PIP_")
# Listing what a fresh venv holds reads a few files; it never needs the install's limits.
LIST_TIMEOUT_S: Final = 60.0


class Installer(enum.StrEnum):
    UV = "uv"
    PIP = "pip"


class Dependency(msgspec.Struct, frozen=True):
    """One distribution installed in a venv."""

    name: str
    version: str


@dataclass(frozen=True)
class Sources:
    """Where the resolver may look for distributions."""

    index_url: str = ""
    extra_index_urls: tuple[str, ...] = ()
    find_links: tuple[str, ...] = ()
    no_index: bool = False

    @classmethod
    def from_config(cls, config: PackagesConfig) -> Sources:
        return cls(
            index_url=config.index_url,
            extra_index_urls=tuple(config.extra_index_urls),
            find_links=tuple(config.find_links),
            no_index=config.no_index,
        )

    def args(self) -> list[str]:
        """The same flags for uv pip and pip."""
        out: list[str] = []
        if self.no_index:
            out.append("--no-index")
        else:
            if self.index_url:
                out += ["--index-url", self.index_url]
            for url in self.extra_index_urls:
                out += ["--extra-index-url", url]
        for link in self.find_links:
            out += ["--find-links", link]
        return out


def installer_env() -> dict[str, str]:
    """The allow-listed environment every installer subprocess gets."""
    env = {
        k: v for k, v in os.environ.items() if k in ENV_ALLOW or k.startswith(ENV_ALLOW_PREFIXES)
    }
    env.setdefault("PATH", os.defpath)
    return env


@functools.cache
def find_uv() -> str | None:
    """The bundled uv binary, or None if this installation has none.

    Looked up once per process and under a lock: `find_uv_bin` reads `sysconfig`, whose lazy
    initialisation is not thread-safe, and concurrent first installs run in worker threads.
    """
    with _FIND_UV_LOCK:
        try:
            return str(find_uv_bin())
        except FileNotFoundError:
            return None


_FIND_UV_LOCK = threading.Lock()


class VenvBuilder:
    """Creates and fills venvs with one installer, within one install's limits."""

    def __init__(self, config: PackagesConfig, *, cancel: threading.Event, cwd: Path) -> None:
        self.config = config
        self.cancel = cancel
        self.cwd = cwd
        self.python = config.python or sys.executable
        self.uv = find_uv() if config.installer in {"auto", "uv"} else None
        if config.installer == "uv" and self.uv is None:
            raise InstallFailed("packages.installer is uv but no uv binary is available")
        self.installer = Installer.UV if self.uv else Installer.PIP
        self.env = installer_env()
        # `install_timeout_s` bounds the whole build, however many steps it takes.
        self.deadline = time.monotonic() + config.install_timeout_s

    def create(self, dest: Path, prompt: str) -> None:
        """A new venv at `dest` (which must not exist), with `bin/activate`."""
        if self.uv:
            argv = [self.uv, "venv", "--no-project", "--python", self.python]
            argv += ["--prompt", prompt, str(dest)]
        else:
            argv = [self.python, "-m", "venv", "--prompt", prompt, str(dest)]
        self._run(argv, "creating the virtualenv")

    def install(self, venv: Path, requirements: Sequence[Path | str], sources: Sources) -> None:
        """Install `requirements` (wheel files, optionally with `[extras]`) and their
        dependencies in one resolver call."""
        python = venv_python(venv)
        if self.uv:
            argv = [self.uv, "pip", "install", "--python", str(python), "--no-progress"]
        else:
            argv = [str(python), "-m", "pip", "install", "--no-input", "--progress-bar", "off"]
            argv += ["--disable-pip-version-check"]
        self._run([*argv, *sources.args(), *map(str, requirements)], "installing")

    def dependencies(self, venv: Path) -> list[Dependency]:
        """Every distribution installed in `venv`, as its installer lists them."""
        python = venv_python(venv)
        if self.uv:
            argv = [self.uv, "pip", "list", "--format", "json", "--python", str(python)]
        else:
            argv = [str(python), "-m", "pip", "list", "--format", "json"]
            argv += ["--disable-pip-version-check"]
        done = run(
            argv, env=self.env, cwd=self.cwd, timeout_s=LIST_TIMEOUT_S, cancel=self.cancel,
            capture_stdout=True,
        )  # fmt: skip
        self._check(done, "listing installed distributions")
        try:
            rows = json.loads(done.stdout)
            return sorted(
                (Dependency(str(r["name"]), str(r["version"])) for r in rows),
                key=lambda d: d.name.lower(),
            )
        except (ValueError, TypeError, KeyError) as exc:
            raise InstallFailed(
                f"cannot read the installer's list of distributions: {exc}",
                data={"output_tail": done.stdout[-2000:].decode("utf-8", "replace")},
            ) from exc

    def _run(self, argv: list[str], what: str) -> None:
        done = run(
            argv,
            env=self.env,
            cwd=self.cwd,
            timeout_s=max(0.0, self.deadline - time.monotonic()),
            idle_timeout_s=self.config.install_idle_timeout_s,
            cancel=self.cancel,
        )
        self._check(done, what)

    def _check(self, done: Completed, what: str) -> None:
        if done.outcome is RunOutcome.CANCELLED:
            raise Cancelled(f"install cancelled while {what}")
        if done.ok:
            return
        reason = {
            RunOutcome.TIMEOUT: f"took longer than {self.config.install_timeout_s} s",
            RunOutcome.IDLE_TIMEOUT: f"printed nothing for {self.config.install_idle_timeout_s} s",
        }.get(done.outcome, f"exited with status {done.returncode}")
        raise InstallFailed(
            f"{self.installer} failed while {what}: {reason}",
            data={
                "installer": str(self.installer),
                "phase": what,
                "reason": reason,
                "returncode": done.returncode,
                "output_tail": done.tail,
            },
        )


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def python_version(venv: Path) -> str:
    """The venv's Python version, from its pyvenv.cfg (no interpreter launch)."""
    try:
        text = (venv / "pyvenv.cfg").read_text(encoding="utf-8")
    except OSError:
        return ""
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values[key.strip()] = value.strip()
    return values.get("version_info") or values.get("version") or ""


def disk_size(root: Path) -> int:
    """Bytes of the files under `root`, each inode counted once, symlinks not followed."""
    seen: set[tuple[int, int]] = set()
    total = 0
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            try:
                st = Path(dirpath, name).lstat()
            except OSError:
                continue
            key = (st.st_dev, st.st_ino)
            if key not in seen:
                seen.add(key)
                total += st.st_size
    return total
