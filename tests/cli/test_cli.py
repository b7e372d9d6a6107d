"""The `hostwarden` command as an operator uses it: init, users, tokens, audit, config."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.config import Settings

runner = CliRunner()


def hw(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def hw_process(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """The real entry point in a child process, as a shell runs it."""
    return subprocess.run(
        [sys.executable, "-m", "hostwarden", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


@pytest.fixture
def ready(env_for_home: dict[str, str]) -> dict[str, str]:
    code, out, _ = hw("init")
    assert code == 0, out
    return env_for_home


def test_init_creates_key_and_admin_and_shows_the_password_only_once(
    env_for_home: dict[str, str], settings: Settings
) -> None:
    code, out, _ = hw("init")
    assert code == 0
    assert "First administrator: admin" in out and "password:" in out
    key = settings.keys_dir / "signing-ed25519.pem"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    code, out, _ = hw("init")
    assert code == 0
    assert "already initialised" in out and "password" not in out


def test_user_lifecycle_from_the_command_line(ready: dict[str, str]) -> None:
    code, out, _ = hw(
        "user",
        "add",
        "li.lei",
        "--role",
        "abuse",
        "--role",
        "noc",
        "--email",
        "li.lei@example.cn",
        "--reason",
        "new hire",
    )
    assert code == 0 and "Password (shown once)" in out
    code, out, _ = hw("user", "list", "--json")
    users = {u["username"]: u for u in json.loads(out)}
    assert users["li.lei"]["roles"] == ["abuse", "noc"]
    assert users["li.lei"]["email"] == "l***@example.cn", "lists mask e-mail addresses"
    code, _, _ = hw("user", "passwd", "li.lei", "--password-stdin", input="another-long-pw\n")
    assert code == 0
    code, _, _ = hw("user", "disable", "li.lei", "--reason", "left the company")
    assert code == 0
    code, out, _ = hw("user", "list", "--json")
    assert {u["username"]: u for u in json.loads(out)}["li.lei"]["is_active"] is False
    code, out, _ = hw("audit", "export")
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert actions[-3:] == ["user.create", "user.password_set", "user.disable"]


def test_a_bad_role_is_refused_with_one_line_and_nothing_is_stored(ready: dict[str, str]) -> None:
    proc = hw_process(ready, "user", "add", "zhao", "--role", "boss")
    assert proc.returncode == 1
    assert "'boss' is not a role" in proc.stderr
    assert "Traceback" not in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    _, out, _ = hw("user", "list", "--json")
    assert "zhao" not in out


def test_tokens_are_created_listed_and_revoked(ready: dict[str, str]) -> None:
    hw("user", "add", "billing-bot", "--role", "sales")
    code, out, _ = hw("token", "create", "--user", "billing-bot", "--name", "billing", "--json")
    assert code == 0
    created = json.loads(out)
    assert created["token"].startswith("hw_") and created["roles"] == ["sales"]
    code, out, _ = hw("token", "list", "--json")
    listed = json.loads(out)
    assert listed[0]["prefix"] == created["prefix"] and "token" not in listed[0]
    code, out, _ = hw("token", "revoke", str(created["id"]), "--reason", "rotated")
    assert code == 0
    code, out, _ = hw("token", "list", "--json")
    assert json.loads(out)[0]["revoked_at"] is not None


def test_a_token_cannot_carry_a_role_its_owner_lacks(ready: dict[str, str]) -> None:
    hw("user", "add", "ops", "--role", "noc")
    code, _, err = hw("token", "create", "--user", "ops", "--name", "x", "--role", "admin")
    assert code == 1 and "does not hold role(s) admin" in err


def test_audit_verify_passes_then_names_the_tampered_entry(
    ready: dict[str, str], settings: Settings
) -> None:
    hw("user", "add", "a1", "--role", "legal")
    hw("user", "add", "a2", "--role", "legal")
    code, out, _ = hw("audit", "verify")
    assert code == 0 and "intact" in out
    from hostwarden.core.db import Database

    db = Database(settings.database_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET reason = 'edited' WHERE seq = 2"))
    db.dispose()
    proc = hw_process(ready, "audit", "verify")
    assert proc.returncode == 1
    assert "entry #2" in proc.stderr and "altered" in proc.stderr


def test_audit_export_writes_json_lines_for_the_asked_range(
    ready: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "audit.jsonl"
    code, _, err = hw(
        "audit", "export", "--from", "2000-01-01", "--to", "2999-01-01", "--output", str(target)
    )
    assert code == 0 and "entries written" in err
    lines = [json.loads(line) for line in target.read_text().splitlines()]
    assert lines and {"seq", "entry_hash", "prev_hash", "actor"} <= set(lines[0])
    code, out, _ = hw("audit", "export", "--from", "2999-01-01")
    assert code == 0 and out == ""
    code, _, err = hw("audit", "export", "--from", "yesterday")
    assert code == 1 and "ISO 8601" in err


def test_config_show_masks_the_database_password(
    ready: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTWARDEN_DATABASE__URL", "postgresql+psycopg://hw:s3cret@db/hw")
    code, out, _ = hw("config", "show", "--json")
    assert code == 0
    shown = json.loads(out)
    assert "s3cret" not in out and shown["database"]["url"] == "postgresql+psycopg://hw:***@db/hw"


def test_a_bad_config_value_stops_with_the_key_named(ready: dict[str, str]) -> None:
    proc = hw_process({**ready, "HOSTWARDEN_SERVER__PORT": "eighty"}, "config", "show")
    assert proc.returncode == 1
    assert "server.port" in proc.stderr and "HOSTWARDEN_SERVER__PORT" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_serve_refuses_a_data_directory_that_was_never_initialised(
    env_for_home: dict[str, str],
) -> None:
    proc = hw_process(env_for_home, "serve", "--port", "1")
    assert proc.returncode == 1 and "hostwarden init" in proc.stderr


def test_db_upgrade_is_idempotent(ready: dict[str, str]) -> None:
    code, out, _ = hw("db", "upgrade")
    assert code == 0 and "already at" in out
    code, out, _ = hw("db", "status")
    assert code == 0


def test_usage_mistakes_get_typers_usage_message(ready: dict[str, str]) -> None:
    proc = hw_process(ready, "user", "add", "bob")
    assert proc.returncode == 2
    assert "Missing option '--role'" in proc.stderr or "Missing parameter" in proc.stderr
    assert "unexpected failure" not in proc.stderr


def test_an_unexpected_failure_is_one_line_with_the_way_to_the_traceback(
    ready: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hostwarden.core import auth

    def broken(_session: object) -> list[object]:
        raise KeyError("boom")

    monkeypatch.setattr(auth, "list_users", broken)
    code, _, err = hw("user", "list")
    assert code == 2
    assert "unexpected failure: KeyError" in err
    assert "HOSTWARDEN_DEBUG=1" in err
