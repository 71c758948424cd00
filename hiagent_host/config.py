"""Typed, closed configuration: runtime.toml plus HIAGENT_<SECTION>_<KEY> overrides.

Lookup order: an explicit path (``--config``), ``$HIAGENT_CONFIG``, ``./runtime.toml``, then the
built-in defaults with data under platformdirs' user data directory. Unknown keys and wrong
types fail at start-up naming the key. Relative paths resolve against the file's directory.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, Literal

import msgspec
import platformdirs
from packaging.utils import canonicalize_name

from hiagent_host.config_redis import RedisUrlError, check_redis_url, redact
from hiagent_host.errors import ConfigError

ENV_PREFIX: Final = "HIAGENT_"
CONFIG_ENV: Final = "HIAGENT_CONFIG"
DEFAULT_FILE: Final = "runtime.toml"
APP_NAME: Final = "hiagent-host"
# A jail's private /tmp (and /dev/shm) below 1 MiB would break ordinary temp files.
MIN_SANDBOX_TMP_BYTES: Final = 1024 * 1024
# The plugin-side config (JSON) every plugin process gets; `[plugin_storage]` fills `storage`.
PLUGIN_CONFIG_ENV: Final = "HIAGENT_PLUGIN_CONFIG"
# Busy polling longer than this (10 ms) would only burn CPU: such calls are not quick.
MAX_BUSY_POLL_US: Final = 10_000
# No duration is longer than a year: larger values overflow timers and mean "never" anyway.
MAX_DURATION_S: Final = 365 * 86400.0
MIN_FRAME_BYTES: Final = 1024

# The ranges of numeric keys, enforced by msgspec at load (docs/operations.md lists them).
Count = Annotated[int, msgspec.Meta(ge=1)]
ZeroOrMore = Annotated[int, msgspec.Meta(ge=0)]
Bytes = Annotated[int, msgspec.Meta(ge=1)]
BytesOrOff = Annotated[int, msgspec.Meta(ge=0)]  # 0 turns the limit off
Seconds = Annotated[float, msgspec.Meta(gt=0, le=MAX_DURATION_S)]
SecondsOrOff = Annotated[float, msgspec.Meta(ge=0, le=MAX_DURATION_S)]  # 0 turns it off
Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
FrameBytes = Annotated[int, msgspec.Meta(ge=MIN_FRAME_BYTES)]
BusyPollMicros = Annotated[int, msgspec.Meta(ge=0, le=MAX_BUSY_POLL_US)]
TmpfsBytes = Annotated[int, msgspec.Meta(ge=MIN_SANDBOX_TMP_BYTES)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    pass


class ServerConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    host: str = "127.0.0.1"
    port: Port = 8000
    workers: Count = 1
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    keep_alive_s: Seconds = 5.0
    graceful_shutdown_s: Seconds = 30.0
    max_body_bytes: Bytes = 10 * 1024 * 1024
    sse_keepalive_s: Seconds = 15.0


class PathsConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    extensions_dir: Path = Path("extensions")
    venvs_dir: Path = Path("venvs")
    state_dir: Path = Path("state")


class PackagesConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    python: str = ""
    installer: Literal["auto", "uv", "pip"] = "auto"
    index_url: str = ""
    extra_index_urls: list[str] = msgspec.field(default_factory=list)
    find_links: list[str] = msgspec.field(default_factory=list)
    no_index: bool = False
    allowed_file_roots: list[Path] = msgspec.field(default_factory=list)
    sdk_path: Path | None = None
    download_connect_timeout_s: Seconds = 10.0
    download_timeout_s: Seconds = 300.0
    max_download_bytes: Bytes = 256 * 1024 * 1024
    max_unpacked_bytes: Bytes = 1024 * 1024 * 1024
    max_cache_bytes: BytesOrOff = 2 * 1024 * 1024 * 1024
    install_idle_timeout_s: Seconds = 120.0
    install_timeout_s: Seconds = 900.0
    probe_timeout_s: Seconds = 60.0
    base_venv_max_age_s: SecondsOrOff = 86400.0


class PackagePolicy(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    env: dict[str, str] = msgspec.field(default_factory=dict)
    replicas: Count | None = None
    memory_bytes: Bytes | None = None
    cpu_s: Count | None = None
    open_files: Count | None = None
    processes: Count | None = None
    network: bool = True  # false: an empty network namespace (loopback only) in the sandbox


class PoolConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    max_subprocess: Count = 16
    replicas: Count = 1
    idle_timeout_s: Seconds = 600.0
    acquire_timeout_s: Seconds = 10.0
    start_timeout_s: Seconds = 30.0
    call_timeout_s: Seconds = 60.0
    max_call_timeout_s: Seconds = 600.0
    cancel_grace_s: Seconds = 2.0
    drain_timeout_s: Seconds = 10.0
    stop_grace_s: Seconds = 3.0
    restart_limit: ZeroOrMore = 5
    restart_window_s: Seconds = 60.0
    restart_cooldown_s: Seconds = 30.0
    thread_pool_size: Count = 32
    max_frame_bytes: FrameBytes = 32 * 1024 * 1024
    stream_window: Count = 64
    busy_poll_us: BusyPollMicros = 200
    env_allow: list[str] = msgspec.field(
        default_factory=lambda: ["LANG", "LC_ALL", "LC_CTYPE", "TZ", "TMPDIR"]
    )
    env: dict[str, str] = msgspec.field(default_factory=dict)
    log_max_bytes: BytesOrOff = 10 * 1024 * 1024
    log_backups: ZeroOrMore = 3
    prewarm_on_install: bool = False
    packages: dict[str, PackagePolicy] = msgspec.field(default_factory=dict)
    sandbox: Literal["auto", "on", "off"] = "auto"
    sandbox_program: str = "bwrap"
    sandbox_tmp_bytes: TmpfsBytes = 128 * 1024 * 1024

    def policy(self, name: str) -> PackagePolicy:
        """The `[pool.packages."<name>"]` table of `name` (any PEP 503 spelling), or the default."""
        wanted = canonicalize_name(name)
        for key, policy in self.packages.items():
            if canonicalize_name(key) == wanted:
                return policy
        return PackagePolicy()


class QueueConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    backend: Literal["local", "redis"] = "local"
    redis_url: str = "redis://127.0.0.1:6379/0"
    queue_name: str = "hiagent:installs"
    with_worker: bool = False
    worker_concurrency: Count = 2
    job_timeout_s: Seconds = 1800.0
    result_ttl_s: Seconds = 86400.0
    connect_timeout_s: Seconds = 2.0

    def __repr__(self) -> str:  # the URL may carry a password
        return f"QueueConfig(backend={self.backend!r}, redis_url={redact_url(self.redis_url)!r})"


class S3Connection(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """How to reach an S3-compatible object store (MinIO, AWS S3, Ceph RGW, …).

    Credentials: `access_key_id`/`secret_access_key`, or `secret_access_key_file`, or (both
    empty) boto3's own chain (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, profiles, roles).
    """

    endpoint_url: str = ""  # empty: AWS S3 of `region`
    bucket: str = ""
    region: str = "us-east-1"
    access_key_id: str = ""
    secret_access_key: str = ""
    secret_access_key_file: Path | None = None
    path_style: bool = False  # bucket in the path (MinIO, most self-hosted stores)
    verify_tls: bool = True
    ca_bundle: Path | None = None
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 30.0
    max_attempts: Annotated[int, msgspec.Meta(ge=1, le=20)] = 3

    def __repr__(self) -> str:  # never the secret
        return f"{type(self).__name__}({self.connection_fields()})"

    def connection_fields(self) -> str:
        """The connection settings for a repr: where, never the credentials."""
        return (
            f"endpoint_url={redact_url(self.endpoint_url)!r}, bucket={self.bucket!r}, "
            f"region={self.region!r}, access_key_id={'<set>' if self.access_key_id else ''!r}, "
            f"secret_access_key={'<redacted>' if self.secret_access_key else ''!r}"
        )


class StoreConfig(S3Connection, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where installed packages live: this machine's directories, or an object store."""

    backend: Literal["local", "s3"] = "local"
    prefix: str = "hiagent/"  # every key of the packages store starts with this
    # Materialise every installed package's venv when the node starts (else on first use).
    materialise_at_start: bool = False
    # Without Redis, each node compares its view with the store (or shared records) this often.
    poll_interval_s: Annotated[float, msgspec.Meta(ge=0.5, le=3600)] = 5.0

    def __repr__(self) -> str:
        return (
            f"StoreConfig(backend={self.backend!r}, prefix={self.prefix!r}, "
            f"{self.connection_fields()})"
        )


# `[plugin_storage] backend` values that mean an S3-compatible object store (the original
# runtime's two client libraries; both are served by boto3 in the SDK).
OBJECT_STORE_BACKENDS: Final = frozenset({"minio", "boto3"})
# SigV4 presigned URLs live at most seven days.
MAX_PRESIGN_EXPIRY_S: Final = 7 * 24 * 3600


class LocalPathStorage(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    base_dir: Path | None = None


class S3Storage(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    ak: str = ""
    sk: str = ""
    endpoint: str = ""
    region: str = ""
    bucket: str = ""
    public_endpoint: str = ""
    path_style: bool = False
    signature_version: Literal["s3v4", "v4", "s3", "v2"] = "s3v4"
    ssl_verify: bool = True
    prefix: str = ""
    presign_expiry_s: Annotated[int, msgspec.Meta(ge=1, le=MAX_PRESIGN_EXPIRY_S)] = 3600
    connect_timeout_s: Seconds = 5.0
    read_timeout_s: Seconds = 30.0

    def __repr__(self) -> str:  # ak/sk are credentials
        return (
            f"S3Storage(endpoint={self.endpoint!r}, bucket={self.bucket!r}, "
            f"prefix={self.prefix!r}, ak=<redacted>, sk=<redacted>)"
        )


class PluginStorageConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Where plugins' `save()` puts files: the original runtime's `storage` shape."""

    backend: Literal["local_path", "minio", "boto3"] = "local_path"
    local_path: LocalPathStorage = msgspec.field(default_factory=LocalPathStorage)
    s3: S3Storage = msgspec.field(default_factory=S3Storage)

    @property
    def object_store(self) -> bool:
        return self.backend in OBJECT_STORE_BACKENDS


class AuthConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    api_keys: list[str] = msgspec.field(default_factory=list)
    api_keys_file: Path | None = None

    def __repr__(self) -> str:
        keys = f"<{len(self.api_keys)} redacted>"
        return f"AuthConfig(api_keys={keys}, api_keys_file={self.api_keys_file!r})"


class LoggingConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    json: bool = False
    access_log: bool = True


McpLanguage = Literal["en", "zh_hans", "zh_hant"]


class McpConfig(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    enabled: bool = True
    expose_all_versions: bool = False
    language: McpLanguage = "en"
    allow_packages: list[str] = msgspec.field(default_factory=list)
    deny_packages: list[str] = msgspec.field(default_factory=list)
    allow_tools: list[str] = msgspec.field(default_factory=list)
    deny_tools: list[str] = msgspec.field(default_factory=list)
    client_config: bool = True
    config_file: Path | None = None
    session_idle_timeout_s: Seconds = 1800.0
    max_sessions: Count = 1000
    watch_interval_s: SecondsOrOff = 2.0


class Config(_Section, frozen=True, forbid_unknown_fields=True, kw_only=True):
    server: ServerConfig = msgspec.field(default_factory=ServerConfig)
    paths: PathsConfig = msgspec.field(default_factory=PathsConfig)
    packages: PackagesConfig = msgspec.field(default_factory=PackagesConfig)
    pool: PoolConfig = msgspec.field(default_factory=PoolConfig)
    queue: QueueConfig = msgspec.field(default_factory=QueueConfig)
    plugin_storage: PluginStorageConfig = msgspec.field(default_factory=PluginStorageConfig)
    auth: AuthConfig = msgspec.field(default_factory=AuthConfig)
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    logging: LoggingConfig = msgspec.field(default_factory=LoggingConfig)
    mcp: McpConfig = msgspec.field(default_factory=McpConfig)
    source: str = "<defaults>"

    @property
    def extensions_dir(self) -> Path:
        return self.paths.extensions_dir

    @property
    def venvs_dir(self) -> Path:
        return self.paths.venvs_dir

    @property
    def state_dir(self) -> Path:
        return self.paths.state_dir


def redact_url(url: str) -> str:
    """`redis://:secret@host` → `redis://:***@host` (query passwords too), for logs and reprs."""
    return redact(url)


_SECTIONS: Final[dict[str, type[_Section]]] = {
    f.name: f.type
    for f in msgspec.structs.fields(Config)
    if isinstance(f.type, type) and issubclass(f.type, _Section)
}


def _parse_env_value(field_type: Any, raw: str) -> Any:
    """An environment override: strings stay raw, anything else is read as JSON."""
    if field_type is str or field_type == Path or field_type == (Path | None):
        return raw
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw  # msgspec reports the type mismatch with the key's name


def _decode_path(type_: type, obj: Any) -> Any:
    if type_ is Path and isinstance(obj, str):
        return Path(obj)
    raise NotImplementedError(f"cannot decode {type_!r}")


def _env_overrides(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for section, struct_type in _SECTIONS.items():
        fields = {f.name: f.type for f in msgspec.structs.fields(struct_type)}
        for key, field_type in fields.items():
            name = f"{ENV_PREFIX}{section}_{key}".upper()
            if name in environ:
                data.setdefault(section, {})[key] = _parse_env_value(field_type, environ[name])
            if isinstance(field_type, type) and issubclass(field_type, _Section):
                # A sub-table's keys one by one, e.g. HIAGENT_PLUGIN_STORAGE_S3_SK.
                for sub in msgspec.structs.fields(field_type):
                    sub_name = f"{name}_{sub.name}".upper()
                    if sub_name in environ:
                        table = data.setdefault(section, {}).setdefault(key, {})
                        table[sub.name] = _parse_env_value(sub.type, environ[sub_name])


def _resolve_paths(config: Config, base: Path) -> Config:
    def resolve(p: Path) -> Path:
        return p if p.is_absolute() else (base / p).resolve()

    paths = PathsConfig(
        extensions_dir=resolve(config.paths.extensions_dir),
        venvs_dir=resolve(config.paths.venvs_dir),
        state_dir=resolve(config.paths.state_dir),
    )
    pkgs = msgspec.structs.replace(
        config.packages,
        allowed_file_roots=[resolve(p) for p in config.packages.allowed_file_roots],
        sdk_path=resolve(config.packages.sdk_path) if config.packages.sdk_path else None,
    )
    auth = msgspec.structs.replace(
        config.auth,
        api_keys_file=resolve(config.auth.api_keys_file) if config.auth.api_keys_file else None,
    )
    store = msgspec.structs.replace(
        config.store,
        ca_bundle=resolve(config.store.ca_bundle) if config.store.ca_bundle else None,
        secret_access_key_file=(
            resolve(config.store.secret_access_key_file)
            if config.store.secret_access_key_file
            else None
        ),
    )
    storage = config.plugin_storage
    if storage.local_path.base_dir is not None:
        local = LocalPathStorage(base_dir=resolve(storage.local_path.base_dir))
        storage = msgspec.structs.replace(storage, local_path=local)
    mcp = msgspec.structs.replace(
        config.mcp,
        config_file=resolve(config.mcp.config_file) if config.mcp.config_file else None,
    )
    return msgspec.structs.replace(
        config,
        paths=paths,
        packages=pkgs,
        auth=auth,
        mcp=mcp,
        store=store,
        plugin_storage=storage,
    )


def _check(config: Config) -> None:
    """What one key's range cannot say: constraints between keys."""
    problems = []
    if config.pool.call_timeout_s > config.pool.max_call_timeout_s:
        problems.append("pool.call_timeout_s: must not exceed pool.max_call_timeout_s")
    if config.store.backend == "s3" and not config.store.bucket:
        problems.append('store.bucket: must be set when store.backend = "s3"')
    if config.store.secret_access_key and config.store.secret_access_key_file:
        problems.append("store.secret_access_key_file: set it or secret_access_key, not both")
    try:
        check_redis_url(config.queue.redis_url)
    except RedisUrlError as exc:
        problems.append(f"queue.redis_url: {exc}")
    problems += _plugin_storage_problems(config)
    if problems:
        raise ConfigError(f"{config.source}: " + "; ".join(problems), data={"problems": problems})


def _plugin_storage_problems(config: Config) -> list[str]:
    storage, problems = config.plugin_storage, []
    if storage.object_store and not storage.s3.bucket:
        problems.append(f"plugin_storage.s3.bucket: required when backend is {storage.backend}")
    for key in ("endpoint", "public_endpoint"):
        value = getattr(storage.s3, key)
        if value and not value.startswith(("http://", "https://")):
            problems.append(f"plugin_storage.s3.{key}: must be an http:// or https:// URL")
    envs = {"pool.env": config.pool.env} | {
        f"pool.packages.{name}.env": policy.env for name, policy in config.pool.packages.items()
    }
    for where, env in envs.items():
        if PLUGIN_CONFIG_ENV not in env:
            continue
        try:
            value = json.loads(env[PLUGIN_CONFIG_ENV])
        except ValueError:
            value = None
        if not isinstance(value, dict):
            problems.append(f"{where}.{PLUGIN_CONFIG_ENV}: must be a JSON object")
        elif "storage" in value:
            problems.append(
                f"{where}.{PLUGIN_CONFIG_ENV}: plugin storage is set in [plugin_storage], "
                "not in the environment"
            )
    return problems


def _problems(data: dict[str, Any]) -> list[str]:
    """Every key msgspec refuses, each as msgspec words it ("… - at `$.pool.stream_window`").

    msgspec stops at the first problem; converting key by key reports them all at once.
    """
    problems: list[str] = []
    for name, value in data.items():
        section = _SECTIONS.get(name)
        if section is None or not isinstance(value, dict):
            problems += _convert_problem({name: value}, Config, "")
            continue
        for key, item in value.items():
            problems += _convert_problem({key: item}, section, f".{name}")
    return problems


def _convert_problem(data: dict[str, Any], type_: type, prefix: str) -> list[str]:
    try:
        msgspec.convert(data, type_, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        text = str(exc)
        if " - at `$" not in text:  # a problem with the object itself: name the section
            return [f"{text} - at `${prefix}`"] if prefix else [text]
        return [text.replace(" - at `$", f" - at `${prefix}", 1)]
    return []


def with_server(config: Config, **changes: Any) -> Config:
    """`config` with `[server]` keys changed (command-line options), each range-checked."""
    problems = [
        problem
        for key, value in changes.items()
        for problem in _convert_problem({key: value}, ServerConfig, ".server")
    ]
    if problems:
        raise ConfigError("; ".join(problems), data={"problems": problems})
    server = msgspec.structs.replace(config.server, **changes)
    return msgspec.structs.replace(config, server=server)


def default_data_dir() -> Path:
    """Where data goes when no runtime.toml is found."""
    return Path(platformdirs.user_data_dir(APP_NAME))


def find_config_file(explicit: str | os.PathLike[str] | None = None) -> Path | None:
    """The file the lookup order selects, or None for the built-in defaults."""
    if explicit:
        return Path(explicit)
    if env := os.environ.get(CONFIG_ENV):
        return Path(env)
    local = Path.cwd() / DEFAULT_FILE
    return local if local.is_file() else None


def load_config(
    path: str | os.PathLike[str] | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    use_lookup: bool = True,
) -> Config:
    """Load, override from the environment, validate and resolve the configuration."""
    environ = os.environ if environ is None else environ
    file = find_config_file(path) if use_lookup else (Path(path) if path else None)
    data: dict[str, Any] = {}
    if file is not None:
        try:
            data = tomllib.loads(file.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {file}") from exc
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
            raise ConfigError(f"{file}: cannot read: {exc}") from exc
        base = file.resolve().parent
        source = str(file)
    else:
        base = default_data_dir()
        source = "<defaults>"
    if "source" in data:
        raise ConfigError(f"{source}: unknown top-level key `source`")
    _env_overrides(data, environ)
    data["source"] = source
    try:
        config = msgspec.convert(data, Config, dec_hook=_decode_path)
    except msgspec.ValidationError as exc:
        problems = _problems(data) or [str(exc)]
        message = f"{source}: " + "; ".join(problems)
        raise ConfigError(message, data={"problems": problems}) from exc
    config = _resolve_paths(config, base)
    _check(config)
    return config


def config_secrets(config: Config) -> frozenset[str]:
    """The configured secrets the server's logs mask besides the API keys (the plugin
    storage's and the packages store's secret keys)."""
    found = (config.plugin_storage.s3.sk, config.store.secret_access_key)
    return frozenset(s for s in found if s)


def read_api_keys(config: Config) -> frozenset[str]:
    """Configured API keys: `auth.api_keys` plus one key per line of `auth.api_keys_file`."""
    keys = {k for k in config.auth.api_keys if k}
    if config.auth.api_keys_file is not None:
        try:
            text = config.auth.api_keys_file.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"auth.api_keys_file: cannot read: {exc}") from exc
        keys.update(
            line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
        )
    return frozenset(keys)
