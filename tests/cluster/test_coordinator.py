"""The cluster-wide install lock and announcements, against a real redis-server."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import msgspec
import pytest

from hiagent_host.cluster import RedisCoordinator, new_node_id
from hiagent_host.config import Config, QueueConfig, StoreConfig
from hiagent_host.errors import ALREADY_INSTALLED, CANCELLED, QUEUE_UNAVAILABLE, HostError
from hiagent_host.jobs.connection import connect_sync
from hiagent_host.jobs.keys import package_changes
from hiagent_host.packages import PackageManager, PackageRecord
from tests.cluster.support import timed_plugin
from tests.jobs.helpers import RedisServer, free_port
from tests.support.configs import offline_config
from tests.support.s3 import PackagesS3

pytestmark = pytest.mark.redis

NAME = "hiagent-plugin-raced"


def _config(root: Path, wheelhouse: Path, redis: RedisServer, s3: PackagesS3) -> Config:
    base = offline_config(root, wheelhouse)
    queue = msgspec.structs.replace(base.queue, backend="redis", redis_url=redis.url)
    store = msgspec.convert(s3.store_settings(), StoreConfig)
    return msgspec.structs.replace(base, queue=queue, store=store)


def _nodes(
    tmp_path: Path, wheelhouse: Path, redis: RedisServer, s3: PackagesS3, count: int
) -> list[PackageManager]:
    nodes = []
    for i in range(count):
        config = _config(tmp_path / f"node-{i}", wheelhouse, redis, s3)
        nodes.append(PackageManager(config, coordinator=RedisCoordinator(config, new_node_id())))
    return nodes


def _race(nodes: list[PackageManager], wheel: Path, *, force: bool) -> list[object]:
    """The same install on every node at once; each one's record or error."""
    start = threading.Barrier(len(nodes))

    def install(node: PackageManager) -> object:
        start.wait()
        try:
            return node.install(wheel.as_uri(), wheel.name, force=force)
        except HostError as exc:
            return exc

    with ThreadPoolExecutor(len(nodes)) as pool:
        return list(pool.map(install, nodes))


def test_concurrent_installs_of_one_version_build_once_and_the_rest_are_already_installed(
    tmp_path: Path, wheelhouse: Path, redis_server: RedisServer, packages_s3: PackagesS3
) -> None:
    nodes = _nodes(tmp_path, wheelhouse, redis_server, packages_s3, 3)
    for node in nodes:
        node.list()  # each node's view loaded before the race
    wheel = timed_plugin(tmp_path, NAME, "1.0", "one")
    results = _race(nodes, wheel, force=False)
    records = [r for r in results if isinstance(r, PackageRecord)]
    errors = [r for r in results if isinstance(r, HostError)]
    assert len(records) == 1
    assert [e.code for e in errors] == [ALREADY_INSTALLED] * 2
    assert nodes[0].remote is not None
    assert [r.build for r in nodes[0].remote.load().values()] == [records[0].build]


def test_concurrent_forced_installs_of_the_same_wheel_share_the_winners_build(
    tmp_path: Path, wheelhouse: Path, redis_server: RedisServer, packages_s3: PackagesS3
) -> None:
    nodes = _nodes(tmp_path, wheelhouse, redis_server, packages_s3, 2)
    for node in nodes:
        node.list()
    wheel = timed_plugin(tmp_path, NAME, "1.0", "one")
    results = _race(nodes, wheel, force=True)
    assert all(isinstance(r, PackageRecord) for r in results), results
    builds = {r.build for r in results if isinstance(r, PackageRecord)}
    assert len(builds) == 1
    built = [p for n in nodes for p in (n.layout.venvs_dir / "hiagent_plugin_raced").glob(".1.0-*")]
    assert len(built) == 1  # the loser built nothing


def test_a_wait_for_the_cluster_lock_ends_when_the_install_is_cancelled(
    tmp_path: Path, wheelhouse: Path, redis_server: RedisServer
) -> None:
    config = msgspec.structs.replace(
        offline_config(tmp_path, wheelhouse),
        queue=QueueConfig(backend="redis", redis_url=redis_server.url),
    )
    holder, waiter = RedisCoordinator(config, "a"), RedisCoordinator(config, "b")
    cancel = threading.Event()
    with holder.lock("demo", None):
        cancel.set()
        with pytest.raises(HostError) as info, waiter.lock("demo", cancel):
            pass
    assert info.value.code == CANCELLED
    with waiter.lock("demo", None):  # released: taken at once
        pass


def test_a_change_is_announced_on_the_queues_channel(
    tmp_path: Path, wheelhouse: Path, redis_server: RedisServer
) -> None:
    config = msgspec.structs.replace(
        offline_config(tmp_path, wheelhouse),
        queue=QueueConfig(backend="redis", redis_url=redis_server.url, queue_name="q"),
    )
    listener = connect_sync(config.queue).pubsub(ignore_subscribe_messages=True)
    listener.subscribe(package_changes("q"))
    RedisCoordinator(config, "node-a").announce("demo", "1.0")
    message = None
    for _ in range(50):  # bounded: get_message waits up to 0.1 s each
        message = listener.get_message(timeout=0.1)
        if message is not None:
            break
    listener.close()
    assert message is not None
    assert msgspec.json.decode(message["data"]) == {
        "node": "node-a",
        "dir_name": "demo",
        "version_dir": "1.0",
    }


def test_without_redis_the_lock_is_a_503_not_a_race(tmp_path: Path, wheelhouse: Path) -> None:
    config = msgspec.structs.replace(
        offline_config(tmp_path, wheelhouse),
        queue=QueueConfig(
            backend="redis", redis_url=f"redis://127.0.0.1:{free_port()}/0", connect_timeout_s=0.5
        ),
    )
    with pytest.raises(HostError) as info, RedisCoordinator(config, "a").lock("demo", None):
        pass
    assert (info.value.code, info.value.http_status) == (QUEUE_UNAVAILABLE, 503)
