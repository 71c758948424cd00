"""Fetching wheels: file:// and http(s)://, a content-addressed cache, nothing partial kept."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hiagent_host.errors import (
    CANCELLED,
    DOWNLOAD_FAILED,
    FORBIDDEN,
    INVALID_REQUEST,
    HostError,
)
from hiagent_host.packages import PackageManager
from hiagent_host.packages.fetch import PARTIAL_PREFIX, clean_partials, fetch, split_credentials
from tests.packages.support import Loopback, Route, make_manager, serve

# The stalling server must be given up on within the configured timeouts plus this slack.
STALL_SLACK_S = 5.0


@pytest.fixture
def good(built_wheels: dict[str, Path]) -> Path:
    return built_wheels["pkg_nodeps"]


@pytest.fixture
def server(good: Path) -> Iterator[Loopback]:
    body = good.read_bytes()
    yield from serve(
        Loopback(
            routes={
                "/good.whl": Route(body=body),
                "/unsized.whl": Route(body=body, send_length=False),
                "/gone.whl": Route(status=404, body=b"gone"),
                "/stall.whl": Route(body=body, stall=True),
                "/moved.whl": Route(status=302, headers={"Location": "/good.whl"}),
                "/to-ftp.whl": Route(status=302, headers={"Location": "ftp://127.0.0.1/a.whl"}),
            }
        )
    )


def cache_files(pm: PackageManager) -> list[Path]:
    root = pm.layout.cache_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def test_a_file_uri_is_copied_into_the_cache_under_its_sha256(
    tmp_path: Path, wheelhouse: Path, good: Path
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    summary = pm.read_metadata(good.as_uri(), good.name)
    sha = hashlib.sha256(good.read_bytes()).hexdigest()
    assert summary.sha256 == sha
    assert cache_files(pm) == [pm.layout.cache_dir / sha / good.name]


def test_the_same_content_fetched_twice_is_one_cache_entry(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    pm.read_metadata(good.as_uri(), good.name)
    pm.read_metadata(server.url("/good.whl"), good.name)
    assert len(cache_files(pm)) == 1


def test_a_file_outside_the_allowed_roots_is_forbidden(
    tmp_path: Path, wheelhouse: Path, good: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    pm = make_manager(tmp_path / "data", wheelhouse, allowed_file_roots=[allowed])
    with pytest.raises(HostError) as caught:
        pm.read_metadata(good.as_uri(), good.name)
    assert (caught.value.code, caught.value.http_status) == (FORBIDDEN, 403)
    inside = allowed / good.name
    inside.write_bytes(good.read_bytes())
    assert pm.read_metadata(inside.as_uri(), good.name).name == "pkg-nodeps"


def test_a_symlink_inside_the_allowed_roots_cannot_reach_outside(
    tmp_path: Path, wheelhouse: Path, good: Path
) -> None:
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    (allowed / good.name).symlink_to(good)
    pm = make_manager(tmp_path / "data", wheelhouse, allowed_file_roots=[allowed])
    with pytest.raises(HostError) as caught:
        pm.read_metadata((allowed / good.name).as_uri(), good.name)
    assert caught.value.code == FORBIDDEN


def test_a_missing_file_is_a_failed_download(tmp_path: Path, wheelhouse: Path, good: Path) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    with pytest.raises(HostError) as caught:
        pm.read_metadata((tmp_path / "nothing.whl").as_uri(), good.name)
    assert caught.value.code == DOWNLOAD_FAILED
    assert caught.value.data["reason"]


@pytest.mark.parametrize(
    "uri",
    ["ftp://example.org/a.whl", "file://otherhost/a.whl", "/no/scheme.whl", "file:relative.whl"],
)
def test_an_unsupported_uri_is_an_invalid_request(
    tmp_path: Path, wheelhouse: Path, good: Path, uri: str
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    with pytest.raises(HostError) as caught:
        pm.read_metadata(uri, good.name)
    assert caught.value.code == INVALID_REQUEST


def test_an_http_download_is_cached_with_or_without_a_content_length(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    assert pm.read_metadata(server.url("/unsized.whl"), good.name).plugins == ["回声"]
    assert pm.read_metadata(server.url("/good.whl"), good.name).plugins == ["回声"]
    assert len(cache_files(pm)) == 1


def test_redirects_are_followed_to_http_only(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    assert pm.read_metadata(server.url("/moved.whl"), good.name).name == "pkg-nodeps"
    with pytest.raises(HostError) as caught:
        pm.read_metadata(server.url("/to-ftp.whl"), good.name)
    assert caught.value.code == DOWNLOAD_FAILED


def test_an_http_error_status_is_a_failed_download_that_caches_nothing(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    with pytest.raises(HostError) as caught:
        pm.read_metadata(server.url("/gone.whl"), good.name)
    assert (caught.value.code, caught.value.http_status) == (DOWNLOAD_FAILED, 502)
    assert caught.value.data["status"] == 404
    assert caught.value.data["url"] == server.url("/gone.whl")
    assert cache_files(pm) == []


@pytest.mark.parametrize("path", ["/good.whl", "/unsized.whl"])
def test_a_download_larger_than_the_cap_fails_and_leaves_no_partial_file(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback, path: str
) -> None:
    pm = make_manager(tmp_path, wheelhouse, max_download_bytes=good.stat().st_size - 1)
    with pytest.raises(HostError) as caught:
        pm.read_metadata(server.url(path), good.name)
    assert caught.value.code == DOWNLOAD_FAILED
    assert caught.value.data["reason"] == "too large"
    assert cache_files(pm) == []


def test_a_stalled_download_times_out_within_its_limits(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse, download_connect_timeout_s=0.5, download_timeout_s=1.0)
    started = time.monotonic()
    with pytest.raises(HostError) as caught:
        pm.read_metadata(server.url("/stall.whl"), good.name)
    assert caught.value.code == DOWNLOAD_FAILED
    assert server.requested.is_set()
    assert time.monotonic() - started < 1.0 + STALL_SLACK_S
    assert cache_files(pm) == []


def test_a_cancelled_download_leaves_no_partial_file(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(HostError) as caught:
        fetch(
            server.url("/good.whl"), good.name, cache_dir=pm.layout.cache_dir,
            config=pm.config.packages, cancel=cancel,
        )  # fmt: skip
    assert caught.value.code == CANCELLED
    assert cache_files(pm) == []


def test_partial_downloads_of_dead_processes_are_cleaned_and_live_ones_kept(tmp_path: Path) -> None:
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    tmp_path.mkdir(exist_ok=True)
    orphan = tmp_path / f"{PARTIAL_PREFIX}{dead.stdout.strip()}-abcd"
    live = tmp_path / f"{PARTIAL_PREFIX}{os.getppid()}-abcd"
    orphan.write_bytes(b"half")
    live.write_bytes(b"half")
    assert clean_partials(tmp_path) == [orphan]
    assert live.exists()


def test_uri_credentials_are_basic_auth_for_that_request_only_never_a_redirect(
    tmp_path: Path, wheelhouse: Path, good: Path, server: Loopback
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    uri = server.url("/moved.whl").replace("http://", "http://reader:p%40ss@")
    summary = pm.read_metadata(uri, good.name)
    assert server.paths_seen == ["/moved.whl", "/good.whl"]
    assert server.auth_seen == ["Basic cmVhZGVyOnBAc3M=", None]  # reader:p@ss, then nothing
    assert summary.uri == server.url("/moved.whl").replace("http://", "http://reader:***@")


def test_credentials_split_off_a_uri_are_percent_decoded() -> None:
    assert split_credentials("http://u%3Ax:p%40ss%3A1@127.0.0.1:9/a.whl") == (
        "http://127.0.0.1:9/a.whl",
        ("u:x", "p@ss:1"),
    )
    assert split_credentials("https://127.0.0.1/a.whl") == ("https://127.0.0.1/a.whl", None)


def test_a_file_uri_with_credentials_is_refused_without_echoing_them(
    tmp_path: Path, wheelhouse: Path, good: Path
) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    with pytest.raises(HostError) as caught:
        pm.read_metadata(f"file://user:hunter2@{good}", good.name)
    assert caught.value.code == INVALID_REQUEST
    assert "hunter2" not in repr(caught.value.to_dict())


# ---- file:// reads regular files only -----------------------------------------------------


def _refused(pm: PackageManager, path: Path) -> HostError:
    """read_metadata of `path` in a thread (a FIFO must not block it), bounded."""
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            pm.read_metadata(path.as_uri(), "pkg_x-1.0-py3-none-any.whl")
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread
            outcome.append(exc)
        else:
            outcome.append(None)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(STALL_SLACK_S * 6)
    assert not thread.is_alive(), f"reading {path} blocked"
    [error] = outcome
    assert isinstance(error, HostError), error
    return error


@pytest.mark.parametrize("kind", ["fifo", "socket", "directory", "empty"])
def test_a_file_uri_to_anything_but_a_regular_file_is_refused_without_waiting(
    tmp_path: Path, wheelhouse: Path, kind: str
) -> None:
    path = tmp_path / f"thing-{kind}"
    with socket.socket(socket.AF_UNIX) as listener:
        if kind == "fifo":
            os.mkfifo(path)
        elif kind == "socket":
            listener.bind(str(path))
        elif kind == "directory":
            path.mkdir()
        else:
            path.write_bytes(b"")
        pm = make_manager(tmp_path / "root", wheelhouse)
        assert _refused(pm, path).code == INVALID_REQUEST
    assert cache_files(pm) == []


@pytest.mark.parametrize(
    "pseudo", ["/dev/zero", "/dev/null", "/proc/self/environ", "/proc/self/status"]
)
def test_device_and_proc_files_are_refused(tmp_path: Path, wheelhouse: Path, pseudo: str) -> None:
    pm = make_manager(tmp_path, wheelhouse)
    assert _refused(pm, Path(pseudo)).code == INVALID_REQUEST
    assert cache_files(pm) == []


def test_a_sysfs_file_whose_content_is_not_its_size_is_refused(
    tmp_path: Path, wheelhouse: Path
) -> None:
    candidates = [p for p in Path("/sys/kernel").glob("*") if p.is_file()]
    sized = [p for p in candidates if p.stat().st_size == 4096 and len(p.read_bytes()) < 4096]
    if not sized:
        pytest.skip("no sysfs attribute file here")
    pm = make_manager(tmp_path, wheelhouse)
    assert _refused(pm, sized[0]).code == INVALID_REQUEST
    assert cache_files(pm) == []


def test_a_file_that_is_no_wheel_is_refused_and_not_kept_in_the_cache(
    tmp_path: Path, wheelhouse: Path
) -> None:
    bogus = tmp_path / "pkg_x-1.0-py3-none-any.whl"
    bogus.write_bytes(b"not a zip file at all")
    pm = make_manager(tmp_path / "root", wheelhouse)
    with pytest.raises(HostError) as caught:
        pm.read_metadata(bogus.as_uri(), bogus.name)
    assert caught.value.code == "InvalidPackage"
    assert cache_files(pm) == []
