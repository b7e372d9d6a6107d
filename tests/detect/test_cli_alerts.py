"""`hostwarden detect alerts …` and `hostwarden detect suppress …` as an operator runs them."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from hostwarden.cli import common
from hostwarden.cli.main import app
from hostwarden.core.config import Settings
from hostwarden.core.runtime import Runtime
from hostwarden.detect.alerts import AlertSink
from tests.detect.alert_support import MINUTE, T0, audit_of, finding, make_holders, stored

runner = CliRunner()


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ready(
    env_for_home: dict[str, str], settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Runtime]:
    # A wide terminal, so that table cells are not cut (CliRunner has no terminal).
    monkeypatch.setattr(common.out, "width", 200)
    code, out, _ = hw("init")
    assert code == 0, out
    runtime = Runtime.open(settings)
    holders = make_holders(runtime)
    AlertSink(runtime).take(
        [
            finding(customer_id=holders.acme),
            finding(
                ip="203.0.113.200",
                category="spam",
                kind="smtp",
                severity="high",
                start_ms=T0 + 60 * MINUTE,
                summary="203.0.113.200 sent mail to 350 servers in 5 minutes",
            ),
        ]
    )
    yield runtime
    runtime.close()


def test_alerts_list_shows_a_table_and_filters(ready: Runtime) -> None:
    code, out, _ = hw("detect", "alerts", "list")
    assert code == 0, out
    assert "Alerts (2 of 2)" in out
    assert "spam/smtp" in out and "scan/horizontal" in out
    code, out, _ = hw("detect", "alerts", "list", "--category", "spam", "--json")
    assert code == 0
    page = json.loads(out)
    assert page["total"] == 1
    assert page["items"][0]["summary"] == "203.0.113.200 sent mail to 350 servers in 5 minutes"
    code, out, _ = hw("detect", "alerts", "list", "--ip", "203.0.113.0/29", "--json")
    assert [a["id"] for a in json.loads(out)["items"]] == [1]


def test_alerts_show_prints_the_alert_and_its_evidence_query(ready: Runtime) -> None:
    code, out, _ = hw("detect", "alerts", "show", "1")
    assert code == 0, out
    assert "Alert 1: 203.0.113.5 probed port 22" in out
    assert "/api/v1/flows/records?from=2026-05-04T11%3A55%3A00.000000Z" in out
    code, out, _ = hw("detect", "alerts", "show", "1", "--json")
    assert json.loads(out)["evidence"]["ip"] == "203.0.113.5"


def test_feedback_and_close_from_the_shell_are_audited_as_the_operator(ready: Runtime) -> None:
    code, out, _ = hw(
        "detect", "alerts", "feedback", "2", "false-positive", "--reason", "newsletter opt-in"
    )
    assert (code, out.strip()) == (0, "Alert 2 marked false-positive.")
    code, out, _ = hw("detect", "alerts", "close", "2", "--reason", "newsletter opt-in")
    assert (code, out.strip()) == (0, "Alert 2 closed.")
    actions = [(e.action, e.actor.startswith("cli:")) for e in audit_of(ready, "alert.")][-2:]
    assert actions == [("alert.feedback", True), ("alert.close", True)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["alerts", "show", "99"], "no alert with id 99."),
        (["alerts", "close", "1"], "closing an alert needs a reason."),
        (["alerts", "feedback", "1", "maybe"], "'maybe' is not a verdict."),
        (["alerts", "list", "--severity", "urgent"], "'urgent' is not a severity."),
        (["suppress", "add", "203.0.113.0/24"], "a suppression needs a reason."),
        (
            ["suppress", "add", "203.0.113.7/24", "--reason", "x"],
            "'203.0.113.7/24' has host bits set.",
        ),
        (
            ["suppress", "add", "203.0.113.0/24", "--reason", "x", "--category", "phishing"],
            "'phishing' is not a detection category.",
        ),
        (["suppress", "remove", "5", "--reason", "x"], "no suppression with id 5."),
    ],
)
def test_mistakes_are_one_line_on_stderr_and_exit_1_storing_nothing(
    ready: Runtime, args: list[str], message: str
) -> None:
    before = stored(ready)
    code, _, err = hw("detect", *args)
    assert code == 1
    assert err.startswith("error: ") and message in err
    assert "Traceback" not in err
    assert stored(ready) == before
    assert [e.action for e in audit_of(ready, "alert.")] == ["alert.create", "alert.create"]


def test_suppress_add_list_remove(ready: Runtime) -> None:
    code, out, _ = hw(
        "detect",
        "suppress",
        "add",
        "198.51.100.0/24",
        "--category",
        "scan",
        "--expires",
        "2d",
        "--reason",
        "red team exercise",
    )
    assert code == 0, out
    assert out.startswith("Suppression 1 of 198.51.100.0/24 added, until 20")
    code, out, _ = hw("detect", "suppress", "list", "--json")
    (rule,) = json.loads(out)
    assert (rule["category"], rule["active"], rule["reason"]) == ("scan", True, "red team exercise")
    code, out, _ = hw("detect", "suppress", "list")
    assert "198.51.100.0/24" in out and "red team exercise" in out
    code, out, _ = hw("detect", "suppress", "remove", "1", "--reason", "exercise over")
    assert (code, out.strip()) == (0, "Suppression 1 removed.")
    code, out, _ = hw("detect", "suppress", "list", "--json")
    assert json.loads(out) == []
    code, out, _ = hw("detect", "suppress", "list", "--all", "--json")
    assert json.loads(out)[0]["remove_reason"] == "exercise over"
    assert [e.action for e in audit_of(ready, "suppression.")] == [
        "suppression.add",
        "suppression.remove",
    ]


def test_deliver_with_nothing_configured_sends_nothing(ready: Runtime) -> None:
    code, out, _ = hw("detect", "deliver", "--json")
    assert code == 0
    assert json.loads(out) == {"delivered": 0, "retrying": 0, "failed": 0, "errors": []}
