"""What the routes work with: the package manager, the pool, the job backend, this node of
the cluster, and metrics.

`app.py` builds one `Services` in the lifespan and hangs it on `app.state.services`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hiagent_host.api.metrics import Metrics
from hiagent_host.config import Config

if TYPE_CHECKING:
    from hiagent_host.cluster import ClusterNode
    from hiagent_host.jobs import JobBackend
    from hiagent_host.packages import PackageManager
    from hiagent_host.pool import Pool


@dataclass
class Services:
    config: Config
    packages: PackageManager
    pool: Pool
    jobs: JobBackend
    metrics: Metrics
    cluster: ClusterNode
    # Masks API keys and bearer tokens in text the host hands out that a plugin wrote (its
    # log, already masked of its calls' secrets as it was written): app.py's log redactor.
    redact: Callable[[str], str]
    started_at: float = field(default_factory=time.monotonic)
