"""The `hiagent-host` command, run as a real subprocess against a temporary runtime.toml."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from hiagent_host.cli import REGISTRARS, build_parser, source_to_uri
from hiagent_host.cli_exit import EXIT_FAILED, EXIT_NOT_FOUND, EXIT_USAGE
from tests.packages.support import rewrite_wheel, subprocess_env, write_runtime_toml
from tests.support.s3 import PackagesS3

CLI_TIMEOUT_S = 120


@pytest.fixture
def config(tmp_path: Path, wheelhouse: Path) -> Path:
    return write_runtime_toml(tmp_path / "runtime.toml", tmp_path / "data", wheelhouse)


def cli(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hiagent_host", "--config", str(config), *args],
        capture_output=True, text=True, env=subprocess_env(), cwd=config.parent,
        timeout=CLI_TIMEOUT_S, check=False,
    )  # fmt: skip


def test_install_show_venv_list_and_delete_work_end_to_end(
    config: Path, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    installed = cli(config, "install", str(wheel))
    assert installed.returncode == 0, installed.stderr
    assert "pkg-nodeps 1.0.0" in installed.stdout

    listed = cli(config, "list")
    assert "pkg-nodeps" in listed.stdout
    assert "回声" in listed.stdout
    rows = json.loads(cli(config, "list", "--json").stdout)
    assert [(r["name"], r["version"], r["plugins"]) for r in rows] == [
        ("pkg-nodeps", "1.0.0", ["回声"])
    ]

    shown = json.loads(cli(config, "--json", "show", "PKG_NoDeps", "1.0").stdout)
    assert shown["filename"] == wheel.name
    assert "回声" in shown["metadata"]

    venv = Path(cli(config, "venv", "pkg-nodeps", "1.0.0").stdout.strip())
    assert (venv / "bin" / "activate").is_file()

    deleted = cli(config, "delete", "pkg-nodeps", "1.0.0")
    assert (deleted.returncode, deleted.stdout.strip()) == (0, "deleted pkg-nodeps 1.0.0")
    again = cli(config, "delete", "pkg-nodeps", "1.0.0")
    assert again.returncode == 0
    assert "not installed" in again.stdout
    assert not venv.exists()


def test_a_version_already_installed_is_replaced_only_with_force(
    config: Path, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels["pkg_onedep"]
    assert cli(config, "install", wheel.as_uri()).returncode == 0
    refused = cli(config, "install", wheel.as_uri())
    assert refused.returncode == EXIT_FAILED
    assert refused.stderr.startswith("hiagent-host: AlreadyInstalled:")
    assert cli(config, "install", wheel.as_uri(), "--force").returncode == 0


def test_an_invalid_wheel_exits_non_zero_listing_every_problem(
    config: Path, built_wheels: dict[str, Path], tmp_path: Path
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    bad = rewrite_wheel(
        wheel, tmp_path / "other-2.0-py3-none-any.whl",
        drop=lambda n: n.endswith("entry_points.txt"),
    )  # fmt: skip
    done = cli(config, "install", str(bad))
    assert done.returncode == EXIT_FAILED
    assert "InvalidPackage" in done.stderr
    problems = [line for line in done.stderr.splitlines() if line.startswith("  - ")]
    assert len(problems) == 3  # the name, the version, no entry points


def test_a_missing_package_exits_3_and_json_errors_are_error_objects(config: Path) -> None:
    done = cli(config, "show", "pkg-nowhere", "1.0", "--json")
    assert done.returncode == EXIT_NOT_FOUND
    assert done.stdout == ""
    error = json.loads(done.stderr)["error"]
    assert (error["code"], error["http_code"]) == ("PackageNotFound", 404)


def test_the_filename_option_names_a_wheel_whose_path_does_not(
    config: Path, built_wheels: dict[str, Path], tmp_path: Path
) -> None:
    stored = tmp_path / "upload.bin"
    stored.write_bytes(built_wheels["pkg_nodeps"].read_bytes())
    assert cli(config, "install", str(stored)).returncode == 1
    named = cli(config, "install", str(stored), "--filename", built_wheels["pkg_nodeps"].name)
    assert named.returncode == 0, named.stderr


def test_a_broken_config_is_a_usage_error_naming_the_key(tmp_path: Path) -> None:
    config = tmp_path / "runtime.toml"
    config.write_text("[packages]\nno_such_key = 1\n")
    done = cli(config, "list")
    assert done.returncode == EXIT_USAGE
    assert "no_such_key" in done.stderr


def test_the_command_line_offers_every_subcommand() -> None:
    text = build_parser().format_help()
    for command in ("install", "list", "show", "venv", "delete", "recover", "serve", "worker"):
        assert command in text


class _Recorder:
    """Stands in for argparse's subparsers object: keeps every subcommand's parser and help."""

    def __init__(self) -> None:
        self.parsers: dict[str, tuple[str | None, argparse.ArgumentParser]] = {}

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        help_text = kwargs.pop("help", None)
        parser = argparse.ArgumentParser(prog=f"hiagent-host {name}", **kwargs)
        self.parsers[name] = (help_text, parser)
        return parser


def _subcommands() -> dict[str, tuple[str | None, argparse.ArgumentParser]]:
    recorder = _Recorder()
    for register in REGISTRARS:
        register(recorder)
    return recorder.parsers


@pytest.mark.parametrize("name", sorted(_subcommands()))
def test_every_subcommand_has_help_a_description_and_a_json_option(name: str) -> None:
    help_text, parser = _subcommands()[name]
    assert help_text, name
    assert parser.description, name
    text = parser.format_help()
    assert " ".join(parser.description.split()[:4]) in " ".join(text.split()), text
    assert "--json" in text, name


@pytest.mark.parametrize(
    ("source", "uri", "filename"),
    [
        ("https://h/dl/a-1.0-py3-none-any.whl?sig=x", "https://h/dl/a-1.0-py3-none-any.whl?sig=x",
         "a-1.0-py3-none-any.whl"),
        ("/srv/w/a%20b.whl", "file:///srv/w/a%2520b.whl", "a%20b.whl"),
    ],
)  # fmt: skip
def test_a_source_becomes_a_uri_and_a_filename(source: str, uri: str, filename: str) -> None:
    assert source_to_uri(source, None) == (uri, filename)


def test_install_progress_is_one_plain_line_per_phase_when_stderr_is_not_a_terminal(
    config: Path, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    done = cli(config, "install", str(wheel))
    assert done.returncode == 0, done.stderr
    size = wheel.stat().st_size
    assert done.stderr.splitlines() == [
        "downloading",
        f"downloaded {size / (1024 * 1024):.1f} MiB of {size / (1024 * 1024):.1f} MiB (100%)",
        "validating",
        "creating venv",
        "installing dependencies",
        "probing",
    ]
    assert "\x1b" not in done.stderr


def test_install_progress_rewrites_one_status_line_on_a_terminal(
    config: Path, built_wheels: dict[str, Path]
) -> None:
    wheel = built_wheels["pkg_nodeps"]
    leader, follower = pty.openpty()
    with os.fdopen(leader, "rb", buffering=0) as terminal:
        process = subprocess.Popen(
            [sys.executable, "-m", "hiagent_host", "--config", str(config), "install", str(wheel)],
            stdout=subprocess.PIPE, stderr=follower, env=subprocess_env(), cwd=config.parent,
        )  # fmt: skip
        os.close(follower)
        shown = b""
        with contextlib.suppress(OSError):  # EIO once the child closed the terminal
            while chunk := terminal.read(4096):
                shown += chunk
        out, _ = process.communicate(timeout=CLI_TIMEOUT_S)
    assert process.returncode == 0
    assert out.decode().startswith("pkg-nodeps 1.0.0\n")
    text = shown.decode()
    assert "\r\x1b[2K" in text  # rewritten in place
    assert "\n" not in text.replace("\r\n", "")  # never a new line of its own
    for phase in ("downloading", "validating", "creating venv", "installing dependencies"):
        assert phase in text
    assert "(100%)" in text  # the download's bytes


def test_list_works_against_the_store_and_says_what_this_node_has(
    tmp_path: Path, wheelhouse: Path, built_wheels: dict[str, Path], packages_s3: PackagesS3
) -> None:
    """Two data directories on one S3 store: an install through one is listed by the other."""
    configs = []
    for node in ("a", "b"):
        path = write_runtime_toml(tmp_path / f"{node}.toml", tmp_path / node, wheelhouse)
        settings = "\n".join(
            f"{k} = {json.dumps(v)}" for k, v in packages_s3.store_settings().items()
        )
        path.write_text(path.read_text() + f"[store]\n{settings}\n")
        configs.append(path)
    a, b = configs
    assert cli(a, "install", str(built_wheels["pkg_nodeps"])).returncode == 0
    on_a = json.loads(cli(a, "list", "--json").stdout)
    on_b = json.loads(cli(b, "list", "--json").stdout)
    assert [(r["name"], r["materialised"]) for r in on_a] == [("pkg-nodeps", True)]
    assert [(r["name"], r["build"], r["materialised"]) for r in on_b] == [
        ("pkg-nodeps", on_a[0]["build"], False)
    ]
    table = cli(b, "list").stdout
    assert "BUILD" in table
    assert on_a[0]["build"] in table
    assert packages_s3.secret_key not in table


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("redis+cluster://127.0.0.1:7000", "Redis Cluster is not supported"),
        ("redis+sentinel://127.0.0.1:26379", "no master name"),
    ],
)
def test_every_command_refuses_an_unusable_redis_url_the_same_way(
    tmp_path: Path, url: str, reason: str
) -> None:
    config = tmp_path / "runtime.toml"
    config.write_text(f'[queue]\nbackend = "redis"\nredis_url = "{url}"\n')
    wheel = tmp_path / "a-1.0-py3-none-any.whl"
    answers = set()
    for args in (("serve",), ("worker",), ("list",), ("install", "--async", str(wheel))):
        done = cli(config, *args)
        assert done.returncode == EXIT_USAGE, (args, done.stderr)
        assert "Traceback" not in done.stderr
        assert f"ConfigInvalid: {config}: queue.redis_url: " in done.stderr
        assert reason in done.stderr
        answers.add(done.stderr.partition("ConfigInvalid")[2].splitlines()[0])
    assert len(answers) == 1, answers
