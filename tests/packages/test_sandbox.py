"""`pool.sandbox` comes to a clear status on any machine, and a jail mounts what it should."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Final

import msgspec
import pytest

from hiagent_host.config import Config, PoolConfig, load_config
from hiagent_host.errors import CONFIG_INVALID, ConfigError
from hiagent_host.packages import sandbox

# A `bwrap` that fails the way bwrap does when the kernel refuses namespaces.
REFUSING_BWRAP: Final = (
    "#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n"
)
RUN_TIMEOUT_S: Final = 30


def config(**pool: object) -> Config:
    base = load_config(use_lookup=False, environ={})
    return msgspec.structs.replace(base, pool=msgspec.structs.replace(PoolConfig(), **pool))


def test_off_means_no_sandbox_and_says_so() -> None:
    found = sandbox.status(config(sandbox="off"))
    assert (found.mode, found.active, found.reason) == ("off", False, 'pool.sandbox = "off"')
    assert sandbox.jail(config(sandbox="off")) is None


def test_auto_without_bwrap_runs_unsandboxed_and_names_what_is_missing() -> None:
    found = sandbox.status(config(sandbox="auto", sandbox_program="no-such-bwrap"))
    assert not found.active
    assert "'no-such-bwrap' (bubblewrap) was not found" in found.reason
    assert sandbox.jail(config(sandbox="auto", sandbox_program="no-such-bwrap")) is None


def test_on_without_bwrap_is_a_config_error_naming_what_is_missing() -> None:
    with pytest.raises(ConfigError) as caught:
        sandbox.require(config(sandbox="on", sandbox_program="/nonexistent/bwrap"))
    assert caught.value.code == CONFIG_INVALID
    assert caught.value.data["key"] == "pool.sandbox"
    assert "bubblewrap" in caught.value.message
    assert "/nonexistent/bwrap" in caught.value.message


def test_a_bwrap_the_kernel_refuses_fails_the_trial_with_its_own_words(tmp_path: Path) -> None:
    program = tmp_path / "bwrap"
    program.write_text(REFUSING_BWRAP, encoding="utf-8")
    program.chmod(0o755)
    found = sandbox.status(config(sandbox="auto", sandbox_program=str(program)))
    assert not found.active
    assert found.reason.endswith("No permissions to create new namespace")


def test_setup_failures_are_read_from_bwrap_s_own_lines() -> None:
    tail = "some output\nbwrap: Can't find source path /x: No such file or directory\n"
    assert sandbox.setup_failure(tail) == "Can't find source path /x: No such file or directory"
    assert sandbox.setup_failure("Traceback ...\nbwrapped: no\n") is None


def jail_argv(tmp_path: Path, hidden: tuple[Path, ...], *, network: bool) -> list[str]:
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    data = tmp_path / "data"
    data.mkdir()
    jail = sandbox.Jail(program="bwrap", tmp_bytes=1 << 20, hidden=hidden)
    return jail.command(["python", "-V"], venv=venv, data_dir=data, network=network)


def pairs(argv: list[str], flag: str) -> list[str]:
    """The argument after each `flag`."""
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == flag]


def test_a_jail_mounts_the_venv_and_interpreter_read_only_and_only_the_data_writable(
    tmp_path: Path,
) -> None:
    argv = jail_argv(tmp_path, (), network=True)
    ro = pairs(argv, "--ro-bind")
    prefix = str(Path(sys.executable).resolve().parent.parent)
    assert str(tmp_path / "venv") in ro
    assert prefix in ro or prefix.startswith("/usr")
    assert pairs(argv, "--bind") == [str(tmp_path / "data")]
    assert "--unshare-net" not in argv
    assert argv[argv.index("--") + 1 :] == ["python", "-V"]
    assert pairs(argv, "--chdir") == [str(tmp_path / "data")]
    assert "--die-with-parent" in argv
    assert "--unshare-pid" in argv
    assert pairs(argv, "--cap-drop") == ["ALL"]


def test_without_network_a_jail_gets_its_own_empty_network_namespace(tmp_path: Path) -> None:
    assert "--unshare-net" in jail_argv(tmp_path, (), network=False)


def test_host_paths_under_a_mounted_directory_are_covered_before_anything_is_mounted_in_them(
    tmp_path: Path,
) -> None:
    prefix = Path(sys.executable).resolve().parent.parent
    secret_dir = prefix / "lib"  # a directory under a mounted one (the interpreter's prefix)
    argv = jail_argv(tmp_path, (secret_dir, tmp_path / "not-mounted"), network=True)
    if prefix.is_relative_to("/usr"):
        assert str(secret_dir) in pairs(argv, "--tmpfs")
    else:
        tmpfs_at = argv.index(str(secret_dir))
        assert argv[tmpfs_at - 1] == "--tmpfs"
        assert argv.index(str(prefix)) < tmpfs_at  # the cover goes on top of its parent
    assert str(tmp_path / "not-mounted") not in argv


def test_the_jail_really_starts_a_process_with_its_venv_read_only(tmp_path: Path) -> None:
    found = sandbox.status(config())
    if not found.active:
        pytest.skip(f"no sandbox on this machine: {found.reason}")
    jail = sandbox.jail(config())
    assert jail is not None
    venv, data = tmp_path / "venv", tmp_path / "data"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").symlink_to(sys.executable)
    data.mkdir()
    code = (
        "import os, pathlib;"
        f"pathlib.Path({str(data / 'ok')!r}).write_text('ok');"
        f"print(os.access({str(venv)!r}, os.W_OK), os.getpid())"
    )
    argv = jail.command(
        [str(venv / "bin" / "python"), "-c", code], venv=venv, data_dir=data, network=False
    )
    with sandbox.opened(argv) as (final, fds):
        done = subprocess.run(
            final, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=True, pass_fds=fds
        )
    assert done.stdout.split() == ["False", "2"]
    assert (data / "ok").read_text() == "ok"


def test_files_a_jail_copies_in_are_opened_for_the_spawn_and_closed_after(tmp_path: Path) -> None:
    present = tmp_path / "hosts"
    present.write_text("127.0.0.1 localhost\n", encoding="utf-8")
    argv = ["bwrap", sandbox.FILE_FROM, str(present), "/etc/hosts"]
    argv += [sandbox.FILE_FROM, str(tmp_path / "gone"), "/etc/gone", "--", "true"]
    with sandbox.opened(argv) as (final, fds):
        [fd] = fds
        assert final == ["bwrap", "--file", str(fd), "/etc/hosts", "--", "true"]
        assert os.read(fd, 100) == b"127.0.0.1 localhost\n"
    with pytest.raises(OSError, match="Bad file descriptor"):
        os.fstat(fd)
