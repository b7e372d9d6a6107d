"""The flow console: search with its chart and top talkers, retention and integrity,
verify runs and legal holds, over HTTP and in a real browser."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from hostwarden.api.app import create_app
from hostwarden.core import audit
from hostwarden.core.runtime import Runtime
from hostwarden.errors import ValidationFailed
from hostwarden.flows import imports
from hostwarden.flows.ingest import Ingestor
from hostwarden.flows.schema import LOCAL_SRC, FlowBatch
from hostwarden.flows.store import PROBLEM_KINDS, open_store
from hostwarden.flows.store.datasets import LogStore
from hostwarden.flows.store.parquet import ParquetStore
from hostwarden.flows.verify_record import last_verify_path
from hostwarden.flows.web import (
    PROBLEM_LABELS,
    choose_step,
    human_bytes,
    parse_filter,
    traffic_chart,
    verify_runner,
)
from tests.conftest import ARTIFACTS, Initialised, browser_sign_in, make_user
from tests.flows.store_support import MAY_1, v4
from tests.flows.test_store_conformance import use_backend
from tests.web.test_console import sign_in

LOGS = Path(__file__).parent.parent / "fixtures" / "logs"

HTML = {"Accept": "text/html"}
HOUR_MS = 3_600_000
#: 2026-05-01 09:00 to 12:00 UTC holds the three known records.
RANGE = {"from": "2026-05-01T09:00:00Z", "to": "2026-05-01T12:00:00Z"}
PASSWORD = "correct-horse-9"


def known_records() -> FlowBatch:
    """Three outbound flows of two customers, at 10:00, 10:30 and 11:00 UTC."""
    start = np.array([MAY_1 + 10 * HOUR_MS, MAY_1 + 10 * HOUR_MS + 1_800_000, MAY_1 + 11 * HOUR_MS])
    return FlowBatch(
        {
            "start": start,
            "end": start + 1_000,
            "src_lo": np.array([v4("203.0.113.7"), v4("203.0.113.7"), v4("203.0.113.8")]),
            "dst_lo": np.array([v4("198.51.100.9"), v4("198.51.100.10"), v4("192.0.2.53")]),
            "src_port": np.array([40000, 40001, 5353]),
            "dst_port": np.array([443, 22, 53]),
            "proto": np.array([6, 6, 17]),
            "packets": np.array([10, 5, 2]),
            "bytes": np.array([5_000, 1_000, 200]),
            "local_side": np.full(3, LOCAL_SRC),
            "customer_id": np.array([1, 1, 2]),
        }
    )


@pytest.fixture
def stored(runtime: Runtime) -> Iterator[ParquetStore]:
    store = ParquetStore(runtime)
    store.write(known_records())
    store.flush()
    yield store
    store.close()


def signed_in(client: TestClient, runtime: Runtime, role: str) -> str:
    name = f"u-{role}"
    make_user(runtime, name, [role], PASSWORD)
    return sign_in(client, name, PASSWORD)


def finish_verify(client: TestClient) -> None:
    verify_runner(client.app).join(timeout=30)  # type: ignore[arg-type]


# --- search -------------------------------------------------------------------------------


def test_search_draws_the_traffic_chart_ranks_top_talkers_and_lists_records(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    signed_in(client, runtime, "abuse")
    response = client.get("/flows", params=RANGE, headers=HTML)
    assert response.status_code == 200, response.text
    html = response.text
    chart = re.search(r'<figure class="chart" data-testid="traffic-chart">.*?</figure>', html, re.S)
    assert chart is not None
    svg = chart.group(0)
    # 3 h at 1-minute steps; one bar per non-empty minute in each panel (bytes, packets).
    assert "one bar per 1 min" in svg
    assert svg.count("<rect") == 6
    assert "2026-05-01 10:00:00 – 10:01:00 UTC · Bytes 5 kB · Packets 10 · Flows 1" in svg
    assert "In all: 6.2 kB, 17 packets, 3 flows" in svg
    assert ">10:00<" in svg and ">11:00<" in svg  # time labels on the axis

    talkers = re.search(r'data-testid="top-talkers">.*?</table>', html, re.S)
    assert talkers is not None
    rows = re.findall(r"<tr>.*?</tr>", talkers.group(0), re.S)[1:]
    assert "203.0.113.7" in rows[0] and "6 kB" in rows[0] and "#1" in rows[0]
    assert "203.0.113.8" in rows[1] and "200 B" in rows[1]

    records = re.search(r'data-testid="records".*?</table>', html, re.S)
    assert records is not None
    assert records.group(0).count("<tr>") == 1 + 3  # header and three records
    assert "198.51.100.9</code>:443" in records.group(0)
    assert "UDP" in records.group(0)
    link = re.search(r'href="(/flows/records\?[^"]+)" data-testid="download-csv"', html)
    assert link is not None
    assert "from=2026-05-01T09%3A00%3A00.000000Z" in link.group(1)
    assert "GET /api/v1/flows/records?" in html


def test_records_download_as_csv_and_ndjson_and_every_listing_is_audited(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    signed_in(client, runtime, "abuse")
    html = client.get("/flows", params={**RANGE, "proto": "tcp"}, headers=HTML).text
    link = re.search(r'href="(/flows/records\?[^"]+)" data-testid="download-csv"', html)
    assert link is not None
    download = client.get(link.group(1).replace("&amp;", "&"))
    assert download.status_code == 200, download.text
    assert download.headers["content-type"].startswith("text/csv")
    lines = download.text.strip().splitlines()
    assert len(lines) == 1 + 2  # header and the two TCP records
    assert "198.51.100.9" in lines[1] and "198.51.100.10" in lines[2]
    ndjson = client.get(link.group(1).replace("&amp;", "&").replace("format=csv", "format=ndjson"))
    assert [json.loads(x)["dst_port"] for x in ndjson.text.splitlines()] == [443, 22]

    with runtime.reading() as session:
        rows, _ = audit.list_entries(session, action="flows.query")
        entries = [audit.entry_dict(r) for r in rows]
    assert len(entries) == 3  # the page's listing, then the two downloads
    assert all(e["actor"] == "u-abuse" for e in entries)
    listing = [e for e in entries if e["after"].get("via") == "console"]
    assert len(listing) == 1 and listing[0]["after"]["protos"] == [6]


def test_a_bad_download_request_is_named_not_a_server_error(
    client: TestClient, runtime: Runtime
) -> None:
    signed_in(client, runtime, "abuse")
    response = client.get("/flows/records", params={**RANGE, "ip": "not-an-ip"}, headers=HTML)
    assert response.status_code == 422
    assert "is not an IP address or CIDR prefix" in response.text


def test_top_talkers_switch_to_customers_and_to_packets(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    signed_in(client, runtime, "noc")
    html = client.get(
        "/flows", params={**RANGE, "by": "packets", "group": "customer"}, headers=HTML
    ).text
    talkers = re.search(r'data-testid="top-talkers">.*?</table>', html, re.S)
    assert talkers is not None
    rows = re.findall(r"<tr>.*?</tr>", talkers.group(0), re.S)
    assert len(rows) == 3  # header, customer 1, customer 2
    assert "#1" in rows[1] and ">15<" in rows[1]
    assert "#2" in rows[2] and ">2<" in rows[2]


def test_filters_narrow_chart_talkers_and_records(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    signed_in(client, runtime, "abuse")
    for params in ({"proto": "udp"}, {"port": "53"}, {"ip": "192.0.2.0/24"}, {"customer": "2"}):
        html = client.get("/flows", params={**RANGE, **params}, headers=HTML).text
        records = re.search(r'data-testid="records".*?</table>', html, re.S)
        assert records is not None, params
        assert records.group(0).count("<tr>") == 2, params
        assert "192.0.2.53" in records.group(0), params
        assert "In all: 200 B, 2 packets, 1 flows" in html, params


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"from": "2026-05-01T09:00:00"}, "has no time zone"),
        ({"to": "yesterday"}, "is not an ISO 8601 date-time"),
        ({"to": "2026-05-01T08:00:00Z"}, "is not after"),
        ({"ip": "203.0.113.300"}, "is not an IP address or CIDR prefix"),
        ({"ip": "203.0.113.5/24"}, "has host bits set"),
        ({"port": "99999"}, "port '99999' is not a number from 0 to 65535"),
        ({"port": "-1"}, "port '-1' is not a number from 0 to 65535"),
        ({"proto": "tcpp"}, "IP protocol 'tcpp'"),
        ({"customer": "abc"}, "customer id 'abc' is not a whole number"),
        ({"by": "likes"}, "cannot rank by 'likes'"),
    ],
)
def test_bad_input_is_named_on_the_page_not_a_server_error(
    client: TestClient, runtime: Runtime, params: dict[str, str], message: str
) -> None:
    signed_in(client, runtime, "abuse")
    response = client.get("/flows", params={**RANGE, **params}, headers=HTML)
    assert response.status_code == 422
    error = re.search(r'data-testid="search-error">(.*?)</p>', response.text, re.S)
    assert error is not None
    assert message in error.group(1).replace("&#39;", "'")
    assert 'data-testid="traffic-chart"' not in response.text
    # What was typed stays in the form, to be corrected.
    for value in params.values():
        assert f'value="{value}"' in response.text


def test_the_default_search_is_the_last_24_hours(client: TestClient, runtime: Runtime) -> None:
    signed_in(client, runtime, "abuse")
    html = client.get("/flows", headers=HTML).text
    start = re.search(r'name="from" value="([^"]+)"', html)
    end = re.search(r'name="to" value="([^"]+)"', html)
    assert start and end
    first = datetime.fromisoformat(start.group(1).replace("Z", "+00:00"))
    last = datetime.fromisoformat(end.group(1).replace("Z", "+00:00"))
    assert (last - first).total_seconds() == 86_400
    assert 0 <= (last - datetime.now(UTC)).total_seconds() <= 300
    assert "one bar per 5 min" in html
    assert "No records match." in html


def test_sales_may_not_search_flows_or_see_the_integrity_page(
    client: TestClient, runtime: Runtime
) -> None:
    signed_in(client, runtime, "sales")
    for path in ("/flows", "/flows/integrity", "/flows/integrity/verify"):
        response = client.get(path, headers=HTML)
        assert response.status_code == 403, path
        assert "flows:read" in response.text


# --- step and chart -------------------------------------------------------------------------


def test_the_chart_step_keeps_a_range_between_100_and_300_round_buckets() -> None:
    minute, hour, day = 60_000, HOUR_MS, 86_400_000
    assert choose_step(day) == 5 * minute  # 288 bars
    assert choose_step(7 * day) == hour  # 168
    assert choose_step(30 * day) == 3 * hour  # 240
    assert choose_step(180 * day) == day  # 180
    assert choose_step(hour) == 15_000  # 240
    for span in (hour, 6 * hour, day, 3 * day, 30 * day, 90 * day, 365 * day):
        assert 100 <= span / choose_step(span) <= 300, span


def test_chart_bars_scale_to_the_peak_and_label_bytes_in_human_units() -> None:
    buckets = [
        {"bucket_ms": MAY_1 + k * 60_000, "flows": k, "packets": k * 10, "bytes": k * 1_500_000}
        for k in range(4)
    ]
    chart = traffic_chart(buckets, MAY_1, MAY_1 + 4 * 60_000, 60_000)
    bytes_panel, packets_panel = chart.panels
    assert [b.bytes for b in bytes_panel.bars] == ["1.5 MB", "3 MB", "4.5 MB"]
    assert bytes_panel.peak == "4.5 MB"
    assert [t.label for t in bytes_panel.y_ticks] == ["0 B", "2 MB", "4 MB", "6 MB"]
    heights = [b.height for b in bytes_panel.bars]
    assert heights[2] == pytest.approx(3 * heights[0])
    assert packets_panel.bars[-1].packets == "30"
    assert human_bytes(999) == "999 B" and human_bytes(1_234_567_890) == "1.23 GB"
    assert human_bytes(999_600) == "1 MB"


def test_a_chart_of_few_packets_has_whole_number_ticks() -> None:
    buckets = [{"bucket_ms": MAY_1, "flows": 1, "packets": 2, "bytes": 3}]
    chart = traffic_chart(buckets, MAY_1, MAY_1 + 60_000, 60_000)
    assert [t.label for t in chart.panels[1].y_ticks] == ["0", "1", "2"]
    empty = traffic_chart([], MAY_1, MAY_1 + 60_000, 60_000)
    assert [t.label for t in empty.panels[0].y_ticks] == ["0 B"]


def test_every_verify_finding_has_a_console_label() -> None:
    assert set(PROBLEM_LABELS) == set(PROBLEM_KINDS)


def test_a_time_without_zone_is_refused_by_the_parser() -> None:
    with pytest.raises(ValidationFailed, match="no time zone"):
        parse_filter("2026-05-01T10:00", "2026-05-02T00:00Z")
    whole_day = parse_filter("2026-05-01", "2026-05-01")
    assert whole_day.end_ms - whole_day.start_ms == 86_400_000


# --- retention, integrity, verify -------------------------------------------------------------


def test_integrity_page_shows_policy_oldest_record_next_expiry_and_days(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    signed_in(client, runtime, "auditor")
    html = client.get("/flows/integrity", headers=HTML).text
    assert re.search(r'data-testid="retention">180 days<', html)
    assert 'data-testid="oldest">2026-05-01 10:00:00<' in html
    # The segment's last moment (the 11:00 record ends at 11:00:01) plus 180 days; long
    # past, so due.
    assert 'data-testid="next-expiry">2026-10-28 11:00:01<' in html
    assert "due: the next daily retention run removes it" in html
    assert 'data-testid="live-segments">1<' in html
    assert "<td>2026-05-01</td>" in html
    # An auditor reads holds but may neither place nor release one, nor run verify.
    assert 'data-testid="holds"' in html
    assert 'data-testid="new-hold"' not in html
    assert 'data-testid="run-verify"' not in html
    assert 'data-testid="datasets"' not in html and "No HTTP access, NAT or SSH logs" in html


def test_integrity_page_lists_the_stored_log_datasets(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    logs = LogStore(runtime)
    try:
        imports.import_file(
            Ingestor(runtime, stored),
            LOGS / "auth.log",
            "ssh-auth",
            tz="Asia/Shanghai",
            year=2026,
            server_ip="192.0.2.10",
            logs=logs,
        )
    finally:
        logs.close()
    signed_in(client, runtime, "noc")
    html = client.get("/flows/integrity", headers=HTML).text
    table = html[html.index('data-testid="datasets"') :]
    table = table[: table.index("</table>")]
    assert "SSH authentication logs" in table and '<td class="num">9</td>' in table
    # Flow figures stay flow figures: one flow segment, as before the import.
    assert 'data-testid="live-segments">1<' in html


def test_a_hold_moves_next_expiry_past_the_held_segment(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    csrf = signed_in(client, runtime, "compliance")
    response = client.post(
        "/flows/holds",
        data={
            "start": "2026-05-01",
            "end": "2026-05-01",
            "ips": "203.0.113.7",
            "case_ref": "京公网安-2026-0042",
            "reason": "request for assistance",
            "csrf_token": csrf,
        },
        headers=HTML,
    )
    assert response.status_code == 201, response.text
    assert "Legal hold 1 placed." in response.text
    assert 'data-testid="next-expiry">—<' in response.text
    assert "1 live segment(s) are pinned by legal holds" in response.text
    assert "every live segment is held" in response.text
    assert "京公网安-2026-0042" in response.text
    with runtime.reading() as session:
        rows, _ = audit.list_entries(session, action="legal_hold.place")
    assert [(r.actor, r.reason) for r in rows] == [("u-compliance", "request for assistance")]

    refused = client.post(
        "/flows/holds/1/release", data={"reason": "", "csrf_token": csrf}, headers=HTML
    )
    assert refused.status_code == 422
    assert "releasing a legal hold needs a reason" in refused.text
    released = client.post(
        "/flows/holds/1/release", data={"reason": "case closed", "csrf_token": csrf}, headers=HTML
    )
    assert released.status_code == 200
    assert "Legal hold 1 released." in released.text
    assert "No active legal holds." in released.text


def test_a_bad_hold_is_refused_whole_and_the_form_keeps_what_was_typed(
    client: TestClient, runtime: Runtime
) -> None:
    csrf = signed_in(client, runtime, "legal")
    before = audit.verify(runtime).entries
    for data, message in (
        ({"start": "2026-05-01T10:00", "reason": "r"}, "has no time zone"),
        ({"start": "2026-05-01", "ips": "300.1.1.1", "reason": "r"}, "is not an IP address"),
        ({"start": "2026-05-01", "customers": "99", "reason": "r"}, "no customer with id 99"),
        ({"start": "2026-05-01", "reason": " "}, "a legal hold needs a reason"),
        ({"start": "", "reason": "r"}, "a legal hold needs a start"),
    ):
        response = client.post("/flows/holds", data={**data, "csrf_token": csrf}, headers=HTML)
        assert response.status_code in (404, 422), data
        assert message in response.text, data
        assert "<details open>" in response.text
    assert audit.verify(runtime).entries == before, "a refused hold must store nothing"


def test_verify_needs_the_csrf_token_and_the_logs_verify_permission(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    csrf = signed_in(client, runtime, "abuse")
    assert client.post("/flows/integrity/verify", headers=HTML).status_code == 403
    refused = client.post("/flows/integrity/verify", data={"csrf_token": csrf}, headers=HTML)
    assert refused.status_code == 403
    assert "logs:verify" in refused.text

    client.cookies.clear()
    csrf = signed_in(client, runtime, "noc")
    before = audit.verify(runtime).entries
    no_token = client.post("/flows/integrity/verify", headers=HTML)
    assert no_token.status_code == 403
    assert "security token" in no_token.text
    forged = client.post("/flows/integrity/verify", headers={**HTML, "X-CSRF-Token": "forged"})
    assert forged.status_code == 403
    assert verify_runner(client.app).current is None  # type: ignore[arg-type]
    assert audit.verify(runtime).entries == before


def test_verify_runs_in_the_background_is_audited_and_its_result_survives_a_restart(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    csrf = signed_in(client, runtime, "noc")
    assert "No verify has been run from the console yet." in client.get("/flows/integrity").text
    started = client.post(
        "/flows/integrity/verify", headers={**HTML, "X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert started.status_code == 202
    assert 'id="verify"' in started.text
    finish_verify(client)
    done = client.get("/flows/integrity/verify", headers=HTML).text
    assert 'data-testid="verify-ok"' in done
    assert "1 segments re-hashed" in done
    assert "hx-trigger" not in done, "polling must stop once the run is over"

    with runtime.reading() as session:
        rows, _ = audit.list_entries(session, action="logs.verify")
        entries = [audit.entry_dict(r) for r in rows]
    assert len(entries) == 1
    assert entries[0]["actor"] == "u-noc"
    assert entries[0]["after"]["ok"] is True
    assert entries[0]["after"]["problems"] == 0
    assert entries[0]["after"]["segments_checked"] == 1
    kept = json.loads(last_verify_path(runtime).read_text())
    assert kept["ok"] is True and kept["actor"] == "u-noc"

    # A new app (a restarted server) has no run in memory but shows the kept result.
    with TestClient(create_app(runtime)) as again:
        sign_in(again, "u-noc", PASSWORD)
        html = again.get("/flows/integrity", headers=HTML).text
    assert 'data-testid="verify-ok"' in html
    assert "Run by u-noc" in html


def test_verify_names_a_modified_segment_on_the_page_and_in_the_audit_trail(
    client: TestClient, runtime: Runtime, stored: ParquetStore
) -> None:
    (segment,) = stored.segments()
    path = runtime.settings.home / runtime.settings.flows.store_dir / segment.name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))

    csrf = signed_in(client, runtime, "admin")
    started = client.post(
        "/flows/integrity/verify", data={"csrf_token": csrf}, headers=HTML, follow_redirects=False
    )
    assert started.status_code == 303  # without htmx: back to the page, which polls
    finish_verify(client)
    html = client.get("/flows/integrity", headers=HTML).text
    broken = re.search(r'data-testid="verify-broken".*?</div>', html, re.S)
    assert broken is not None
    assert "modified" in broken.group(0)
    assert segment.name in broken.group(0)
    with runtime.reading() as session:
        rows, _ = audit.list_entries(session, action="logs.verify")
        after = audit.entry_dict(rows[0])["after"]
    assert after["ok"] is False
    assert after["problem_counts"] == {"modified": 1}


def test_search_and_verify_work_the_same_on_the_clickhouse_backend(
    client: TestClient, runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    use_backend(runtime, "clickhouse-chdb", monkeypatch)
    store = open_store(runtime)
    try:
        store.write(known_records())
        store.flush()
    finally:
        store.close()
    csrf = signed_in(client, runtime, "admin")
    html = client.get("/flows", params=RANGE, headers=HTML).text
    assert "In all: 6.2 kB, 17 packets, 3 flows" in html
    assert html.count("<rect") == 6
    started = client.post(
        "/flows/integrity/verify", headers={**HTML, "X-CSRF-Token": csrf, "HX-Request": "true"}
    )
    assert started.status_code == 202
    finish_verify(client)
    page = client.get("/flows/integrity", headers=HTML).text
    assert 'data-testid="verify-ok"' in page
    assert "clickhouse" in page


def test_a_verify_that_cannot_reach_the_store_is_shown_and_audited_as_failed(
    client: TestClient, runtime: Runtime
) -> None:
    # A real unreachable server: nothing listens on port 1 of loopback.
    runtime.settings.flows = runtime.settings.flows.model_copy(
        update={"store": "clickhouse", "clickhouse_url": "http://127.0.0.1:1/hostwarden"}
    )
    csrf = signed_in(client, runtime, "compliance")
    page = client.get("/flows/integrity", headers=HTML)
    assert page.status_code == 200
    assert 'data-testid="store-error"' in page.text
    assert 'data-testid="holds"' in page.text
    client.post("/flows/integrity/verify", headers={**HTML, "X-CSRF-Token": csrf})
    finish_verify(client)
    html = client.get("/flows/integrity/verify", headers=HTML).text
    failed = re.search(r'data-testid="verify-failed">(.*?)</p>', html, re.S)
    assert failed is not None
    assert "127.0.0.1" in failed.group(1)
    with runtime.reading() as session:
        rows, _ = audit.list_entries(session, action="logs.verify")
        after = audit.entry_dict(rows[0])["after"]
    assert after["ok"] is False and "127.0.0.1" in after["error"]
    assert json.loads(last_verify_path(runtime).read_text())["ok"] is False


# --- in a browser ---------------------------------------------------------------------------


@pytest.mark.browser
def test_in_a_browser_search_flows_then_verify_the_store_in_english_and_chinese(
    live_server: str, initialised: Initialised, runtime: Runtime, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    store = ParquetStore(runtime)
    store.write(known_records())
    store.flush()
    store.close()
    page = browser_page
    assert isinstance(page, Page)
    browser_sign_in(page, live_server, "/flows", "admin", initialised.admin_password)

    form = page.get_by_test_id("flow-search")
    form.locator("input[name=from]").fill("2026-05-01T17:00:00+08:00")
    form.locator("input[name=to]").fill("2026-05-01T20:00:00+08:00")
    form.locator("input[name=ip]").fill("203.0.113.0/24")
    form.locator("button[type=submit]").click()
    chart = page.get_by_test_id("traffic-chart")
    expect(chart.locator("svg")).to_be_visible()
    expect(chart.locator("svg rect")).to_have_count(6)
    talkers = page.get_by_test_id("top-talkers")
    expect(talkers.locator("tbody tr").first).to_contain_text("203.0.113.7")
    expect(talkers.locator("tbody tr").first).to_contain_text("6 kB")
    page.get_by_text("customer", exact=True).click()
    expect(talkers.locator("tbody tr").first).to_contain_text("#1")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-flows-search.png"), full_page=True)

    page.click("nav.tabs >> text=Retention and integrity")
    expect(page).to_have_url(f"{live_server}/flows/integrity")
    expect(page.get_by_test_id("verify-never")).to_be_visible()
    page.get_by_test_id("run-verify").click()
    expect(page.get_by_test_id("verify-ok")).to_contain_text("OK", timeout=30_000)

    page.click("header >> text=简体中文")
    expect(page.locator("h1")).to_have_text("留存与完整性")
    expect(page.get_by_test_id("verify-ok")).to_contain_text("正常")
    # Empty the shown result first, so that the one awaited is this run's.
    page.evaluate("document.getElementById('verify').replaceChildren()")
    page.get_by_test_id("run-verify").click()
    expect(page.get_by_test_id("verify-ok")).to_contain_text("正常", timeout=30_000)
    expect(page.get_by_test_id("verify-state")).to_contain_text("由 admin 运行")
    page.screenshot(path=str(ARTIFACTS / "console-flows-integrity-zh.png"), full_page=True)
    page.click("nav.tabs >> text=流量查询")
    expect(page.locator("h1")).to_have_text("流量查询")
