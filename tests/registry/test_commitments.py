"""The commitment letter (承诺书): versions in both languages, acceptances with their
evidence, re-acceptance after a new version, signed scans and the PDF of a signed letter."""

from __future__ import annotations

import hashlib
import json
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hostwarden.core import audit
from hostwarden.core.runtime import Runtime
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from hostwarden.registry import commitments, scans
from hostwarden.registry.commitments import LetterText
from hostwarden.registry.models import CommitmentAcceptance, CommitmentTemplate
from tests.conftest import make_token, make_user
from tests.registry.admission_support import (
    SIGNED_PDF,
    TEST_ACTOR,
    accept_online,
    counts,
    make_customer,
    publish_default,
    publish_revision,
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def pdf_text(pdf: bytes, tmp_path: Path) -> str:
    tool = shutil.which("pdftotext")
    assert tool, "pdftotext is missing: run scripts/system-deps.sh (Debian poppler-utils)"
    path = tmp_path / "letter.pdf"
    path.write_bytes(pdf)
    done = subprocess.run(
        [tool, "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True, timeout=60
    )
    return done.stdout.decode("utf-8")


# --- publishing ---------------------------------------------------------------------------


def test_the_shipped_letter_is_bilingual_and_names_the_law_and_the_filing_duty() -> None:
    letters = commitments.default_letters()
    assert set(letters) == {"zh-CN", "en"}
    zh = letters["zh-CN"]
    assert zh.title == "网络服务使用承诺书"
    for term in ("网络安全法", "备案", "实名", "暂停", "公安机关"):
        assert term in zh.body, term
    assert "Cybersecurity Law" in letters["en"].body
    assert "suspend" in letters["en"].body


def test_publishing_makes_one_version_in_both_languages_with_the_hash_of_the_exact_text(
    runtime: Runtime,
) -> None:
    assert publish_default(runtime) == 1
    with runtime.reading() as session:
        assert commitments.current_version(session) == 1
        rows = list(session.scalars(select(CommitmentTemplate)))
    assert sorted(r.locale for r in rows) == ["en", "zh-CN"]
    for row in rows:
        exact = f"{row.title}\n\n{row.body}".encode()
        assert row.sha256 == hashlib.sha256(exact).hexdigest()
        assert row.version == 1 and row.published_by == TEST_ACTOR.name


def test_each_publication_is_the_next_version_and_is_audited(runtime: Runtime) -> None:
    assert publish_default(runtime) == 1
    assert publish_revision(runtime, "第七条 补充条款。 / 7. An added clause.") == 2
    with runtime.reading() as session:
        versions = commitments.list_versions(session)
        entries, _ = audit.list_entries(session, action="commitment.publish")
    assert [v.version for v in versions] == [2, 1]
    assert versions[0].templates["zh-CN"].sha256 != versions[1].templates["zh-CN"].sha256
    assert sorted(e.object_id for e in entries) == ["1", "2"]
    after = json.loads(entries[0].after)
    assert set(after["texts"]) == {"zh-CN", "en"}


def test_line_endings_and_surrounding_space_do_not_change_the_hash(runtime: Runtime) -> None:
    crlf = {
        locale: LetterText(f"  {t.title} ", t.body.replace("\n", "\r\n") + "\r\n\r\n")
        for locale, t in commitments.default_letters().items()
    }
    with runtime.operation(TEST_ACTOR) as op:
        version = commitments.publish(op, crlf)
    shipped = commitments.default_letters()
    for locale, template in version.templates.items():
        assert template.sha256 == shipped[locale].sha256
        assert "\r" not in template.body


@pytest.mark.parametrize(
    ("texts", "message"),
    [
        ({"zh-CN": LetterText("承诺书", "内容")}, "no text in en"),
        (
            {
                "zh-CN": LetterText("承诺书", "内容"),
                "en": LetterText("Letter", "Text"),
                "fr": LetterText("Lettre", "Texte"),
            },
            "'fr' is not a language",
        ),
        ({"zh-CN": LetterText("承诺书", "  "), "en": LetterText("Letter", "Text")}, "empty body"),
        ({"zh-CN": LetterText("承诺书", "内容"), "en": LetterText("", "Text")}, "empty title"),
        (
            {"zh-CN": LetterText("承诺书\n第二行", "内容"), "en": LetterText("Letter", "Text")},
            "one line",
        ),
    ],
)
def test_incomplete_or_empty_texts_are_refused_and_nothing_is_stored(
    runtime: Runtime, texts: dict[str, LetterText], message: str
) -> None:
    before = counts(runtime)
    with pytest.raises(ValidationFailed, match=message), runtime.operation(TEST_ACTOR) as op:
        commitments.publish(op, texts)
    assert counts(runtime) == before


def test_publishing_the_current_text_again_is_refused(runtime: Runtime) -> None:
    publish_default(runtime)
    before = counts(runtime)
    with pytest.raises(Conflict, match="same as the current version 1"):
        publish_default(runtime)
    assert counts(runtime) == before


# --- acceptance ---------------------------------------------------------------------------


def test_a_click_through_acceptance_records_version_text_hash_time_ip_and_browser(
    runtime: Runtime,
) -> None:
    publish_default(runtime)
    customer = make_customer(runtime)
    with runtime.operation(TEST_ACTOR) as op:
        row = commitments.accept(
            op,
            customer,
            "zh-CN",
            "click-through",
            ip=" 2001:db8::1 ",
            user_agent="Mozilla/5.0 (Windows NT 10.0)",
        )
        acceptance_id = row.id
    with runtime.reading() as session:
        row = commitments.get_acceptance(session, acceptance_id)
        template = session.get(CommitmentTemplate, row.template_id)
        assert template is not None
        entries, _ = audit.list_entries(session, action="commitment.accept")
        assert commitments.has_accepted_current(session, customer)
    assert (template.version, template.locale) == (1, "zh-CN")
    assert row.version == 1 and row.text_sha256 == template.sha256
    assert row.ip == "2001:db8::1" and row.user_agent == "Mozilla/5.0 (Windows NT 10.0)"
    assert row.method == "click-through" and row.accepted_at is not None
    assert [e.object_id for e in entries] == [str(acceptance_id)]


def test_a_new_version_means_every_customer_must_accept_again(runtime: Runtime) -> None:
    publish_default(runtime)
    customer = make_customer(runtime)
    accept_online(runtime, customer)
    with runtime.reading() as session:
        assert commitments.has_accepted_current(session, customer)
    publish_revision(runtime, "第七条 补充条款。")
    with runtime.reading() as session:
        assert not commitments.has_accepted_current(session, customer)
    accept_online(runtime, customer, "en")
    with runtime.reading() as session:
        assert commitments.has_accepted_current(session, customer)
        latest = commitments.latest_acceptance(session, customer)
    assert latest is not None and latest.version == 2


def test_an_acceptance_of_a_version_no_longer_current_is_refused(runtime: Runtime) -> None:
    publish_default(runtime)
    publish_revision(runtime, "第七条 补充条款。")
    customer = make_customer(runtime)
    before = counts(runtime)
    expected = "shown version 1, but version 2 is current"
    with pytest.raises(Conflict, match=expected), runtime.operation(TEST_ACTOR) as op:
        commitments.accept(op, customer, "zh-CN", ip="203.0.113.7", version=1)
    assert counts(runtime) == before


def test_nothing_can_be_accepted_before_a_letter_is_published(runtime: Runtime) -> None:
    customer = make_customer(runtime)
    with pytest.raises(Conflict, match="no commitment letter has been published"):
        accept_online(runtime, customer)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"customer_id": 999999}, NotFound, "no customer with id 999999"),
        ({"locale": "fr"}, ValidationFailed, "'fr' is not a language"),
        ({"method": "fax"}, ValidationFailed, "'fax' is not an acceptance method"),
        ({"ip": ""}, ValidationFailed, "needs the customer's IP address"),
        ({"ip": "not-an-ip"}, ValidationFailed, "'not-an-ip' is not an IP address"),
        ({"method": "signed-scan"}, ValidationFailed, "needs the scan of the signed letter"),
        ({"method": "signed-scan", "scan_id": 999999}, ValidationFailed, "no document scan"),
        ({"scan_id": 1}, ValidationFailed, "a scan goes with method signed-scan"),
    ],
)
def test_bad_acceptances_are_refused_with_a_clear_error_and_nothing_is_stored(
    runtime: Runtime, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    publish_default(runtime)
    customer = make_customer(runtime)
    call: dict[str, object] = {
        "customer_id": customer,
        "locale": "zh-CN",
        "method": "click-through",
        "ip": "203.0.113.7",
        **kwargs,
    }
    before = counts(runtime)
    with pytest.raises(error, match=message), runtime.operation(TEST_ACTOR) as op:
        commitments.accept(
            op,
            call["customer_id"],  # type: ignore[arg-type]
            str(call["locale"]),
            str(call["method"]),
            ip=str(call["ip"]),
            scan_id=call.get("scan_id"),  # type: ignore[arg-type]
        )
    assert counts(runtime) == before


def test_a_signed_scan_is_stored_once_by_hash_and_backs_the_acceptance(
    runtime: Runtime,
) -> None:
    publish_default(runtime)
    customer = make_customer(runtime)
    with runtime.operation(TEST_ACTOR) as op:
        first = scans.store_scan(op, customer, "commitment", "/tmp/signed.pdf", SIGNED_PDF)
        again = scans.store_scan(op, customer, "commitment", "signed-again.pdf", SIGNED_PDF)
        row = commitments.accept(op, customer, "zh-CN", "signed-scan", scan_id=first.id)
        scan_id, acceptance_scan = first.id, row.scan_id
        assert first.sha256 == again.sha256 == hashlib.sha256(SIGNED_PDF).hexdigest()
        assert first.filename == "signed.pdf" and first.content_type == "application/pdf"
    assert acceptance_scan == scan_id
    path = scans.scan_path(runtime, hashlib.sha256(SIGNED_PDF).hexdigest())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    with runtime.reading() as session:
        assert scans.read_scan(runtime, scans.get_scan(session, scan_id)) == SIGNED_PDF


def test_a_signed_scan_must_be_the_customers_own_signed_letter(runtime: Runtime) -> None:
    publish_default(runtime)
    customer = make_customer(runtime)
    other = make_customer(runtime, "另一家公司")
    with runtime.operation(TEST_ACTOR) as op:
        others_scan = scans.store_scan(op, other, "commitment", "x.pdf", SIGNED_PDF).id
        id_card = scans.store_scan(op, customer, "identity", "id.png", b"\x89PNG\r\n\x1a\nxx").id
    for scan_id, message in [(others_scan, "has no document scan"), (id_card, "'identity'")]:
        with pytest.raises(ValidationFailed, match=message), runtime.operation(TEST_ACTOR) as op:
            commitments.accept(op, customer, "zh-CN", "signed-scan", scan_id=scan_id)


@pytest.mark.parametrize(
    ("data", "message"),
    [(b"", "empty"), (b"GIF89a....", "not a PDF, JPEG or PNG")],
)
def test_a_scan_that_is_empty_or_not_a_document_is_refused(
    runtime: Runtime, data: bytes, message: str
) -> None:
    customer = make_customer(runtime)
    before = counts(runtime)
    with pytest.raises(ValidationFailed, match=message), runtime.operation(TEST_ACTOR) as op:
        scans.store_scan(op, customer, "commitment", "x", data)
    assert counts(runtime) == before
    assert not scans.scans_dir(runtime).exists()


# --- the PDF ------------------------------------------------------------------------------


def test_the_pdf_of_a_signed_letter_holds_the_chinese_text_the_record_and_the_hash(
    runtime: Runtime, tmp_path: Path
) -> None:
    publish_default(runtime)
    customer = make_customer(runtime, "杭州示例网络科技有限公司", external_id="C-1001")
    acceptance_id = accept_online(runtime, customer, "zh-CN")
    pdf = commitments.render_pdf(runtime, acceptance_id)
    assert pdf.startswith(b"%PDF")
    text = pdf_text(pdf, tmp_path)
    with runtime.reading() as session:
        digest = commitments.get_acceptance(session, acceptance_id).text_sha256
    flat = "".join(text.split())
    assert digest in flat
    for expected in ("网络服务使用承诺书", "中华人民共和国网络安全法", "ICP备案"):
        assert expected in flat, expected
    for expected in ("杭州示例网络科技有限公司", "C-1001", "203.0.113.7", "在线点击确认"):
        assert expected in flat, expected


def test_the_pdf_of_an_unknown_acceptance_is_not_found(runtime: Runtime) -> None:
    with pytest.raises(NotFound, match="no commitment acceptance with id 999999"):
        commitments.render_pdf(runtime, 999999)


# --- through the API ----------------------------------------------------------------------


def test_the_api_publishes_shows_accepts_and_renders_the_letter(
    client: TestClient, runtime: Runtime, tmp_path: Path
) -> None:
    make_user(runtime, "compliance-officer", ["compliance"])
    make_user(runtime, "sales-desk", ["sales"])
    officer = bearer(make_token(runtime, "compliance-officer"))
    sales = bearer(make_token(runtime, "sales-desk"))
    texts = {
        locale: {"title": t.title, "body": t.body}
        for locale, t in commitments.default_letters().items()
    }
    published = client.post(
        "/api/v1/commitments", json={"texts": texts, "reason": "first letter"}, headers=officer
    )
    assert published.status_code == 201, published.text
    assert published.json()["version"] == 1
    current = client.get("/api/v1/commitments/current", headers=sales).json()
    zh = next(t for t in current["texts"] if t["locale"] == "zh-CN")
    assert zh["body"].startswith("承诺人") and len(zh["sha256"]) == 64

    customer = make_customer(runtime)
    scan = client.post(
        f"/api/v1/customers/{customer}/commitment-scans",
        files={"file": ("signed.pdf", SIGNED_PDF, "application/pdf")},
        headers=sales,
    )
    assert scan.status_code == 201, scan.text
    accepted = client.post(
        f"/api/v1/customers/{customer}/commitment-acceptances",
        json={"locale": "zh-CN", "method": "signed-scan", "scan_id": scan.json()["id"]},
        headers=sales,
    )
    assert accepted.status_code == 201, accepted.text
    assert accepted.json()["text_sha256"] == zh["sha256"]
    listed = client.get(f"/api/v1/customers/{customer}/commitment-acceptances", headers=sales)
    assert [a["id"] for a in listed.json()] == [accepted.json()["id"]]

    pdf = client.get(f"/api/v1/commitment-acceptances/{accepted.json()['id']}/pdf", headers=sales)
    assert pdf.status_code == 200
    assert pdf.headers["content-type"] == "application/pdf"
    assert "纸质签字" in "".join(pdf_text(pdf.content, tmp_path).split())

    overview = client.get("/api/v1/commitments", headers=sales).json()
    assert overview["current_version"] == 1 and len(overview["versions"]) == 1


def test_the_api_answers_bad_letters_and_acceptances_with_problems(
    client: TestClient, runtime: Runtime, admin_token: str
) -> None:
    admin = bearer(admin_token)
    only_zh = {"texts": {"zh-CN": {"title": "承诺书", "body": "内容"}}}
    response = client.post("/api/v1/commitments", json=only_zh, headers=admin)
    assert response.status_code == 422 and "no text in en" in response.json()["detail"]
    response = client.get("/api/v1/commitments/current", headers=admin)
    assert response.status_code == 404 and "no commitment letter" in response.json()["detail"]
    publish_default(runtime)
    response = client.post(
        "/api/v1/customers/999999/commitment-acceptances",
        json={"locale": "zh-CN", "ip": "203.0.113.7"},
        headers=admin,
    )
    assert response.status_code == 404 and "no customer with id 999999" in response.text
    with runtime.reading() as session:
        assert session.scalars(select(CommitmentAcceptance)).first() is None
