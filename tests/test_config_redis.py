"""redis_url topologies: single servers, Sentinel sets, Cluster refused; passwords redacted."""

from __future__ import annotations

import pytest

from hiagent_host.config_redis import (
    RedisUrlError,
    SentinelTarget,
    check_redis_url,
    parse_sentinel_url,
    redact,
)


def test_a_sentinel_url_names_every_sentinel_the_master_and_the_credentials() -> None:
    target = parse_sentinel_url(
        "redis+sentinel://app:p%40ss@10.0.0.1:26379,[::1]:26380,sentinel-c/mymaster/3"
        "?sentinel_password=sp&sentinel_username=su"
    )
    assert target == SentinelTarget(
        sentinels=(("10.0.0.1", 26379), ("::1", 26380), ("sentinel-c", 26379)),
        master="mymaster",
        db=3,
        username="app",
        password="p@ss",
        sentinel_username="su",
        sentinel_password="sp",
        ssl=False,
    )
    assert "p@ss" not in repr(target)
    assert "sp" not in repr(target).replace("Sentinel", "")


def test_rediss_sentinel_means_tls_to_the_master_and_db_defaults_to_zero() -> None:
    target = parse_sentinel_url("rediss+sentinel://h:1/m")
    assert (target.ssl, target.db, target.password) == (True, 0, None)


@pytest.mark.parametrize(
    "url", ["redis://h:6379/0", "rediss://:pw@h/2", "redis://h", "unix:///run/redis.sock?db=1"]
)
def test_single_server_urls_are_accepted(url: str) -> None:
    check_redis_url(url)


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://h:7000", "Cluster is not supported"),
        ("rediss+cluster://h:7000", "Cluster is not supported"),
        ("redis+sentinel://h:1", "no master name"),
        ("redis+sentinel:///m", "no Sentinel address"),
        ("redis+sentinel://h:0/m", "bad Sentinel address"),
        ("redis+sentinel://h:1/m/x", "/<master name>[/<db number>]"),
        ("redis+sentinel://h:1/m?password=x", "unknown option(s) password"),
        ("memcached://h:1", "unknown scheme"),
        ("redis://h:70000/0", "bad port"),
        ("redis:///0", "no host"),
    ],
)
def test_urls_the_queue_cannot_use_are_refused_saying_why(url: str, reason: str) -> None:
    with pytest.raises(RedisUrlError) as info:
        check_redis_url(url)
    assert reason in str(info.value)


def test_redaction_hides_passwords_before_the_host_and_in_the_query() -> None:
    assert redact("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact("redis://h:1/0") == "redis://h:1/0"
    assert (
        redact("redis+sentinel://:pw@a:1,b:2/m?sentinel_username=u&sentinel_password=sp")
        == "redis+sentinel://:***@a:1,b:2/m?sentinel_username=u&sentinel_password=***"
    )
