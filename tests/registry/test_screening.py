"""Ban-evasion screening: a new or newly verified customer is compared with every customer
terminated for abuse, a customer terminated for abuse with every customer still served, and
each match becomes one flag naming what matched; a confirmed flag restricts the customer."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.core.vault import PiiVault
from hostwarden.errors import Conflict, PermissionDenied, ValidationFailed
from hostwarden.registry import customers, gate, verification
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
    second_reviewer,
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
    with runtime.operation(second_reviewer()) as op:
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
        customers.resolve_flag(op, flag, "confirmed", "again")


def test_a_confirmed_flag_can_be_revised_and_the_restriction_stays_until_a_person_lifts_it(
    runtime: Runtime, banned: int
) -> None:
    newcomer = new_customer(runtime, "Namesake", phone=PHONE)
    (flag,) = customers_flags(runtime, newcomer)
    with runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "confirmed", "same phone")
    with runtime.operation(actor("sales")) as op:
        revised = customers.resolve_flag(op, flag, "cleared", "number was reassigned by carrier")
        assert revised.status == "cleared"
        assert revised.resolution_reason == "number was reassigned by carrier"
    with runtime.reading() as session:
        assert customers.get_customer(session, newcomer).status == "restricted"
        entries, _ = audit.list_entries(session, action="ban_evasion.revise")
    (entry,) = entries
    assert entry.reason == "number was reassigned by carrier"
    assert json.loads(entry.before)["status"] == "confirmed"


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


# --- a confirmed flag restricts the customer ----------------------------------------------


def _status(runtime: Runtime, customer_id: int) -> str:
    with runtime.reading() as session:
        return customers.get_customer(session, customer_id).status


def _entries(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.reading() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


def test_confirming_a_flag_restricts_the_customer_as_an_automated_consequence(
    runtime: Runtime, banned: int
) -> None:
    suspect = new_customer(runtime, "Suspect", phone=PHONE)
    (flag,) = customers_flags(runtime, suspect)
    assert _status(runtime, suspect) == "pending"
    with runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "confirmed", "same person, admitted on call")
    assert _status(runtime, suspect) == "restricted"
    resolved, restricted = (
        _entries(runtime, "ban_evasion.resolve")[-1],
        _entries(runtime, "customer.status")[-1],
    )
    assert restricted.seq == resolved.seq + 1
    assert (restricted.actor, restricted.role) == ("system:registry", "system")
    assert restricted.request_id == resolved.request_id, "tied to the reviewer's decision"
    assert restricted.object_id == str(suspect)
    assert json.loads(restricted.before)["status"] == "pending"
    assert json.loads(restricted.after) == {
        "status": "restricted",
        "terminated_for_abuse": False,
        "ban_evasion_flag": flag,
    }
    assert restricted.reason == (
        f"ban-evasion flag #{flag} confirmed: matches customer {banned}, terminated for abuse"
    )


@pytest.mark.parametrize("status", ["restricted", "suspended", "terminated"])
def test_a_confirmed_flag_leaves_a_customer_already_kept_from_new_servers_as_it_is(
    runtime: Runtime, banned: int, status: str
) -> None:
    suspect = new_customer(runtime, "Suspect", phone=PHONE)
    (flag,) = customers_flags(runtime, suspect)
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, suspect, status, reason="earlier decision")
    changes = len(_entries(runtime, "customer.status"))
    with runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "confirmed", "same person")
    assert _status(runtime, suspect) == status
    assert len(_entries(runtime, "customer.status")) == changes


def test_a_cleared_flag_changes_nothing_about_the_customer(runtime: Runtime, banned: int) -> None:
    suspect = new_customer(runtime, "Namesake", phone=PHONE)
    (flag,) = customers_flags(runtime, suspect)
    with runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "cleared", "recycled phone number")
    assert _status(runtime, suspect) == "pending"


# --- terminating for abuse screens everyone else against the terminated customer ---------


def test_terminating_for_abuse_flags_every_customer_still_served_who_shares_something(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    abuser = new_customer(runtime, "Abuser", **BANNED)
    add_document(runtime, abuser, "resident-id", RESIDENT_ID)
    same_phone = new_customer(runtime, "Phone Twin", phone="0086 138 1234 5678")
    same_mailbox = new_customer(runtime, "Mailbox Twin", email="S.P.A.M.M.E.R+vps@googlemail.com")
    same_device = new_customer(runtime, "Device Twin", device_fingerprint="dev-5f2a")
    same_id = new_customer(runtime, "ID Twin")
    add_document(runtime, same_id, "resident-id", RESIDENT_ID.lower())
    suspended = new_customer(runtime, "Suspended Neighbour", signup_ip="203.0.113.7")
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, suspended, "suspended", reason="unpaid invoice")
    former = new_customer(runtime, "Former Payer", payment_fingerprint="card-9c1e")
    _ban(runtime, former, for_abuse=False)  # terminated, if not for abuse: no longer served
    unrelated = new_customer(
        runtime, "Unrelated", email="someone@example.cn", phone="13900001111", signup_ip="::1"
    )
    assert count(runtime, BanEvasionFlag) == 0, "nobody was terminated for abuse yet"

    def no_decrypting(*args: object) -> str:
        raise AssertionError("screening decrypted personal data")

    monkeypatch.setattr(PiiVault, "decrypt", no_decrypting)
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, abuser, "terminated", reason="botnet C2", for_abuse=True)
        request_id = op.actor.request_id

    flagged = (same_phone, same_mailbox, same_device, same_id, suspended)
    assert {c: _flags(runtime, c) for c in flagged} == {
        same_phone: [(abuser, ["phone"], "open")],
        same_mailbox: [(abuser, ["email"], "open")],
        same_device: [(abuser, ["device_fingerprint"], "open")],
        same_id: [(abuser, ["id_number"], "open")],
        suspended: [(abuser, ["signup_ip"], "open")],
    }
    assert _flags(runtime, former) == [] and _flags(runtime, unrelated) == []
    raised = _entries(runtime, "ban_evasion.flag")
    assert len(raised) == 5
    assert {e.request_id for e in raised} == {request_id}, "one unit of work with the termination"
    assert "dev-5f2a" not in audit_text(runtime)
    with runtime.reading() as session:
        reason = {
            r.check: r for r in gate.evaluate(session, customers.get_customer(session, same_device))
        }
    assert not reason["ban_evasion"].ok


def test_a_customer_flagged_at_sign_up_is_not_flagged_twice_when_another_banned_one_matches(
    runtime: Runtime, banned: int
) -> None:
    twin = new_customer(runtime, "Twin", device_fingerprint="dev-5f2a", signup_ip="198.51.100.9")
    accomplice = new_customer(runtime, "Accomplice", signup_ip="198.51.100.9")
    assert _flags(runtime, twin) == [(banned, ["device_fingerprint"], "open")]
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, accomplice, "terminated", reason="phishing", for_abuse=True)
    assert _flags(runtime, twin) == [
        (banned, ["device_fingerprint"], "open"),
        (accomplice, ["signup_ip"], "open"),
    ]
    assert _flags(runtime, banned) == [], "a terminated customer is not screened again"


def test_a_termination_for_abuse_through_the_api_flags_lookalikes(
    runtime: Runtime, client: TestClient
) -> None:
    make_user(runtime, "carol", ["sales"])
    headers = {"Authorization": f"Bearer {make_token(runtime, 'carol')}"}
    abuser = new_customer(runtime, "Abuser", payment_fingerprint="card-9c1e")
    lookalike = new_customer(runtime, "Lookalike", payment_fingerprint="card-9c1e")
    answer = client.post(
        f"/api/v1/customers/{abuser}/status",
        json={"status": "terminated", "for_abuse": True, "reason": "carding"},
        headers=headers,
    )
    assert answer.status_code == 200, answer.text
    flags = client.get("/api/v1/ban-evasion-flags", headers=headers).json()
    assert [(f["customer_id"], f["matched_customer_id"], f["attributes"]) for f in flags] == [
        (lookalike, abuser, ["payment_fingerprint"])
    ]
