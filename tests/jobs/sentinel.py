"""A real Sentinel set for tests: a master, a replica and a Sentinel, each a redis-server.

Everything listens on 127.0.0.1 on free ports and lives in one temp dir; the Sentinel's
config file is generated there (Sentinel rewrites it as it learns). `stop_master()` stops
the master's process; the Sentinel then promotes the replica.
"""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Final

import redis

from tests.jobs.helpers import REDIS_SERVER, free_port
from tests.packages.support import wait_until

MASTER_NAME: Final = "mymaster"
# The Sentinel calls the master down after this long without an answer.
DOWN_AFTER_MS: Final = 1000
# Sentinel's own bound on a failover; a wait for one is bounded by a few of these.
FAILOVER_TIMEOUT_MS: Final = 10_000
# Each process answers PING, a replica syncs, a Sentinel learns the replica: within this.
READY_S: Final = 30.0
# One admin command to a local server answers at once.
COMMAND_TIMEOUT_S: Final = 5.0


class SentinelSet:
    """A master, its replica and one Sentinel watching them (quorum 1)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.master_port, self.replica_port, self.sentinel_port = (free_port() for _ in range(3))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.sentinel_port}/{MASTER_NAME}/0"

    def start(self) -> None:
        self._server("master", self.master_port)
        self._server(
            "replica", self.replica_port, "--replicaof", "127.0.0.1", str(self.master_port)
        )
        config = self.dir / "sentinel.conf"
        config.write_text(
            f"port {self.sentinel_port}\n"
            "bind 127.0.0.1\n"
            f"dir {self.dir}\n"
            f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 1\n"
            f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n",
            encoding="utf-8",
        )
        self._spawn("sentinel", [REDIS_SERVER, str(config), "--sentinel"])
        wait_until(
            lambda: self._replication(self.replica_port) == "up", "the replica to sync", READY_S
        )
        wait_until(self._sentinel_sees_replica, "the Sentinel to learn of the replica", READY_S)

    def master_address(self) -> tuple[str, int]:
        host, port = self.client(self.sentinel_port).sentinel_get_master_addr_by_name(MASTER_NAME)
        return str(host), int(port)

    def replicate_now(self) -> None:
        """Block until the replica has every write the master took so far."""
        acked = self.client(self.master_port).execute_command(
            "WAIT", 1, int(COMMAND_TIMEOUT_S * 1000)
        )
        if acked < 1:
            raise RuntimeError("the replica did not acknowledge the master's writes")

    def stop_master(self) -> None:
        self._stop("master")

    def wait_promoted(self) -> None:
        """Until the Sentinel names the replica as the master (and it says it is one)."""
        replica = ("127.0.0.1", self.replica_port)
        wait_until(
            lambda: self.master_address() == replica, "the Sentinel to promote the replica", READY_S
        )
        wait_until(
            lambda: self._role(self.replica_port) == "master", "the replica to be master", READY_S
        )

    def client(self, port: int) -> redis.Redis:
        return redis.Redis(
            host="127.0.0.1",
            port=port,
            socket_timeout=COMMAND_TIMEOUT_S,
            socket_connect_timeout=COMMAND_TIMEOUT_S,
            decode_responses=True,
        )

    def stop(self) -> None:
        """Stop every process still running, the Sentinel first (no failover on the way)."""
        for name in sorted(self.procs, key=lambda n: n != "sentinel"):
            self._stop(name)

    def log(self) -> str:
        logs = sorted(self.dir.glob("*.log"))
        return "\n".join(f"--- {p.name}:\n{p.read_text(errors='replace')}" for p in logs)

    def _server(self, name: str, port: int, *extra: str) -> None:
        workdir = self.dir / name
        workdir.mkdir()
        self._spawn(
            name,
            [
                REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "no", "--dir", str(workdir), *extra,
            ],
        )  # fmt: skip
        wait_until(lambda: self._ping(port), f"{name} to answer PING", READY_S)

    def _spawn(self, name: str, argv: list[str]) -> None:
        with (self.dir / f"{name}.log").open("ab") as log:
            self.procs[name] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def _stop(self, name: str) -> None:
        proc = self.procs.pop(name)
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=COMMAND_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def _ping(self, port: int) -> bool:
        try:
            return bool(self.client(port).ping())
        except redis.RedisError:
            return False

    def _replication(self, port: int) -> str:
        return str(self.client(port).info("replication").get("master_link_status", ""))

    def _role(self, port: int) -> str:
        return str(self.client(port).info("replication").get("role", ""))

    def _sentinel_sees_replica(self) -> bool:
        replicas = self.client(self.sentinel_port).sentinel_slaves(MASTER_NAME)
        return any(
            int(r["port"]) == self.replica_port and "s_down" not in r["flags"] for r in replicas
        )
