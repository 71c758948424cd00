"""The base venv: shim, SDK and their dependencies installed once and linked into each venv."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import msgspec

from hiagent_host.packages import PackageManager
from hiagent_host.packages.base_venv import BASE_DIR, MANIFEST, Linked, Manifest, clone, find_base
from hiagent_host.packages.bytecode import site_packages
from hiagent_host.packages.records import PackageRecord
from hiagent_host.packages.venv import VenvBuilder
from hiagent_host.packages.wheelbuild import build_wheel
from tests.packages.support import build_plugin, describe, make_manager

RUN_TIMEOUT_S = 30


def only_base(pm: PackageManager) -> Path:
    bases = list((pm.config.paths.venvs_dir / BASE_DIR).iterdir())
    assert len(bases) == 1, bases
    assert (bases[0] / MANIFEST).is_file()
    return bases[0]


def install_one(
    tmp_path: Path, wheelhouse: Path, name: str, **packages: Any
) -> tuple[PackageManager, PackageRecord]:
    """A manager on a fresh data directory (`packages`: [packages] keys), with `name` 1.0
    installed in it."""
    pm = make_manager(tmp_path / "data", wheelhouse, **packages)
    wheel = build_plugin(tmp_path, name, "1.0")
    return pm, pm.install(wheel.as_uri(), wheel.name, force=False)


def module_file(venv: Path, relative: str) -> Path:
    return site_packages(venv)[0] / relative


def same_file(a: Path, b: Path) -> bool:
    return os.path.samestat(a.stat(), b.stat())


def read_manifest(base: Path) -> Manifest:
    return msgspec.json.decode((base / MANIFEST).read_bytes(), type=Manifest)


def test_new_venvs_share_the_base_files_and_stay_usable_on_their_own(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm = make_manager(tmp_path / "data", wheelhouse)
    one = build_plugin(tmp_path, "pkg-base-one", "1.0")
    two = build_plugin(tmp_path, "pkg-base-two", "1.0")
    first = pm.install(one.as_uri(), one.name, force=False)
    second = pm.install(two.as_uri(), two.name, force=False)
    base = only_base(pm)
    venvs = [pm.venv_dir(first).resolve(), pm.venv_dir(second).resolve()]

    for relative in ("pydantic/main.py", "hiagent_plugin_sdk/__init__.py"):
        assert all(same_file(module_file(v, relative), module_file(base, relative)) for v in venvs)
    # The first venv came from `uv venv` (the base was built meanwhile), the second entirely
    # from the base: either way the scripts, activate and pyvenv.cfg name the venv itself.
    for venv, prompt in zip(venvs, ("pkg-base-one-1.0", "pkg-base-two-1.0"), strict=True):
        script = (venv / "bin" / "hiagent-gen-metadata").read_text()
        assert script.startswith(f"#!{venv}/bin/python"), script.splitlines()[0]
        assert os.access(venv / "bin" / "hiagent-gen-metadata", os.X_OK)
        assert f"prompt = {prompt}" in (venv / "pyvenv.cfg").read_text()
        activated = subprocess.run(
            ["bash", "-c", f'source "{venv}/bin/activate" && echo "$VIRTUAL_ENV_PROMPT" '
             '&& python -c "import sys, hiagent_plugin_sdk; print(sys.prefix)"'],
            capture_output=True, text=True, check=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        assert activated.stdout.split() == [prompt, str(venv)]
    assert "hiagent-plugin-sdk" in {d.name for d in first.dependencies}

    pm.delete("pkg-base-one", "1.0")
    assert module_file(base, "pydantic/main.py").is_file()
    assert describe(pm.venv_python(second), "pkg-base-two")["ok"] is True
    assert [r.name for r in pm.list()] == ["pkg-base-two"]


def test_a_dependency_that_adds_a_pth_file_gets_a_fresh_probe(
    tmp_path: Path, wheelhouse: Path
) -> None:
    """The probe started ahead of the install predates the `.pth`: it must not be used."""
    dep = tmp_path / "dep"
    (dep / "hiagent_test_pth").mkdir(parents=True)
    (dep / "hiagent_test_pth" / "__init__.py").write_text("")
    (dep / "hiagent_test_pth.pth").write_text("import os; os.environ['HIAGENT_TEST_PTH'] = 'ran'\n")
    (dep / "pyproject.toml").write_text(
        '[project]\nname = "hiagent-test-pth"\nversion = "1.0"\n'
        '[tool.hiagent-build]\ninclude = ["hiagent_test_pth.pth"]\n'
    )
    links = tmp_path / "links"
    build_wheel(dep, links)
    pm = make_manager(tmp_path / "data", wheelhouse, find_links=[str(wheelhouse), str(links)])
    check = tmp_path / "check"
    (check / "hiagent_plugin_needs_pth_check").mkdir(parents=True)
    (check / "hiagent_plugin_needs_pth_check" / "__init__.py").write_text(
        "import os\n"
        "if os.environ.get('HIAGENT_TEST_PTH') != 'ran':\n"
        "    raise RuntimeError('the .pth file of a dependency did not run at start-up')\n"
    )
    (check / "pyproject.toml").write_text(
        '[project]\nname = "hiagent-plugin-needs-pth-check"\nversion = "1.0"\n'
        'dependencies = ["hiagent-test-pth"]\n'
    )
    build_wheel(check, links)
    plugin = build_plugin(
        tmp_path, "pkg-needs-pth", "1.0",
        dependencies=("hiagent-plugin-needs-pth-check",),
        imports=("hiagent_plugin_needs_pth_check",),
    )  # fmt: skip
    record = pm.install(plugin.as_uri(), plugin.name, force=False)
    assert "hiagent-test-pth" in {d.name for d in record.dependencies}
    assert describe(pm.venv_python(record), "pkg-needs-pth")["ok"] is True


def test_a_clone_tells_when_the_install_replaced_what_it_linked(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm, _ = install_one(tmp_path, wheelhouse, "pkg-base-seed")
    base_path = only_base(pm)
    base = find_base(pm.layout, base_path.name, max_age_s=3600)
    assert base is not None

    def fresh_clone(name: str) -> tuple[Path, Linked]:
        venv = tmp_path / name
        VenvBuilder(pm.config.packages, cancel=threading.Event(), cwd=tmp_path).create(
            venv, prompt=name
        )
        return venv, clone(base, venv, name)

    venv, linked = fresh_clone("replaced")
    assert linked.intact()
    target = module_file(venv, "pydantic/main.py")
    replacement = target.with_name("main.py.new")
    replacement.write_bytes(target.read_bytes())
    replacement.replace(target)  # what an installer does: a new file under the old name
    assert not linked.intact()
    assert module_file(base_path, "pydantic/main.py").read_bytes() == target.read_bytes()

    venv, linked = fresh_clone("removed")
    module_file(venv, "yaml/__init__.py").unlink()
    assert not linked.intact()
    assert module_file(base_path, "yaml/__init__.py").is_file()

    venv, linked = fresh_clone("hooked")
    module_file(venv, "zz_hook.pth").write_text("import os\n")
    assert not linked.intact()


def test_an_expired_base_is_rebuilt_and_venvs_built_from_the_old_one_keep_working(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm, first = install_one(tmp_path, wheelhouse, "pkg-old-base", base_venv_max_age_s=3600.0)
    base = only_base(pm)
    manifest = read_manifest(base)
    aged = msgspec.structs.replace(manifest, created_at=manifest.created_at - 7200)
    (base / MANIFEST).write_bytes(msgspec.json.encode(aged))

    two = build_plugin(tmp_path, "pkg-new-base", "1.0")
    second = pm.install(two.as_uri(), two.name, force=False)
    rebuilt = only_base(pm)
    assert read_manifest(rebuilt).created_at > manifest.created_at
    assert read_manifest(rebuilt).built_at != manifest.built_at  # built anew, then renamed
    assert describe(pm.venv_python(second), "pkg-new-base")["ok"] is True
    assert describe(pm.venv_python(first), "pkg-old-base")["ok"] is True


def test_with_the_base_disabled_every_venv_is_installed_on_its_own(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm, record = install_one(tmp_path, wheelhouse, "pkg-no-base", base_venv_max_age_s=0.0)
    assert not (pm.config.paths.venvs_dir / BASE_DIR).exists()
    assert describe(pm.venv_python(record), "pkg-no-base")["ok"] is True


def test_recover_removes_what_an_interrupted_base_build_left(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm, _ = install_one(tmp_path, wheelhouse, "pkg-base-recover")
    base = only_base(pm)
    partial = base.parent / ".building-999999999-0123abcd"  # no such process
    running = base.parent / f".building-{os.getpid()}-4567cdef"  # this one is alive
    for build in (partial, running):
        (build / "lib").mkdir(parents=True)
    removed = pm.recover()
    assert partial in removed
    assert not partial.exists()
    assert running.is_dir()
    assert sorted(p.name for p in base.parent.iterdir()) == sorted([base.name, running.name])


def test_warming_builds_the_base_once_and_the_first_install_is_made_from_it(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm = make_manager(tmp_path / "data", wheelhouse)
    assert pm.warm_base() is True
    base = only_base(pm)
    built_at = read_manifest(base).built_at
    assert pm.warm_base() is True  # already there: nothing built again
    assert read_manifest(only_base(pm)).built_at == built_at
    wheel = build_plugin(tmp_path, "pkg-warm", "1.0")
    record = pm.install(wheel.as_uri(), wheel.name, force=False)
    venv = pm.venv_dir(record).resolve()
    sdk = "hiagent_plugin_sdk/__init__.py"
    assert same_file(module_file(venv, sdk), module_file(base, sdk))  # cloned, not installed
    assert read_manifest(only_base(pm)).built_at == built_at


def test_an_install_during_the_warm_up_is_made_from_the_one_base(
    tmp_path: Path, wheelhouse: Path
) -> None:
    pm = make_manager(tmp_path / "data", wheelhouse)
    wheel = build_plugin(tmp_path, "pkg-warming", "1.0")
    warming = threading.Thread(target=pm.warm_base)
    warming.start()
    try:
        record = pm.install(wheel.as_uri(), wheel.name, force=False)
    finally:
        warming.join(RUN_TIMEOUT_S)
    assert describe(pm.venv_python(record), "pkg-warming")["ok"] is True
    sdk = "hiagent_plugin_sdk/__init__.py"
    base = only_base(pm)
    assert same_file(module_file(pm.venv_dir(record).resolve(), sdk), module_file(base, sdk))


def test_warming_with_the_base_disabled_builds_nothing(tmp_path: Path, wheelhouse: Path) -> None:
    pm = make_manager(tmp_path / "data", wheelhouse, base_venv_max_age_s=0.0)
    assert pm.warm_base() is False
    assert not (pm.config.paths.venvs_dir / BASE_DIR).exists()
