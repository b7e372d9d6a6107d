"""`hostwarden registry check-id` and `hostwarden customer …` as an operator scripts them."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.config import Settings
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.registry.models import Customer, IdentityDocument
from tests.registry.customer_fixtures import PHONE, PHONE_DIGITS, RESIDENT_ID, count

runner = CliRunner()


def hw(*args: str, input: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args), input=input)
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def ready(env_for_home: dict[str, str], settings: Settings) -> Iterator[Runtime]:
    code, out, _ = hw("init")
    assert code == 0, out
    runtime = Runtime.open(settings)
    yield runtime
    runtime.close()


@pytest.mark.parametrize(
    ("args", "code", "expected"),
    [
        (["resident-id", "11010519491231002X"], 0, "valid: resident identity card"),
        (["resident-id", "110105194912310021"], 1, "invalid (check-character)"),
        (["uscc", "91350100M000100Y43"], 0, "valid: unified social credit code"),
        (["uscc", "91350100M000100Y4A"], 1, "invalid (check-character)"),
        (["passport", "E12345678"], 0, "valid: Chinese ordinary passport"),
        (["passport", "E12"], 1, "invalid (length)"),
        (["other", "SB-1"], 1, "invalid (type-name)"),
    ],
)
def test_check_id_exits_zero_when_valid_and_one_naming_the_failed_rule(
    args: list[str], code: int, expected: str
) -> None:
    exit_code, out, _ = hw("registry", "check-id", *args)
    assert exit_code == code
    assert expected in out


def test_check_id_reads_the_number_from_stdin_and_prints_json() -> None:
    code, out, _ = hw("registry", "check-id", "uscc", "-", "--json", input="91350100M000100Y4A\n")
    assert code == 1
    assert json.loads(out) == {
        "type": "uscc",
        "ok": False,
        "rule": "check-character",
        "message": "the check character is A but the first 17 characters give 3.",
    }


def test_check_id_names_the_known_types_for_an_unknown_one() -> None:
    code, _, err = hw("registry", "check-id", "library-card", "123")
    assert code == 1
    assert "resident-id" in err and "uscc" in err


def test_an_operator_admits_documents_verifies_and_reveals_a_customer(
    ready: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LOGNAME", "wang")  # the shell account the trail names: cli:wang
    code, out, err = hw(
        "customer", "add", "Zhang Wei", "--phone", PHONE, "--email", "zw@example.cn"
    )
    assert code == 0, err
    assert "Customer 1 (Zhang Wei) created" in out
    code, out, err = hw(
        "customer", "document-add", "1", "resident-id", "-", input=RESIDENT_ID + "\n"
    )
    assert code == 0, err
    assert "110105********002X" in out
    code, out, _ = hw("customer", "list", "--json")
    listed = json.loads(out)
    assert [(c["id"], c["phone"], c["email"]) for c in listed] == [
        (1, "138****5678", "z***@example.cn")
    ]
    code, out, _ = hw("customer", "show", "1")
    assert RESIDENT_ID not in out and PHONE_DIGITS not in out
    code, out, err = hw("customer", "verify", "1")
    assert code == 0, err
    assert "Verification request 1 via manual is pending" in out
    code, out, _ = hw("customer", "queue", "--json")
    assert [r["id"] for r in json.loads(out)] == [1]
    code, _, err = hw("customer", "approve", "1", "--reason", "seen in person")
    assert code == 1
    assert "you (cli:wang) requested this verification and created customer 1" in err
    assert "Another reviewer must approve" in err
    monkeypatch.setenv("LOGNAME", "li")  # a second operator
    code, out, err = hw("customer", "approve", "1", "--reason", "seen in person")
    assert code == 0, err
    assert "customer 1 is verified" in out
    code, _, err = hw("customer", "reveal", "1", "--json")
    assert code != 0 and "--reason" in err
    code, out, _ = hw("customer", "reveal", "1", "--reason", "case 118", "--json")
    assert json.loads(out)["documents"][0]["number"] == RESIDENT_ID
    assert json.loads(out)["phone"] == PHONE_DIGITS
    code, out, _ = hw("customer", "search", "--phone", "13812345678", "--json")
    assert [c["id"] for c in json.loads(out)] == [1]
    code, out, _ = hw("audit", "export")
    actions = [json.loads(line)["action"] for line in out.splitlines()]
    assert actions[-1] == "customer.pii_view"


def test_bad_input_at_the_cli_is_one_line_and_stores_nothing(ready: Runtime) -> None:
    assert hw("customer", "add", "Li Na")[0] == 0
    before = (count(ready, Customer), count(ready, IdentityDocument), count(ready, AuditEntry))
    code, _, err = hw("customer", "add", "Robot", "--kind", "robot")
    assert code == 1 and "not a customer kind" in err
    code, _, err = hw("customer", "document-add", "1", "uscc", "91350100M000100Y4A")
    assert code == 1 and "'check-character' rule" in err
    assert "Traceback" not in err
    code, _, err = hw("customer", "set-status", "1", "active", "--reason", " ")
    assert code == 1 and "needs a reason" in err
    code, _, err = hw("customer", "verify", "1")
    assert code == 1 and "no identity document" in err
    assert (
        count(ready, Customer),
        count(ready, IdentityDocument),
        count(ready, AuditEntry),
    ) == before


def test_termination_for_abuse_makes_a_later_sign_up_show_a_flag(ready: Runtime) -> None:
    hw("customer", "add", "Spammer", "--payment-fingerprint", "card-1")
    code, out, err = hw(
        "customer", "set-status", "1", "terminated", "--for-abuse", "--reason", "spam run"
    )
    assert code == 0, err
    assert "terminated (for abuse)" in out
    code, out, _ = hw("customer", "add", "Fresh Start", "--payment-fingerprint", "card-1")
    assert "ban-evasion flag 1" in out and "payment_fingerprint" in out
    code, out, _ = hw("customer", "flags", "--json")
    assert [(f["customer_id"], f["attributes"]) for f in json.loads(out)] == [
        (2, ["payment_fingerprint"])
    ]
    code, out, err = hw("customer", "resolve-flag", "1", "confirmed", "--reason", "same card")
    assert code == 0, err
    assert json.loads(hw("customer", "flags", "--json")[1]) == []
    listed = json.loads(hw("customer", "list", "--json")[1])
    assert [(c["id"], c["status"]) for c in listed] == [(1, "terminated"), (2, "restricted")]


def test_an_identity_scan_is_stored_from_a_file(ready: Runtime, tmp_path: Path) -> None:
    hw("customer", "add", "Scanned")
    scan = tmp_path / "card.png"
    scan.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 32)
    code, out, err = hw("customer", "scan-add", "1", str(scan))
    assert code == 0, err
    assert "Scan 1 stored" in out
    code, _, err = hw("customer", "scan-add", "1", str(tmp_path / "missing.pdf"))
    assert code == 1 and "is not a file" in err
