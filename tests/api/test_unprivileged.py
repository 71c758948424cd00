"""A host run by an unprivileged user sandboxes its plugins too (bubblewrap in a user
namespace): a real server, as a user made for the test when the suite runs as root.

The interpreter may live where that user cannot read (pyenv under /root): the server then
runs in a mount namespace of its own where the unreadable ancestor is an empty tmpfs with the
interpreter's prefix mounted back in, read-only, as an operator would install Python where
the service user can read it. The test is skipped only when the machine cannot do this: no
way to make a user, no util-linux `unshare`/`setpriv`, or a kernel that refuses unprivileged
user namespaces (then the served health says why, and that is the skip reason).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import httpx
import pytest

from hiagent_host.pool.procfs import is_running
from tests.api.support import INSTALL_TIMEOUT_S, ROOT, LiveServer, free_port, write_config
from tests.pool.support import host_pid, wait_for

USER: Final = "hiagent-sandbox-test"
ESCAPE: Final = {"pkg": "hiagent-plugin-escape", "version": "0.1.0", "plugin": "escape"}
# The kernel ends the jail as soon as the host is gone; a daemon gets this long to be gone.
GONE_S: Final = 10.0
SETUP_TIMEOUT_S: Final = 30


def user_ids() -> tuple[int, int]:
    """The test user's (uid, gid), made if need be (root only)."""
    if os.geteuid() != 0:
        return os.getuid(), os.getgid()
    with contextlib.suppress(KeyError):
        entry = pwd.getpwnam(USER)
        return entry.pw_uid, entry.pw_gid
    if shutil.which("useradd") is None:
        pytest.skip("running as root without `useradd`: cannot make an unprivileged user")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER],
        check=True, capture_output=True, timeout=SETUP_TIMEOUT_S,
    )  # fmt: skip
    entry = pwd.getpwnam(USER)
    return entry.pw_uid, entry.pw_gid


def hidden_ancestor(path: Path) -> Path | None:
    """The topmost ancestor of `path` that others cannot search (e.g. /root), if any."""
    for parent in reversed(path.parents):
        if parent != Path("/") and not parent.stat().st_mode & 0o001:
            return parent
    return None


def as_user_command(argv: list[str], workdir: Path) -> list[str]:
    """`argv` run by the test user (as root), with the interpreter made readable to it."""
    if os.geteuid() != 0:
        return argv
    for tool in ("unshare", "setpriv", "mount"):
        if shutil.which(tool) is None:
            pytest.skip(f"running as root without util-linux `{tool}`")
    prefix = Path(sys.base_prefix).resolve()
    steps = []
    hidden = hidden_ancestor(prefix)
    if hidden is not None:
        stage = workdir / "stage"
        stage.mkdir()
        steps = [
            f"mount --bind {prefix} {stage}",
            f"mount -t tmpfs -o mode=755,size=1m tmpfs {hidden}",
            f"mkdir -p {prefix}",
            f"mount --move {stage} {prefix}",
            f"mount -o remount,bind,ro {prefix}",
        ]
    switch = ["setpriv", f"--reuid={USER}", f"--regid={USER}", "--init-groups", "--inh-caps=-all"]
    script = " && ".join([*steps, 'exec "$@"'])
    return ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh"] + (
        switch + argv
    )


class UserServer(LiveServer):
    """`hiagent-host serve` as the test user."""

    def __init__(self, config: Path, port: int, workdir: Path) -> None:
        super().__init__(config, port, workdir / "server.log", env={"HOME": str(workdir)})
        self.workdir = workdir

    def command(self) -> list[str]:
        argv = [sys.executable, "-m", "hiagent_host", "serve", "--config", str(self.config)]
        return as_user_command(argv, self.workdir)


@pytest.fixture
def workdir(wheelhouse: Path, built_wheels: dict[str, Path]) -> Iterator[Path]:
    """A directory the test user owns: its data, the wheelhouse and the escape wheel."""
    uid, gid = user_ids()
    path = Path(tempfile.mkdtemp(prefix="hiagent-unprivileged-", dir="/tmp"))
    try:
        path.chmod(0o755)
        shutil.copytree(wheelhouse, path / "wheelhouse")
        shutil.copy2(built_wheels["escape"], path / built_wheels["escape"].name)
        for entry in [path, *path.rglob("*")]:
            os.chown(entry, uid, gid, follow_symlinks=False)
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_an_unprivileged_host_jails_its_plugins_and_they_die_with_it(
    workdir: Path, built_wheels: dict[str, Path]
) -> None:
    uid, _ = user_ids()
    port = free_port()
    config = write_config(
        workdir / "runtime.toml", workdir / "data", workdir / "wheelhouse", port,
        packages={"sdk_path": str(ROOT / "sdk")},
    )  # fmt: skip
    os.chown(config, *user_ids())
    server = UserServer(config, port, workdir).start()
    try:
        with httpx.Client(base_url=server.url, timeout=INSTALL_TIMEOUT_S) as client:
            found = client.get("/v1/health").json()["data"]["sandbox"]
            if not found["active"]:
                pytest.skip(f"an unprivileged user cannot sandbox here: {found['reason']}")
            wheel = workdir / built_wheels["escape"].name
            body = {"uri": wheel.as_uri(), "filename": wheel.name}
            response = client.post("/v1/InstallPackage", json=body)
            assert response.status_code == 200, response.text

            def run(tool: str, **tool_input: object) -> httpx.Response:
                call = ESCAPE | {"tool": tool, "input": tool_input}
                return client.post("/v1/RunPluginTool", json=call)

            status = run("status").json()["data"]
            assert status["Uid"].split()[0] == str(uid)
            assert int(status["CapEff"], 16) == 0
            assert status["NoNewPrivs"] == "1"
            assert run("read", path=str(config)).json()["error"]["code"] == "FileNotFoundError"
            sdk = run("sdk_file").json()["data"]
            assert run("append", path=sdk).json()["error"]["code"] == "OSError"
            daemon = host_pid(run("spawn_daemon").json()["data"])
            assert is_running(daemon)
            assert os.stat(f"/proc/{daemon}").st_uid == uid  # noqa: PTH116
        server.signal(signal.SIGKILL)
        server.wait()
        wait_for(lambda: not is_running(daemon), "the daemon to die with the host", GONE_S)
    finally:
        server.stop()
