"""Fetch a wheel from a `file://` or `http(s)://` uri into the content-addressed cache.

An http(s) uri may carry `user:password@` (percent-encoded): they are sent as HTTP basic
auth to that host only (never on a redirect), and every message, record and log shows the
uri with the password masked (`redact_url`).

Bytes are streamed into a partial file in the cache directory while they are hashed and
counted; only a complete fetch is renamed to `<sha256>/<filename>`, so a failed, oversized,
cancelled or killed download leaves no cache entry. Partial files carry the fetching
process's pid, so `clean_partials` can remove those of dead processes at start-up.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import stat
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Protocol
from urllib.parse import unquote, urlsplit

from hiagent_host.config import PackagesConfig, redact_url
from hiagent_host.packages.errors import Cancelled, DownloadFailed, Forbidden, InvalidRequest
from hiagent_host.packages.recovery import pid_alive
from hiagent_host.storage import safe_join
from hiagent_host.storage.atomic import fsync_dir

CHUNK_BYTES: Final = 1024 * 1024
PARTIAL_PREFIX: Final = ".partial-"
USER_AGENT: Final = "hiagent-host"


# Partial files this process is writing right now (a restarted container reuses pids).
_active_partials: set[Path] = set()
_active_lock = threading.Lock()


class _Source(Protocol):
    def read1(self, size: int = ..., /) -> bytes: ...


# Told the bytes fetched so far and the total, when known (after every chunk).
OnBytes = Callable[[int, int | None], None]


def no_bytes(done: int, total: int | None) -> None:
    pass


@dataclass(frozen=True)
class FetchedWheel:
    """A complete wheel in the cache."""

    path: Path
    sha256: str
    size: int


def fetch(
    uri: str,
    filename: str,
    *,
    cache_dir: Path,
    config: PackagesConfig,
    cancel: threading.Event,
    on_bytes: OnBytes = no_bytes,
    also_allowed: tuple[Path, ...] = (),
) -> FetchedWheel:
    """Fetch `uri` into `cache_dir/<sha256>/<filename>`; `filename` is already validated.

    `on_bytes` is told the progress; `also_allowed`: directories a `file://` uri may name
    besides `allowed_file_roots` (the host's own cache, where uploaded wheels are kept).
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme == "file":
        path = _local_path(uri, config, also_allowed)
        with _open_file(path, uri, config.max_download_bytes) as (src, total):
            return _store(
                src, filename, cache_dir, uri, config, cancel,
                deadline=None, on_bytes=on_bytes, total=total,
            )  # fmt: skip
    if scheme in {"http", "https"}:
        deadline = time.monotonic() + config.download_timeout_s
        bare, auth = split_credentials(uri)
        with _open_http(bare, auth, redact_url(uri), config) as (src, total):
            return _store(
                src, filename, cache_dir, uri, config, cancel,
                deadline=deadline, on_bytes=on_bytes, total=total,
            )  # fmt: skip
    raise InvalidRequest(
        f"unsupported uri scheme {parts.scheme!r}: use file://, http:// or https://",
        data={"uri": redact_url(uri)},
    )


def split_credentials(uri: str) -> tuple[str, tuple[str, str] | None]:
    """`uri` without `user:password@`, and the (percent-decoded) pair if it had one."""
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    return parts._replace(netloc=host).geturl(), (unquote(user), unquote(password))


def store_upload(
    path: Path,
    filename: str,
    *,
    cache_dir: Path,
    config: PackagesConfig,
) -> FetchedWheel:
    """Move an uploaded file (in the host's own scratch space) into the cache, as a fetch would.

    The same checks, size cap, hashing and atomic rename as any fetch; `filename` is already
    validated.
    """
    uri = path.as_uri()
    with _open_file(path, uri, config.max_download_bytes) as (src, total):
        return _store(
            src, filename, cache_dir, uri, config, threading.Event(),
            deadline=None, on_bytes=no_bytes, total=total,
        )  # fmt: skip


def _local_path(uri: str, config: PackagesConfig, also_allowed: tuple[Path, ...]) -> Path:
    parts = urlsplit(uri)
    if parts.netloc not in {"", "localhost"}:
        shown = urlsplit(redact_url(uri)).netloc
        raise InvalidRequest(
            f"file:// uri names a remote host {shown!r}", data={"uri": redact_url(uri)}
        )
    raw = unquote(parts.path)
    if not raw.startswith("/"):
        raise InvalidRequest("file:// uri must hold an absolute path", data={"uri": uri})
    path = Path(raw).resolve()
    roots = config.allowed_file_roots
    if roots and not any(
        path == r.resolve() or r.resolve() in path.parents for r in (*roots, *also_allowed)
    ):
        raise Forbidden(
            f"{path} is outside packages.allowed_file_roots",
            data={"uri": uri, "allowed_file_roots": [str(r) for r in roots]},
        )
    return path


@contextlib.contextmanager
def _open_file(path: Path, uri: str, max_bytes: int) -> Iterator[tuple[_Source, int | None]]:
    """A regular file, opened without blocking (a FIFO or a device is refused, not waited
    on); `_Exact` then refuses one whose content is not its size (/proc and /sys files)."""
    with contextlib.suppress(OSError):  # the open below reports a missing file
        if not stat.S_ISREG(path.stat().st_mode):  # a socket cannot even be opened
            raise _not_a_file(path, uri, "it is not a regular file")
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise DownloadFailed(
            f"cannot read {path}: {exc.strerror}", data={"url": uri, "reason": exc.strerror}
        ) from exc
    with os.fdopen(fd, "rb", buffering=0) as f:
        st = os.fstat(f.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise _not_a_file(path, uri, "it is not a regular file")
        if st.st_size > max_bytes:
            raise _too_large(uri, max_bytes)
        if st.st_size == 0:
            raise _not_a_file(path, uri, "it is empty (or a pseudo-file, as under /proc)")
        yield _Exact(f, st.st_size, path, uri), st.st_size


class _Exact:
    """A file read to exactly its size: more or fewer bytes than `fstat` said is refused."""

    def __init__(self, f: Any, size: int, path: Path, uri: str) -> None:
        self._f, self._left, self._path, self._uri = f, size, path, uri

    def read1(self, size: int = -1, /) -> bytes:
        chunk: bytes = self._f.read(min(size, self._left + 1) if size > 0 else self._left + 1)
        if len(chunk) > self._left or (not chunk and self._left):
            raise _not_a_file(self._path, self._uri, "its content does not match its size")
        self._left -= len(chunk)
        return chunk


def _not_a_file(path: Path, uri: str, why: str) -> InvalidRequest:
    return InvalidRequest(
        f"file:// uri {path} cannot be installed: {why}", data={"uri": uri, "reason": why}
    )


@contextlib.contextmanager
def _open_http(
    uri: str, auth: tuple[str, str] | None, url: str, config: PackagesConfig
) -> Iterator[tuple[_Source, int | None]]:
    """GET `uri` (`url` is how it is shown); `auth` as basic auth, to this host only; with
    the size it announces."""
    request = urllib.request.Request(uri, headers={"User-Agent": USER_AGENT})
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
        request.add_unredirected_header("Authorization", f"Basic {token}")  # not on redirects
    try:
        # The socket timeout bounds the connect and every single read; `_store` bounds the total.
        response = _opener.open(request, timeout=config.download_connect_timeout_s)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise DownloadFailed(
            f"GET {url}: HTTP {exc.code} {exc.reason}",
            data={"url": url, "status": exc.code, "reason": str(exc.reason)},
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = str(getattr(exc, "reason", exc))
        raise DownloadFailed(f"GET {url}: {reason}", data={"url": url, "reason": reason}) from exc
    with response:
        length = response.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > config.max_download_bytes:
            raise _too_large(url, config.max_download_bytes)
        yield response, int(length) if length and length.isdigit() else None


class _HttpOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects to http(s) only (urllib would also follow one to ftp://)."""

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        if urlsplit(newurl).scheme.lower() not in {"http", "https"}:
            raise urllib.error.HTTPError(
                req.full_url, code, f"redirect to a non-http(s) url: {newurl}", headers, fp
            )
        return super().redirect_request(req, fp, code, msg, headers, newurl)


_opener = urllib.request.build_opener(_HttpOnlyRedirects)


def _store(
    src: _Source,
    filename: str,
    cache_dir: Path,
    uri: str,
    config: PackagesConfig,
    cancel: threading.Event,
    *,
    deadline: float | None,
    on_bytes: OnBytes,
    total: int | None,
) -> FetchedWheel:
    url = redact_url(uri)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_dir / f"{PARTIAL_PREFIX}{os.getpid()}-{os.urandom(4).hex()}"
    digest = hashlib.sha256()
    size = 0
    with _active_lock:
        _active_partials.add(partial)
    try:
        with partial.open("xb") as out:
            while chunk := _read(src, url):
                size += len(chunk)
                if size > config.max_download_bytes:
                    raise _too_large(url, config.max_download_bytes)
                if cancel.is_set():
                    raise Cancelled("install cancelled during the download")
                if deadline is not None and time.monotonic() > deadline:
                    raise DownloadFailed(
                        f"GET {url}: took longer than {config.download_timeout_s} s",
                        data={"url": url, "reason": "timeout"},
                    )
                digest.update(chunk)
                out.write(chunk)
                on_bytes(size, total)
            out.flush()
            os.fsync(out.fileno())
        sha256 = digest.hexdigest()
        entry = safe_join(cache_dir, sha256)
        entry.mkdir(exist_ok=True)
        target = safe_join(entry, filename)
        partial.replace(target)
        fsync_dir(entry)
    finally:
        with contextlib.suppress(FileNotFoundError):
            partial.unlink()
        with _active_lock:
            _active_partials.discard(partial)
    return FetchedWheel(path=target, sha256=sha256, size=size)


def _read(src: _Source, url: str) -> bytes:
    try:
        return src.read1(CHUNK_BYTES)
    except TimeoutError:
        raise DownloadFailed(
            f"GET {url}: no data for too long", data={"url": url, "reason": "timeout"}
        ) from None
    except OSError as exc:
        raise DownloadFailed(f"GET {url}: {exc}", data={"url": url, "reason": str(exc)}) from exc


def _too_large(url: str, max_bytes: int) -> DownloadFailed:
    return DownloadFailed(
        f"{url} is larger than packages.max_download_bytes ({max_bytes})",
        data={"url": url, "reason": "too large", "max_bytes": max_bytes},
    )


def clean_partials(cache_dir: Path) -> list[Path]:
    """Remove partial downloads whose process is gone; return what was removed."""
    removed: list[Path] = []
    try:
        entries = list(cache_dir.iterdir())
    except FileNotFoundError:
        return removed
    for entry in entries:
        if not entry.name.startswith(PARTIAL_PREFIX):
            continue
        pid_text = entry.name[len(PARTIAL_PREFIX) :].partition("-")[0]
        with _active_lock:
            if entry in _active_partials:
                continue
        if pid_text.isdigit() and int(pid_text) != os.getpid() and pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(FileNotFoundError):
            entry.unlink()
            removed.append(entry)
    return removed
