"""Build pure-Python wheels from a project directory without a build backend.

The host zips its own shim and SDK into wheels this way (fast, offline, deterministic), and
the tests build their fixture plugins with it. Only what a pure-Python plugin needs is
supported: ``[project]`` name, version, description, requires-python, dependencies,
optional-dependencies, scripts and entry-points; packages are the directories holding an
``__init__.py`` at the project root (or those named in ``[tool.hiagent-build] packages``),
plus any extra files named in ``[tool.hiagent-build] include`` (globs relative to the root).
"""

from __future__ import annotations

import base64
import hashlib
import re
import tomllib
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from hiagent_host.errors import HostError

# Fixed timestamp for every member, so the same sources give byte-identical wheels.
ZIP_EPOCH: Final = (1980, 1, 1, 0, 0, 0)
_SKIP_DIRS: Final = frozenset({"__pycache__", "tests", "build", "dist", ".git", ".venv"})


class WheelBuildError(HostError):
    """A project directory cannot be turned into a wheel."""

    code = "InvalidPackage"
    http_status = 400


@dataclass(frozen=True)
class Project:
    """What the builder reads from a project's pyproject.toml."""

    root: Path
    name: str
    version: str
    summary: str = ""
    requires_python: str | None = None
    dependencies: list[str] = field(default_factory=list)
    extras: dict[str, list[str]] = field(default_factory=dict)
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)
    packages: list[str] = field(default_factory=list)
    include: list[str] = field(default_factory=list)


def escape_name(name: str) -> str:
    """The distribution name as it appears in wheel and dist-info file names."""
    return re.sub(r"[-_.]+", "_", name).lower()


def read_project(root: Path) -> Project:
    """Parse `root/pyproject.toml` into a `Project`."""
    try:
        data = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise WheelBuildError(f"{root}: cannot read pyproject.toml: {exc}") from exc
    project: dict[str, Any] = data.get("project", {})
    tool: dict[str, Any] = data.get("tool", {}).get("hiagent-build", {})
    if "name" not in project or "version" not in project:
        raise WheelBuildError(f"{root}: [project] needs a static name and version")
    entry_points: dict[str, dict[str, str]] = {
        group: dict(items) for group, items in project.get("entry-points", {}).items()
    }
    if scripts := project.get("scripts"):
        entry_points["console_scripts"] = dict(scripts)
    packages = tool.get("packages") or sorted(
        p.name
        for p in root.iterdir()
        if p.is_dir() and p.name not in _SKIP_DIRS and (p / "__init__.py").is_file()
    )
    return Project(
        root=root,
        name=project["name"],
        version=str(project["version"]),
        summary=project.get("description", ""),
        requires_python=project.get("requires-python"),
        dependencies=list(project.get("dependencies", [])),
        extras={k: list(v) for k, v in project.get("optional-dependencies", {}).items()},
        entry_points=entry_points,
        packages=list(packages),
        include=list(tool.get("include", [])),
    )


def _metadata(p: Project) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {p.name}", f"Version: {p.version}"]
    if p.summary:
        lines.append(f"Summary: {p.summary}")
    if p.requires_python:
        lines.append(f"Requires-Python: {p.requires_python}")
    lines += [f"Requires-Dist: {req}" for req in p.dependencies]
    for extra, reqs in p.extras.items():
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {req} ; extra == "{extra}"' for req in reqs]
    return "\n".join(lines) + "\n"


def _entry_points(p: Project) -> str:
    out = []
    for group, items in p.entry_points.items():
        out.append(f"[{group}]")
        out += [f"{name} = {target}" for name, target in items.items()]
        out.append("")
    return "\n".join(out)


def _source_files(p: Project) -> Iterator[tuple[str, Path]]:
    for package in p.packages:
        base = p.root / package
        if not base.is_dir():
            raise WheelBuildError(f"{p.root}: package directory {package!r} not found")
        for path in sorted(base.rglob("*")):
            rel = path.relative_to(p.root)
            if path.is_file() and not _SKIP_DIRS & set(rel.parts) and path.suffix != ".pyc":
                yield rel.as_posix(), path
    for pattern in p.include:
        for path in sorted(p.root.glob(pattern)):
            if path.is_file():
                yield path.relative_to(p.root).as_posix(), path


def source_digest(project_dir: Path) -> str:
    """A sha256 over everything `build_wheel` reads: equal digests give equal wheels."""
    p = read_project(project_dir)
    h = hashlib.sha256((project_dir / "pyproject.toml").read_bytes())
    for arc, path in sorted(_source_files(p)):
        h.update(f"\0{arc}\0".encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return f"sha256={digest.decode()}"


def wheel_filename(name: str, version: str) -> str:
    return f"{escape_name(name)}-{version}-py3-none-any.whl"


def build_wheel(project_dir: Path, out_dir: Path) -> Path:
    """Build `project_dir` into a py3-none-any wheel in `out_dir`; return its path."""
    p = read_project(project_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    dist_info = f"{escape_name(p.name)}-{p.version}.dist-info"
    members: list[tuple[str, bytes]] = [(arc, src.read_bytes()) for arc, src in _source_files(p)]
    members.append((f"{dist_info}/METADATA", _metadata(p).encode()))
    generator = "hiagent-host wheelbuild"
    wheel_meta = (
        f"Wheel-Version: 1.0\nGenerator: {generator}\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    )
    members.append((f"{dist_info}/WHEEL", wheel_meta.encode()))
    if p.entry_points:
        members.append((f"{dist_info}/entry_points.txt", _entry_points(p).encode()))
    record = "".join(f"{arc},{_record_hash(data)},{len(data)}\n" for arc, data in members)
    record += f"{dist_info}/RECORD,,\n"
    members.append((f"{dist_info}/RECORD", record.encode()))

    target = out_dir / wheel_filename(p.name, p.version)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for arc, data in members:
            info = zipfile.ZipInfo(arc, date_time=ZIP_EPOCH)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    tmp.replace(target)
    return target
