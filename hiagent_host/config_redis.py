"""Where Redis is: `[queue] redis_url` read into one target, a single server or a Sentinel set.

- `redis://[[user]:password@]host[:port][/db]`, `rediss://…` (TLS), `unix:///path?db=N`: one
  server, read by redis-py.
- `redis+sentinel://[[user]:password@]host:port[,host:port…]/<master name>[/<db>]
  [?sentinel_password=…&sentinel_username=…]` (`rediss+sentinel://`: TLS to the master):
  the Sentinels to ask for the current master of `<master name>`. The user and password are
  the master's; the Sentinels' own, if they have any, go in the query.
- Redis Cluster (`redis+cluster://`, `rediss+cluster://`) is refused: arq keeps a job in
  several keys that it changes together in MULTI transactions and Lua scripts, which Cluster
  refuses across hash slots.

Pure and stdlib only: `load_config` checks the URL with it, so every command gives the same
answer to a bad one, and `jobs.connection` builds the client from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

SINGLE_SCHEMES: Final = frozenset({"redis", "rediss", "unix"})
SENTINEL_SCHEMES: Final = frozenset({"redis+sentinel", "rediss+sentinel"})
CLUSTER_SCHEMES: Final = frozenset({"redis+cluster", "rediss+cluster"})
SENTINEL_QUERY_KEYS: Final = frozenset({"sentinel_password", "sentinel_username"})
DEFAULT_SENTINEL_PORT: Final = 26379
CLUSTER_REFUSED: Final = (
    "Redis Cluster is not supported: the arq queue changes a job's several keys together in "
    "transactions and Lua scripts, which Cluster refuses across hash slots; use a single "
    "server (redis://) or Sentinel (redis+sentinel://)"
)


class RedisUrlError(ValueError):
    """The URL names no Redis this host can use; the message says why."""


@dataclass(frozen=True)
class SentinelTarget:
    """A master found through Sentinels."""

    sentinels: tuple[tuple[str, int], ...]
    master: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_username: str | None = None
    sentinel_password: str | None = None
    ssl: bool = False

    def __repr__(self) -> str:  # the passwords stay out
        hosts = ",".join(f"{h}:{p}" for h, p in self.sentinels)
        return f"SentinelTarget({hosts}/{self.master}/{self.db})"


def scheme(url: str) -> str:
    return url.partition("://")[0].lower()


def check_redis_url(url: str) -> None:
    """Raise RedisUrlError unless `url` is a single-server or a Sentinel URL."""
    kind = scheme(url)
    if kind in CLUSTER_SCHEMES:
        raise RedisUrlError(CLUSTER_REFUSED)
    if kind in SENTINEL_SCHEMES:
        parse_sentinel_url(url)
        return
    if kind not in SINGLE_SCHEMES or "://" not in url:
        known = ", ".join(f"{s}://" for s in sorted(SINGLE_SCHEMES | SENTINEL_SCHEMES))
        raise RedisUrlError(f"unknown scheme in {redact(url)!r}; use one of {known}")
    parts = urlsplit(url)
    try:
        parts.port  # noqa: B018  (raises on a port that is not a number in range)
    except ValueError as exc:
        raise RedisUrlError(f"bad port in {redact(url)!r}: {exc}") from exc
    if kind != "unix" and not parts.hostname:
        raise RedisUrlError(f"no host in {redact(url)!r}")
    path = parts.path.strip("/")
    if kind != "unix" and path and not path.isdigit():
        raise RedisUrlError(f"the database in {redact(url)!r} must be a number")


def parse_sentinel_url(url: str) -> SentinelTarget:
    """The Sentinel target a `redis+sentinel://` URL names; RedisUrlError if malformed."""
    shown = redact(url)
    rest = url.partition("://")[2]
    netloc, _, tail = rest.partition("/")
    path, _, query = tail.partition("?")
    creds, _, hosts = netloc.rpartition("@")
    username, _, password = creds.partition(":") if creds else ("", "", "")
    sentinels = tuple(_address(item, shown) for item in hosts.split(",") if item)
    if not sentinels:
        raise RedisUrlError(f"no Sentinel address in {shown!r}")
    segments = [unquote(s) for s in path.split("/") if s]
    if not segments:
        raise RedisUrlError(f"no master name in {shown!r} (…/<master name>[/<db>])")
    if len(segments) > 2 or (len(segments) == 2 and not segments[1].isdigit()):
        raise RedisUrlError(f"the path of {shown!r} must be /<master name>[/<db number>]")
    options = parse_qs(query, keep_blank_values=True)
    unknown = sorted(set(options) - SENTINEL_QUERY_KEYS)
    if unknown:
        raise RedisUrlError(
            f"unknown option(s) {', '.join(unknown)} in {shown!r}; "
            f"known: {', '.join(sorted(SENTINEL_QUERY_KEYS))}"
        )
    return SentinelTarget(
        sentinels=sentinels,
        master=segments[0],
        db=int(segments[1]) if len(segments) == 2 else 0,
        username=unquote(username) or None,
        password=unquote(password) or None,
        sentinel_username=_option(options, "sentinel_username"),
        sentinel_password=_option(options, "sentinel_password"),
        ssl=scheme(url) == "rediss+sentinel",
    )


def _address(item: str, shown: str) -> tuple[str, int]:
    """`host:port`, `[v6]:port`, or a host alone (the default Sentinel port)."""
    if item.startswith("["):
        host, _, port = item[1:].partition("]")
        port = port.removeprefix(":")
    else:
        host, _, port = item.partition(":")
    port = port or str(DEFAULT_SENTINEL_PORT)
    if not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise RedisUrlError(f"bad Sentinel address {item!r} in {shown!r} (host:port)")
    return host, int(port)


def _option(options: dict[str, list[str]], key: str) -> str | None:
    values = options.get(key)
    return values[-1] if values else None


def redact(url: str) -> str:
    """The URL with its passwords (before the host, and in the query) replaced by `***`."""
    head, sep, rest = url.partition("://")
    if not sep:
        return url
    netloc, slash, tail = rest.partition("/")
    if "@" in netloc:
        creds, _, hosts = netloc.rpartition("@")
        netloc = f"{creds.split(':', 1)[0]}:***@{hosts}"
    path, qmark, query = tail.partition("?")
    if qmark:
        pairs = [
            f"{key}=***" if "password" in key.lower() else f"{key}={value}"
            for key, _, value in (item.partition("=") for item in query.split("&"))
        ]
        tail = f"{path}?{'&'.join(pairs)}"
    return f"{head}://{netloc}{slash}{tail}"
