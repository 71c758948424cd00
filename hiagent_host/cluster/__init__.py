"""The nodes of one deployment: package changes reach every node, installs are serialised.

`coordinator_for(config, node_id)` is what the package manager uses to lock a package
cluster-wide and announce a change; `ClusterNode` is what every API server and install worker
runs to hear of changes, to say it is there and to report. See docs/scale-out.md.
"""

from __future__ import annotations

from hiagent_host.cluster.coordinator import RedisCoordinator
from hiagent_host.cluster.node import ClusterNode, Role
from hiagent_host.cluster.nodes import NodeInfo, new_node_id
from hiagent_host.config import Config
from hiagent_host.packages.coordinator import Coordinator, LocalCoordinator

__all__ = [
    "ClusterNode",
    "NodeInfo",
    "RedisCoordinator",
    "Role",
    "coordinator_for",
    "new_node_id",
]


def coordinator_for(config: Config, node_id: str) -> Coordinator:
    """The Redis coordinator with `[queue] backend = "redis"`; file locks alone otherwise."""
    if config.queue.backend == "redis":
        return RedisCoordinator(config, node_id)
    return LocalCoordinator()
