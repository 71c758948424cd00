"""Helpers for the package-manager tests: configs, generated plugin wheels, a loopback server."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.server
import json
import os
import subprocess
import threading
import time
import zipfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hiagent_host.packages import PackageManager
from hiagent_host.packages.wheelbuild import ZIP_EPOCH, build_wheel
from tests.support.configs import PATH_KEYS, offline_config

# Bounds for waits on probes (a file appearing, a process going away).
WAIT_S: Final = 60.0
POLL_S: Final = 0.02
# A describe of a small plugin imports the SDK (pydantic): well under this.
DESCRIBE_TIMEOUT_S: Final = 60.0
# A stalled loopback request is released at the latest after this long.
STALL_LIMIT_S: Final = 60.0
# How often the loopback server notices it is being shut down.
SERVE_POLL_S: Final = 0.05


def make_manager(root: Path, wheelhouse: Path, **packages: Any) -> PackageManager:
    return PackageManager(offline_config(root, wheelhouse, **packages))


def write_runtime_toml(path: Path, root: Path, wheelhouse: Path, **packages: Any) -> Path:
    """A runtime.toml like `offline_config`'s; `packages` adds or overrides [packages] keys."""
    settings: dict[str, Any] = {"no_index": True, "find_links": [str(wheelhouse)]} | packages
    lines = ["[paths]"]
    lines += [f"{k} = {json.dumps(str(root / k.removesuffix('_dir')))}" for k in PATH_KEYS]
    lines += ["[packages]"] + [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


PLUGIN_MODULE: Final = '''
from hiagent_plugin_sdk import BasePlugin

BUILD = {build!r}
{imports}


class GeneratedPlugin(BasePlugin):
    """A generated test plugin."""

    hiagent_tools = ["build"]

    def build(self) -> str:
        """Which build of the package this is."""
        return BUILD
'''


def build_plugin(
    out_dir: Path,
    name: str,
    version: str,
    *,
    dependencies: tuple[str, ...] = (),
    imports: tuple[str, ...] = (),
    plugins: tuple[str, ...] = ("Generated",),
    build: str = "one",
) -> Path:
    """A real plugin wheel generated from a tiny project; `build` tells builds apart."""
    module = name.replace("-", "_").replace(".", "_").lower()
    project = out_dir / f"project-{module}-{version}-{build}"
    (project / module).mkdir(parents=True, exist_ok=True)
    deps = ", ".join(json.dumps(d) for d in dependencies)
    entry_points = "\n".join(f'"{p}" = "{module}:GeneratedPlugin"' for p in plugins)
    (project / "pyproject.toml").write_text(
        f'[project]\nname = "{name}"\nversion = "{version}"\ndependencies = [{deps}]\n\n'
        f'[project.entry-points."hiagent.plugins"]\n{entry_points}\n',
        encoding="utf-8",
    )
    body = PLUGIN_MODULE.format(build=build, imports="\n".join(f"import {m}" for m in imports))
    (project / module / "__init__.py").write_text(body, encoding="utf-8")
    return build_wheel(project, out_dir / f"wheels-{build}")


def record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def rewrite_wheel(
    src: Path,
    dest: Path,
    *,
    drop: Callable[[str], bool] = lambda name: False,
    replace: Mapping[str, bytes] | None = None,
    add: list[tuple[zipfile.ZipInfo, bytes]] | None = None,
    fix_record: bool = True,
) -> Path:
    """A copy of wheel `src` at `dest` with members dropped, replaced or added.

    With `fix_record`, RECORD is rewritten to match the new contents (so only the change
    under test is wrong); otherwise the old RECORD is kept as it was.
    """
    pending = dict(replace or {})
    members: list[tuple[zipfile.ZipInfo, bytes]] = []
    with zipfile.ZipFile(src) as zf:
        for info in zf.infolist():
            if not drop(info.filename):
                data = pending.pop(info.filename) if info.filename in pending else zf.read(info)
                members.append((info, data))
    members += [(member(name), data) for name, data in pending.items()]
    members += add or []
    if fix_record:
        names = [i.filename for i, _ in members]
        record = next((n for n in names if n.endswith(".dist-info/RECORD")), None)
        lines = [
            f"{i.filename},{record_hash(d)},{len(d)}" for i, d in members if i.filename != record
        ]
        text = "\n".join([*lines, f"{record},,", ""]).encode()
        members = [(i, text if i.filename == record else d) for i, d in members]
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for info, data in members:
            out.writestr(info, data)
    return dest


def member(name: str, *, mode: int = 0o100644) -> zipfile.ZipInfo:
    """A zip member header for `name` with unix mode `mode` (e.g. 0o120777: a symlink)."""
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.external_attr = mode << 16
    return info


def dist_info(wheel: Path) -> str:
    with zipfile.ZipFile(wheel) as zf:
        return next(n.split("/")[0] for n in zf.namelist() if ".dist-info/" in n)


def describe(python: Path, package: str) -> dict[str, Any]:
    """What `python -m hiagent_shim --describe` says about `package` in that venv."""
    done = subprocess.run(
        [str(python), "-m", "hiagent_shim", "--describe"],
        env={"PATH": os.environ["PATH"], "HIAGENT_PACKAGE_NAME": package},
        capture_output=True,
        cwd=python.parent,  # not the checkout, whose hiagent_shim/ would shadow the venv's
        timeout=DESCRIBE_TIMEOUT_S,
        check=False,
    )
    doc: dict[str, Any] = json.loads(done.stdout)
    return doc


def subprocess_env() -> dict[str, str]:
    """This environment, with the checkout importable (appended: an override stays first)."""
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*paths, str(REPO)])}


REPO: Final = Path(__file__).resolve().parents[2]


def wait_until(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll `predicate` (a cheap probe of outside state) until true, at most `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting for {what} after {timeout_s} s")
        time.sleep(POLL_S)


def processes_mentioning(text: str, *, where: str = "cmdline") -> list[int]:
    """Pids of processes whose command line (or other /proc/<pid>/ file, e.g. `environ`)
    contains `text` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            content = (entry / where).read_bytes()
        except OSError:
            continue
        if text.encode() in content:
            found.append(int(entry.name))
    return found


# ---- a loopback HTTP server ----------------------------------------------------------


@dataclass
class Route:
    """What the server answers on one path."""

    status: int = 200
    body: bytes = b""
    send_length: bool = True
    stall: bool = False  # wait for `release` before answering (counts in `requested`)
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Loopback:
    """A threaded HTTP server on 127.0.0.1 with fixed routes; unknown paths are 404."""

    routes: dict[str, Route] = field(default_factory=dict)
    stall_all: bool = False
    requested: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    paths_seen: list[str] = field(default_factory=list)
    auth_seen: list[str | None] = field(default_factory=list)  # Authorization of each GET
    server: http.server.ThreadingHTTPServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        host, port = self.server.server_address[:2]
        return f"http://{host!s}:{port}{path}"


def serve(loopback: Loopback) -> Iterator[Loopback]:
    """Run `loopback` for the duration of a fixture (yield from this)."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            loopback.paths_seen.append(self.path)
            loopback.auth_seen.append(self.headers.get("Authorization"))
            route = loopback.routes.get(self.path, Route(status=404, body=b"not found"))
            if route.stall or loopback.stall_all:
                loopback.requested.set()
                loopback.release.wait(STALL_LIMIT_S)
                route = Route(status=404, body=b"released") if loopback.stall_all else route
            self.send_response(route.status)
            for key, value in route.headers.items():
                self.send_header(key, value)
            if route.send_length:
                self.send_header("Content-Length", str(len(route.body)))
            else:
                self.send_header("Connection", "close")
            self.end_headers()
            with contextlib.suppress(OSError):  # the client gave up: some tests check that
                self.wfile.write(route.body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    loopback.server = server
    thread = threading.Thread(target=server.serve_forever, args=(SERVE_POLL_S,), daemon=True)
    thread.start()
    try:
        yield loopback
    finally:
        loopback.release.set()
        server.shutdown()
        server.server_close()
        thread.join(timeout=WAIT_S)
