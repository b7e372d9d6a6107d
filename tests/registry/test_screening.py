"""Ban-evasion screening: a new or newly verified customer is compared with every customer
terminated for abuse, and each match becomes one flag naming what matched."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.errors import Conflict, PermissionDenied, ValidationFailed
from hostwarden.registry import customers, verification
from hostwarden.registry.models import BanEvasionFlag
from tests.conftest import make_token, make_user
from tests.registry.customer_fixtures import (
    OTHER_RESIDENT_ID,
    PHONE,
    RESIDENT_ID,
    actor,
    add_document,
    audit_text,
    count,
    new_customer,
)

BANNED = {
    "email": "spammer+one@gmail.com",
    "phone": PHONE,
    "signup_ip": "203.0.113.7",
    "device_fingerprint": "dev-5f2a",
    "payment_fingerprint": "card-9c1e",
}


def _ban(runtime: Runtime, customer_id: int, *, for_abuse: bool = True) -> None:
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, customer_id, "terminated", reason="spam", for_abuse=for_abuse)


def _flags(runtime: Runtime, customer_id: int) -> list[tuple[int, list[str], str]]:
    with runtime.reading() as session:
        return [
            (f.matched_customer_id, customers.flag_attributes(f), f.status)
            for f in customers.list_flags(session, customer_id=customer_id)
        ]


@pytest.fixture
def banned(runtime: Runtime) -> int:
    customer_id = new_customer(runtime, "Banned Person", **BANNED)
    add_document(runtime, customer_id, "resident-id", RESIDENT_ID)
    _ban(runtime, customer_id)
    return customer_id


def test_a_sign_up_sharing_contacts_with_a_banned_customer_is_flagged_by_attribute_name(
    runtime: Runtime, banned: int
) -> None:
    newcomer = new_customer(
        runtime,
        "New Name",
        email="S.P.A.M.M.E.R+two@googlemail.com",
        phone="0086 138 1234 5678",
        signup_ip="203.0.113.7",
        device_fingerprint="dev-other",
        payment_fingerprint="card-9c1e",
    )
    assert _flags(runtime, newcomer) == [
        (banned, ["phone", "email", "payment_fingerprint", "signup_ip"], "open")
    ]
    trail = audit_text(runtime)  # names of what matched, never the values
    assert "card-9c1e" not in trail and "203.0.113.7" not in trail


def test_one_shared_attribute_is_enough_and_nothing_shared_raises_nothing(
    runtime: Runtime, banned: int
) -> None:
    only_device = new_customer(runtime, "A", device_fingerprint="dev-5f2a")
    assert _flags(runtime, only_device) == [(banned, ["device_fingerprint"], "open")]
    unrelated = new_customer(
        runtime, "B", email="someone@example.cn", phone="13900001111", signup_ip="198.51.100.1"
    )
    assert _flags(runtime, unrelated) == []


def test_customers_not_terminated_for_abuse_are_not_screened_against(runtime: Runtime) -> None:
    left = new_customer(runtime, "Left Politely", **BANNED)
    _ban(runtime, left, for_abuse=False)
    still_active = new_customer(runtime, "Active", email="other@example.cn", phone="13700001111")
    assert still_active
    twin = new_customer(runtime, "Twin", **BANNED)
    assert _flags(runtime, twin) == []


def test_approval_screens_the_id_number_and_one_flag_per_banned_customer(
    runtime: Runtime, banned: int
) -> None:
    second_banned = new_customer(runtime, "Also Banned", device_fingerprint="dev-77")
    add_document(runtime, second_banned, "resident-id", OTHER_RESIDENT_ID)
    _ban(runtime, second_banned)
    newcomer = new_customer(runtime, "Newcomer", device_fingerprint="dev-77")
    assert _flags(runtime, newcomer) == [(second_banned, ["device_fingerprint"], "open")]
    add_document(runtime, newcomer, "resident-id", RESIDENT_ID)
    add_document(runtime, newcomer, "resident-id", OTHER_RESIDENT_ID)
    request = verification.request_verification(runtime, actor("sales"), newcomer, "manual")
    with runtime.operation(actor("sales")) as op:
        verification.approve(op, request.id, "documents checked in person")
    assert _flags(runtime, newcomer) == [
        (second_banned, ["id_number", "device_fingerprint"], "open"),  # the earlier flag grew
        (banned, ["id_number"], "open"),
    ]
    assert count(runtime, BanEvasionFlag) == 2


def test_screening_again_adds_no_duplicate_and_a_cleared_flag_stays_cleared(
    runtime: Runtime, banned: int
) -> None:
    newcomer = new_customer(runtime, "Again", signup_ip="203.0.113.7")
    with runtime.operation(actor("sales")) as op:
        assert customers.screen(op, newcomer) == []
    (flag,) = customers_flags(runtime, newcomer)
    with runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "cleared", "shared office NAT; different person")
        assert customers.screen(op, newcomer) == []
    assert _flags(runtime, newcomer) == [(banned, ["signup_ip"], "cleared")]
    with runtime.operation(actor("sales")) as op:
        customers.update_customer(op, newcomer, device_fingerprint="dev-5f2a")
        grown = customers.screen(op, newcomer)
        assert [customers.flag_attributes(f) for f in grown] == [
            ["device_fingerprint", "signup_ip"]
        ]


def customers_flags(runtime: Runtime, customer_id: int) -> list[int]:
    with runtime.reading() as session:
        return [f.id for f in customers.list_flags(session, customer_id=customer_id)]


def test_resolving_a_flag_needs_kyc_review_a_reason_and_an_open_flag(
    runtime: Runtime, banned: int
) -> None:
    newcomer = new_customer(runtime, "Suspect", phone=PHONE)
    (flag,) = customers_flags(runtime, newcomer)
    entries = count(runtime, AuditEntry)
    with pytest.raises(PermissionDenied), runtime.operation(actor("abuse")) as op:
        customers.resolve_flag(op, flag, "cleared", "looks fine")
    with (
        pytest.raises(ValidationFailed, match="needs a reason"),
        runtime.operation(actor("sales")) as op,
    ):
        customers.resolve_flag(op, flag, "confirmed", " ")
    with (
        pytest.raises(ValidationFailed, match="not a flag resolution"),
        runtime.operation(actor("sales")) as op,
    ):
        customers.resolve_flag(op, flag, "ignored", "why not")
    assert count(runtime, AuditEntry) == entries
    with runtime.operation(actor("sales")) as op:
        resolved = customers.resolve_flag(op, flag, "confirmed", "same person, admitted on call")
        assert resolved.resolved_by == "sales-person"
    with pytest.raises(Conflict, match="already resolved"), runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "cleared", "changed my mind")


def test_flags_are_listed_and_resolved_through_the_api(
    runtime: Runtime, client: TestClient, banned: int
) -> None:
    make_user(runtime, "sally", ["sales"])
    headers = {"Authorization": f"Bearer {make_token(runtime, 'sally')}"}
    made = client.post(
        "/api/v1/customers",
        json={"kind": "individual", "name": "Evader", "payment_fingerprint": "card-9c1e"},
        headers=headers,
    )
    assert made.status_code == 201
    flags = made.json()["ban_evasion_flags"]
    assert [(f["matched_customer_id"], f["attributes"]) for f in flags] == [
        (banned, ["payment_fingerprint"])
    ]
    listed = client.get("/api/v1/ban-evasion-flags", headers=headers).json()
    assert [f["id"] for f in listed] == [flags[0]["id"]]
    resolved = client.post(
        f"/api/v1/ban-evasion-flags/{flags[0]['id']}/resolve",
        json={"resolution": "confirmed", "reason": "same card, same address"},
        headers=headers,
    )
    assert resolved.status_code == 200, resolved.text
    assert resolved.json()["status"] == "confirmed"
    assert client.get("/api/v1/ban-evasion-flags", headers=headers).json() == []
