"""`/api/v1/flows`: records streamed as NDJSON or CSV, top talkers and time series, over
records added up by hand (``store_support.known_flows``), on a real Parquet store."""

from __future__ import annotations

import csv
import io
import json

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.flows.store import Segment, parquet
from tests.conftest import make_token, make_user
from tests.flows.store_support import (
    CUSTOMER_A,
    CUSTOMER_B,
    MAY_1,
    NOBODY,
    REMOTE_1,
    known_flows,
    make_batch,
    new_store,
)

FIVE_MINUTES = {"from": "2026-05-01T08:00:00+08:00", "to": "2026-05-01T00:05:00Z"}
DAY = {"from": "2026-05-01T00:00:00Z", "to": "2026-05-02T00:00:00Z"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@pytest.fixture
def sealed(runtime: Runtime) -> Segment:
    store = new_store(runtime)
    try:
        store.write(known_flows())
        (segment,) = store.flush()
    finally:
        store.close()
    return segment


@pytest.fixture
def abuse_token(runtime: Runtime) -> str:
    make_user(runtime, "ana", ["abuse"])
    return make_token(runtime, "ana")


def test_records_stream_as_json_lines_read_line_by_line(
    client: TestClient, abuse_token: str, sealed: Segment
) -> None:
    params = {**FIVE_MINUTES, "proto": "tcp", "port": ["443", "80"]}
    with client.stream(
        "GET", "/api/v1/flows/records", params=params, headers=bearer(abuse_token)
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/x-ndjson"
        rows = [json.loads(line) for line in response.iter_lines() if line]
    assert [(r["src"], r["dst"], r["dst_port"], r["bytes"]) for r in rows] == [
        (CUSTOMER_A, REMOTE_1, 443, 1_000),
        (REMOTE_1, CUSTOMER_A, 40000, 2_000),
        (NOBODY, REMOTE_1, 80, 30_000),
    ]
    assert rows[0]["start"] == "2026-05-01T00:00:00.000Z"
    assert rows[2]["customer_id"] == -1


def test_records_as_csv_and_narrowed_by_address_customer_and_limit(
    client: TestClient, abuse_token: str, sealed: Segment
) -> None:
    response = client.get(
        "/api/v1/flows/records",
        params={**FIVE_MINUTES, "format": "csv", "ip": "203.0.113.0/29", "customer": "2"},
        headers=bearer(abuse_token),
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [(r["src"], r["bytes"]) for r in rows] == [(CUSTOMER_B, "100"), ("198.51.100.2", "300")]
    limited = client.get(
        "/api/v1/flows/records", params={**FIVE_MINUTES, "limit": 2}, headers=bearer(abuse_token)
    )
    assert len(limited.text.splitlines()) == 2
    empty = client.get(
        "/api/v1/flows/records",
        params={**FIVE_MINUTES, "port": 9, "format": "csv"},
        headers=bearer(abuse_token),
    )
    assert empty.status_code == 200 and empty.text.startswith('"start","end"')


def test_every_read_of_records_is_audited_with_who_and_what(
    client: TestClient, abuse_token: str, sealed: Segment, runtime: Runtime
) -> None:
    client.get(
        "/api/v1/flows/records",
        params={**FIVE_MINUTES, "ip": CUSTOMER_A},
        headers=bearer(abuse_token),
    )
    client.get("/api/v1/flows/top", params=FIVE_MINUTES, headers=bearer(abuse_token))
    with runtime.reading() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "flows.query")
        ).all()
    assert len(entries) == 1, "aggregates are not records: only the records read is audited"
    assert "ana" in entries[0].actor
    scope = json.loads(entries[0].after)
    assert scope["ips"] == [CUSTOMER_A]
    assert scope["from"].startswith("2026-05-01T00:00:00") and scope["format"] == "ndjson"


def test_top_talkers_and_series_answer_json(
    client: TestClient, abuse_token: str, sealed: Segment
) -> None:
    top = client.get("/api/v1/flows/top", params=FIVE_MINUTES, headers=bearer(abuse_token))
    assert top.status_code == 200, top.text
    body = top.json()
    assert (body["by"], body["group"]) == ("bytes", "ip")
    assert [
        (i["key"], i["customer_id"], i["flows"], i["packets"], i["bytes"]) for i in body["items"]
    ] == [
        (NOBODY, -1, 1, 3, 30_000),
        (CUSTOMER_A, 1, 3, 35, 3_500),
        (CUSTOMER_B, 2, 2, 3, 400),
    ]
    customers = client.get(
        "/api/v1/flows/top",
        params={**FIVE_MINUTES, "group": "customer", "by": "packets", "ip": REMOTE_1},
        headers=bearer(abuse_token),
    ).json()
    assert [(i["key"], i["packets"]) for i in customers["items"]] == [("1", 30), ("-", 3)]
    series = client.get(
        "/api/v1/flows/series", params={**FIVE_MINUTES, "step": "2m"}, headers=bearer(abuse_token)
    ).json()
    assert series["step_ms"] == 120_000
    assert [(i["bucket_ms"] - MAY_1, i["flows"], i["bytes"]) for i in series["items"]] == [
        (0, 3, 3_100),
        (120_000, 2, 800),
        (240_000, 1, 30_000),
    ]
    assert series["items"][1]["bucket"] == "2026-05-01T00:02:00.000000Z"


@pytest.mark.parametrize(
    ("path", "params", "words"),
    [
        ("records", {**FIVE_MINUTES, "from": "2026-05-01T00:00:00"}, "no time zone"),
        ("records", {**FIVE_MINUTES, "to": "yesterday"}, "not an ISO 8601 date-time"),
        ("records", {**FIVE_MINUTES, "format": "xml"}, "Use ndjson or csv"),
        ("records", {**FIVE_MINUTES, "port": 70000}, "port 70000 is outside 0–65535"),
        ("records", {**FIVE_MINUTES, "proto": "carrier-pigeon"}, "neither a number nor"),
        ("records", {**FIVE_MINUTES, "ip": "203.0.113.300"}, "203.0.113.300"),
        ("records", {**FIVE_MINUTES, "limit": 0}, "limit 0 is not positive"),
        ("top", {**FIVE_MINUTES, "by": "octets"}, "cannot rank by 'octets'"),
        ("top", {**FIVE_MINUTES, "group": "asn"}, "cannot group by 'asn'"),
        ("series", {**DAY, "step": "1s"}, "10s or more"),
        ("series", {**FIVE_MINUTES, "step": "5 minutes"}, "Write it like 30s"),
        ("series", {"from": DAY["to"], "to": DAY["from"]}, "not after its start"),
    ],
)
def test_bad_queries_are_problems_that_say_what_to_do(
    client: TestClient,
    abuse_token: str,
    sealed: Segment,
    path: str,
    params: dict[str, object],
    words: str,
) -> None:
    response = client.get(f"/api/v1/flows/{path}", params=params, headers=bearer(abuse_token))
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert words in response.json()["detail"]


def test_an_unreadable_segment_is_a_problem_before_anything_streams(
    client: TestClient, abuse_token: str, sealed: Segment, runtime: Runtime
) -> None:
    path = runtime.settings.home / runtime.settings.flows.store_dir / sealed.name
    path.write_bytes(path.read_bytes()[:200])
    response = client.get("/api/v1/flows/records", params=FIVE_MINUTES, headers=bearer(abuse_token))
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert f"flow segment {sealed.name} is corrupt" in response.json()["detail"]


def test_sales_may_not_read_flows(client: TestClient, runtime: Runtime, sealed: Segment) -> None:
    make_user(runtime, "sam", ["sales"])
    response = client.get(
        "/api/v1/flows/records", params=FIVE_MINUTES, headers=bearer(make_token(runtime, "sam"))
    )
    assert response.status_code == 403


def test_a_large_answer_is_sent_in_pieces_as_it_is_read(
    runtime: Runtime, live_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a real server: the body comes chunked (no length known in advance), in
    pieces of STREAM_ROWS records, and adds up to every record."""
    monkeypatch.setattr(parquet, "STREAM_ROWS", 2_000)
    batch = make_batch(20_000)
    store = new_store(runtime)
    try:
        store.write(batch)
        store.flush()
    finally:
        store.close()
    make_user(runtime, "ana", ["abuse"])
    token = make_token(runtime, "ana")
    lines = 0
    total_bytes = 0
    with httpx.stream(
        "GET", f"{live_server}/api/v1/flows/records", params=DAY, headers=bearer(token), timeout=60
    ) as response:
        assert response.status_code == 200
        assert response.headers.get("transfer-encoding") == "chunked"
        assert "content-length" not in response.headers
        for line in response.iter_lines():
            if line:
                lines += 1
                total_bytes += json.loads(line)["bytes"]
    assert lines == 20_000
    assert total_bytes == int(batch["bytes"].sum())
