"""The registry in the console: customers masked, full view audited, review queue,
IP history, attribution search; and in a real browser, an approval that opens the gate."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hostwarden.core import audit
from hostwarden.core.runtime import Actor, Runtime, new_request_id, system_actor
from hostwarden.registry import commitments, customers, inventory, verification
from tests.conftest import ARTIFACTS, browser_sign_in, make_user
from tests.web.test_console import HTML, sign_in

PASSWORD = "reviewer-password-1"
ID_NUMBER = "11010519491231002X"
PHONE = "13812345678"


def admitted_but_unverified(runtime: Runtime, requester: Actor | None = None) -> tuple[int, int]:
    """A customer who accepted the current letter and waits for manual verification,
    admitted by automation and submitted by ``requester`` (automation too by default)."""
    with runtime.operation(system_actor("test")) as op:
        customer = customers.create_customer(
            op,
            kind="individual",
            name="张伟",
            email="zhang.wei@example.cn",
            phone=PHONE,
            external_id="C-1001",
        )
        customers.add_document(op, customer.id, "resident-id", ID_NUMBER)
        commitments.publish(op, commitments.default_letters())
        commitments.accept(op, customer.id, "zh-CN", ip="198.51.100.7", user_agent="pytest")
        inventory.create_range(op, "203.0.113.0/24", purpose="VPS")
        inventory.assign(
            op,
            "203.0.113.7",
            customer.id,
            valid_from="2026-01-01T00:00:00+08:00",
            valid_to="2026-03-01T00:00:00+08:00",
        )
        inventory.assign(op, "203.0.113.9", customer.id, valid_from="2026-02-01T00:00:00+08:00")
        customer_id = customer.id
    request = verification.request_verification(
        runtime, requester or system_actor("test"), customer_id, "manual"
    )
    return customer_id, request.id


@pytest.fixture
def sales(runtime: Runtime) -> str:
    make_user(runtime, "reviewer", ["sales"], PASSWORD)
    return "reviewer"


def test_the_customer_list_masks_phone_and_never_shows_the_id_number(
    client: TestClient, runtime: Runtime, sales: str
) -> None:
    admitted_but_unverified(runtime)
    sign_in(client, sales, PASSWORD)
    page = client.get("/customers", headers=HTML)
    assert page.status_code == 200
    assert "138****5678" in page.text
    assert PHONE not in page.text
    assert ID_NUMBER not in page.text
    found = client.get(f"/customers?id_number={ID_NUMBER.lower()}", headers=HTML)
    assert "张伟" in found.text, "search by exact ID number works through the blind index"


def test_full_numbers_are_shown_only_on_request_and_the_view_is_audited(
    client: TestClient, runtime: Runtime, sales: str
) -> None:
    customer_id, _ = admitted_but_unverified(runtime)
    token = sign_in(client, sales, PASSWORD)
    page = client.get(f"/customers/{customer_id}", headers=HTML)
    assert ID_NUMBER not in page.text
    assert "110105********002X" in page.text
    assert "zhang.wei@" not in page.text and "z***@example.cn" in page.text
    unexplained = client.post(
        f"/customers/{customer_id}/reveal", data={"csrf_token": token}, headers=HTML
    )
    assert unexplained.status_code == 422
    assert "needs a reason" in unexplained.text
    assert ID_NUMBER not in unexplained.text
    shown = client.post(
        f"/customers/{customer_id}/reveal",
        data={"csrf_token": token, "reason": "request 2026-7"},
        headers=HTML,
    )
    assert ID_NUMBER in shown.text
    assert "zhang.wei@example.cn" in shown.text
    assert PHONE in shown.text
    with runtime.reading() as session:
        views, _ = audit.list_entries(session, action="customer.pii_view")
    assert [(v.actor, v.reason) for v in views] == [("reviewer", "request 2026-7")]


def test_a_role_without_pii_view_cannot_reveal(client: TestClient, runtime: Runtime) -> None:
    customer_id, _ = admitted_but_unverified(runtime)
    make_user(runtime, "desk", ["abuse"], PASSWORD)
    token = sign_in(client, "desk", PASSWORD)
    page = client.get(f"/customers/{customer_id}", headers=HTML)
    assert "Show full numbers" not in page.text
    refused = client.post(
        f"/customers/{customer_id}/reveal", data={"csrf_token": token}, headers=HTML
    )
    assert refused.status_code == 403


def test_the_customer_page_draws_the_ip_history(
    client: TestClient, runtime: Runtime, sales: str
) -> None:
    customer_id, _ = admitted_but_unverified(runtime)
    sign_in(client, sales, PASSWORD)
    page = client.get(f"/customers/{customer_id}", headers=HTML)
    assert page.text.count("<rect ") == 2
    assert 'class="current"' in page.text
    assert "203.0.113.7/32: 2025-12-31 16:00 → 2026-02-28 16:00" in page.text


def test_a_reviewer_approves_and_the_gate_then_allows(
    client: TestClient, runtime: Runtime, sales: str
) -> None:
    customer_id, request_id = admitted_but_unverified(runtime)
    token = sign_in(client, sales, PASSWORD)
    denied = client.post(
        f"/customers/{customer_id}/provisioning-check", data={"csrf_token": token}, headers=HTML
    )
    assert 'data-testid="gate-result" class="error"' in denied.text
    no_reason = client.post(
        f"/customers/review/{request_id}",
        data={"decision": "approve", "csrf_token": token},
        headers=HTML,
    )
    assert no_reason.status_code == 422
    approved = client.post(
        f"/customers/review/{request_id}",
        data={"decision": "approve", "reason": "ID card matches the face", "csrf_token": token},
        headers=HTML,
    )
    assert approved.status_code == 200, approved.text
    allowed = client.post(
        f"/customers/{customer_id}/provisioning-check", data={"csrf_token": token}, headers=HTML
    )
    assert 'data-testid="gate-result" class="ok"' in allowed.text


def test_a_reviewer_cannot_approve_a_verification_they_requested(
    client: TestClient, app: object, runtime: Runtime, sales: str
) -> None:
    customer_id, request_id = admitted_but_unverified(
        runtime, Actor(sales, ("sales",), new_request_id())
    )
    token = sign_in(client, sales, PASSWORD)
    queue = client.get("/customers/review", headers=HTML)
    assert f"<td>{sales}</td>" in queue.text, "the queue shows who asked"
    assert 'value="approve" disabled' in queue.text
    own = client.post(
        f"/customers/review/{request_id}",
        data={"decision": "approve", "reason": "I checked it", "csrf_token": token},
        headers=HTML,
    )
    assert own.status_code == 409
    assert 'role="alert"' in own.text
    assert "Another reviewer must approve" in own.text
    with runtime.reading() as session:
        assert customers.get_customer(session, customer_id).identity_status == "pending"

    make_user(runtime, "second-reviewer", ["sales"], PASSWORD)
    with TestClient(app) as other:  # type: ignore[arg-type]
        other_token = sign_in(other, "second-reviewer", PASSWORD)
        assert 'value="approve" disabled' not in other.get("/customers/review", headers=HTML).text
        approved = other.post(
            f"/customers/review/{request_id}",
            data={"decision": "approve", "reason": "checked again", "csrf_token": other_token},
            headers=HTML,
        )
    assert approved.status_code == 200, approved.text
    assert f"#{request_id}: approved." in approved.text


def test_attribution_search_answers_for_the_moment_asked(
    client: TestClient, runtime: Runtime, sales: str
) -> None:
    admitted_but_unverified(runtime)
    sign_in(client, sales, PASSWORD)
    then = client.get("/attribution?ip=203.0.113.7&at=2026-02-01T00:00:00%2B08:00", headers=HTML)
    assert 'data-testid="attribution-result"' in then.text
    assert "张伟" in then.text
    later = client.get("/attribution?ip=203.0.113.7&at=2026-04-01T00:00:00Z", headers=HTML)
    assert 'data-testid="attribution-none"' in later.text
    naive = client.get("/attribution?ip=203.0.113.7&at=2026-04-01T00:00:00", headers=HTML)
    assert "zone" in naive.text
    assert 'role="alert"' in naive.text


@pytest.mark.browser
def test_in_a_browser_a_reviewer_approves_a_pending_customer_and_the_gate_flips(
    live_server: str, runtime: Runtime, sales: str, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    customer_id, _ = admitted_but_unverified(runtime)
    page = browser_page
    assert isinstance(page, Page)
    browser_sign_in(page, live_server, "/customers/review", sales, PASSWORD)

    page.goto(f"{live_server}/customers/{customer_id}")
    page.get_by_test_id("gate-check").click()
    expect(page.get_by_test_id("gate-result")).to_have_text("Denied")

    page.goto(f"{live_server}/customers/review")
    row = page.get_by_test_id("review-queue").locator("tr", has_text="张伟")
    row.locator("input[name=reason]").fill("ID card checked against the applicant")
    row.locator("button[value=approve]").click()
    expect(page.get_by_test_id("notice")).to_contain_text("approved")

    page.goto(f"{live_server}/customers/{customer_id}")
    expect(page.get_by_test_id("identity-status")).to_have_text("verified")
    page.get_by_test_id("gate-check").click()
    expect(page.get_by_test_id("gate-result")).to_have_text("Allowed")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "customer-page.png"), full_page=True)
