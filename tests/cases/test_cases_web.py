"""The abuse desk's console pages and its two public pages, through the app: the case
list with its filters and bulk actions, the case page's actions, the work queue, the
settings page, the report form (rate-limited) and the customer response page."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import select

from hostwarden.cases import notify, service
from hostwarden.cases.models import AbuseCase, AbuseReport
from hostwarden.core.runtime import Runtime, system_actor
from tests.cases.support import NOT_OURS, build, event, take
from tests.conftest import make_user
from tests.web.test_console import sign_in

HTML = {"Accept": "text/html"}
PASSWORD = "correct-horse-9"


def signed_in(client: TestClient, runtime: Runtime, role: str) -> str:
    make_user(runtime, f"u-{role}", [role], PASSWORD)
    return sign_in(client, f"u-{role}", PASSWORD)


def test_the_case_list_filters_and_applies_a_bulk_action(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    spam = take(runtime, event()).cases_opened[0]
    scan = take(runtime, event(category="scanning", excerpt="scan")).cases_opened[0]
    csrf = signed_in(client, runtime, "abuse")
    page = client.get("/cases", headers=HTML).text
    assert spam in page and scan in page and 'data-testid="ageing"' in page
    filtered = client.get("/cases", params={"category": "scanning"}, headers=HTML).text
    assert scan in filtered and spam not in filtered
    bad = client.get("/cases", params={"customer": "alice"}, headers=HTML)
    assert bad.status_code == 422 and "not a customer id" in bad.text
    done = client.post(
        "/cases/bulk",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "case": [spam, scan],
            "action": "ignored",
            "reason": "test traffic",
        },
    )
    assert done.status_code == 200 and "2 cases changed." in done.text
    refused = client.post(
        "/cases/bulk", headers=HTML, data={"csrf_token": csrf, "action": "ignored", "reason": "x"}
    )
    assert "no case was ticked" in refused.text
    with runtime.reading() as session:
        assert {c.state for c in session.scalars(select(AbuseCase))} == {"ignored"}


def test_the_case_page_acts_and_shows_errors_where_they_happen(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    reference = take(runtime, event(category="phishing", excerpt="login page")).cases_opened[0]
    csrf = signed_in(client, runtime, "abuse")
    page = client.get(f"/cases/{reference}", headers=HTML).text
    assert "Alice Hosting" in page and "decision needed before the case is closed" in page
    noted = client.post(
        f"/cases/{reference}/note",
        headers=HTML,
        data={"csrf_token": csrf, "text": "call first"},
        follow_redirects=False,
    )
    assert noted.status_code == 303 and noted.headers["location"].endswith("?done=note")
    shown = client.get(noted.headers["location"], headers=HTML).text
    assert "Internal note added." in shown and "Internal note — never sent" in shown
    refused = client.post(
        f"/cases/{reference}/state",
        headers=HTML,
        data={"csrf_token": csrf, "to": "resolved", "reason": "gone"},
    )
    assert refused.status_code == 409 and "报告主管部门" in refused.text
    decided = client.post(
        f"/cases/{reference}/authority",
        headers=HTML,
        data={"csrf_token": csrf, "reported": "yes", "to": "公安机关网安部门", "ref": "GA-1"},
    )
    assert decided.status_code == 200 and "GA-1" in decided.text
    resolved = client.post(
        f"/cases/{reference}/state",
        headers=HTML,
        data={"csrf_token": csrf, "to": "resolved", "reason": "gone"},
    )
    assert 'data-testid="state">resolved' in resolved.text
    forged = client.post(
        f"/cases/{reference}/note", headers=HTML, data={"csrf_token": "forged", "text": "x"}
    )
    assert forged.status_code == 403
    auditor = signed_in(client, runtime, "auditor")
    assert auditor
    read_only = client.get(f"/cases/{reference}", headers=HTML).text
    assert 'data-testid="notify"' not in read_only


def test_the_work_queue_lists_unparsed_reports_and_unresolved_events(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    take(runtime, event(ip=NOT_OURS))
    unparsed = service.receive(runtime, b"\x00garbage\xff", channel="smtp")
    csrf = signed_in(client, runtime, "abuse")
    page = client.get("/cases/queue", headers=HTML).text
    assert NOT_OURS in page and "does not own" in page
    assert f"/cases/reports/{unparsed.report_id}/raw" in page
    raw = client.get(f"/cases/reports/{unparsed.report_id}/raw", headers=HTML)
    assert raw.content == b"\x00garbage\xff"
    done = client.post(
        f"/cases/reports/{unparsed.report_id}/review",
        headers=HTML,
        data={"csrf_token": csrf, "note": "phoned the sender"},
    )
    assert "Report marked reviewed." in done.text
    with runtime.reading() as session:
        assert session.get(AbuseReport, unparsed.report_id).status == "reviewed"  # type: ignore[union-attr]


def test_settings_change_a_playbook_and_the_allowlist(runtime: Runtime, client: TestClient) -> None:
    csrf = signed_in(client, runtime, "abuse")
    saved = client.post(
        "/cases/settings/playbooks/spam",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "deadline_hours": "6",
            "escalate_after_events": "3",
            "escalation_action": "suspend",
            "authority_decision": "true",
        },
    )
    assert "Playbook saved." in saved.text
    bad = client.post(
        "/cases/settings/allowlist",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "kind": "address",
            "value": "203.0.113.1/24",
            "mode": "record",
            "reason": "scanner",
        },
    )
    assert 'data-testid="error"' in bad.text
    added = client.post(
        "/cases/settings/allowlist",
        headers=HTML,
        data={
            "csrf_token": csrf,
            "kind": "address",
            "value": "203.0.113.0/24",
            "mode": "record",
            "reason": "scanner",
        },
    )
    assert "Allowlist entry added." in added.text and "203.0.113.0/24" in added.text
    noc = signed_in(client, runtime, "noc")
    denied = client.post(
        "/cases/settings/playbooks/spam",
        headers=HTML,
        data={"csrf_token": noc, "deadline_hours": "1", "escalate_after_events": "1"},
    )
    assert denied.status_code == 403


def _csrf(client: TestClient, path: str) -> str:
    page = client.get(path, headers=HTML)
    found = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert found is not None
    return found.group(1)


def test_the_public_report_form_takes_a_report_explains_mistakes_and_is_rate_limited(
    runtime: Runtime, client: TestClient
) -> None:
    from hostwarden.cases import web

    build(runtime)
    web.FORM_LIMIT.seen.clear()
    runtime.settings.cases.form_per_hour = 3
    csrf = _csrf(client, "/report")
    form = {
        "csrf_token": csrf,
        "category": "phishing",
        "address": "http://shop.example.com/bank",
        "occurred_at": "2026-05-01T10:00:00+08:00",
        "description": "fake bank page",
        "email": "someone@example.org",
    }
    wrong = client.post("/report", data={**form, "occurred_at": "yesterday"}, headers=HTML)
    assert wrong.status_code == 422 and "ISO 8601" in wrong.text and "fake bank page" in wrong.text
    ok = client.post("/report", data=form, headers=HTML)
    assert ok.status_code == 200 and "was received as number" in ok.text
    host_only = client.post("/report", data={**form, "address": "shop.example.com"}, headers=HTML)
    assert host_only.status_code == 200
    limited = client.post("/report", data=form, headers=HTML)
    assert limited.status_code == 422 and "too many reports" in limited.text
    with runtime.reading() as session:
        case = session.scalars(select(AbuseCase)).one()
        assert case.category == "phishing" and case.subject == "shop.example.com"
    assert client.post("/report", data={**form, "csrf_token": "forged"}).status_code == 403


def test_the_response_page_shows_only_what_the_customer_may_see(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    reference = take(runtime, event(excerpt="evidence line")).cases_opened[0]
    with runtime.operation(system_actor("desk")) as op:
        case = service.get_case(op.session, reference)
        service.add_note(op, case, "secret internal remark")
        text = notify.notify_customer(op, case, locale="en").message
    token = text.split("/respond/")[1].split()[0]
    page = client.get(f"/respond/{token}", headers=HTML).text
    assert reference in page and "evidence line" in page
    assert "secret internal remark" not in page
    csrf = _csrf(client, f"/respond/{token}")
    empty = client.post(f"/respond/{token}", data={"csrf_token": csrf, "text": " "}, headers=HTML)
    assert empty.status_code == 422 and "empty" in empty.text
    sent = client.post(
        f"/respond/{token}",
        headers=HTML,
        data={"csrf_token": csrf, "text": "done"},
        files={"files": ("proof.txt", b"cleaned", "text/plain")},
    )
    assert "your reply is on the case" in sent.text
    assert client.get("/respond/wrong-token", headers=HTML).status_code == 404


def test_the_public_form_speaks_the_visitors_language(client: TestClient) -> None:
    chinese = client.get("/report", headers={**HTML, "Accept-Language": "zh-CN,zh;q=0.9"}).text
    assert "垃圾邮件" in chinese and "网络钓鱼" in chinese
    english = client.get("/report", headers={**HTML, "Accept-Language": "en-GB"}).text
    assert "Phishing" in english and "网络钓鱼" not in english


def test_pages_never_show_messages_taken_from_the_address(
    runtime: Runtime, client: TestClient
) -> None:
    build(runtime)
    reference = take(runtime, event()).cases_opened[0]
    with runtime.operation(system_actor("desk")) as op:
        text = notify.notify_customer(op, service.get_case(op.session, reference), locale="en")
        token = text.message.split("/respond/")[1].split()[0]
    spoof = {"notice": "Pay the fine at evil.example", "error": "Pay the fine", "status": "500"}
    page = client.get(f"/respond/{token}", params=spoof, headers=HTML)
    assert page.status_code == 200 and "Pay the fine" not in page.text
    signed_in(client, runtime, "abuse")
    for path in ("/cases/queue", "/cases/settings", f"/cases/{reference}", "/cases"):
        shown = client.get(path, params={**spoof, "done": "evil"}, headers=HTML)
        assert shown.status_code == 200 and "Pay the fine" not in shown.text, path
