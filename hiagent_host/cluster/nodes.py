"""Who is in the cluster, and whether this node's packages backend is really shared.

Every node (API server or install worker) writes a heartbeat into the queue's nodes hash:
its role, its packages backend, the identity of its store (S3) or of its file system (the
local backend's `state/share-id`, made once by whichever node came first), and what it has
materialised. A node reads the others back and names every way in which they do not agree:
a local backend whose share id differs from another node's is not shared, and installs on
one would be invisible on the other. Such problems are logged loudly and make health degraded.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import uuid
from pathlib import Path
from typing import Final

import msgspec

from hiagent_host.config import Config
from hiagent_host.store import identity_of

SHARE_ID_FILE: Final = "share-id"
# Each node writes its heartbeat this often; one silent for NODE_TTL_S is not counted.
NODE_HEARTBEAT_S: Final = 2.0
NODE_TTL_S: Final = 10.0
# Entries silent for this long are removed from the hash by whichever node sees them.
NODE_FORGET_S: Final = 300.0


class Materialised(msgspec.Struct, frozen=True):
    name: str
    version: str
    build: str


class NodeInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One node's heartbeat."""

    node: str
    role: str  # "api" | "worker"
    host: str
    pid: int
    backend: str  # "local" | "s3"
    store: str  # the S3 store's identity, or the local backend's share id
    materialised: list[Materialised] = msgspec.field(default_factory=list)
    seen_ms: int = 0


def new_node_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def share_id(state_dir: Path) -> str:
    """The id of this node's local data: the same on every node that shares the directory."""
    path = state_dir / SHARE_ID_FILE
    with contextlib.suppress(FileNotFoundError):
        return path.read_text(encoding="utf-8").strip()
    state_dir.mkdir(parents=True, exist_ok=True)
    tmp = state_dir / f".{SHARE_ID_FILE}-{os.getpid()}-{secrets.token_hex(4)}"
    tmp.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
    try:
        os.link(tmp, path)  # atomic, and fails if another node made it first
    except FileExistsError:
        pass
    finally:
        tmp.unlink()
    return path.read_text(encoding="utf-8").strip()


def store_identity(config: Config, local_share_id: str) -> str:
    return identity_of(config.store) if config.store.backend == "s3" else local_share_id


def problems(me: NodeInfo, others: list[NodeInfo]) -> list[str]:
    """Every way in which the live nodes `others` disagree with this node."""
    found = []
    for other in sorted(others, key=lambda n: n.node):
        if other.backend != me.backend:
            found.append(
                f"node {other.node} ({other.role}) uses the {other.backend} packages backend, "
                f"this node the {me.backend} one: they do not see each other's packages"
            )
        elif other.store != me.store and me.backend == "local":
            found.append(
                f"node {other.node} ({other.role}) has other local package directories than "
                "this node (a different share id): installs on one are invisible on the "
                'other; share extensions/, venvs/ and state/ or use [store] backend = "s3"'
            )
        elif other.store != me.store:
            found.append(
                f"node {other.node} ({other.role}) uses the store {other.store}, this node "
                f"{me.store}: they do not see each other's packages"
            )
    return found
