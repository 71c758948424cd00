"""Path containment: every path built from caller input is checked against its root."""

from __future__ import annotations

from pathlib import Path

from hiagent_host.errors import INVALID_REQUEST, HostError


class PathEscapeError(HostError):
    """A name would resolve outside the directory it must stay in."""

    code = INVALID_REQUEST
    http_status = 422  # InvalidRequest has one status everywhere


def safe_join(root: Path, *parts: str) -> Path:
    """`root / parts…`, refusing absolute parts, `..`, and symlinks that lead outside `root`."""
    for part in parts:
        if not part or part in {".", ".."} or "/" in part or "\\" in part or "\x00" in part:
            raise PathEscapeError(f"invalid path component {part!r}", data={"component": part})
    candidate = root.joinpath(*parts)
    real_root = root.resolve()
    resolved = candidate.resolve()
    if resolved != real_root and real_root not in resolved.parents:
        raise PathEscapeError(f"{candidate} resolves outside {root}", data={"path": str(candidate)})
    return candidate
