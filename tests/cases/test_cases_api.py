"""The abuse desk's API: reports in as the simple form, XARF v4 and a raw mail; bad bodies;
cases, actions, SLA, playbooks and allowlist; the SLA at /metrics."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient

from hostwarden.core.runtime import Runtime
from tests.cases.support import build, mail
from tests.conftest import make_token, make_user

SIMPLE = {
    "category": "bruteforce",
    "ip": "203.0.113.10",
    "port": 22,
    "occurred_at": "2026-05-01T10:00:00+08:00",
    "description": "sshd[811]: Failed password for root from 203.0.113.10 port 50022",
}

XARF4 = {
    "Version": "4",
    "ReporterInfo": {"ReporterOrg": "Example CERT", "ReporterOrgEmail": "cert@example.org"},
    "Reporter": {
        "ReporterOrg": "Example CERT",
        "ReporterOrgDomain": "example.org",
        "ReporterOrgEmail": "cert@example.org",
        "ReporterContactEmail": "cert@example.org",
    },
    "Sender": {
        "SenderOrg": "Example CERT",
        "SenderOrgDomain": "example.org",
        "SenderOrgEmail": "cert@example.org",
    },
    "Report": {
        "ReportClass": "Activity",
        "ReportType": "Login-Attack",
        "Date": "2026-05-01T02:00:00Z",
        "SourceIp": "203.0.113.10",
        "SourcePort": 50022,
        "DestinationPort": 22,
        "Service": "ssh",
        "Samples": [
            {
                "ContentType": "text/plain",
                "Base64Encoded": False,
                "Description": "auth log",
                "Payload": "Failed password",
            }
        ],
    },
}


def _desk(runtime: Runtime) -> dict[str, str]:
    make_user(runtime, "desk", ["abuse"], "desk-password-1")
    return {"Authorization": f"Bearer {make_token(runtime, 'desk')}"}


def test_simple_form_report_opens_a_case_and_the_case_can_be_worked_through_the_api(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    headers = _desk(runtime)
    response = client.post("/api/v1/reports", json=SIMPLE, headers=headers)
    assert response.status_code == 201, response.text
    reference = response.json()["cases_opened"][0]
    listed = client.get("/api/v1/cases", params={"state": "new"}, headers=headers).json()
    assert [c["reference"] for c in listed["items"]] == [reference]
    assert listed["items"][0]["category"] == "bruteforce"
    note = client.post(
        f"/api/v1/cases/{reference}/notes", json={"text": "watching"}, headers=headers
    )
    assert note.status_code == 200
    notified = client.post(
        f"/api/v1/cases/{reference}/notify", json={"locale": "en"}, headers=headers
    )
    assert notified.json()["state"] == "notified"
    bad = client.post(
        f"/api/v1/cases/{reference}/state", json={"to": "terminated"}, headers=headers
    )
    assert bad.status_code == 409 and "cannot become terminated" in bad.json()["detail"]
    done = client.post(
        f"/api/v1/cases/{reference}/state",
        json={"to": "resolved", "reason": "script removed"},
        headers=headers,
    )
    assert done.json()["state"] == "resolved"
    detail = client.get(f"/api/v1/cases/{reference}", headers=headers).json()
    assert [t["kind"] for t in detail["timeline"]][:2] == ["event", "note"]
    sla = client.get("/api/v1/cases/sla", headers=headers).json()
    assert sla[0]["category"] == "bruteforce" and sla[0]["mitigation_count"] == 1
    metrics = client.get("/metrics").text
    assert 'hostwarden_cases{category="bruteforce"} 1.0' in metrics
    assert 'hostwarden_case_mitigation_seconds{category="bruteforce"}' in metrics


def test_xarf4_json_report_is_parsed_into_a_bruteforce_event(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    headers = _desk(runtime)
    response = client.post("/api/v1/reports", json=XARF4, headers=headers)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["parser"] == "xarf4" and body["events"] == 1 and body["cases_opened"]
    raw = client.get(f"/api/v1/reports/{body['report_id']}/raw", headers=headers)
    assert json.loads(raw.content) == XARF4
    assert raw.headers["x-content-sha256"] == body["sha256"]


def test_a_whole_mail_can_be_posted_as_message_rfc822(runtime: Runtime, client: TestClient) -> None:
    build(runtime)
    headers = {**_desk(runtime), "Content-Type": "message/rfc822"}
    text = (
        "Spam from 203.0.113.10 received 2026-05-01 10:00:00 +0800, "
        "Received: from vm1 [203.0.113.10]"
    )
    response = client.post("/api/v1/reports", content=mail(text), headers=headers)
    assert response.status_code == 201, response.text
    assert response.json()["status"] == "parsed"


def test_bad_report_bodies_are_refused_with_what_to_fix(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    headers = _desk(runtime)
    cases = [
        ({**SIMPLE, "occurred_at": "2026-05-01T10:00:00"}, "has no zone"),
        ({**SIMPLE, "category": "weather"}, "is not known"),
        ({k: v for k, v in SIMPLE.items() if k != "ip"}, "names no address"),
        ({**SIMPLE, "ip": "999.1.1.1"}, "999.1.1.1"),
        ({**SIMPLE, "colour": "red"}, "colour"),
    ]
    for body, message in cases:
        response = client.post("/api/v1/reports", json=body, headers=headers)
        assert response.status_code == 422, (body, response.text)
        assert message in response.json()["detail"], response.json()
    not_json = client.post(
        "/api/v1/reports", content=b"{nope", headers={**headers, "Content-Type": "application/json"}
    )
    assert not_json.status_code == 422 and "not JSON" in not_json.json()["detail"]
    wrong_type = client.post(
        "/api/v1/reports", content=b"x", headers={**headers, "Content-Type": "image/png"}
    )
    assert wrong_type.status_code == 422 and "message/rfc822" in wrong_type.json()["detail"]
    runtime.settings.cases.max_report_mb = 1
    big = client.post(
        "/api/v1/reports",
        content=b"x" * (1024 * 1024 + 1),
        headers={**headers, "Content-Type": "message/rfc822"},
    )
    assert big.status_code == 413
    queue = client.get("/api/v1/reports/queue", headers=headers).json()
    assert queue == {"unparsed": [], "unresolved": []}


def test_playbooks_and_allowlist_through_the_api(runtime: Runtime, client: TestClient) -> None:
    build(runtime)
    headers = _desk(runtime)
    put = client.put(
        "/api/v1/abuse/playbooks/spam",
        headers=headers,
        json={
            "deadline_hours": 12,
            "escalate_after_events": 5,
            "escalation_action": "suspend",
            "reason": "spam wave",
        },
    )
    assert put.status_code == 200 and put.json()["deadline_hours"] == 12
    bad = client.put(
        "/api/v1/abuse/playbooks/spam",
        headers=headers,
        json={"deadline_hours": 0, "escalate_after_events": 5},
    )
    assert bad.status_code == 422 and "deadline" in bad.json()["detail"]
    added = client.post(
        "/api/v1/abuse/allowlist",
        headers=headers,
        json={"kind": "address", "value": "203.0.113.0/28", "mode": "record", "reason": "scanner"},
    )
    assert added.status_code == 201
    entry = added.json()["id"]
    response = client.post("/api/v1/reports", json=SIMPLE, headers=headers).json()
    assert response["allowlisted"] == 1 and response["cases_opened"] == []
    removed = client.post(
        f"/api/v1/abuse/allowlist/{entry}/remove",
        headers=headers,
        json={"reason": "scanner retired"},
    )
    assert removed.status_code == 200
    assert client.get("/api/v1/abuse/allowlist", headers=headers).json() == []
