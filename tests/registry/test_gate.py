"""The provisioning gate: every check evaluated and reported, the decision flips from deny
to allow only when all hold, and every decision is stored and audited."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hostwarden.core import audit
from hostwarden.core.runtime import Runtime
from hostwarden.errors import NotFound, ValidationFailed
from hostwarden.registry import customers, gate
from hostwarden.registry.models import BanEvasionFlag, ProvisioningDecision
from tests.conftest import make_token, make_user
from tests.registry.admission_support import (
    TEST_ACTOR,
    accept_online,
    counts,
    flag_ban_evasion,
    make_customer,
    publish_default,
    publish_revision,
    update_customer,
)
from tests.registry.customer_fixtures import actor


def decide(runtime: Runtime, customer_id: int) -> gate.Decision:
    with runtime.operation(TEST_ACTOR) as op:
        return gate.check(op, customer_id)


def failing(decision: gate.Decision) -> list[str]:
    return [r.check for r in decision.failed]


def test_a_customer_failing_everything_is_told_every_reason_at_once(runtime: Runtime) -> None:
    customer = make_customer(runtime, status="suspended")
    flag_ban_evasion(runtime, customer, make_customer(runtime, "被封禁的旧客户"))
    decision = decide(runtime, customer)
    assert not decision.allowed
    assert [r.check for r in decision.reasons] == list(gate.CHECKS)
    assert failing(decision) == ["identity", "commitment", "status", "ban_evasion"]
    details = {r.check: r.detail for r in decision.reasons}
    assert "unverified" in details["identity"]
    assert "no commitment letter has been published" in details["commitment"]
    assert "suspended" in details["status"]
    assert "phone, device_fingerprint" in details["ban_evasion"]


def test_the_gate_opens_only_when_the_last_condition_is_met(runtime: Runtime) -> None:
    customer = make_customer(runtime, status="suspended")
    flag = flag_ban_evasion(runtime, customer, make_customer(runtime, "被封禁的旧客户"))
    steps = [
        (
            "identity verified",
            lambda: update_customer(runtime, customer, identity_status="verified"),
        ),
        ("letter published", lambda: publish_default(runtime)),
        ("letter accepted", lambda: accept_online(runtime, customer)),
        ("suspension lifted", lambda: update_customer(runtime, customer, status="active")),
    ]
    seen = [failing(decide(runtime, customer))]
    for _, step in steps:
        step()
        seen.append(failing(decide(runtime, customer)))
    assert seen == [
        ["identity", "commitment", "status", "ban_evasion"],
        ["commitment", "status", "ban_evasion"],
        ["commitment", "status", "ban_evasion"],  # published, not yet accepted
        ["status", "ban_evasion"],
        ["ban_evasion"],
    ]
    with runtime.operation(TEST_ACTOR) as op:
        row = op.session.get(BanEvasionFlag, flag)
        assert row is not None
        row.status = "cleared"
    decision = decide(runtime, customer)
    assert decision.allowed and decision.failed == []
    assert all(r.ok for r in decision.reasons)


def test_a_confirmed_ban_evasion_keeps_the_gate_shut_even_after_the_restriction_is_lifted(
    runtime: Runtime,
) -> None:
    customer = make_customer(runtime, identity_status="verified", status="active")
    banned = make_customer(runtime, "被封禁的旧客户", status="terminated")
    publish_default(runtime)
    accept_online(runtime, customer)
    flag = flag_ban_evasion(runtime, customer, banned)
    with runtime.operation(actor("sales")) as op:
        customers.resolve_flag(op, flag, "confirmed", "same person, same card")
    decision = decide(runtime, customer)
    assert failing(decision) == ["status", "ban_evasion"], "confirming restricted the account"
    detail = {r.check: r.detail for r in decision.reasons}["ban_evasion"]
    assert detail.startswith(f"ban evasion confirmed by flag(s) #{flag} matches customer {banned}")
    with runtime.operation(actor("sales")) as op:
        customers.set_status(op, customer, "active", reason="restriction lifted by mistake")
    assert failing(decide(runtime, customer)) == ["ban_evasion"]


def test_a_new_letter_version_closes_the_gate_until_the_customer_accepts_it(
    runtime: Runtime,
) -> None:
    customer = make_customer(runtime, identity_status="verified", status="active")
    publish_default(runtime)
    accept_online(runtime, customer)
    assert decide(runtime, customer).allowed
    publish_revision(runtime, "第七条 补充条款。")
    decision = decide(runtime, customer)
    assert failing(decision) == ["commitment"]
    assert "accepted version 1, but version 2 is current" in decision.reasons[1].detail
    accept_online(runtime, customer)
    assert decide(runtime, customer).allowed


@pytest.mark.parametrize(
    ("status", "allowed"),
    [
        ("pending", True),
        ("active", True),
        ("restricted", False),
        ("suspended", False),
        ("terminated", False),
    ],
)
def test_only_pending_and_active_accounts_may_get_new_servers(
    runtime: Runtime, status: str, allowed: bool
) -> None:
    customer = make_customer(runtime, identity_status="verified", status=status)
    publish_default(runtime)
    accept_online(runtime, customer)
    decision = decide(runtime, customer)
    assert decision.allowed is allowed
    assert failing(decision) == ([] if allowed else ["status"])


@pytest.mark.parametrize("identity_status", ["unverified", "pending", "rejected"])
def test_identity_must_be_verified_not_merely_submitted(
    runtime: Runtime, identity_status: str
) -> None:
    customer = make_customer(runtime, identity_status=identity_status, status="active")
    publish_default(runtime)
    accept_online(runtime, customer)
    assert failing(decide(runtime, customer)) == ["identity"]


def test_every_decision_is_stored_with_its_reasons_and_audited(runtime: Runtime) -> None:
    customer = make_customer(runtime)
    first = decide(runtime, customer)
    update_customer(runtime, customer, identity_status="verified")
    second = decide(runtime, customer)
    with runtime.reading() as session:
        rows = gate.list_decisions(session, customer)
        entries, _ = audit.list_entries(session, action="provisioning.decision")
    assert [r.id for r in rows] == [second.decision_id, first.decision_id]
    assert all(r.requested_by == TEST_ACTOR.name and not r.allowed for r in rows)
    assert gate.decision_of(rows[1]) == first
    assert json.loads(rows[0].reasons)[0] == {
        "check": "identity",
        "ok": True,
        "detail": "real-name identity verified",
    }
    assert sorted(e.object_id for e in entries) == sorted(
        [str(first.decision_id), str(second.decision_id)]
    )
    after = json.loads(entries[0].after)
    assert after["customer_id"] == customer and after["allowed"] is False
    assert len(after["reasons"]) == len(gate.CHECKS)


def test_a_customer_is_found_by_external_id_as_well(runtime: Runtime) -> None:
    customer = make_customer(runtime, external_id="10042")
    with runtime.operation(TEST_ACTOR) as op:
        decision = gate.check(op, external_id="10042")
        by_text = gate.customer_from_text(op.session, "10042", external=True)
    assert decision.customer_id == customer == by_text.id


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"customer_id": 999999}, NotFound, "no customer with id 999999"),
        ({"external_id": "nobody"}, NotFound, "no customer with external id 'nobody'"),
        ({}, ValidationFailed, "by customer_id or by external_id"),
        ({"customer_id": 1, "external_id": "x"}, ValidationFailed, "one of them"),
    ],
)
def test_an_unknown_or_unnamed_customer_is_an_error_and_nothing_is_recorded(
    runtime: Runtime, kwargs: dict[str, object], error: type[Exception], message: str
) -> None:
    make_customer(runtime)
    before = counts(runtime)
    with pytest.raises(error, match=message), runtime.operation(TEST_ACTOR) as op:
        gate.check(op, kwargs.get("customer_id"), external_id=kwargs.get("external_id"))  # type: ignore[arg-type]
    assert counts(runtime) == before


# --- through the API ----------------------------------------------------------------------


def test_the_billing_system_asks_the_gate_by_external_id(
    client: TestClient, runtime: Runtime
) -> None:
    make_user(runtime, "billing-bot", ["sales"])
    headers = {"Authorization": f"Bearer {make_token(runtime, 'billing-bot')}"}
    customer = make_customer(runtime, external_id="C-2001", status="active")
    publish_default(runtime)

    denied = client.post(
        "/api/v1/provisioning/check", json={"external_id": "C-2001"}, headers=headers
    )
    assert denied.status_code == 200, denied.text
    body = denied.json()
    assert body["allowed"] is False and body["customer_id"] == customer
    assert [(r["check"], r["ok"]) for r in body["reasons"]] == [
        ("identity", False),
        ("commitment", False),
        ("status", True),
        ("ban_evasion", True),
    ]

    update_customer(runtime, customer, identity_status="verified")
    accept_online(runtime, customer)
    allowed = client.post(
        "/api/v1/provisioning/check", json={"customer_id": customer}, headers=headers
    )
    assert allowed.json()["allowed"] is True

    history = client.get(f"/api/v1/customers/{customer}/provisioning-decisions", headers=headers)
    assert [d["decision_id"] for d in history.json()] == [
        allowed.json()["decision_id"],
        body["decision_id"],
    ]
    assert history.json()[0]["requested_by"] == "billing-bot"


def test_the_gate_api_answers_unknown_and_ambiguous_customers_with_problems(
    client: TestClient, runtime: Runtime, admin_token: str
) -> None:
    headers = {"Authorization": f"Bearer {admin_token}"}
    unknown = client.post(
        "/api/v1/provisioning/check", json={"customer_id": 999999}, headers=headers
    )
    assert unknown.status_code == 404
    assert unknown.headers["content-type"].startswith("application/problem+json")
    assert "no customer with id 999999" in unknown.json()["detail"]
    neither = client.post("/api/v1/provisioning/check", json={}, headers=headers)
    assert neither.status_code == 422
    with runtime.reading() as session:
        assert session.scalars(select(ProvisioningDecision)).first() is None
