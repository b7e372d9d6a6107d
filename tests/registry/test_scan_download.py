"""Downloading a stored identity-document scan: only for pii:view, only with a reason,
re-hashed against the SHA-256 recorded at upload, and every download (or failed check)
in the audit trail."""

from __future__ import annotations

import base64
import hashlib
import json
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.registry import scans
from tests.conftest import make_token, make_user
from tests.registry.admission_support import SIGNED_PDF, TEST_ACTOR
from tests.registry.customer_fixtures import count, new_customer

#: A scanned resident identity card as a scanner's PDF export starts.
ID_CARD = (
    b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj << /Type /Catalog >> endobj\n% front and back\n%%EOF\n"
)
REASON = "abuse case 2026-0412: confirm the holder's identity for the police request"

runner = CliRunner()


def bearer(runtime: Runtime, username: str, role: str) -> dict[str, str]:
    make_user(runtime, username, [role])
    return {"Authorization": f"Bearer {make_token(runtime, username)}"}


def upload(
    client: TestClient, headers: dict[str, str], customer_id: int, name: str = "id-card.pdf"
) -> int:
    answer = client.post(
        f"/api/v1/customers/{customer_id}/identity-scans",
        files={"file": (name, ID_CARD, "application/pdf")},
        headers=headers,
    )
    assert answer.status_code == 201, answer.text
    return int(answer.json()["id"])


def url(customer_id: int, scan_id: int) -> str:
    return f"/api/v1/customers/{customer_id}/identity-scans/{scan_id}"


def last_entry(runtime: Runtime) -> AuditEntry:
    with runtime.reading() as session:
        entry = session.scalars(select(AuditEntry).order_by(AuditEntry.seq.desc())).first()
    assert entry is not None
    return entry


@pytest.fixture
def sales(runtime: Runtime) -> dict[str, str]:
    return bearer(runtime, "sally", "sales")


@pytest.fixture
def compliance(runtime: Runtime) -> dict[str, str]:
    return bearer(runtime, "chen.compliance", "compliance")


def test_a_pii_viewer_gets_the_exact_bytes_with_their_sha256(
    runtime: Runtime, client: TestClient, sales: dict[str, str], compliance: dict[str, str]
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id)
    answer = client.get(url(customer_id, scan_id), params={"reason": REASON}, headers=compliance)
    assert answer.status_code == 200, answer.text
    assert answer.content == ID_CARD
    digest = hashlib.sha256(ID_CARD)
    assert answer.headers["content-type"] == "application/pdf"
    assert answer.headers["content-disposition"] == 'attachment; filename="id-card.pdf"'
    assert answer.headers["etag"] == f'"{digest.hexdigest()}"'
    assert (
        answer.headers["repr-digest"] == f"sha-256=:{base64.b64encode(digest.digest()).decode()}:"
    )
    assert answer.headers["cache-control"] == "no-store"


def test_each_download_is_audited_with_who_which_scan_and_why(
    runtime: Runtime, client: TestClient, sales: dict[str, str], compliance: dict[str, str]
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id)
    for _ in range(2):
        client.get(url(customer_id, scan_id), params={"reason": REASON}, headers=compliance)
    with runtime.reading() as session:
        downloads = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "scan.download")
        ).all()
        seen = [(e.actor, e.object_type, e.object_id, e.reason) for e in downloads]
        after = json.loads(downloads[0].after)
    assert seen == [("chen.compliance", "document_scan", str(scan_id), REASON)] * 2
    assert after["customer_id"] == customer_id
    assert after["sha256"] == hashlib.sha256(ID_CARD).hexdigest()
    assert audit.verify(runtime).ok


@pytest.mark.parametrize("reason", [None, "", "   "])
def test_a_download_without_a_reason_is_refused_saying_why_and_not_served(
    runtime: Runtime,
    client: TestClient,
    sales: dict[str, str],
    compliance: dict[str, str],
    reason: str | None,
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id)
    before = count(runtime, AuditEntry)
    params = {} if reason is None else {"reason": reason}
    answer = client.get(url(customer_id, scan_id), params=params, headers=compliance)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert "needs a reason" in answer.json()["detail"]
    assert "audit trail" in answer.json()["detail"]
    assert ID_CARD not in answer.content
    assert count(runtime, AuditEntry) == before


@pytest.mark.parametrize("role", ["abuse", "noc", "auditor"])
def test_roles_without_pii_view_are_refused_and_nothing_is_recorded(
    runtime: Runtime, client: TestClient, sales: dict[str, str], role: str
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id)
    headers = bearer(runtime, f"u-{role}", role)
    before = count(runtime, AuditEntry)
    answer = client.get(url(customer_id, scan_id), params={"reason": REASON}, headers=headers)
    assert answer.status_code == 403
    assert "pii:view" in answer.json()["detail"]
    assert count(runtime, AuditEntry) == before


def test_a_scan_altered_on_disk_is_refused_and_the_failure_is_audited(
    runtime: Runtime, client: TestClient, sales: dict[str, str], compliance: dict[str, str]
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id)
    path = scans.scan_path(runtime, hashlib.sha256(ID_CARD).hexdigest())
    forged = ID_CARD.replace(b"front and back", b"someone else!!")
    path.write_bytes(forged)
    answer = client.get(url(customer_id, scan_id), params={"reason": REASON}, headers=compliance)
    assert answer.status_code == 500
    problem = answer.json()
    assert problem["type"] == "urn:hostwarden:problem:integrity-broken"
    assert "no longer matches its recorded SHA-256" in problem["detail"]
    assert "Restore it from backup" in problem["detail"]
    assert forged not in answer.content
    entry = last_entry(runtime)
    assert (entry.action, entry.actor, entry.object_id, entry.reason) == (
        "scan.integrity_failure",
        "chen.compliance",
        str(scan_id),
        REASON,
    )
    recorded = json.loads(entry.after)
    assert recorded["sha256"] == hashlib.sha256(ID_CARD).hexdigest()
    assert recorded["found_sha256"] == hashlib.sha256(forged).hexdigest()
    assert audit.verify(runtime).ok, "the failure entry was committed with its checkpoint"


def test_a_scan_missing_from_disk_is_refused_and_audited(
    runtime: Runtime, client: TestClient, sales: dict[str, str], compliance: dict[str, str]
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id)
    scans.scan_path(runtime, hashlib.sha256(ID_CARD).hexdigest()).unlink()
    answer = client.get(url(customer_id, scan_id), params={"reason": REASON}, headers=compliance)
    assert answer.status_code == 500
    assert "is missing" in answer.json()["detail"]
    entry = last_entry(runtime)
    assert entry.action == "scan.integrity_failure"
    assert json.loads(entry.after)["found_sha256"] == "missing"


def test_a_scan_is_found_only_under_its_own_customer_and_as_an_identity_scan(
    runtime: Runtime, client: TestClient, sales: dict[str, str], compliance: dict[str, str]
) -> None:
    owner, other = new_customer(runtime), new_customer(runtime, "Li Na")
    scan_id = upload(client, sales, owner)
    with runtime.operation(TEST_ACTOR) as op:
        letter_id = scans.store_scan(op, owner, "commitment", "signed.pdf", SIGNED_PDF).id
    before = count(runtime, AuditEntry)
    for path in (url(other, scan_id), url(owner, letter_id), url(owner, 999_999)):
        answer = client.get(path, params={"reason": REASON}, headers=compliance)
        assert answer.status_code == 404, path
    assert count(runtime, AuditEntry) == before


def test_a_stored_name_in_chinese_is_offered_in_the_rfc_6266_form(
    runtime: Runtime, client: TestClient, sales: dict[str, str], compliance: dict[str, str]
) -> None:
    customer_id = new_customer(runtime)
    scan_id = upload(client, sales, customer_id, name="身份证 正面.pdf")
    answer = client.get(url(customer_id, scan_id), params={"reason": REASON}, headers=compliance)
    assert answer.headers["content-disposition"] == (
        "attachment; filename*=UTF-8''%E8%BA%AB%E4%BB%BD%E8%AF%81%20%E6%AD%A3%E9%9D%A2.pdf"
    )


# --- from the shell ------------------------------------------------------------------------


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def stored_scan(runtime: Runtime) -> int:
    customer_id = new_customer(runtime)
    with runtime.operation(TEST_ACTOR) as op:
        return scans.store_scan(op, customer_id, "identity", "id-card.pdf", ID_CARD).id


def test_the_cli_writes_the_scan_owner_only_and_audits_it(runtime: Runtime, tmp_path: Path) -> None:
    scan_id = stored_scan(runtime)
    target = tmp_path / "out.pdf"
    code, out, err = hw(
        "customer", "scan-get", str(scan_id), "--out", str(target), "--reason", REASON
    )
    assert code == 0, out + err
    assert target.read_bytes() == ID_CARD
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert hashlib.sha256(ID_CARD).hexdigest() in out
    entry = last_entry(runtime)
    assert (entry.action, entry.object_id, entry.reason) == ("scan.download", str(scan_id), REASON)
    assert entry.actor.startswith("cli:")


def test_the_cli_refuses_without_a_reason_over_an_existing_file_and_on_a_bad_hash(
    runtime: Runtime, tmp_path: Path
) -> None:
    scan_id = stored_scan(runtime)
    target = tmp_path / "out.pdf"
    code, _, err = hw("customer", "scan-get", str(scan_id), "--out", str(target))
    assert code == 1
    assert "needs a reason" in err
    assert not target.exists()
    target.write_bytes(b"keep me")
    code, _, err = hw("customer", "scan-get", str(scan_id), "-o", str(target), "--reason", REASON)
    assert code == 1
    assert "already exists" in err
    assert target.read_bytes() == b"keep me"
    scans.scan_path(runtime, hashlib.sha256(ID_CARD).hexdigest()).write_bytes(b"%PDF-forged")
    fresh = tmp_path / "fresh.pdf"
    code, _, err = hw("customer", "scan-get", str(scan_id), "-o", str(fresh), "--reason", REASON)
    assert code == 1
    assert "no longer matches" in err
    assert not fresh.exists()
    assert last_entry(runtime).action == "scan.integrity_failure"
