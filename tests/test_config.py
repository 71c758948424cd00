"""runtime.toml loading: closed, typed, overridable from the environment, paths resolved."""

from __future__ import annotations

import re
import types
import typing
from pathlib import Path

import msgspec
import pytest

from hiagent_host.config import (
    _SECTIONS,
    MAX_DURATION_S,
    Config,
    PackagePolicy,
    S3Storage,
    config_secrets,
    load_config,
    read_api_keys,
    redact_url,
)
from hiagent_host.errors import CONFIG_INVALID, ConfigError

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "runtime.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_repository_runtime_toml_is_the_documented_default_configuration() -> None:
    config = load_config(REPO / "runtime.toml", environ={})
    defaults = load_config(use_lookup=False, environ={})
    assert config.extensions_dir == REPO / "extensions"
    assert config.venvs_dir == REPO / "venvs"
    assert config.state_dir == REPO / ".state"
    # every value the file sets agrees with the built-in default, except the state dir name
    sections = (
        "server",
        "packages",
        "pool",
        "queue",
        "plugin_storage",
        "auth",
        "logging",
        "mcp",
        "store",
    )
    for section in sections:
        assert getattr(config, section) == getattr(defaults, section), section


def test_an_unknown_key_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[server]\nprot = 8000\n"), environ={})
    assert info.value.code == CONFIG_INVALID
    assert "prot" in info.value.message
    assert "$.server" in info.value.message


def test_an_unknown_section_fails_naming_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, "[sever]\nport = 1\n"), environ={})
    assert "sever" in info.value.message


def test_a_wrong_type_fails_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, '[pool]\nmax_subprocess = "many"\n'), environ={})
    assert "$.pool.max_subprocess" in info.value.message


def test_a_wrong_type_in_a_per_package_table_fails_naming_the_key(tmp_path: Path) -> None:
    text = '[pool.packages."hiagent-plugin-x"]\nmemory_bytes = "lots"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "memory_bytes" in info.value.message


def test_values_out_of_range_are_all_reported_at_once(tmp_path: Path) -> None:
    text = "[server]\nport = 70000\n[pool]\nmax_subprocess = 0\nreplicas = 0\n"
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert len(info.value.data["problems"]) == 3


@pytest.mark.parametrize(
    ("value", "words"), [(-1, "Expected `int` >= 0"), (10_001, "Expected `int` <= 10000")]
)
def test_a_busy_poll_budget_out_of_range_is_named(tmp_path: Path, value: int, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"[pool]\nbusy_poll_us = {value}\n"), environ={})
    assert info.value.data["problems"] == [f"{words} - at `$.pool.busy_poll_us`"]


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("pool.stream_window", "0", "Expected `int` >= 1"),
        ("pool.thread_pool_size", "0", "Expected `int` >= 1"),
        ("pool.call_timeout_s", "0", "Expected `float` > 0.0"),
        ("pool.max_frame_bytes", "1023", "Expected `int` >= 1024"),
        ("pool.log_backups", "-1", "Expected `int` >= 0"),
        ("server.workers", "0", "Expected `int` >= 1"),
        ("server.max_body_bytes", "0", "Expected `int` >= 1"),
        ("server.graceful_shutdown_s", "-1.5", "Expected `float` > 0.0"),
        ("server.keep_alive_s", "nan", "Expected `float` > 0.0"),
        ("queue.connect_timeout_s", "inf", "Expected `float` <= 31536000.0"),
        ("packages.base_venv_max_age_s", "-1", "Expected `float` >= 0.0"),
        ('pool.packages."x".replicas', "0", "Expected `int` >= 1"),
    ],
)
def test_a_numeric_key_out_of_its_range_stops_loading_naming_key_and_range(
    tmp_path: Path, key: str, value: str, words: str
) -> None:
    section, _, name = key.rpartition(".")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, f"[{section}]\n{name} = {value}\n"), environ={})
    assert info.value.code == CONFIG_INVALID
    [problem] = info.value.data["problems"]
    assert problem.startswith(words)
    assert problem.endswith(name + "`")


def test_an_out_of_range_environment_override_is_refused_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(use_lookup=False, environ={"HIAGENT_POOL_STREAM_WINDOW": "0"})
    assert info.value.data["problems"] == ["Expected `int` >= 1 - at `$.pool.stream_window`"]


@pytest.mark.parametrize(
    ("text", "named"),
    [('[pool]\nsandbox = "maybe"\n', "$.pool.sandbox"),
     ("[pool]\nsandbox_tmp_bytes = 4096\n", "$.pool.sandbox_tmp_bytes"),
     ('[pool.packages."x"]\nnetwork = "no"\n', "network")],
)  # fmt: skip
def test_a_bad_sandbox_setting_fails_naming_the_key(tmp_path: Path, text: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert named in info.value.message


def test_sandbox_settings_are_read_per_package(tmp_path: Path) -> None:
    text = '[pool]\nsandbox = "on"\n[pool.packages."Hiagent_Plugin_X"]\nnetwork = false\n'
    pool = load_config(write(tmp_path, text), environ={}).pool
    assert pool.sandbox == "on"
    assert pool.policy("hiagent-plugin-x").network is False
    assert pool.policy("other").network is True


def test_unreadable_toml_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(write(tmp_path, "[server\n"), environ={})


def test_a_missing_explicit_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        load_config(tmp_path / "nope.toml", environ={})


def test_relative_paths_resolve_against_the_files_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf_dir = tmp_path / "conf"
    conf_dir.mkdir()
    path = write(conf_dir, '[paths]\nvenvs_dir = "v"\n[packages]\nallowed_file_roots = ["w"]\n')
    monkeypatch.chdir(tmp_path)
    config = load_config(path, environ={})
    assert config.venvs_dir == conf_dir / "v"
    assert config.packages.allowed_file_roots == [conf_dir / "w"]


def test_environment_variables_override_every_kind_of_key(tmp_path: Path) -> None:
    environ = {
        "HIAGENT_POOL_MAX_SUBPROCESS": "4",
        "HIAGENT_SERVER_HOST": "0.0.0.0",
        "HIAGENT_POOL_ENV_ALLOW": '["LANG", "HTTPS_PROXY"]',
        "HIAGENT_QUEUE_WITH_WORKER": "true",
        "HIAGENT_PATHS_STATE_DIR": "st",
        "HIAGENT_QUEUE_REDIS_URL": "redis://127.0.0.1:1/2",
    }
    config = load_config(write(tmp_path, "[pool]\nmax_subprocess = 8\n"), environ=environ)
    assert config.pool.max_subprocess == 4
    assert config.server.host == "0.0.0.0"
    assert config.pool.env_allow == ["LANG", "HTTPS_PROXY"]
    assert config.queue.with_worker is True
    assert config.state_dir == tmp_path / "st"
    assert config.queue.redis_url == "redis://127.0.0.1:1/2"


def test_a_bad_environment_override_fails_naming_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config(use_lookup=False, environ={"HIAGENT_SERVER_PORT": "eighty"})
    assert "$.server.port" in info.value.message


def test_lookup_prefers_explicit_then_env_then_cwd_then_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = tmp_path / "a.toml"
    explicit.write_text("[server]\nport = 1001\n")
    env_file = tmp_path / "b.toml"
    env_file.write_text("[server]\nport = 1002\n")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    (cwd / "runtime.toml").write_text("[server]\nport = 1003\n")
    monkeypatch.chdir(cwd)
    monkeypatch.setenv("HIAGENT_CONFIG", str(env_file))
    assert load_config(explicit).server.port == 1001
    assert load_config().server.port == 1002
    monkeypatch.delenv("HIAGENT_CONFIG")
    assert load_config().server.port == 1003
    monkeypatch.chdir(tmp_path)
    defaults = load_config()
    assert defaults.server.port == 8000
    assert defaults.source == "<defaults>"
    assert defaults.extensions_dir.name == "extensions"
    assert "hiagent-host" in str(defaults.extensions_dir)


def test_config_is_frozen() -> None:
    config = load_config(use_lookup=False, environ={})
    with pytest.raises(AttributeError):
        config.server.port = 1  # type: ignore[misc]
    assert isinstance(config, Config)


def test_secrets_never_appear_in_reprs() -> None:
    environ = {
        "HIAGENT_QUEUE_REDIS_URL": "redis://:hunter2@127.0.0.1:6379/0",
        "HIAGENT_AUTH_API_KEYS": '["k-very-secret"]',
    }
    config = load_config(use_lookup=False, environ=environ)
    text = repr(config)
    assert "hunter2" not in text
    assert "k-very-secret" not in text
    assert redact_url("redis://user:pw@h:1/0") == "redis://user:***@h:1/0"
    assert redact_url("redis://h:1/0") == "redis://h:1/0"


def test_api_keys_come_from_the_list_and_the_file(tmp_path: Path) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_text("# ops\nk-file\n\n", encoding="utf-8")
    path = write(tmp_path, f'[auth]\napi_keys = ["k-inline"]\napi_keys_file = "{keys.name}"\n')
    assert read_api_keys(load_config(path, environ={})) == {"k-inline", "k-file"}


# ---- [plugin_storage] ------------------------------------------------------------------

ORIGINAL_STORAGE = """
[plugin_storage]
backend = "minio"
[plugin_storage.local_path]
base_dir = "files"
[plugin_storage.s3]
ak = "AKIAEXAMPLE"
sk = "s3-very-secret"
endpoint = "http://minio.internal:9000"
region = "cn-north-1"
bucket = "outputs"
public_endpoint = "https://files.example.com/outputs"
path_style = true
signature_version = "s3v4"
ssl_verify = false
"""


def test_plugin_storage_takes_the_original_storage_shape(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORIGINAL_STORAGE), environ={})
    storage = config.plugin_storage
    assert storage.backend == "minio"
    assert storage.object_store
    assert storage.local_path.base_dir == tmp_path / "files"
    assert (storage.s3.bucket, storage.s3.path_style, storage.s3.ssl_verify) == (
        "outputs",
        True,
        False,
    )
    assert storage.s3.presign_expiry_s == 3600
    assert "s3-very-secret" not in repr(config)
    assert "AKIAEXAMPLE" not in repr(config)


def test_an_unknown_plugin_storage_key_fails_naming_it(tmp_path: Path) -> None:
    text = ORIGINAL_STORAGE.replace("ssl_verify = false", "ssl_verify = false\nsecure = true")
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert "secure" in info.value.message
    assert "$.plugin_storage.s3" in info.value.message


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[plugin_storage]\nbackend = "ftp"\n', "$.plugin_storage.backend"),
        ('[plugin_storage]\nbackend = "boto3"\n', "plugin_storage.s3.bucket"),
        ("[plugin_storage.s3]\npresign_expiry_s = 0\n", "$.plugin_storage.s3.presign_expiry_s"),
        ('[plugin_storage.s3]\nendpoint = "minio:9000"\n', "plugin_storage.s3.endpoint"),
        (
            "[pool.env]\nHIAGENT_PLUGIN_CONFIG = '{\"storage\": {}}'\n",
            "pool.env.HIAGENT_PLUGIN_CONFIG",
        ),
        ("[pool.env]\nHIAGENT_PLUGIN_CONFIG = 'nope'\n", "pool.env.HIAGENT_PLUGIN_CONFIG"),
    ],
)
def test_bad_plugin_storage_settings_are_config_errors_naming_the_key(
    tmp_path: Path, text: str, named: str
) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    assert info.value.code == CONFIG_INVALID
    assert named in info.value.message


def test_the_storage_secret_key_is_among_the_secrets_the_logs_mask(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ORIGINAL_STORAGE), environ={})
    assert config_secrets(config) == {"s3-very-secret"}
    assert config_secrets(load_config(use_lookup=False, environ={})) == frozenset()


def test_one_key_of_a_sub_table_can_come_from_the_environment(tmp_path: Path) -> None:
    environ = {
        "HIAGENT_PLUGIN_STORAGE_S3_SK": "from-env",
        "HIAGENT_PLUGIN_STORAGE_S3_PATH_STYLE": "false",
    }
    config = load_config(write(tmp_path, ORIGINAL_STORAGE), environ=environ)
    assert config.plugin_storage.s3.sk == "from-env"
    assert config.plugin_storage.s3.path_style is False
    assert config.plugin_storage.s3.bucket == "outputs"  # the file's other keys stay


# ---- [queue] redis_url topologies -----------------------------------------------------------


def test_a_sentinel_redis_url_is_accepted(tmp_path: Path) -> None:
    url = "redis+sentinel://:pw@10.0.0.1:26379,10.0.0.2:26379/mymaster/1"
    config = load_config(write(tmp_path, f'[queue]\nredis_url = "{url}"\n'), environ={})
    assert config.queue.redis_url == url
    assert "pw" not in repr(config.queue)


@pytest.mark.parametrize(
    "url",
    [
        "redis+cluster://10.0.0.1:7000",
        "redis+sentinel://10.0.0.1:26379",
        "redis+sentinel://10.0.0.1:notaport/m",
        "http://10.0.0.1:6379",
        "redis://10.0.0.1:6379/zero",
    ],
)
def test_a_redis_url_the_queue_cannot_use_is_a_config_error(tmp_path: Path, url: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(use_lookup=False, environ={"HIAGENT_QUEUE_REDIS_URL": url})
    assert info.value.code == CONFIG_INVALID
    assert "queue.redis_url" in info.value.message


def _documented_ranges() -> dict[str, str]:
    text = (REPO / "docs" / "operations.md").read_text(encoding="utf-8")
    section = text.split("### Ranges of numeric keys", 1)[1]
    rows = re.findall(r"^\| `([^`]+)` \| ([^|]+) \|$", section, flags=re.MULTILINE)
    return {key: words.strip() for key, words in rows}


def _numeric_fields() -> dict[str, msgspec.Meta]:
    """Every numeric key of the configuration → its msgspec range."""
    found: dict[str, msgspec.Meta] = {}
    tables = [(name, t) for name, t in _SECTIONS.items()]
    tables.append(('pool.packages."<name>"', PackagePolicy))
    tables.append(("plugin_storage.s3", S3Storage))
    for prefix, struct in tables:
        for field in msgspec.structs.fields(struct):
            union = typing.get_origin(field.type) in (typing.Union, types.UnionType)
            options = typing.get_args(field.type) if union else ()
            kind = next((t for t in options if t is not type(None)), field.type)
            base = typing.get_args(kind)[0] if typing.get_origin(kind) is typing.Annotated else kind
            if base in (int, float):
                assert typing.get_origin(kind) is typing.Annotated, f"{prefix}.{field.name}"
                found[f"{prefix}.{field.name}"] = typing.get_args(kind)[1]
    return found


def test_every_numeric_key_has_a_range_and_the_range_is_documented() -> None:
    documented = _documented_ranges()
    fields = _numeric_fields()
    assert set(documented) == set(fields)
    for key, meta in fields.items():
        words = documented[key]
        if meta.le is not None and meta.le != MAX_DURATION_S:  # durations: a year, in prose
            assert words.startswith(f"{meta.ge} … {meta.le}"), key
        elif meta.ge is not None:
            bound = f"{meta.ge:g}" if isinstance(meta.ge, float) else str(meta.ge)  # 1048576
            assert words.startswith(f"≥ {bound}"), key
        else:
            assert meta.gt == 0, key
            assert words.startswith("> 0"), key


def test_the_s3_store_needs_a_bucket_and_one_source_of_secret(tmp_path: Path) -> None:
    text = '[store]\nbackend = "s3"\nsecret_access_key = "x"\nsecret_access_key_file = "s"\n'
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), environ={})
    problems = info.value.data["problems"]
    assert [p.split(":")[0] for p in problems] == ["store.bucket", "store.secret_access_key_file"]


def test_store_settings_come_from_the_environment_and_the_secret_never_shows(
    tmp_path: Path,
) -> None:
    environ = {
        "HIAGENT_STORE_BACKEND": "s3",
        "HIAGENT_STORE_BUCKET": "packages",
        "HIAGENT_STORE_SECRET_ACCESS_KEY": "very-secret-value",
        "HIAGENT_STORE_CONNECT_TIMEOUT_S": "1.5",
    }
    config = load_config(write(tmp_path, '[store]\nca_bundle = "ca.pem"\n'), environ=environ)
    assert (config.store.backend, config.store.bucket) == ("s3", "packages")
    assert config.store.connect_timeout_s == 1.5
    assert config.store.ca_bundle == tmp_path / "ca.pem"
    assert "very-secret-value" not in repr(config) + repr(config.store)


def test_store_ranges_are_checked(tmp_path: Path) -> None:
    for text in ("poll_interval_s = 0.1", "max_attempts = 0", "read_timeout_s = 0"):
        with pytest.raises(ConfigError) as info:
            load_config(write(tmp_path, f"[store]\n{text}\n"), environ={})
        assert "$.store" in info.value.message
