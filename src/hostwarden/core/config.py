"""Effective configuration: defaults, then ``hostwarden.toml``, then HOSTWARDEN_* variables."""

from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from hostwarden.core.config_cases import CasesSettings, MailSettings
from hostwarden.core.config_detect import DetectSettings
from hostwarden.errors import ConfigError

CONFIG_FILE_NAME = "hostwarden.toml"
DEFAULT_HOME = Path("hostwarden-data")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServerSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    #: Largest file the bulk-import API takes as a request body; the CLI has no limit.
    import_max_mb: int = Field(20, ge=1, le=1024)


class DatabaseSettings(_Section):
    #: SQLAlchemy URL; empty means the embedded SQLite file in the data directory.
    url: str = ""
    echo: bool = False


class AuthSettings(_Section):
    lockout_threshold: int = Field(5, ge=1, le=100)
    lockout_minutes: int = Field(15, ge=1, le=24 * 60)
    session_hours: int = Field(12, ge=1, le=24 * 30)
    cookie_secure: bool = False
    password_min_length: int = Field(10, ge=8, le=128)
    token_max_days: int = Field(365, ge=1, le=3650)


class LoggingSettings(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "console"] = "json"


class SchedulerSettings(_Section):
    enabled: bool = True
    heartbeat_seconds: float = Field(60.0, gt=0, le=3600)
    leader_retry_seconds: float = Field(5.0, gt=0, le=600)
    #: Job runs older than this are deleted daily; each job's last run is always kept.
    job_runs_keep_days: int = Field(90, ge=1, le=3650)


class RegistrySettings(_Section):
    #: Identity verification needs a second person: whoever requested it or created the
    #: customer may not approve it.
    four_eyes_verification: bool = True


#: Least retention of flow and log records under the CN profile: the Cybersecurity Law
#: (网络安全法, art. 21) asks network operators to keep network logs at least six months.
CN_MIN_RETENTION_DAYS = 180


#: Named groups of ``[flows] nat_regex``: the private (inside) address, the public
#: (outside) address and the first port of its block are required; the last port
#: (default: the first), the event (alloc/release words), the protocol and the time
#: (default: the syslog header's) are optional.
NAT_REGEX_REQUIRED = ("inside", "outside", "port_first")
NAT_REGEX_GROUPS = (*NAT_REGEX_REQUIRED, "port_last", "event", "proto", "time")


class FlowListener(_Section):
    protocol: Literal["netflow", "ipfix", "sflow"]
    host: str = "::"
    port: int = Field(ge=1, le=65535)


def _default_listeners() -> list[FlowListener]:
    return [
        FlowListener(protocol="netflow", port=2055),
        FlowListener(protocol="ipfix", port=4739),
        FlowListener(protocol="sflow", port=6343),
    ]


class FlowSettings(_Section):
    #: "cn": the Chinese legal profile (retention at least 180 days). Any other profile
    #: must be chosen explicitly, e.g. "eu" or "none", to allow a shorter retention.
    profile: Literal["cn", "eu", "us", "none"] = "cn"
    retention_days: int = Field(CN_MIN_RETENTION_DAYS, ge=1, le=3650 * 3)
    #: Where the flow store keeps its files; relative to the data directory.
    store_dir: Path = Path("flows")
    #: "parquet": embedded Parquet + DuckDB; "clickhouse": the scale-out backend.
    store: Literal["parquet", "clickhouse"] = "parquet"
    clickhouse_url: str = ""
    #: A segment is sealed after this many records or this many seconds, whichever first.
    segment_records: int = Field(1_000_000, ge=1_000, le=100_000_000)
    segment_seconds: float = Field(60.0, gt=0, le=3600)
    #: Parquet store: rewrite each finished UTC day as one segment plus a companion file
    #: sorted by the remote address, once this many hours have passed since the day's end
    #: (late records of a day arrive for a while; each compaction of a day rewrites it).
    compact: bool = True
    compact_after_hours: int = Field(26, ge=1, le=24 * 30)
    #: Collector: UDP listeners, worker processes (SO_REUSEPORT), batch size and time.
    listeners: list[FlowListener] = Field(default_factory=_default_listeners)
    workers: int = Field(1, ge=1, le=64)
    batch_records: int = Field(50_000, ge=1, le=10_000_000)
    batch_seconds: float = Field(2.0, gt=0, le=600)
    #: Data arriving before its template is kept this long (and at most this many bytes
    #: per exporter) waiting for the template.
    template_wait_seconds: float = Field(60.0, ge=0, le=3600)
    template_wait_bytes: int = Field(4 * 1024 * 1024, ge=0, le=1024 * 1024 * 1024)
    #: A NAT port-block log line of another vendor, as a Python regular expression with
    #: named groups (see ``NAT_REGEX_GROUPS``); tried before the built-in Junos format.
    nat_regex: str = ""

    @field_validator("nat_regex")
    @classmethod
    def _nat_regex_has_groups(cls, value: str) -> str:
        if not value:
            return value
        try:
            groups = set(re.compile(value).groupindex)
        except re.error as exc:
            raise ValueError(f"nat_regex is not a regular expression: {exc}") from None
        missing = [g for g in NAT_REGEX_REQUIRED if g not in groups]
        unknown = sorted(groups - set(NAT_REGEX_GROUPS))
        if missing:
            raise ValueError(
                f"nat_regex lacks the named group(s) {', '.join(missing)}; it needs "
                f"(?P<inside>…), (?P<outside>…) and (?P<port_first>…), and may have "
                f"{', '.join(g for g in NAT_REGEX_GROUPS if g not in NAT_REGEX_REQUIRED)}"
            )
        if unknown:
            raise ValueError(
                f"nat_regex has named group(s) hostwarden does not read: {', '.join(unknown)}; "
                f"use only {', '.join(NAT_REGEX_GROUPS)}, or make the others unnamed (?:…)"
            )
        return value

    @model_validator(mode="after")
    def _retention_meets_profile(self) -> FlowSettings:
        if self.profile == "cn" and self.retention_days < CN_MIN_RETENTION_DAYS:
            raise ValueError(
                f"retention_days {self.retention_days} is below the {CN_MIN_RETENTION_DAYS} "
                "days the cn profile requires (网络安全法 art. 21); set [flows] profile to "
                "another jurisdiction explicitly to keep records for less"
            )
        return self


class Settings(BaseSettings):
    """Everything hostwarden reads at start-up; see docs/configuration.md."""

    model_config = SettingsConfigDict(
        env_prefix="HOSTWARDEN_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    home: Path = DEFAULT_HOME
    default_locale: Literal["en", "zh-CN"] = "en"
    server: ServerSettings = ServerSettings()
    database: DatabaseSettings = DatabaseSettings()
    auth: AuthSettings = AuthSettings()
    logging: LoggingSettings = LoggingSettings()
    scheduler: SchedulerSettings = SchedulerSettings()
    registry: RegistrySettings = RegistrySettings()
    flows: FlowSettings = FlowSettings()
    detect: DetectSettings = DetectSettings()
    cases: CasesSettings = CasesSettings()
    mail: MailSettings = MailSettings()

    #: The TOML file this class reads; load_settings makes a subclass per file.
    _toml_file: ClassVar[Path | None] = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        if cls._toml_file is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cls._toml_file))
        return tuple(sources)

    @property
    def database_url(self) -> str:
        if self.database.url:
            return self.database.url
        return f"sqlite:///{(self.home / 'hostwarden.db').resolve()}"

    @property
    def keys_dir(self) -> Path:
        return self.home / "keys"

    def public_view(self) -> dict[str, Any]:
        """The effective configuration with secrets masked, for ``config show``."""
        data = self.model_dump(mode="json")
        data["home"] = str(self.home.resolve())
        data["database"]["url"] = mask_database_url(self.database_url)
        return data


def mask_database_url(url: str) -> str:
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # a URL SQLAlchemy cannot parse is still never shown in full
        return "***"


def _describe(error: Any, toml_path: Path | None) -> str:
    loc = [str(part) for part in error["loc"]]
    key = ".".join(loc)
    env_name = "HOSTWARDEN_" + "__".join(part.upper() for part in loc)
    where = f"env {env_name}"
    if toml_path is not None:
        section = f"[{'.'.join(loc[:-1])}] " if len(loc) > 1 else ""
        where += f" or {section}{loc[-1]} in {toml_path}"
    if error["type"] == "extra_forbidden":
        return f"config key '{key}' is unknown ({where}); remove it or check its spelling."
    got = error.get("input")
    return f"config key '{key}' ({where}): {error['msg']}; got {got!r}."


def load_settings(
    home: Path | None = None,
    config_file: Path | None = None,
    **overrides: Any,
) -> Settings:
    """Build the settings; a wrong value raises ConfigError naming the key and its form.

    The data directory comes from ``home``, else HOSTWARDEN_HOME, else ./hostwarden-data.
    The TOML file is ``config_file``, else HOSTWARDEN_CONFIG, else hostwarden.toml in the
    data directory when it exists.
    """
    home_path = home or Path(os.environ.get("HOSTWARDEN_HOME") or DEFAULT_HOME)
    env_config = os.environ.get("HOSTWARDEN_CONFIG")
    toml_path = config_file or (Path(env_config) if env_config else home_path / CONFIG_FILE_NAME)
    if (config_file is not None or env_config) and not toml_path.is_file():
        raise ConfigError(
            f"config file {toml_path} does not exist.",
            hint="Give the path of an existing hostwarden.toml or leave it unset.",
        )
    toml_used: Path | None = None
    if toml_path.is_file():
        try:
            tomllib.loads(toml_path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"config file {toml_path} is not valid TOML: {exc}.",
                hint="Fix the line named; see docs/configuration.md for the format.",
            ) from exc
        toml_used = toml_path
    settings_class: type[Settings] = type("FileSettings", (Settings,), {"_toml_file": toml_used})
    try:
        return settings_class(home=home_path, **overrides)
    except ValidationError as exc:
        lines = [_describe(err, toml_used) for err in exc.errors()]
        raise ConfigError(
            lines[0] if len(lines) == 1 else "; ".join(lines),
            hint="Start-up stopped; correct the value and start again.",
        ) from exc


DEFAULT_TOML = """\
# hostwarden configuration. Every key can also be set as an environment variable:
# HOSTWARDEN_<SECTION>__<KEY>, e.g. HOSTWARDEN_SERVER__PORT=9090.
# See docs/configuration.md for every key and its default.

# default_locale = "en"          # or "zh-CN"

[server]
# host = "127.0.0.1"
# port = 8080
# import_max_mb = 20             # largest file POST /api/v1/registry/import/… accepts

[database]
# Empty: the embedded SQLite file in this directory. For PostgreSQL:
# url = "postgresql+psycopg://hostwarden@db.example/hostwarden"

[auth]
# lockout_threshold = 5          # failed logins before the account locks
# lockout_minutes = 15
# session_hours = 12
# cookie_secure = false          # set true behind HTTPS

[logging]
# level = "INFO"
# format = "json"

[scheduler]
# enabled = true
# heartbeat_seconds = 60
# job_runs_keep_days = 90        # older job runs are deleted daily; each job's last is kept

[registry]
# four_eyes_verification = true  # who requested a verification may not approve it

[flows]
# profile = "cn"                 # cn: records kept >= 180 days (网络安全法 art. 21)
# retention_days = 180
# store = "parquet"              # or "clickhouse" (then clickhouse_url)
# compact = true                 # parquet: one segment + remote-ordered companion per day
# compact_after_hours = 26       # ... this long after the UTC day ended
# workers = 1                    # collector processes sharing the UDP ports
# Collector listeners (defaults: NetFlow 2055, IPFIX 4739, sFlow 6343 on "::"):
# [[flows.listeners]]
# protocol = "netflow"
# port = 2055

[detect]
# enabled = true                 # judge the collectors' batches live (docs/detect.md)
# cooldown_minutes = 30          # same address + category within this: the alert is updated
# webhook_urls = ["https://soc.example.net/hooks/hostwarden"]
# webhook_secret = ""            # required with webhook_urls (or HOSTWARDEN_DETECT__WEBHOOK_SECRET)
# syslog_host = ""               # RFC 5424 alerts to this host (syslog_port = 514, udp or tcp)
# [detect.scan]
# hosts = 25                     # Zeek's defaults: 25 hosts or 15 ports in 5 minutes
# ports = 15
# [detect.mining]
# feeds = ["feeds/mining-pools.txt"]
# [[detect.threatintel.lists]]
# source = "feeds/firehol_level1.netset"
# format = "netset"              # plain, netset or csv
# category = "malware"
"""
