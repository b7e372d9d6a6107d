"""`hostwarden provisioning …` and `hostwarden commitment …` as an operator uses them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.runtime import Runtime
from hostwarden.registry import commitments
from tests.registry.admission_support import (
    SIGNED_PDF,
    accept_online,
    counts,
    make_customer,
    publish_default,
    update_customer,
)

runner = CliRunner()


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def test_publish_default_makes_version_1_and_refuses_to_repeat_it(runtime: Runtime) -> None:
    code, out, _ = hw("commitment", "publish-default")
    assert code == 0, out
    assert "version 1 published" in out and "网络服务使用承诺书" in out
    code, _, err = hw("commitment", "publish-default")
    assert code == 1
    assert "same as the current version 1" in err and "Traceback" not in err
    code, out, _ = hw("commitment", "list", "--json")
    listed = json.loads(out)
    assert [v["version"] for v in listed] == [1]
    assert {t["locale"] for t in listed[0]["texts"]} == {"zh-CN", "en"}


def test_a_letter_is_published_from_one_file_per_language(runtime: Runtime, tmp_path: Path) -> None:
    zh = tmp_path / "letter.zh.txt"
    en = tmp_path / "letter.en.txt"
    zh.write_text("服务承诺书\n\n一、遵守《中华人民共和国网络安全法》。\n", encoding="utf-8")
    en.write_text("Service commitment\n\n1. I abide by the Cybersecurity Law.\n", encoding="utf-8")
    code, out, err = hw("commitment", "publish", "--text", f"zh-CN={zh}", "--text", f"en={en}")
    assert code == 0, err
    code, out, _ = hw("commitment", "show", "--locale", "zh-CN")
    assert out == "服务承诺书\n\n一、遵守《中华人民共和国网络安全法》。\n"
    with runtime.reading() as session:
        template = commitments.get_version(session).templates["en"]
    assert template.sha256 == commitments.parse_letter(en.read_text()).sha256


def test_publishing_one_language_only_fails_and_stores_nothing(
    runtime: Runtime, tmp_path: Path
) -> None:
    zh = tmp_path / "letter.zh.txt"
    zh.write_text("服务承诺书\n\n内容\n", encoding="utf-8")
    before = counts(runtime)
    code, _, err = hw("commitment", "publish", "--text", f"zh-CN={zh}")
    assert code == 1 and "no text in en" in err
    code, _, err = hw("commitment", "publish", "--text", f"de={zh}", "--text", f"en={zh}")
    assert code == 1 and "'de' is not a language" in err
    assert counts(runtime) == before


def test_provisioning_check_exits_1_listing_every_failing_reason(runtime: Runtime) -> None:
    customer = make_customer(runtime, status="restricted")
    code, out, _ = hw("provisioning", "check", str(customer))
    assert code == 1
    assert "DENIED" in out
    for check in ("identity", "commitment", "status"):
        assert f"FAIL {check}" in out, out
    assert "ok   ban_evasion" in out
    assert "restricted" in out


def test_provisioning_check_exits_0_once_everything_holds(runtime: Runtime) -> None:
    customer = make_customer(
        runtime, external_id="C-3001", identity_status="verified", status="active"
    )
    publish_default(runtime)
    accept_online(runtime, customer)
    code, out, _ = hw("provisioning", "check", "C-3001", "--json")
    assert code == 0, out
    decision = json.loads(out)
    assert decision["allowed"] is True and decision["customer_id"] == customer
    assert all(r["ok"] for r in decision["reasons"])
    code, out, _ = hw("provisioning", "decisions", "C-3001", "--json")
    assert [d["decision_id"] for d in json.loads(out)] == [decision["decision_id"]]


@pytest.mark.parametrize("args", [("999999",), ("nobody",), ("42", "--external")])
def test_an_unknown_customer_is_one_clear_line_and_nothing_is_recorded(
    runtime: Runtime, args: tuple[str, ...]
) -> None:
    before = counts(runtime)
    code, _, err = hw("provisioning", "check", *args)
    assert code == 1
    assert err.startswith("error: no customer with") and "Traceback" not in err
    assert counts(runtime) == before


def test_an_operator_records_a_signed_letter_and_prints_its_pdf(
    runtime: Runtime, tmp_path: Path
) -> None:
    customer = make_customer(runtime, identity_status="verified")
    publish_default(runtime)
    scan = tmp_path / "signed-letter.pdf"
    scan.write_bytes(SIGNED_PDF)
    code, out, err = hw(
        "commitment", "accept", str(customer), "--locale", "zh-CN", "--scan", str(scan), "--json"
    )
    assert code == 0, err
    acceptance = json.loads(out)
    assert acceptance["method"] == "signed-scan" and acceptance["scan_id"] is not None
    code, out, _ = hw("provisioning", "check", str(customer))
    assert code == 0 and "ALLOWED" in out
    target = tmp_path / "letter.pdf"
    code, _, err = hw("commitment", "pdf", str(acceptance["id"]), "-o", str(target))
    assert code == 0, err
    assert target.read_bytes().startswith(b"%PDF")


def test_an_online_acceptance_needs_the_customers_address(runtime: Runtime) -> None:
    customer = make_customer(runtime)
    publish_default(runtime)
    before = counts(runtime)
    code, _, err = hw("commitment", "accept", str(customer), "--locale", "zh-CN")
    assert code == 1 and "needs the customer's IP address" in err
    assert counts(runtime) == before
    code, out, _ = hw(
        "commitment", "accept", str(customer), "--locale", "en", "--ip", "198.51.100.9"
    )
    assert code == 0 and "accepted version 1 (en, click-through)" in out
    code, out, _ = hw("commitment", "acceptances", str(customer), "--json")
    assert [a["ip"] for a in json.loads(out)] == ["198.51.100.9"]


def test_a_verified_customer_who_has_not_accepted_is_told_so(runtime: Runtime) -> None:
    customer = make_customer(runtime)
    update_customer(runtime, customer, identity_status="verified")
    publish_default(runtime)
    code, out, _ = hw("provisioning", "check", str(customer))
    assert code == 1
    assert "FAIL commitment" in out and "has not accepted the commitment letter" in out
