"""Plugin packages: fetch, validate, build one venv per version, probe, switch, record."""

from hiagent_host.packages.build import (
    CREATING_VENV,
    DOWNLOADING,
    INSTALLING,
    PROBING,
    VALIDATING,
    Progress,
)
from hiagent_host.packages.errors import (
    AlreadyInstalled,
    Cancelled,
    DownloadFailed,
    Forbidden,
    InstallFailed,
    InvalidPackage,
    InvalidRequest,
    PackageBusy,
    PackageNotFound,
)
from hiagent_host.packages.fetch import OnBytes
from hiagent_host.packages.manager import Listener, PackageManager
from hiagent_host.packages.records import EventKind, PackageEvent, PackageRecord
from hiagent_host.packages.venv import Dependency
from hiagent_host.packages.wheel import WheelSummary

PHASES = (DOWNLOADING, VALIDATING, CREATING_VENV, INSTALLING, PROBING)

__all__ = [
    "CREATING_VENV",
    "DOWNLOADING",
    "INSTALLING",
    "PHASES",
    "PROBING",
    "VALIDATING",
    "AlreadyInstalled",
    "Cancelled",
    "Dependency",
    "DownloadFailed",
    "EventKind",
    "Forbidden",
    "InstallFailed",
    "InvalidPackage",
    "InvalidRequest",
    "Listener",
    "OnBytes",
    "PackageBusy",
    "PackageEvent",
    "PackageManager",
    "PackageNotFound",
    "PackageRecord",
    "Progress",
    "WheelSummary",
]
