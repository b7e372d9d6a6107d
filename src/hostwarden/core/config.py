"""Effective configuration: defaults, then ``hostwarden.toml``, then HOSTWARDEN_* variables."""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

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
"""
