"""`hostwarden reports …` and `hostwarden cases …` as an operator runs them."""

from __future__ import annotations

import json
import mailbox
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostwarden.cli import common
from hostwarden.cli.main import app
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime
from tests.cases.support import build, mail

runner = CliRunner()

SPAM = (
    "Spam from 203.0.113.10 received 2026-05-01 10:00:00 +0800. Received: from vm1 [203.0.113.10]"
)
SCAN = "Port scan from 203.0.113.10 at 2026-05-02 11:00:00 +0800 against our network."


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ready(
    env_for_home: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    monkeypatch.setattr(common.out, "width", 200)
    code, out, _ = hw("init")
    assert code == 0, out
    runtime = Runtime.open(settings)
    build(runtime)
    yield runtime
    runtime.close()


def test_reports_parse_prints_the_parser_and_events_and_stores_nothing(
    ready: Runtime, tmp_path: Path
) -> None:
    report = tmp_path / "r.eml"
    report.write_bytes(mail(SPAM))
    code, out, _ = hw("reports", "parse", str(report), "--json")
    assert code == 0, out
    data = json.loads(out)
    assert data["parser"] == "generic"
    assert data["events"][0]["ip"] == "203.0.113.10"
    assert data["events"][0]["occurred_at"].startswith("2026-05-01T02:00:00")
    code, out, _ = hw("cases", "list", "--json")
    assert json.loads(out)["total"] == 0


def test_reports_import_reads_eml_mbox_and_directories_and_says_what_it_skipped(
    ready: Runtime, tmp_path: Path
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "one.eml").write_bytes(mail(SPAM))
    box = mailbox.mbox(folder / "archive.mbox")
    box.add(mail(SCAN, subject="scan"))
    box.add(mail(SPAM))  # the same report again: dropped as a duplicate
    box.flush()
    box.close()
    (folder / "empty.eml").write_bytes(b"")
    code, out, err = hw("reports", "import", str(folder), "--json")
    assert code == 0
    data = json.loads(out)
    assert data["reports"] == 3 and data["cases_opened"] == 2 and data["duplicates"] == 1
    assert data["failed"] == 1 and "empty" in data["failures"][0]["error"]
    code, out, err = hw("reports", "import", str(tmp_path / "missing"))
    assert code == 1 and "does not exist" in err


def test_cases_are_worked_from_the_shell(ready: Runtime, tmp_path: Path) -> None:
    report = tmp_path / "r.eml"
    report.write_bytes(mail(SPAM))
    hw("reports", "import", str(report))
    code, out, _ = hw("cases", "list", "--json")
    reference = json.loads(out)["items"][0]["reference"]
    code, out, _ = hw("cases", "note", reference, "called the customer")
    assert code == 0
    code, out, _ = hw("cases", "notify", reference, "--locale", "en")
    assert code == 0 and "alice@example.com" in out
    code, out, err = hw("cases", "state", reference, "terminated", "--reason", "x")
    assert code == 1 and "cannot become terminated" in err
    code, out, _ = hw("cases", "state", reference, "resolved", "--reason", "fixed")
    assert code == 0 and "resolved" in out
    code, out, _ = hw("cases", "show", reference, "--json")
    kinds = [t["kind"] for t in json.loads(out)["timeline"]]
    assert {"event", "note", "to-customer", "state"} <= set(kinds)
    code, out, _ = hw("mail", "list", "--json")
    assert any(m["recipient"] == "alice@example.com" for m in json.loads(out))
    code, out, _ = hw("cases", "sla", "--json")
    assert json.loads(out)[0]["mitigation_count"] == 1


def test_allowlist_and_playbook_commands(ready: Runtime) -> None:
    code, out, _ = hw(
        "cases",
        "allowlist",
        "add",
        "address",
        "203.0.113.0/28",
        "--mode",
        "record",
        "--reason",
        "our scanner",
    )
    assert code == 0
    code, out, _ = hw("cases", "allowlist", "list", "--json")
    entry = json.loads(out)[0]
    assert entry["value"] == "203.0.113.0/28" and entry["mode"] == "record"
    code, out, err = hw("cases", "allowlist", "remove", str(entry["id"]))
    assert code == 1 and "reason" in err
    code, out, _ = hw("cases", "allowlist", "remove", str(entry["id"]), "--reason", "retired")
    assert code == 0
    code, out, _ = hw(
        "cases",
        "playbook",
        "set",
        "spam",
        "--deadline-hours",
        "8",
        "--escalate-after",
        "4",
        "--action",
        "suspend",
        "--reason",
        "wave",
    )
    assert code == 0
    code, out, _ = hw("cases", "playbook", "list", "--json")
    spam = next(r for r in json.loads(out) if r["category"] == "spam")
    assert spam["deadline_hours"] == 8 and spam["escalation_action"] == "suspend"
    code, out, err = hw(
        "cases", "playbook", "set", "weather", "--deadline-hours", "8", "--escalate-after", "4"
    )
    assert code == 1 and "not a category" in err
