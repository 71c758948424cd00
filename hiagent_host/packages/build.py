"""Build one new venv for a validated wheel beside the current one, probe it, commit it.

The venv is created at its final real path `venvs/<dir>/.<version>-<build>/`, given the base
venv's files (`base_venv.py`), filled in one resolver call, seeded with compiled bytecode, and
probed; the probe starts before the resolver call, so that its start-up overlaps it. Only
then is its record written (the commit point) and the version's link pointed at it. Until
the commit, any failure, cancellation or kill leaves the previous build current; the new one
is removed here, or by the next tidy-up if the process died.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import msgspec

from hiagent_host.config import Config
from hiagent_host.packages import sandbox
from hiagent_host.packages.base_venv import Linked, clone, locked_base, prepare_base, wanted
from hiagent_host.packages.bytecode import compile_bytecode, seed_bytecode
from hiagent_host.packages.errors import Cancelled, InstallFailed
from hiagent_host.packages.fetch import FetchedWheel
from hiagent_host.packages.layout import Layout, new_build_name
from hiagent_host.packages.offline_bundle import extract_bundle, strip_bundle
from hiagent_host.packages.probe import ProbeJail, probe, probe_env, start_probe
from hiagent_host.packages.records import PackageRecord, now_rfc3339, write_record
from hiagent_host.packages.recovery import point_link, remove_tree, scratch_dir
from hiagent_host.packages.shim_wheels import BundledWheels, ensure_bundled_wheels, sdk_extras
from hiagent_host.packages.venv import Sources, VenvBuilder, disk_size, python_version
from hiagent_host.packages.wheel import WheelContents

log = logging.getLogger(__name__)

# Phases reported to `progress`, in order (the first two belong to the manager).
DOWNLOADING: Final = "downloading"
VALIDATING: Final = "validating"
CREATING_VENV: Final = "creating venv"
INSTALLING: Final = "installing dependencies"
PROBING: Final = "probing"

Progress = Callable[[str], None]


@dataclass(frozen=True)
class Request:
    """One install, validated: what to build and where its record goes."""

    contents: WheelContents
    wheel: FetchedWheel
    uri: str
    filename: str
    dir_name: str
    version_dir: str


def build_and_commit(
    config: Config,
    layout: Layout,
    request: Request,
    *,
    donor: Path | None,
    report: Progress,
    cancel: threading.Event,
    template: PackageRecord | None = None,
) -> PackageRecord:
    """Make a new build of the version current (the package's lock is held).

    With `template` (a record another node installed, from the packages store) the build
    takes the template's build name, and the record written is the template with this
    node's own venv path, size, interpreter and resolved dependencies.
    """
    build = template.build if template else new_build_name(request.version_dir)
    build_dir = layout.build_dir(request.dir_name, build)
    layout.ensure_roots()
    with scratch_dir(layout.tmp_dir) as scratch:
        try:
            record = _build_venv(config, layout, request, build, scratch, donor, report, cancel)
            if template is not None:
                record = msgspec.structs.replace(
                    template,
                    venv_path=record.venv_path,
                    disk_size_bytes=record.disk_size_bytes,
                    python_version=record.python_version,
                    dependencies=record.dependencies,
                    installer=record.installer,
                )
            write_record(layout.record_path(request.dir_name, request.version_dir), record)
        except BaseException:
            remove_tree(build_dir)
            with contextlib.suppress(OSError):
                build_dir.parent.rmdir()  # only if this was the package's first build
            raise
    try:
        point_link(layout.venv_link(request.dir_name, request.version_dir), build)
    except OSError:  # the record is current; the next tidy-up re-points the link
        log.exception("cannot point the link of %s at %s", record.venv_path, build)
    return record


def _build_venv(
    config: Config,
    layout: Layout,
    request: Request,
    build: str,
    scratch: Path,
    donor: Path | None,
    report: Progress,
    cancel: threading.Event,
) -> PackageRecord:
    contents, cfg = request.contents, config.packages
    build_dir = layout.build_dir(request.dir_name, build)
    report(CREATING_VENV)
    bundled = ensure_bundled_wheels(layout.wheelhouse_dir, cfg.sdk_path, sdk_extras(config))
    builder = VenvBuilder(cfg, cancel=cancel, cwd=scratch)
    plugin_wheel, sources = _plugin_source(config, request, scratch)
    probe_data = scratch / "data"
    probe_data.mkdir()
    jail = sandbox.jail(config)
    if jail is not None:  # a jail shows it at its real path
        probe_data = probe_data.resolve()
    probe_jail = ProbeJail(jail, config.pool.policy(contents.name).network) if jail else None
    env = probe_env(config.pool, contents.name, probe_data, jailed=jail is not None)
    build_dir.parent.mkdir(parents=True, exist_ok=True)
    prompt = f"{contents.name}-{contents.version}"
    # An offline bundle's wheels are its only source: nothing may come from a base.
    base_max_age_s = 0.0 if contents.bundled_wheels else cfg.base_venv_max_age_s
    use_base = wanted(builder, build_dir, prompt, base_max_age_s)
    base_args = (layout, builder, bundled, sources, build_dir, prompt, base_max_age_s)
    # The whole venv from an existing base (as `uv venv` made it), or a new one from uv.
    linked = _from_base(*base_args) if use_base else None
    if linked is None:
        builder.create(build_dir, prompt=prompt)
    _check(cancel)
    report(INSTALLING)
    if use_base and linked is None:  # the first install for this base builds it
        prepare_base(layout, builder, bundled, sources, max_age_s=base_max_age_s)
        linked = _from_base(*base_args)
    _check(cancel)
    # The probe starts now and imports the SDK while the installer runs.
    probe_venv = build_dir.parent.resolve() / build_dir.name  # (for the jail, as above)
    started = start_probe(probe_venv, env=env, cwd=probe_data, jail=probe_jail) if linked else None
    try:
        builder.install(build_dir, [bundled.shim, bundled.sdk_requirement, plugin_wheel], sources)
        if donor is not None:
            seed_bytecode(donor, build_dir)
        _check(cancel)
        report(PROBING)
        if started is not None and linked is not None and not linked.intact():
            # The install replaced some of what it may have imported, or added a `.pth`.
            started.abandon()
            started = None
        with ThreadPoolExecutor(2, thread_name_prefix="hiagent-describe-venv") as pool:
            # What the record says about the venv is gathered while the probe runs (and, in a
            # sandbox, where nothing can write it later, the bytecode is compiled first).
            dependencies = pool.submit(builder.dependencies, build_dir)
            size = pool.submit(
                _compiled_size, build_dir, jail is not None, cfg.probe_timeout_s, cancel
            )
            if started is not None:
                result = started.result(
                    expected_plugins=contents.plugins, timeout_s=cfg.probe_timeout_s, cancel=cancel
                )
            else:
                result = probe(
                    probe_venv,
                    env=env,
                    expected_plugins=contents.plugins,
                    timeout_s=cfg.probe_timeout_s,
                    cancel=cancel,
                    cwd=probe_data,
                    jail=probe_jail,
                )
    finally:
        if started is not None:
            started.abandon()
    record = PackageRecord(
        name=contents.name,
        version=contents.version,
        dir_name=request.dir_name,
        version_dir=request.version_dir,
        build=build,
        wheel_sha256=request.wheel.sha256,
        wheel_size=request.wheel.size,
        uri=request.uri,
        filename=request.filename,
        installed_at=now_rfc3339(),
        plugins=result.plugins,
        metadata=result.metadata,
        dependencies=dependencies.result(),
        venv_path=str(layout.venv_link(request.dir_name, request.version_dir)),
        disk_size_bytes=size.result(),
        python_version=python_version(build_dir),
        installer=str(builder.installer),
        offline_bundle=bool(contents.bundled_wheels),
    )
    _check(cancel)
    return record


def warm_base(config: Config, layout: Layout, cancel: threading.Event) -> bool:
    """Build the shim and SDK wheels and the base venv for the configured sources, unless
    they exist (the server does this in the background at start, so that the first install
    on a fresh host is no slower than a later one); whether a base is there now."""
    cfg = config.packages
    layout.ensure_roots()
    with scratch_dir(layout.tmp_dir) as scratch:
        bundled = ensure_bundled_wheels(layout.wheelhouse_dir, cfg.sdk_path)
        builder = VenvBuilder(cfg, cancel=cancel, cwd=scratch)
        if not wanted(builder, layout.venvs_dir, "warm", cfg.base_venv_max_age_s):
            return False
        sources = Sources.from_config(cfg)
        prepare_base(layout, builder, bundled, sources, max_age_s=cfg.base_venv_max_age_s)
        with locked_base(
            layout, builder, bundled, sources, max_age_s=cfg.base_venv_max_age_s
        ) as base:
            return base is not None


def _compiled_size(venv: Path, compile: bool, timeout_s: float, cancel: threading.Event) -> int:
    """The venv's size on disk, once its bytecode is compiled if `compile`."""
    if compile and not compile_bytecode(venv, timeout_s=timeout_s, cancel=cancel):
        log.info("%s: some of its sources did not compile", venv)
    return disk_size(venv)


def _from_base(
    layout: Layout,
    builder: VenvBuilder,
    bundled: BundledWheels,
    sources: Sources,
    build_dir: Path,
    prompt: str,
    max_age_s: float,
) -> Linked | None:
    """Make or complete the venv from the base, if there is one; what was linked."""
    existed = build_dir.exists()
    with locked_base(layout, builder, bundled, sources, max_age_s=max_age_s) as base:
        if base is None:
            return None
        try:
            return clone(base, build_dir, prompt)
        except (OSError, InstallFailed) as exc:  # e.g. another file system: no hard links
            log.warning("cannot make %s from the base venv (%s); going without", build_dir, exc)
    remove_tree(build_dir)  # half made: start again from nothing, or from an empty venv
    if existed:
        builder.create(build_dir, prompt=prompt)
    return None


def _plugin_source(config: Config, request: Request, scratch: Path) -> tuple[Path, Sources]:
    """The wheel to install and where its dependencies come from."""
    sources = Sources.from_config(config.packages)
    bundled = request.contents.bundled_wheels
    if not bundled:
        return request.wheel.path, sources
    # An offline bundle: its own wheels, plus the operator's local find-links for the
    # shim's and SDK's dependencies; never an index, whose newer versions would win.
    deps = extract_bundle(request.wheel.path, bundled, scratch)
    stripped = strip_bundle(request.wheel.path, scratch / "wheel")
    return stripped, Sources(find_links=(str(deps), *sources.find_links), no_index=True)


def _check(cancel: threading.Event) -> None:
    if cancel.is_set():
        raise Cancelled("install cancelled")
