"""The detection console: the alert list with its filters, an alert with its traffic chart
and evidence records, closing and feedback, and suppressions, over HTTP."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update

from hostwarden.core import audit
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.timeutil import as_utc, utcnow
from hostwarden.detect import alerts, web
from hostwarden.detect.alerts import AlertSink
from hostwarden.detect.models import DetectSuppression
from hostwarden.flows.schema import LOCAL_SRC, FlowBatch
from hostwarden.flows.store.parquet import ParquetStore
from hostwarden.web.areas import AREAS
from tests.conftest import make_user
from tests.detect.alert_support import (
    MINUTE,
    T0,
    Holders,
    alerts_of,
    audit_of,
    finding,
    make_holders,
    stored,
)
from tests.flows.store_support import v4
from tests.web.test_console import sign_in

HTML = {"Accept": "text/html"}
PASSWORD = "correct-horse-9"
SCANNER = "203.0.113.5"
FLOODER = "203.0.113.200"


def signed_in(client: TestClient, runtime: Runtime, role: str) -> str:
    name = f"u-{role}"
    make_user(runtime, name, [role], PASSWORD)
    return sign_in(client, name, PASSWORD)


@pytest.fixture
def holders(runtime: Runtime) -> Holders:
    return raise_alerts(runtime)


def raise_alerts(runtime: Runtime) -> Holders:
    """Alert 1: a horizontal scan (medium) of Acme's VPS from T0 (2026-05-04 12:00 UTC)
    for 5 minutes; alert 2: an outbound SYN flood (critical) of Globex an hour later."""
    holders = make_holders(runtime)
    AlertSink(runtime).take(
        [
            finding(customer_id=holders.acme, instance_id=holders.acme_vm),
            finding(
                ip=FLOODER,
                category="ddos-out",
                kind="syn-flood",
                severity="critical",
                customer_id=holders.globex,
                start_ms=T0 + 60 * MINUTE,
                seconds=10,
                detector="volumetric",
                counts={"pps": 250_000, "bytes": 1_500_000_000},
                summary=f"{FLOODER} sent a SYN flood to 198.51.100.7",
                suggested_action=f"rate-limit {FLOODER}",
            ),
        ]
    )
    return holders


def scan_records() -> FlowBatch:
    """The scanner's flows: three in the alert's evidence range (11:55–12:05), one at
    11:40 (charted, not evidence), and one of another address in the window."""
    start = np.array(
        [T0 + 10_000, T0 + 20_000, T0 + 70_000, T0 - 20 * MINUTE, T0 + 30_000], dtype=np.int64
    )
    return FlowBatch(
        {
            "start": start,
            "end": start + 500,
            "src_lo": np.array([v4(SCANNER)] * 4 + [v4("203.0.113.9")]),
            "dst_lo": np.array(
                [v4(f"198.51.100.{n}") for n in (7, 8, 9)] + [v4("192.0.2.1"), v4("192.0.2.2")]
            ),
            "src_port": np.array([40000, 40001, 40002, 40003, 5353]),
            "dst_port": np.array([22, 22, 22, 443, 53]),
            "proto": np.array([6, 6, 6, 6, 17]),
            "packets": np.array([1, 1, 1, 10, 2]),
            "bytes": np.array([60, 60, 60, 5_000, 200]),
            "local_side": np.full(5, LOCAL_SRC),
            "customer_id": np.array([1, 1, 1, 1, 2]),
        }
    )


@pytest.fixture
def flows(runtime: Runtime) -> Iterator[ParquetStore]:
    store = ParquetStore(runtime)
    store.write(scan_records())
    store.flush()
    yield store
    store.close()


def section(html: str, testid: str) -> str:
    found = re.search(rf'<(\w+)[^>]*data-testid="{testid}".*?</\1>', html, re.S)
    assert found is not None, testid
    return found.group(0)


def rows_of(html: str, testid: str) -> list[str]:
    return re.findall(r"<tr[^>]*>.*?</tr>", section(html, testid), re.S)


def alert_ids(html: str) -> list[int]:
    found = re.findall(r'<td><a href="/alerts/(\d+)">\d+</a>', section(html, "alerts"))
    return [int(x) for x in found]


# --- the list --------------------------------------------------------------------------------


def test_the_list_shows_alerts_newest_first_with_badges_holders_and_counts_per_category(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    signed_in(client, runtime, "abuse")
    response = client.get("/alerts", headers=HTML)
    assert response.status_code == 200, response.text
    html = response.text
    assert alert_ids(html) == [2, 1]
    flood, scan = rows_of(html, "alerts")[1:]
    assert 'class="tag sev-critical">critical<' in flood
    assert "Outbound DDoS" in flood and "syn-flood" in flood
    assert f'href="/customers/{holders.globex}"' in flood
    assert 'class="tag sev-medium">medium<' in scan and "Scanning" in scan
    assert "2026-05-04 12:00:00 UTC" in scan and "2026-05-04 12:05:00 UTC" in scan
    counts = rows_of(html, "category-counts")
    assert len(counts) == 2
    assert "Outbound DDoS" in counts[0] and '<td class="num">1</td>' in counts[0]
    assert 'href="/alerts?category=scan"' in counts[1]
    assert "1–2 / 2" in section(html, "pager")
    # The side menu marks the detection area on its pages.
    assert re.search(r'<a href="/detect" class="active">Detection</a>', html)


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"category": "scan"}, [1]),
        ({"severity": "critical"}, [2]),
        ({"status": "open"}, [2, 1]),
        ({"status": "closed"}, []),
        ({"ip": "203.0.113.128/25"}, [2]),
        ({"ip": SCANNER}, [1]),
        ({"since": "2026-05-04T12:30:00Z"}, [2]),
        ({"until": "2026-05-04T20:30:00+08:00"}, [1]),  # 12:30 UTC
        ({"since": "2026-05-04", "until": "2026-05-04"}, [2, 1]),  # that UTC day
        ({"since": "2026-05-05"}, []),
    ],
)
def test_filters_narrow_the_list(
    client: TestClient,
    runtime: Runtime,
    holders: Holders,
    params: dict[str, str],
    ids: list[int],
) -> None:
    signed_in(client, runtime, "noc")
    response = client.get("/alerts", params=params, headers=HTML)
    assert response.status_code == 200, response.text
    assert alert_ids(response.text) == ids
    if not ids:
        assert "No alerts match." in response.text


def test_the_customer_filter_and_the_category_summary_follow_the_other_filters(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    signed_in(client, runtime, "noc")
    html = client.get("/alerts", params={"customer": str(holders.acme)}, headers=HTML).text
    assert alert_ids(html) == [1]
    counts = rows_of(html, "category-counts")
    assert len(counts) == 1 and "Scanning" in counts[0]
    # Narrowed to one category, the summary still counts the others, to switch to them.
    html = client.get("/alerts", params={"category": "scan"}, headers=HTML).text
    assert len(rows_of(html, "category-counts")) == 2
    assert 'href="/alerts?">Show every category' in html


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"ip": "203.0.113.300"}, "is not an IP address or CIDR prefix"),
        ({"ip": "203.0.113.5/24"}, "has host bits set"),
        ({"since": "2026-05-04T10:00:00"}, "has no time zone"),
        ({"until": "yesterday"}, "is not an ISO 8601 date-time"),
        ({"since": "2026-05-05", "until": "2026-05-04"}, "is not after 'since'"),
        ({"customer": "acme"}, "customer id 'acme' is not a whole number"),
        ({"category": "phishing"}, "'phishing' is not a detection category"),
        ({"severity": "urgent"}, "'urgent' is not a severity"),
        ({"status": "pending"}, "'pending' is not a status"),
    ],
)
def test_bad_filters_are_named_on_the_page_and_kept_in_the_form(
    client: TestClient,
    runtime: Runtime,
    holders: Holders,
    params: dict[str, str],
    message: str,
) -> None:
    signed_in(client, runtime, "abuse")
    response = client.get("/alerts", params=params, headers=HTML)
    assert response.status_code == 422
    error = section(response.text, "alerts-error")
    assert message in error.replace("&#39;", "'"), error
    assert alert_ids(response.text) == []
    for name, value in params.items():
        if name in ("ip", "since", "until", "customer"):
            assert f'name="{name}" value="{value}"' in response.text


def test_the_list_pages_through_many_alerts(
    client: TestClient, runtime: Runtime, holders: Holders, monkeypatch: pytest.MonkeyPatch
) -> None:
    AlertSink(runtime).take(
        [finding(ip=f"198.51.100.{n}", start_ms=T0 - n * MINUTE) for n in (1, 2, 3)]
    )
    monkeypatch.setattr(web, "PAGE_SIZE", 2)
    signed_in(client, runtime, "abuse")
    first = client.get("/alerts", params={"category": "scan"}, headers=HTML).text
    # Newest last window first: 12:05 (alert 1), then the three ending 12:04, 12:03, 12:02.
    assert alert_ids(first) == [1, 5]
    pager = section(first, "pager")
    assert "1–2 / 4" in pager and 'href="/alerts?category=scan&amp;offset=2"' in pager
    second = client.get("/alerts", params={"category": "scan", "offset": 2}, headers=HTML).text
    assert alert_ids(second) == [4, 3]
    assert 'offset=0">← Newer' in section(second, "pager")


# --- one alert --------------------------------------------------------------------------------


def test_the_alert_page_shows_holder_window_counts_chart_and_evidence_records(
    client: TestClient, runtime: Runtime, holders: Holders, flows: ParquetStore
) -> None:
    signed_in(client, runtime, "abuse")
    response = client.get("/alerts/1", headers=HTML)
    assert response.status_code == 200, response.text
    html = response.text
    holder = section(html, "holder")
    assert f'href="/customers/{holders.acme}">Acme Hosting Ltd</a>' in holder
    assert "vps-1.acme.example" in html
    assert "2026-05-04 12:00:00 UTC – 2026-05-04 12:05:00 UTC" in section(html, "window")
    counts = section(html, "counts")
    assert "<td>hosts</td>" in counts and '<td class="num">40</td>' in counts
    assert "<tr><th>ip</th><th>flows</th></tr>" in section(html, "top-peers")
    assert "<code>198.51.100.7</code>" in section(html, "top-peers")
    assert "<tr><th>port</th><th>flows</th></tr>" in section(html, "top-ports")

    chart = section(html, "traffic-chart")
    # 11:30 to 12:35 UTC at 15 s steps: the flows at 11:40:00, 12:00:10, 12:00:20 and
    # 12:01:10 fall in four buckets; a bar each in the bytes and the packets panel, and
    # the shaded window.
    assert "one bar per 15 s" in chart
    assert chart.count("<rect") == 2 * 4 + 1
    assert 'data-testid="chart-mark"' in chart
    assert "In all: 5.18 kB, 13 packets, 4 flows" in chart

    records = rows_of(html, "records")
    assert len(records) == 1 + 3  # header and the three records of the evidence range
    assert "198.51.100.7</code>:22" in records[1]
    link = re.search(r'href="/flows\?([^"]+)" data-testid="flow-search-link"', html)
    assert link is not None
    assert "ip=203.0.113.5" in link.group(1) and "from=2026-05-04T11%3A55" in link.group(1)
    download = re.search(r'href="(/flows/records\?[^"]+)" data-testid="download-csv"', html)
    assert download is not None
    csv = client.get(download.group(1).replace("&amp;", "&"))
    assert csv.status_code == 200
    assert len(csv.text.strip().splitlines()) == 1 + 3

    # The listing is on record as a flow search's, naming the alert; so is the download.
    entries = [audit.entry_dict(e) for e in audit_of(runtime, "flows.query")]
    assert [(e["actor"], e["after"].get("alert")) for e in entries] == [
        ("u-abuse", 1),
        ("u-abuse", None),
    ]
    assert entries[0]["after"]["ips"] == [f"{SCANNER}/32"]


def test_an_alert_without_stored_records_shows_its_suggested_action_and_an_empty_chart(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    signed_in(client, runtime, "noc")
    html = client.get("/alerts/2", headers=HTML).text
    assert "rate-limit 203.0.113.200" in section(html, "suggested-action")
    assert "1.5 GB" in section(html, "counts")  # bytes in human units
    assert "250,000" in section(html, "counts")
    chart = section(html, "traffic-chart")
    assert chart.count("<rect") == 1  # only the alert's window
    assert "No records stored for this address" in html


def test_an_unknown_alert_is_the_404_page(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    signed_in(client, runtime, "abuse")
    for path in ("/alerts/99", "/alerts/abc"):
        response = client.get(path, headers=HTML)
        assert response.status_code == 404, path
        assert "no alert with id" in response.text
        assert "<h1>404" in response.text
    csrf = client.cookies.get("hw_csrf")
    response = client.post(
        "/alerts/99/close", data={"reason": "gone", "csrf_token": csrf}, headers=HTML
    )
    assert response.status_code == 404


def test_closing_needs_a_reason_is_audited_and_shows_in_the_history(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    csrf = signed_in(client, runtime, "abuse")
    refused = client.post("/alerts/1/close", data={"reason": " ", "csrf_token": csrf}, headers=HTML)
    assert refused.status_code == 422
    assert "closing an alert needs a reason" in section(refused.text, "error")
    assert alerts_of(runtime)[0].status == "open"

    done = client.post(
        "/alerts/1/close",
        data={"reason": "customer cleaned the VPS", "csrf_token": csrf},
        headers=HTML,
    )
    assert done.status_code == 200, done.text
    assert "Alert closed." in section(done.text, "notice")
    assert ">closed<" in section(done.text, "status")
    assert 'data-testid="close-form"' not in done.text
    history = rows_of(done.text, "history")
    assert "u-abuse" in history[1] and "closed" in history[1]
    assert "customer cleaned the VPS" in history[1]
    assert "raised" in history[-1]  # the detector's creation, oldest last
    (entry,) = audit_of(runtime, "alert.close")
    assert (entry.actor, entry.reason) == ("u-abuse", "customer cleaned the VPS")

    again = client.post(
        "/alerts/1/close", data={"reason": "twice", "csrf_token": csrf}, headers=HTML
    )
    assert again.status_code == 409
    assert "was already closed by u-abuse" in section(again.text, "error")


def test_feedback_records_the_verdict_and_a_false_positive_needs_the_reason(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    csrf = signed_in(client, runtime, "noc")
    for data, status, message in (
        ({"verdict": "", "reason": "r"}, 422, "feedback needs a verdict"),
        ({"verdict": "maybe", "reason": "r"}, 422, "'maybe' is not a verdict"),
        ({"verdict": "false-positive", "reason": ""}, 422, "needs a reason"),
    ):
        response = client.post(
            "/alerts/1/feedback", data={**data, "csrf_token": csrf}, headers=HTML
        )
        assert response.status_code == status, data
        assert message in section(response.text, "error").replace("&#39;", "'"), data
    assert audit_of(runtime, "alert.feedback") == []
    # What was typed stays in the form.
    assert 'value="false-positive" checked' in response.text

    done = client.post(
        "/alerts/1/feedback",
        data={"verdict": "false-positive", "reason": "nightly backup", "csrf_token": csrf},
        headers=HTML,
    )
    assert done.status_code == 200
    assert "Feedback recorded." in done.text
    assert "false positive" in section(done.text, "feedback")
    assert alerts_of(runtime)[0].feedback == "false-positive"
    sure = client.post(
        "/alerts/2/feedback", data={"verdict": "true-positive", "csrf_token": csrf}, headers=HTML
    )
    assert sure.status_code == 200
    assert [(e.object_id, e.reason) for e in audit_of(runtime, "alert.feedback")] == [
        ("1", "nightly backup"),
        ("2", ""),
    ]


def test_forms_need_the_csrf_token(client: TestClient, runtime: Runtime, holders: Holders) -> None:
    signed_in(client, runtime, "admin")
    before = audit.verify(runtime).entries
    for path, data in (
        ("/alerts/1/close", {"reason": "r"}),
        ("/alerts/1/feedback", {"verdict": "true-positive"}),
        ("/alerts/suppressions", {"cidr": SCANNER, "reason": "r"}),
    ):
        missing = client.post(path, data=data, headers=HTML)
        assert missing.status_code == 403, path
        assert "security token" in missing.text
        forged = client.post(path, data={**data, "csrf_token": "forged"}, headers=HTML)
        assert forged.status_code == 403, path
    assert audit.verify(runtime).entries == before
    assert stored(runtime) == (2, 0, 0)
    assert alerts_of(runtime)[0].status == "open"


def test_sales_may_not_see_detection(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    signed_in(client, runtime, "sales")
    for path in ("/detect", "/alerts", "/alerts/1", "/alerts/suppressions"):
        response = client.get(path, headers=HTML, follow_redirects=False)
        assert response.status_code == 403, path
        assert "alerts:read" in response.text
    assert 'href="/detect"' not in client.get("/", headers=HTML).text


def test_an_auditor_reads_alerts_and_suppressions_but_gets_no_forms(
    client: TestClient, runtime: Runtime, holders: Holders, flows: ParquetStore
) -> None:
    with runtime.operation(system_actor("test")) as op:
        alerts.add_suppression(op, "198.51.100.0/24", reason="pentest, ticket 4711")
    csrf = signed_in(client, runtime, "auditor")
    home = client.get("/detect", headers=HTML, follow_redirects=False)
    assert (home.status_code, home.headers["location"]) == (303, "/alerts")
    page = client.get("/alerts/1", headers=HTML).text
    assert 'data-testid="traffic-chart"' in page
    for form in ("close-form", "feedback-form", "suppress-link"):
        assert f'data-testid="{form}"' not in page
    rules = client.get("/alerts/suppressions", headers=HTML).text
    assert "198.51.100.0/24" in section(rules, "suppressions")
    assert 'data-testid="new-suppression"' not in rules and 'data-testid="remove-1"' not in rules
    refused = client.post("/alerts/1/close", data={"reason": "r", "csrf_token": csrf}, headers=HTML)
    assert refused.status_code == 403 and "alerts:write" in refused.text


def test_abuse_desk_acts_on_alerts_only_compliance_reads_them(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    csrf = signed_in(client, runtime, "compliance")
    page = client.get("/alerts/1", headers=HTML).text
    assert 'data-testid="close-form"' not in page
    refused = client.post(
        "/alerts/suppressions", data={"cidr": SCANNER, "reason": "r", "csrf_token": csrf}
    )
    assert refused.status_code == 403 and "suppressions:write" in refused.text


# --- suppressions -----------------------------------------------------------------------------


def test_a_suppression_is_added_listed_audited_and_removed_with_reasons(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    csrf = signed_in(client, runtime, "abuse")
    assert "No active suppressions." in client.get("/alerts/suppressions", headers=HTML).text
    added = client.post(
        "/alerts/suppressions",
        data={
            "cidr": "203.0.113.0/28",
            "customer": str(holders.acme),
            "category": "scan",
            "expires": "7d",
            "reason": "authorised pentest, ticket 4711",
            "csrf_token": csrf,
        },
        headers=HTML,
    )
    assert added.status_code == 201, added.text
    assert "Suppression 1 added." in section(added.text, "notice")
    row = added.text[added.text.index('data-testid="suppression-1"') :]
    row = row[: row.index("</tr>")]
    assert "203.0.113.0/28" in row and f"#{holders.acme}" in row and "Scanning" in row
    assert ">in effect<" in row and "authorised pentest, ticket 4711" in row
    with runtime.reading() as session:
        (kept,) = alerts.list_suppressions(session)
        assert kept.expires_at is not None
        left = as_utc(kept.expires_at) - utcnow()
        assert timedelta(days=6, hours=23) < left <= timedelta(days=7)
    (entry,) = audit_of(runtime, "suppression.add")
    assert (entry.actor, entry.reason) == ("u-abuse", "authorised pentest, ticket 4711")

    refused = client.post(
        "/alerts/suppressions/1/remove", data={"reason": "", "csrf_token": csrf}, headers=HTML
    )
    assert refused.status_code == 422
    assert "removing a suppression needs a reason" in section(refused.text, "error")
    removed = client.post(
        "/alerts/suppressions/1/remove",
        data={"reason": "pentest finished", "csrf_token": csrf},
        headers=HTML,
    )
    assert removed.status_code == 200
    assert "Suppression 1 removed." in removed.text
    assert "No active suppressions." in removed.text
    everything = client.get("/alerts/suppressions", params={"show": "all"}, headers=HTML).text
    assert ">removed<" in everything and "by u-abuse: pentest finished" in everything
    assert 'data-testid="remove-1"' not in everything
    gone = client.post(
        "/alerts/suppressions/1/remove", data={"reason": "again", "csrf_token": csrf}, headers=HTML
    )
    assert gone.status_code == 409
    missing = client.post(
        "/alerts/suppressions/9/remove", data={"reason": "r", "csrf_token": csrf}, headers=HTML
    )
    assert missing.status_code == 404 and "no suppression with id 9" in missing.text


def test_an_expired_suppression_is_listed_as_expired(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    with runtime.operation(system_actor("test")) as op:
        rule = alerts.add_suppression(op, SCANNER, reason="maintenance", expires="1h")
        op.session.execute(
            update(DetectSuppression)
            .where(DetectSuppression.id == rule.id)
            .values(expires_at=utcnow() - timedelta(minutes=1))
        )
    signed_in(client, runtime, "noc")
    assert "No active suppressions." in client.get("/alerts/suppressions", headers=HTML).text
    html = client.get("/alerts/suppressions", params={"show": "all"}, headers=HTML).text
    assert ">expired<" in html and "maintenance" in html


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ({"cidr": "", "reason": "r"}, 422, "a suppression needs an address or CIDR prefix"),
        ({"cidr": "203.0.113.300", "reason": "r"}, 422, "is not an IP address or CIDR prefix"),
        ({"cidr": "203.0.113.5/24", "reason": "r"}, 422, "has host bits set"),
        ({"cidr": SCANNER, "reason": "  "}, 422, "a suppression needs a reason"),
        ({"cidr": SCANNER, "reason": "r", "customer": "x1"}, 422, "customer id 'x1'"),
        ({"cidr": SCANNER, "reason": "r", "customer": "999"}, 404, "no customer with id 999"),
        ({"cidr": SCANNER, "reason": "r", "category": "phishing"}, 422, "not a detection"),
        ({"cidr": SCANNER, "reason": "r", "expires": "soon"}, 422, "neither a duration"),
        ({"cidr": SCANNER, "reason": "r", "expires": "2020-01-01"}, 422, "is not in the future"),
    ],
)
def test_a_bad_suppression_is_refused_whole_and_the_form_keeps_what_was_typed(
    client: TestClient,
    runtime: Runtime,
    holders: Holders,
    data: dict[str, str],
    status: int,
    message: str,
) -> None:
    csrf = signed_in(client, runtime, "noc")
    before = audit.verify(runtime).entries
    response = client.post("/alerts/suppressions", data={**data, "csrf_token": csrf}, headers=HTML)
    assert response.status_code == status
    assert message in section(response.text, "error").replace("&#39;", "'")
    form = section(response.text, "new-suppression")
    assert '<details class="card" open>' in response.text
    for name in ("cidr", "customer", "expires", "reason"):
        if data.get(name):
            assert f'name="{name}" value="{data[name]}"' in form, name
    assert stored(runtime)[1] == 0
    assert audit.verify(runtime).entries == before


def test_the_alert_page_links_to_a_suppression_form_filled_for_it(
    client: TestClient, runtime: Runtime, holders: Holders
) -> None:
    signed_in(client, runtime, "abuse")
    page = client.get("/alerts/1", headers=HTML).text
    link = re.search(r'href="(/alerts/suppressions\?[^"]+)" data-testid="suppress-link"', page)
    assert link is not None
    form = client.get(link.group(1).replace("&amp;", "&"), headers=HTML).text
    new = section(form, "new-suppression")
    assert f'name="cidr" value="{SCANNER}"' in new
    assert f'name="customer" value="{holders.acme}"' in new
    assert '<option value="scan" selected>' in new


def test_the_detection_area_is_built() -> None:
    (area,) = [a for a in AREAS if a.slug == "detect"]
    assert area.ready and area.permission == "alerts:read"
    assert area.holds("/alerts/7") and area.holds("/detect") and not area.holds("/alertsx")
