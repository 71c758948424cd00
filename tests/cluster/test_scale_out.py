"""Two API servers and two install workers, each with its own data directory, around one
real redis-server and one real S3-compatible store (moto's): docs/scale-out.md in action."""

from __future__ import annotations

import os
import secrets
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest

from hiagent_host.errors import CLUSTER_MISCONFIGURED, PACKAGE_NOT_FOUND, STORAGE_UNAVAILABLE
from tests.api.support import LiveServer, free_port, write_config
from tests.cluster.support import Nodes, call, post, redis_queue, timed_plugin, wait_until
from tests.jobs.helpers import RedisServer, WorkerProcess
from tests.support.s3 import PackagesS3

pytestmark = pytest.mark.redis

# A change made through one node must reach the others through Redis, not through a resync
# (every 60 s) or a poll: the waits below are far shorter than either.
PROPAGATION_WAIT_S: Final = 10.0
# A job on a worker (a venv build on a loaded machine) ends well within this.
JOB_WAIT_S: Final = 180.0
CALLERS: Final = 20


@dataclass
class Cluster:
    a: LiveServer
    b: LiveServer
    workers: list[WorkerProcess]
    s3: PackagesS3
    root: Path
    client: httpx.Client


def _node_config(
    root: Path, name: str, wheelhouse: Path, redis: RedisServer, s3: PackagesS3, queue: str,
    port: int, **store: Any,
) -> Path:  # fmt: skip
    return write_config(
        root / f"{name}.toml",
        root / name,
        wheelhouse,
        port,
        queue={"backend": "redis", "redis_url": redis.url, "queue_name": queue},
        store=s3.store_settings(**store),
        pool={"drain_timeout_s": 20.0},
    )


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    wheelhouse: Path,
    redis_server: RedisServer,
    _packages_moto: PackagesS3,
) -> Iterator[Cluster]:
    root = tmp_path_factory.mktemp("cluster")
    s3 = _packages_moto
    s3.start()
    s3.bucket = f"hiagent-{secrets.token_hex(6)}"
    s3.client().create_bucket(Bucket=s3.bucket)
    queue = f"hiagent:test:{secrets.token_hex(4)}"
    servers: list[LiveServer] = []
    workers: list[WorkerProcess] = []
    try:
        for name in ("a", "b"):
            port = free_port()
            config = _node_config(root, name, wheelhouse, redis_server, s3, queue, port)
            servers.append(LiveServer(config, port, root / f"{name}.log").start())
        for name in ("w1", "w2"):
            config = _node_config(root, name, wheelhouse, redis_server, s3, queue, free_port())
            workers.append(WorkerProcess(config, root / f"{name}.log"))
        with httpx.Client() as client:
            yield Cluster(servers[0], servers[1], workers, s3, root, client)
    finally:
        for server in servers:
            server.stop()
        for worker in workers:
            worker.stop()


def _ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def _install(c: Cluster, url: str, wheel: Path, *, force: bool = False) -> Any:
    body = {"uri": wheel.as_uri(), "filename": wheel.name, "force": force}
    return _ok(post(c.client, url, "InstallPackage", body))


def _pids(c: Cluster, url: str, name: str) -> set[int]:
    processes = _ok(post(c.client, url, "ListProcesses", {}))
    return {p["pid"] for p in processes if p["pkg"] == name and p["pid"]}


def test_an_async_install_through_a_is_served_by_b(cluster: Cluster, tmp_path: Path) -> None:
    c, name = cluster, "hiagent-plugin-async-ab"
    wheel = timed_plugin(tmp_path, name, "1.0", "first")
    body = {"uri": wheel.as_uri(), "filename": wheel.name}
    job_id = _ok(post(c.client, c.a.url, "InstallPackageAsync", body))["job_id"]

    def finished() -> bool:
        info = _ok(post(c.client, c.a.url, "GetInstallPackageAsyncStatus", {"job_id": job_id}))
        assert info["status"] not in {"failed", "stopped"}, info
        return bool(info["status"] == "finished")

    wait_until(finished, timeout_s=JOB_WAIT_S, what="the install job")
    assert _ok(call(c.client, c.b.url, name)) == "first"
    assert _ok(call(c.client, c.a.url, name)) == "first"
    health = _ok(c.client.get(f"{c.b.url}/v1/health"))
    assert health["cluster"]["problems"] == []
    assert {n["role"] for n in health["cluster"]["nodes"]} == {"api", "worker"}
    here = [(m["name"], m["version"]) for m in health["cluster"]["materialised"]]
    assert (name, "1.0") in here


def _reinstall_under_load(
    client: httpx.Client, a: str, b: str, name: str, first: Path, second: Path
) -> list[str]:
    """Install `first` through A, keep 20 callers busy on A, force-install `second` through
    B; every answer A gave, in order (any failure fails the test)."""
    body = {"uri": first.as_uri(), "filename": first.name, "force": True}
    _ok(post(client, a, "InstallPackage", body))
    assert _ok(call(client, a, name)) == "first"
    stop = threading.Event()
    answers: list[str] = []
    failures: list[str] = []
    saw_second = threading.Event()

    def caller() -> None:
        with httpx.Client() as own:
            while not stop.is_set():
                response = call(own, a, name, "slow", seconds=0.2)
                if response.status_code != 200:
                    failures.append(response.text)
                    continue
                answers.append(response.json()["data"])
                if answers[-1] == "second":
                    saw_second.set()

    threads = [threading.Thread(target=caller) for _ in range(CALLERS)]
    for thread in threads:
        thread.start()
    try:
        wait_until(lambda: len(answers) >= CALLERS, timeout_s=60, what="calls on A")
        body = {"uri": second.as_uri(), "filename": second.name, "force": True}
        _ok(post(client, b, "InstallPackage", body))
        wait_until(saw_second.is_set, timeout_s=120, what="A serving the new build")
        seen = len(answers)
        wait_until(lambda: len(answers) >= seen + CALLERS, timeout_s=60, what="more calls")
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)
    assert failures == []
    assert answers[0] == "first"
    assert answers[-1] == "second"
    assert answers.count("first") >= CALLERS
    return answers


def _builds(venvs: Path, name: str) -> list[str]:
    return sorted(p.name for p in (venvs / name.replace("-", "_")).glob(".1.0-*"))


def test_a_reinstall_through_b_fails_none_of_20_calls_running_on_a(
    cluster: Cluster, tmp_path: Path
) -> None:
    c, name = cluster, "hiagent-plugin-reinstall"
    first = timed_plugin(tmp_path, name, "1.0", "first")
    second = timed_plugin(tmp_path, name, "1.0", "second")
    _install(c, c.a.url, first)
    old_pids = _pids(c, c.a.url, name)
    _reinstall_under_load(c.client, c.a.url, c.b.url, name, first, second)
    wait_until(lambda: not (old_pids & _pids(c, c.a.url, name)), timeout_s=60, what="old processes")
    wait_until(
        lambda: len(_builds(c.root / "a" / "venvs", name)) == 1,
        timeout_s=60, what="A removing its old build",
    )  # fmt: skip


def test_on_a_shared_file_system_a_build_in_use_is_kept_until_its_last_process_ends(
    tmp_path: Path, nodes: Nodes, redis_server: RedisServer
) -> None:
    """The local backend, two API servers on one data directory: B's reinstall cannot
    remove the build A's processes run from; A removes it after they stopped."""
    name = "hiagent-plugin-shared"
    first = timed_plugin(tmp_path, name, "1.0", "first")
    second = timed_plugin(tmp_path, name, "1.0", "second")
    queue = redis_queue(redis_server.url)
    a, b = (
        nodes.start(node, data="shared", queue=queue, pool={"drain_timeout_s": 20.0})
        for node in ("a", "b")
    )
    with httpx.Client() as client:
        _reinstall_under_load(client, a.url, b.url, name, first, second)
        venvs = tmp_path / "shared" / "venvs"
        wait_until(lambda: len(_builds(venvs, name)) == 1, timeout_s=60, what="the old build")
    assert "still in use; its last user removes it" in b.log()


def test_a_delete_through_a_is_a_404_on_b_and_ends_its_process(
    cluster: Cluster, tmp_path: Path
) -> None:
    c, name = cluster, "hiagent-plugin-deleted"
    wheel = timed_plugin(tmp_path, name, "1.0", "only")
    _install(c, c.a.url, wheel)
    assert _ok(call(c.client, c.b.url, name)) == "only"
    pids = _pids(c, c.b.url, name)
    assert len(pids) == 1

    _ok(post(c.client, c.a.url, "DeletePackage", {"pkg": name, "version": "1.0"}))

    def gone() -> bool:
        response = call(c.client, c.b.url, name)
        return response.status_code == 404 and not _pids(c, c.b.url, name)

    wait_until(gone, timeout_s=PROPAGATION_WAIT_S, what="B forgetting the deleted package")
    assert call(c.client, c.b.url, name).json()["error"]["code"] == PACKAGE_NOT_FOUND
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    venvs = c.root / "b" / "venvs" / name.replace("-", "_")
    wait_until(lambda: not venvs.exists(), timeout_s=PROPAGATION_WAIT_S, what="B's venv going")


def test_with_the_store_down_warm_packages_serve_and_the_rest_is_503_until_it_returns(
    cluster: Cluster, tmp_path: Path
) -> None:
    c = cluster
    warm, cold = "hiagent-plugin-warm", "hiagent-plugin-cold"
    _install(c, c.a.url, timed_plugin(tmp_path, warm, "1.0", "warm"))
    _install(c, c.a.url, timed_plugin(tmp_path, cold, "1.0", "cold"))
    assert _ok(call(c.client, c.b.url, warm)) == "warm"  # materialised on B
    late = timed_plugin(tmp_path, "hiagent-plugin-late", "1.0", "late")

    c.s3.stop()
    try:
        assert _ok(call(c.client, c.b.url, warm)) == "warm"
        response = call(c.client, c.b.url, cold)  # B must materialise it: no store
        assert response.status_code == 503, response.text
        assert response.json()["error"]["code"] == STORAGE_UNAVAILABLE
        assert int(response.headers["Retry-After"]) > 0
        body = {"uri": late.as_uri(), "filename": late.name, "force": False}
        response = post(c.client, c.a.url, "InstallPackage", body)
        assert response.json()["error"]["code"] == STORAGE_UNAVAILABLE
        health = c.client.get(f"{c.b.url}/v1/health")
        assert health.status_code == 503
        assert health.json()["error"]["code"] == STORAGE_UNAVAILABLE
        assert health.json()["error"]["data"]["cluster"]["store"]["ok"] is False
    finally:
        c.s3.start()
    assert _ok(call(c.client, c.b.url, cold)) == "cold"
    assert c.client.get(f"{c.b.url}/v1/health").status_code == 200
    names = [r["name"] for r in _ok(post(c.client, c.b.url, "ListPackages", {}))]
    assert "hiagent-plugin-late" not in names


def test_nodes_with_unshared_local_directories_say_so_loudly(
    nodes: Nodes, redis_server: RedisServer
) -> None:
    queue = redis_queue(redis_server.url)
    x, _ = (nodes.start(node, queue=queue) for node in ("x", "y"))
    with httpx.Client() as client:

        def degraded() -> bool:
            response = client.get(f"{x.url}/v1/health")
            if response.status_code != 503:
                return False
            return bool(response.json()["error"]["code"] == CLUSTER_MISCONFIGURED)

        wait_until(degraded, timeout_s=PROPAGATION_WAIT_S, what="the misconfiguration")
        health = client.get(f"{x.url}/v1/health").json()["error"]["data"]
    assert len(health["cluster"]["problems"]) == 1
    assert "cluster misconfigured" in x.log()


def test_without_redis_a_delete_reaches_the_other_node_within_the_poll_interval(
    tmp_path: Path, nodes: Nodes, packages_s3: PackagesS3
) -> None:
    name = "hiagent-plugin-polled"
    wheel = timed_plugin(tmp_path, name, "1.0", "only")
    store = packages_s3.store_settings(poll_interval_s=0.5)
    a, b = (nodes.start(node, store=store) for node in ("a", "b"))
    with httpx.Client() as client:
        body = {"uri": wheel.as_uri(), "filename": wheel.name, "force": False}
        _ok(post(client, a.url, "InstallPackage", body))
        assert _ok(call(client, b.url, name)) == "only"
        _ok(post(client, a.url, "DeletePackage", {"pkg": name, "version": "1.0"}))
        wait_until(
            lambda: call(client, b.url, name).status_code == 404,
            timeout_s=PROPAGATION_WAIT_S, what="B polling the store",
        )  # fmt: skip
        wait_until(
            lambda: not _ok(post(client, b.url, "ListProcesses", {})),
            timeout_s=PROPAGATION_WAIT_S, what="B's process ending",
        )  # fmt: skip
    venvs = tmp_path / "b" / "venvs"
    wait_until(
        lambda: not list(venvs.glob("hiagent_plugin_polled/.1.0-*")),
        timeout_s=PROPAGATION_WAIT_S, what="B removing the build",
    )  # fmt: skip


def _materialised(client: httpx.Client, server: LiveServer) -> set[str]:
    health = client.get(f"{server.url}/v1/health").json()
    body = health["data"] or health["error"]["data"]
    return {m["name"] for m in body["cluster"]["materialised"]}


def test_materialise_at_start_builds_what_is_installed_and_what_arrives(
    tmp_path: Path, nodes: Nodes, redis_server: RedisServer, packages_s3: PackagesS3
) -> None:
    queue = redis_queue(redis_server.url)
    early = timed_plugin(tmp_path, "hiagent-plugin-early", "1.0", "early")
    late = timed_plugin(tmp_path, "hiagent-plugin-late", "1.0", "late")
    a = nodes.start("a", queue=queue, store=packages_s3.store_settings())
    with httpx.Client() as client:
        body = {"uri": early.as_uri(), "filename": early.name, "force": False}
        _ok(post(client, a.url, "InstallPackage", body))
        store = packages_s3.store_settings(materialise_at_start=True)
        b = nodes.start("b", queue=queue, store=store)
        wait_until(
            lambda: "hiagent-plugin-early" in _materialised(client, b),
            timeout_s=JOB_WAIT_S, what="B materialising at start",
        )  # fmt: skip
        body = {"uri": late.as_uri(), "filename": late.name, "force": False}
        _ok(post(client, a.url, "InstallPackage", body))
        wait_until(
            lambda: "hiagent-plugin-late" in _materialised(client, b),
            timeout_s=JOB_WAIT_S, what="B materialising what arrived",
        )  # fmt: skip
        assert _ok(post(client, b.url, "ListProcesses", {})) == []  # venvs, no processes


def test_prewarm_on_install_on_another_node_materialises_then_starts_the_process(
    tmp_path: Path, nodes: Nodes, redis_server: RedisServer, packages_s3: PackagesS3
) -> None:
    queue = redis_queue(redis_server.url)
    name = "hiagent-plugin-prewarmed"
    wheel = timed_plugin(tmp_path, name, "1.0", "warm")
    a, b = (
        nodes.start(
            node,
            queue=queue,
            store=packages_s3.store_settings(),
            pool={"prewarm_on_install": node == "b"},
        )
        for node in ("a", "b")
    )
    with httpx.Client() as client:
        body = {"uri": wheel.as_uri(), "filename": wheel.name, "force": False}
        _ok(post(client, a.url, "InstallPackage", body))

        def running_on_b() -> bool:
            processes = _ok(post(client, b.url, "ListProcesses", {}))
            return any(p["pkg"] == name and p["state"] == "ready" for p in processes)

        wait_until(running_on_b, timeout_s=JOB_WAIT_S, what="B prewarming the package")
        assert _ok(call(client, b.url, name)) == "warm"
        assert _ok(post(client, a.url, "ListProcesses", {})) == []  # A does not prewarm
