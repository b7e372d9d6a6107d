"""Customers: admission records, contacts normalised and encrypted, identity documents,
full views only for pii:view and always audited, search through blind indexes."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.errors import Conflict, PermissionDenied, ValidationFailed
from hostwarden.registry import customers
from hostwarden.registry.models import Customer, DocumentScan, IdentityDocument
from tests.conftest import make_token, make_user
from tests.registry.customer_fixtures import (
    OTHER_RESIDENT_ID,
    PHONE,
    PHONE_DIGITS,
    RESIDENT_ID,
    USCC,
    actor,
    add_document,
    audit_actions,
    audit_text,
    count,
    new_customer,
)


@pytest.mark.parametrize(
    ("written", "mailbox"),
    [
        ("J.Doe+vps@GoogleMail.com", "jdoe@gmail.com"),
        ("j.d.o.e@gmail.com", "jdoe@gmail.com"),
        ("Zhang.Wei+hosting@Example.CN", "zhang.wei@example.cn"),
        ("zhangwei@qq.com", "zhangwei@qq.com"),
        ("", ""),
    ],
)
def test_email_is_normalised_to_the_mailbox_it_delivers_to(written: str, mailbox: str) -> None:
    assert customers.normalise_email(written) == mailbox


def test_a_new_customer_is_pending_with_masked_contacts_in_the_trail(runtime: Runtime) -> None:
    customer_id = new_customer(
        runtime, email="Zhang.Wei+vps@example.cn", phone=PHONE, address="北京市海淀区"
    )
    with runtime.reading() as session:
        customer = customers.get_customer(session, customer_id)
        assert customer.status == "pending"
        assert customer.identity_status == "unverified"
        assert customer.email_norm == "zhang.wei@example.cn"
        assert customer.phone_masked == "138****5678"
    assert audit_actions(runtime)[-1] == "customer.create"
    trail = audit_text(runtime)
    assert PHONE_DIGITS not in trail and "Zhang.Wei+vps@example.cn" not in trail


def test_the_phone_is_encrypted_at_rest(runtime: Runtime) -> None:
    customer_id = new_customer(runtime, phone=PHONE)
    with runtime.db.engine.connect() as conn:
        raw, index = conn.execute(
            text("SELECT phone_enc, phone_bidx FROM customers WHERE id = :id"), {"id": customer_id}
        ).one()
    stored = bytes(raw)
    assert PHONE_DIGITS.encode() not in stored and b"5678" not in stored
    assert PHONE_DIGITS not in index and len(index) == 64
    assert runtime.vault.decrypt(customers.PHONE_FIELD, stored) == PHONE_DIGITS


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"kind": "robot"}, "not a customer kind"),
        ({"name": "  "}, "needs a name"),
        ({"email": "not-an-address"}, "e-mail address"),
        ({"phone": "12345"}, "6 to 15 digits"),
        ({"signup_ip": "300.1.1.1"}, "IPv4 or IPv6"),
        ({"risk_tier": "extreme"}, "not a risk tier"),
        ({"device_fingerprint": "x" * 129}, "longer than 128"),
    ],
)
def test_bad_customer_input_is_refused_and_nothing_is_stored(
    runtime: Runtime, fields: dict[str, str], message: str
) -> None:
    values = {"kind": "individual", "name": "Li Na", **fields}
    before = (count(runtime, Customer), count(runtime, AuditEntry))
    with pytest.raises(ValidationFailed, match=message), runtime.operation(actor("sales")) as op:
        customers.create_customer(op, **values)
    assert (count(runtime, Customer), count(runtime, AuditEntry)) == before


def test_an_external_id_belongs_to_one_customer_only(runtime: Runtime) -> None:
    new_customer(runtime, external_id="bill-42")
    before = count(runtime, Customer)
    with pytest.raises(Conflict, match="bill-42"), runtime.operation(actor("sales")) as op:
        customers.create_customer(op, kind="organisation", name="Other", external_id="bill-42")
    assert count(runtime, Customer) == before


def test_an_update_records_which_fields_changed_and_a_no_op_records_nothing(
    runtime: Runtime,
) -> None:
    customer_id = new_customer(runtime, phone=PHONE)
    with runtime.operation(actor("sales")) as op:
        customers.update_customer(
            op, customer_id, phone="13900001111", risk_tier="high", reason="new contact"
        )
    with runtime.reading() as session:
        entry = session.query(AuditEntry).order_by(AuditEntry.seq.desc()).first()
        assert entry is not None and entry.action == "customer.update"
        assert '"changed":["phone","risk_tier"]' in entry.after
        assert "13900001111" not in entry.after
    entries = count(runtime, AuditEntry)
    with runtime.operation(actor("sales")) as op:
        customers.update_customer(op, customer_id, phone="+86 139 0000 1111", risk_tier="high")
    assert count(runtime, AuditEntry) == entries


def test_status_moves_along_the_allowed_transitions_with_a_reason(runtime: Runtime) -> None:
    customer_id = new_customer(runtime)
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, customer_id, "active", reason="verified and letter signed")
        customers.set_status(op, customer_id, "suspended", reason="abuse case 17")
        customers.set_status(op, customer_id, "terminated", reason="repeat spam", for_abuse=True)
    with runtime.reading() as session:
        customer = customers.get_customer(session, customer_id)
        assert customer.status == "terminated" and customer.terminated_for_abuse
    entries = count(runtime, AuditEntry)
    with (
        pytest.raises(Conflict, match="cannot become active"),
        runtime.operation(actor("sales")) as op,
    ):
        customers.set_status(op, customer_id, "active", reason="mistake")
    assert count(runtime, AuditEntry) == entries


@pytest.mark.parametrize(
    ("status", "reason", "for_abuse", "message"),
    [
        ("active", "", False, "needs a reason"),
        ("suspended", "abuse", True, "only a termination"),
        ("deleted", "gone", False, "not a customer status"),
    ],
)
def test_a_status_change_without_reason_or_out_of_rule_is_refused(
    runtime: Runtime, status: str, reason: str, for_abuse: bool, message: str
) -> None:
    customer_id = new_customer(runtime)
    entries = count(runtime, AuditEntry)
    with pytest.raises(ValidationFailed, match=message), runtime.operation(actor("sales")) as op:
        customers.set_status(op, customer_id, status, reason=reason, for_abuse=for_abuse)
    assert count(runtime, AuditEntry) == entries
    with runtime.reading() as session:
        assert customers.get_customer(session, customer_id).status == "pending"


def test_an_identity_number_is_stored_encrypted_with_a_masked_copy(runtime: Runtime) -> None:
    customer_id = new_customer(runtime)
    document_id = add_document(runtime, customer_id, "resident-id", "110105 19491231 002x")
    with runtime.db.engine.connect() as conn:
        raw, index, masked = conn.execute(
            text(
                "SELECT number_enc, number_bidx, number_masked FROM identity_documents "
                "WHERE id = :id"
            ),
            {"id": document_id},
        ).one()
    assert RESIDENT_ID.encode() not in bytes(raw) and b"19491231" not in bytes(raw)
    assert masked == "110105********002X"
    assert index == runtime.vault.blind_index(customers.ID_NUMBER_FIELD, RESIDENT_ID)
    assert audit_actions(runtime)[-1] == "identity.add"
    assert RESIDENT_ID not in audit_text(runtime)


@pytest.mark.parametrize(
    ("doc_type", "number", "rule"),
    [
        ("resident-id", "110105194912310021", "check-character"),
        ("uscc", "91350100M000100Y4A", "check-character"),
        ("resident-id", "990105194912310023", "region"),
        ("passport", "E12", "length"),
    ],
)
def test_an_invalid_number_is_refused_naming_the_rule_and_nothing_is_stored(
    runtime: Runtime, doc_type: str, number: str, rule: str
) -> None:
    customer_id = new_customer(runtime)
    before = (count(runtime, IdentityDocument), count(runtime, AuditEntry))
    with pytest.raises(ValidationFailed, match=f"'{rule}' rule"):
        add_document(runtime, customer_id, doc_type, number)
    assert (count(runtime, IdentityDocument), count(runtime, AuditEntry)) == before


def test_a_reviewer_may_accept_a_failing_number_with_a_recorded_reason(runtime: Runtime) -> None:
    customer_id = new_customer(runtime)
    with runtime.operation(actor("sales")) as op:
        document = customers.add_document(
            op,
            customer_id,
            "resident-id",
            "110105194912310021",
            override_reason="card seen in person; issuing office confirmed by phone",
        )
        assert document.override_reason.startswith("card seen")
    with runtime.reading() as session:
        entry = session.query(AuditEntry).order_by(AuditEntry.seq.desc()).first()
        assert entry is not None and entry.action == "identity.override"
        assert '"failed_rule":"check-character"' in entry.after
        assert "issuing office" in entry.reason
        assert "110105194912310021" not in entry.after


def test_an_override_without_kyc_review_is_refused_and_nothing_is_stored(
    runtime: Runtime,
) -> None:
    customer_id = new_customer(runtime)
    before = (count(runtime, IdentityDocument), count(runtime, AuditEntry))
    with (
        pytest.raises(PermissionDenied, match="kyc:review"),
        runtime.operation(actor("compliance")) as op,
    ):
        customers.add_document(
            op, customer_id, "resident-id", "110105194912310021", override_reason="trust me"
        )
    assert (count(runtime, IdentityDocument), count(runtime, AuditEntry)) == before


def test_other_documents_need_a_type_name_which_no_override_replaces(runtime: Runtime) -> None:
    customer_id = new_customer(runtime)
    with (
        pytest.raises(ValidationFailed, match="type-name"),
        runtime.operation(actor("sales")) as op,
    ):
        customers.add_document(op, customer_id, "other", "SB-123", override_reason="ok")
    with runtime.operation(actor("sales")) as op:
        document = customers.add_document(
            op, customer_id, "other", "SB-123", type_name="Seaman's book"
        )
        assert document.other_type == "Seaman's book"


def test_the_same_number_twice_for_one_customer_is_a_conflict(runtime: Runtime) -> None:
    customer_id = new_customer(runtime)
    add_document(runtime, customer_id, "resident-id", RESIDENT_ID)
    with pytest.raises(Conflict, match="already has this number"):
        add_document(runtime, customer_id, "resident-id", RESIDENT_ID.lower())


def test_a_full_view_needs_pii_view_and_is_audited_each_time(runtime: Runtime) -> None:
    customer_id = new_customer(runtime, phone=PHONE)
    add_document(runtime, customer_id, "resident-id", RESIDENT_ID)
    for _ in range(2):
        with runtime.operation(actor("compliance")) as op:
            view = customers.reveal(op, customer_id, "case 2026-118")
        assert view.phone == PHONE_DIGITS
        assert [d.number for d in view.documents] == [RESIDENT_ID]
    assert audit_actions(runtime)[-2:] == ["customer.pii_view", "customer.pii_view"]
    assert RESIDENT_ID not in audit_text(runtime)
    entries = count(runtime, AuditEntry)
    with pytest.raises(PermissionDenied, match="pii:view"), runtime.operation(actor("abuse")) as op:
        customers.reveal(op, customer_id, "curious")
    assert count(runtime, AuditEntry) == entries
    with (
        pytest.raises(ValidationFailed, match="needs a reason"),
        runtime.operation(actor("compliance")) as op,
    ):
        customers.reveal(op, customer_id, "  ")
    assert count(runtime, AuditEntry) == entries


def test_customers_are_found_by_exact_id_number_or_phone_in_any_spelling(
    runtime: Runtime,
) -> None:
    first = new_customer(runtime, phone=PHONE)
    second = new_customer(runtime, name="Beijing Example Ltd", kind="organisation")
    add_document(runtime, first, "resident-id", RESIDENT_ID)
    add_document(runtime, second, "uscc", USCC)
    with runtime.reading() as session:
        vault = runtime.vault

        def ids(**query: str) -> list[int]:
            return [c.id for c in customers.search_customers(session, vault, **query)]

        assert ids(id_number="110105-19491231-002x") == [first]
        assert ids(id_number=USCC.lower()) == [second]
        assert ids(phone="0086 13812345678") == [first]
        assert ids(id_number=OTHER_RESIDENT_ID) == []
        with pytest.raises(ValidationFailed):
            ids()


# --- through the API -----------------------------------------------------------------------


def _sales_token(runtime: Runtime) -> dict[str, str]:
    make_user(runtime, "sally", ["sales"])
    return {"Authorization": f"Bearer {make_token(runtime, 'sally')}"}


def test_the_api_lists_customers_masked_and_reveals_only_on_the_audited_route(
    runtime: Runtime, client: TestClient
) -> None:
    headers = _sales_token(runtime)
    made = client.post(
        "/api/v1/customers",
        json={
            "kind": "individual",
            "name": "Wang Fang",
            "email": "wang.fang@example.cn",
            "phone": PHONE,
        },
        headers=headers,
    )
    assert made.status_code == 201, made.text
    customer_id = made.json()["id"]
    document = client.post(
        f"/api/v1/customers/{customer_id}/documents",
        json={"doc_type": "resident-id", "number": RESIDENT_ID},
        headers=headers,
    )
    assert document.status_code == 201, document.text
    assert document.json()["number"] == "110105********002X"
    listing = client.get("/api/v1/customers", headers=headers).text
    detail = client.get(f"/api/v1/customers/{customer_id}", headers=headers).text
    for body in (listing, detail, made.text):
        assert PHONE_DIGITS not in body and RESIDENT_ID not in body
        assert "wang.fang@" not in body
    assert "138****5678" in listing
    entries = count(runtime, AuditEntry)
    unexplained = client.get(f"/api/v1/customers/{customer_id}/pii", headers=headers)
    assert unexplained.status_code == 422
    assert "needs a reason" in unexplained.json()["detail"]
    assert count(runtime, AuditEntry) == entries
    full = client.get(
        f"/api/v1/customers/{customer_id}/pii", params={"reason": "case 118"}, headers=headers
    )
    assert full.status_code == 200
    assert full.json()["phone"] == PHONE_DIGITS
    assert full.json()["email"] == "wang.fang@example.cn"
    assert full.json()["documents"][0]["number"] == RESIDENT_ID
    assert count(runtime, AuditEntry) == entries + 1
    assert audit_actions(runtime)[-1] == "customer.pii_view"
    found = client.post(
        "/api/v1/customers/search", json={"id_number": RESIDENT_ID}, headers=headers
    )
    assert [c["id"] for c in found.json()] == [customer_id]


def test_the_api_refuses_an_invalid_number_with_the_rule_and_stores_nothing(
    runtime: Runtime, client: TestClient
) -> None:
    headers = _sales_token(runtime)
    customer_id = new_customer(runtime)
    before = (count(runtime, IdentityDocument), count(runtime, AuditEntry))
    response = client.post(
        f"/api/v1/customers/{customer_id}/documents",
        json={"doc_type": "uscc", "number": "91350100M000100Y4A"},
        headers=headers,
    )
    assert response.status_code == 422
    assert "'check-character' rule" in response.json()["detail"]
    assert (count(runtime, IdentityDocument), count(runtime, AuditEntry)) == before


def test_an_identity_scan_is_kept_once_by_its_hash_with_owner_only_access(
    runtime: Runtime, client: TestClient
) -> None:
    headers = _sales_token(runtime)
    customer_id = new_customer(runtime)
    pdf = b"%PDF-1.4\n% scanned resident identity card\n"
    response = client.post(
        f"/api/v1/customers/{customer_id}/identity-scans",
        files={"file": ("id-card.pdf", pdf, "application/pdf")},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    digest = response.json()["sha256"]
    path = Path(runtime.settings.home) / "scans" / digest
    assert path.read_bytes() == pdf
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    detail = client.get(f"/api/v1/customers/{customer_id}", headers=headers).json()
    assert [(s["purpose"], s["sha256"]) for s in detail["scans"]] == [("identity", digest)]
    before = (count(runtime, DocumentScan), count(runtime, AuditEntry))
    refused = client.post(
        f"/api/v1/customers/{customer_id}/identity-scans",
        files={"file": ("notes.txt", b"just text", "text/plain")},
        headers=headers,
    )
    assert refused.status_code == 422
    assert (count(runtime, DocumentScan), count(runtime, AuditEntry)) == before
