"""Effective configuration: defaults, then hostwarden.toml, then HOSTWARDEN_* variables."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hostwarden.core.config import DEFAULT_TOML, load_settings, mask_database_url
from hostwarden.errors import ConfigError


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No HOSTWARDEN_* variable of the surrounding shell or test run leaks in."""
    for key in list(os.environ):
        if key.startswith("HOSTWARDEN_"):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def write_toml(home: Path, content: str) -> Path:
    path = home / "hostwarden.toml"
    path.write_text(content, encoding="utf-8")
    return path


def config_error(**kwargs: object) -> str:
    with pytest.raises(ConfigError) as caught:
        load_settings(**kwargs)  # type: ignore[arg-type]
    return str(caught.value)


# --- sources and their order -----------------------------------------------------------


def test_without_file_or_environment_the_defaults_apply(home: Path) -> None:
    settings = load_settings(home=home)

    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.database.url == ""
    assert settings.auth.lockout_threshold == 5
    assert settings.auth.password_min_length == 10
    assert settings.logging.level == "INFO"
    assert settings.logging.format == "json"
    assert settings.default_locale == "en"
    assert settings.scheduler.enabled is True
    assert settings.scheduler.job_runs_keep_days == 90
    assert settings.registry.four_eyes_verification is True


def test_the_default_data_directory_is_hostwarden_data_in_the_working_directory(
    tmp_path: Path,
) -> None:
    settings = load_settings()

    assert settings.home == Path("hostwarden-data")
    assert settings.database_url == f"sqlite:///{tmp_path / 'hostwarden-data' / 'hostwarden.db'}"


def test_hostwarden_home_in_the_environment_chooses_the_data_directory(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTWARDEN_HOME", str(home))

    settings = load_settings()

    assert settings.home == home
    assert settings.keys_dir == home / "keys"
    assert settings.database_url == f"sqlite:///{home.resolve() / 'hostwarden.db'}"


def test_values_in_the_toml_file_of_the_data_directory_apply(home: Path) -> None:
    write_toml(
        home,
        'default_locale = "zh-CN"\n[server]\nhost = "192.0.2.10"\nport = 9090\n'
        "[auth]\nlockout_threshold = 3\n",
    )

    settings = load_settings(home=home)

    assert settings.server.host == "192.0.2.10"
    assert settings.server.port == 9090
    assert settings.auth.lockout_threshold == 3
    assert settings.default_locale == "zh-CN"
    assert settings.auth.lockout_minutes == 15  # untouched keys keep their default


def test_the_generated_default_toml_loads_and_gives_the_defaults(home: Path) -> None:
    write_toml(home, DEFAULT_TOML)

    from_file = load_settings(home=home).model_dump(exclude={"home"})
    assert from_file == load_settings(home=home / "absent").model_dump(exclude={"home"})


def test_an_explicit_config_file_is_read_instead_of_the_data_directorys(
    home: Path, tmp_path: Path
) -> None:
    write_toml(home, "[server]\nport = 9090\n")
    other = tmp_path / "elsewhere.toml"
    other.write_text("[server]\nport = 7070\n", encoding="utf-8")

    assert load_settings(home=home, config_file=other).server.port == 7070


def test_hostwarden_config_in_the_environment_names_the_file(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = tmp_path / "elsewhere.toml"
    other.write_text("[server]\nport = 7171\n", encoding="utf-8")
    monkeypatch.setenv("HOSTWARDEN_CONFIG", str(other))

    assert load_settings(home=home).server.port == 7171


def test_environment_variables_override_the_toml_file_key_by_key(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_toml(home, '[server]\nhost = "192.0.2.10"\nport = 9090\n')
    monkeypatch.setenv("HOSTWARDEN_SERVER__PORT", "9191")
    monkeypatch.setenv("HOSTWARDEN_LOGGING__LEVEL", "WARNING")

    settings = load_settings(home=home)

    assert settings.server.port == 9191
    assert settings.server.host == "192.0.2.10"  # the file's other key in the section stays
    assert settings.logging.level == "WARNING"


def test_the_toml_file_is_only_read_for_the_call_that_names_it(home: Path, tmp_path: Path) -> None:
    write_toml(home, "[server]\nport = 9090\n")
    load_settings(home=home)

    assert load_settings(home=tmp_path / "empty").server.port == 8080


# --- wrong values stop start-up with a message naming the key --------------------------


def test_a_port_that_is_not_a_number_names_the_key_and_the_expected_form(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTWARDEN_SERVER__PORT", "abc")

    message = config_error(home=home)

    assert "server.port" in message
    assert "HOSTWARDEN_SERVER__PORT" in message
    assert "integer" in message
    assert "'abc'" in message


def test_a_port_out_of_range_in_the_toml_file_names_the_key_the_file_and_the_limit(
    home: Path,
) -> None:
    path = write_toml(home, "[server]\nport = 70000\n")

    message = config_error(home=home)

    assert "server.port" in message
    assert "65535" in message
    assert str(path) in message
    assert "[server] port" in message


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[server]\ncolour = 'blue'\n", "server.colour"),
        ("[servre]\nport = 1\n", "servre"),
        ("unknown_top = 1\n", "unknown_top"),
    ],
)
def test_an_unknown_key_is_named_as_unknown(home: Path, toml: str, key: str) -> None:
    write_toml(home, toml)

    message = config_error(home=home)

    assert f"config key '{key}' is unknown" in message


@pytest.mark.parametrize(
    ("env", "value", "key", "form"),
    [
        ("HOSTWARDEN_LOGGING__LEVEL", "LOUD", "logging.level", "'DEBUG', 'INFO'"),
        (
            "HOSTWARDEN_AUTH__LOCKOUT_THRESHOLD",
            "0",
            "auth.lockout_threshold",
            "greater than or equal to 1",
        ),
        ("HOSTWARDEN_SCHEDULER__ENABLED", "perhaps", "scheduler.enabled", "boolean"),
        (
            "HOSTWARDEN_SCHEDULER__JOB_RUNS_KEEP_DAYS",
            "0",
            "scheduler.job_runs_keep_days",
            "greater than or equal to 1",
        ),
        (
            "HOSTWARDEN_REGISTRY__FOUR_EYES_VERIFICATION",
            "perhaps",
            "registry.four_eyes_verification",
            "boolean",
        ),
        ("HOSTWARDEN_DEFAULT_LOCALE", "fr", "default_locale", "'en' or 'zh-CN'"),
    ],
)
def test_a_bad_value_names_the_key_and_what_is_expected(
    home: Path, monkeypatch: pytest.MonkeyPatch, env: str, value: str, key: str, form: str
) -> None:
    monkeypatch.setenv(env, value)

    message = config_error(home=home)

    assert f"config key '{key}'" in message
    assert form in message


def test_several_bad_values_are_all_named(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTWARDEN_SERVER__PORT", "abc")
    monkeypatch.setenv("HOSTWARDEN_AUTH__SESSION_HOURS", "0")

    message = config_error(home=home)

    assert "server.port" in message
    assert "auth.session_hours" in message


def test_bad_toml_syntax_names_the_file_and_the_line(home: Path) -> None:
    path = write_toml(home, "[server]\nport = 80\nhost = \n")

    message = config_error(home=home)

    assert "is not valid TOML" in message
    assert str(path) in message
    assert "line 3" in message


def test_a_missing_explicit_config_file_is_an_error(home: Path, tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"

    message = config_error(home=home, config_file=missing)

    assert f"config file {missing} does not exist" in message


def test_a_missing_config_file_named_in_the_environment_is_an_error(
    home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTWARDEN_CONFIG", str(tmp_path / "nope.toml"))

    assert "does not exist" in config_error(home=home)


def test_a_config_error_is_a_start_up_failure_with_a_hint(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTWARDEN_SERVER__PORT", "0")
    with pytest.raises(ConfigError) as caught:
        load_settings(home=home)

    assert caught.value.status == 500
    assert caught.value.code == "config-invalid"
    assert caught.value.hint


# --- secrets are never shown -------------------------------------------------------------


def test_public_view_masks_the_database_password(home: Path) -> None:
    write_toml(home, '[database]\nurl = "postgresql+psycopg://hw:s3cr3t-pw@db.example:5432/hw"\n')

    view = load_settings(home=home).public_view()

    assert "s3cr3t-pw" not in repr(view)
    assert view["database"]["url"] == "postgresql+psycopg://hw:***@db.example:5432/hw"


def test_public_view_shows_the_embedded_sqlite_path_and_the_resolved_home(home: Path) -> None:
    view = load_settings(home=home).public_view()

    assert view["home"] == str(home.resolve())
    assert view["database"]["url"] == f"sqlite:///{home.resolve() / 'hostwarden.db'}"
    assert view["server"] == {"host": "127.0.0.1", "port": 8080, "import_max_mb": 20}


def test_a_database_url_that_cannot_be_parsed_is_never_shown() -> None:
    assert mask_database_url("::not a url:: password=hunter2") == "***"


def test_a_bad_database_url_value_does_not_leak_a_password_in_the_error(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The URL is valid text, so the error comes from another key; the URL stays out of it.
    monkeypatch.setenv("HOSTWARDEN_DATABASE__URL", "postgresql://hw:s3cr3t-pw@db/hw")
    monkeypatch.setenv("HOSTWARDEN_DATABASE__ECHO", "loud")

    message = config_error(home=home)

    assert "database.echo" in message
    assert "s3cr3t-pw" not in message
