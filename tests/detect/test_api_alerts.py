"""/api/v1/alerts and /api/v1/suppressions: what the abuse desk and the NOC call."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from hostwarden.core.runtime import Runtime
from hostwarden.detect.alerts import AlertSink
from tests.conftest import make_token, make_user
from tests.detect.alert_support import MINUTE, T0, Holders, audit_of, finding, make_holders, stored


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def holders(runtime: Runtime) -> Holders:
    holders = make_holders(runtime)
    AlertSink(runtime).take(
        [
            finding(customer_id=holders.acme, instance_id=holders.acme_vm),
            finding(
                ip="203.0.113.200",
                category="ddos-out",
                kind="syn-flood",
                severity="critical",
                customer_id=holders.globex,
                start_ms=T0 + 60 * MINUTE,
                seconds=10,
                detector="volumetric",
                suggested_action="rate-limit 203.0.113.200",
            ),
        ]
    )
    return holders


@pytest.fixture
def abuse_token(runtime: Runtime) -> str:
    make_user(runtime, "li.na", ["abuse"])
    return make_token(runtime, "li.na")


def role_token(runtime: Runtime, role: str) -> str:
    make_user(runtime, f"u-{role}", [role])
    return make_token(runtime, f"u-{role}")


def test_alerts_are_listed_with_filters_and_paging(
    client: TestClient, admin_token: str, holders: Holders
) -> None:
    response = client.get("/api/v1/alerts", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    page = response.json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 100, 0)
    assert [a["id"] for a in page["items"]] == [2, 1]
    flood = page["items"][0]
    assert (flood["category"], flood["kind"], flood["severity"], flood["customer_id"]) == (
        "ddos-out",
        "syn-flood",
        "critical",
        holders.globex,
    )
    assert flood["suggested_action"] == "rate-limit 203.0.113.200"
    filtered = client.get(
        "/api/v1/alerts",
        params={"category": "scan", "ip": "203.0.113.0/25", "status": "open", "limit": 1},
        headers=bearer(admin_token),
    ).json()
    assert filtered["total"] == 1 and [a["id"] for a in filtered["items"]] == [1]
    by_customer = client.get(
        "/api/v1/alerts", params={"customer": holders.globex}, headers=bearer(admin_token)
    ).json()
    assert [a["id"] for a in by_customer["items"]] == [2]


def test_an_alert_carries_the_evidence_link_to_its_flow_records(
    client: TestClient, admin_token: str, holders: Holders
) -> None:
    response = client.get("/api/v1/alerts/1", headers=bearer(admin_token))
    assert response.status_code == 200, response.text
    alert = response.json()
    assert (alert["ip"], alert["instance_id"]) == ("203.0.113.5", holders.acme_vm)
    evidence = alert["evidence"]
    assert evidence["from"] == "2026-05-04T11:55:00.000000Z"
    assert evidence["to"] == "2026-05-04T12:05:00.000000Z"
    assert evidence["url"].startswith("/api/v1/flows/records?from=")
    # The link is a query the flows API takes as it is.
    records = client.get(evidence["url"], headers=bearer(admin_token))
    assert records.status_code == 200, records.text


def test_feedback_and_close_are_recorded_as_the_caller(
    client: TestClient, runtime: Runtime, abuse_token: str, holders: Holders
) -> None:
    marked = client.post(
        "/api/v1/alerts/1/feedback",
        json={"verdict": "false-positive", "reason": "customer's own pentest"},
        headers=bearer(abuse_token),
    )
    assert marked.status_code == 200, marked.text
    assert (marked.json()["feedback"], marked.json()["feedback_by"]) == ("false-positive", "li.na")
    closed = client.post(
        "/api/v1/alerts/1/close", json={"reason": "pentest"}, headers=bearer(abuse_token)
    )
    assert closed.status_code == 200, closed.text
    assert (closed.json()["status"], closed.json()["closed_by"]) == ("closed", "li.na")
    again = client.post(
        "/api/v1/alerts/1/close", json={"reason": "pentest"}, headers=bearer(abuse_token)
    )
    assert again.status_code == 409
    assert [(e.action, e.actor) for e in audit_of(runtime, "alert.")][-2:] == [
        ("alert.feedback", "li.na"),
        ("alert.close", "li.na"),
    ]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "detail"),
    [
        ("GET", "/api/v1/alerts/77", None, 404, "no alert with id 77."),
        ("POST", "/api/v1/alerts/77/close", {"reason": "x"}, 404, "no alert with id 77."),
        ("POST", "/api/v1/alerts/1/close", {}, 422, "closing an alert needs a reason."),
        (
            "POST",
            "/api/v1/alerts/1/feedback",
            {"verdict": "maybe"},
            422,
            "'maybe' is not a verdict.",
        ),
        (
            "GET",
            "/api/v1/alerts?category=phishing",
            None,
            422,
            "'phishing' is not a detection category.",
        ),
        (
            "GET",
            "/api/v1/alerts?ip=203.0.113.999",
            None,
            422,
            "is not an IP address or CIDR prefix.",
        ),
    ],
)
def test_bad_alert_requests_answer_a_problem_saying_what_was_wrong(
    client: TestClient,
    runtime: Runtime,
    abuse_token: str,
    holders: Holders,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    detail: str,
) -> None:
    response = client.request(method, path, json=body, headers=bearer(abuse_token))
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert detail in response.json()["detail"]
    assert audit_of(runtime, "alert.close") == [] and audit_of(runtime, "alert.feedback") == []


def test_suppressions_are_added_listed_and_removed_with_reasons(
    client: TestClient, runtime: Runtime, abuse_token: str, holders: Holders
) -> None:
    added = client.post(
        "/api/v1/suppressions",
        json={
            "cidr": "203.0.113.0/24",
            "customer_id": holders.acme,
            "category": "scan",
            "expires": "7d",
            "reason": "authorised pentest, ticket 4711",
        },
        headers=bearer(abuse_token),
    )
    assert added.status_code == 201, added.text
    rule = added.json()
    assert (rule["cidr"], rule["category"], rule["active"], rule["created_by"]) == (
        "203.0.113.0/24",
        "scan",
        True,
        "li.na",
    )
    listed = client.get("/api/v1/suppressions", headers=bearer(abuse_token)).json()
    assert [r["id"] for r in listed] == [rule["id"]]
    # It keeps the customer's next scan finding out.
    results = AlertSink(runtime).take(
        [finding(customer_id=holders.acme, start_ms=T0 + 120 * MINUTE)]
    )
    assert [r.action for r in results] == ["suppressed"]
    refused = client.delete(f"/api/v1/suppressions/{rule['id']}", headers=bearer(abuse_token))
    assert refused.status_code == 422
    assert "removing a suppression needs a reason." in refused.json()["detail"]
    removed = client.delete(
        f"/api/v1/suppressions/{rule['id']}",
        params={"reason": "pentest finished"},
        headers=bearer(abuse_token),
    )
    assert removed.status_code == 200, removed.text
    assert (removed.json()["active"], removed.json()["hits"]) == (False, 1)
    assert client.get("/api/v1/suppressions", headers=bearer(abuse_token)).json() == []
    everything = client.get(
        "/api/v1/suppressions", params={"all": "true"}, headers=bearer(abuse_token)
    ).json()
    assert [r["remove_reason"] for r in everything] == ["pentest finished"]


@pytest.mark.parametrize(
    ("body", "status", "detail"),
    [
        (
            {"cidr": "203.0.113.0/24", "category": "phishing", "reason": "x"},
            422,
            "'phishing' is not a detection category.",
        ),
        ({"cidr": "203.0.113.0/33", "reason": "x"}, 422, "is not an IP address or CIDR prefix."),
        ({"cidr": "203.0.113.0/24"}, 422, "a suppression needs a reason."),
        (
            {"cidr": "203.0.113.0/24", "reason": "x", "customer_id": 424242},
            404,
            "no customer with id 424242.",
        ),
        (
            {"cidr": "203.0.113.0/24", "reason": "x", "expires": "2001-01-01"},
            422,
            "is not in the future.",
        ),
    ],
)
def test_a_bad_suppression_is_refused_and_nothing_is_stored(
    client: TestClient,
    runtime: Runtime,
    abuse_token: str,
    body: dict[str, Any],
    status: int,
    detail: str,
) -> None:
    response = client.post("/api/v1/suppressions", json=body, headers=bearer(abuse_token))
    assert response.status_code == status, response.text
    assert detail in response.json()["detail"]
    assert stored(runtime)[1] == 0
    assert audit_of(runtime, "suppression.") == []


def test_sales_may_not_see_alerts_and_auditors_may_not_change_them(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    sales = bearer(role_token(runtime, "sales"))
    for method, path in [
        ("GET", "/api/v1/alerts"),
        ("GET", "/api/v1/alerts/1"),
        ("GET", "/api/v1/suppressions"),
    ]:
        assert client.request(method, path, headers=sales).status_code == 403, path
    auditor = bearer(role_token(runtime, "auditor"))
    assert client.get("/api/v1/alerts/1", headers=auditor).status_code == 200
    assert client.get("/api/v1/suppressions", headers=auditor).status_code == 200
    denied = [
        client.post("/api/v1/alerts/1/close", json={"reason": "x"}, headers=auditor),
        client.post(
            "/api/v1/alerts/1/feedback",
            json={"verdict": "true-positive", "reason": "x"},
            headers=auditor,
        ),
        client.post(
            "/api/v1/suppressions", json={"cidr": "203.0.113.0/24", "reason": "x"}, headers=sales
        ),
    ]
    assert [r.status_code for r in denied] == [403, 403, 403]
    noc = bearer(role_token(runtime, "noc"))
    allowed = client.post(
        "/api/v1/suppressions", json={"cidr": "203.0.113.0/24", "reason": "x"}, headers=noc
    )
    assert allowed.status_code == 201
    assert stored(runtime)[1] == 1
