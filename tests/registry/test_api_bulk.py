"""Bulk import and export over the API: the same engine, report and all-or-nothing rule as
`hostwarden import`, each change audited as the user whose token sent the file."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.registry.models import Customer, Instance, IpRange
from tests.conftest import make_token, make_user
from tests.registry.customer_fixtures import assert_loaded_and_attributed, count

API = "/api/v1/registry"
CUSTOMERS = """external_id,kind,name,email,phone,risk_tier
C-1,organisation,Example Ltd,ops@example.com,13812345678,low
C-2,individual,李娜,li.na@example.cn,,medium
"""
RANGES = "cidr,purpose\n203.0.113.0/24,VPS\n2001:db8::/48,VPS v6\n"
INSTANCES = [
    {
        "external_id": "vm-1",
        "hostname": "vps-1.example.net",
        "kind": "vps",
        "customer_external_id": "C-1",
        "created_at": "2026-01-01T00:00:00+08:00",
    },
    {
        "external_id": "vm-2",
        "hostname": "dedi-2.example.net",
        "kind": "dedicated",
        "customer_external_id": "C-2",
        "created_at": "2026-01-02T00:00:00+08:00",
    },
]
ASSIGNMENTS = "\n".join(
    json.dumps(row)
    for row in [
        {
            "ip": "203.0.113.7",
            "customer_external_id": "C-1",
            "instance_external_id": "vm-1",
            "valid_from": "2026-01-01T00:00:00+08:00",
            "valid_to": "2026-02-01T00:00:00+08:00",
        },
        {
            "ip": "203.0.113.7",
            "customer_external_id": "C-2",
            "instance_external_id": "vm-2",
            "valid_from": "2026-02-01T00:00:00+08:00",
        },
    ]
)
CSV = {"Content-Type": "text/csv"}


def bearer(runtime: Runtime, username: str, role: str) -> dict[str, str]:
    make_user(runtime, username, [role])
    return {"Authorization": f"Bearer {make_token(runtime, username)}"}


@pytest.fixture
def sales(runtime: Runtime) -> dict[str, str]:
    return bearer(runtime, "sally", "sales")


def entries(runtime: Runtime) -> int:
    return count(runtime, AuditEntry)


@pytest.fixture
def loaded(runtime: Runtime, client: TestClient, sales: dict[str, str]) -> Runtime:
    for kind, body in (("customers", CUSTOMERS), ("ranges", RANGES)):
        answer = client.post(f"{API}/import/{kind}", content=body, headers=sales | CSV)
        assert answer.status_code == 200, answer.text
    answer = client.post(f"{API}/import/instances", json=INSTANCES, headers=sales)
    assert answer.status_code == 200, answer.text
    answer = client.post(
        f"{API}/import/assignments",
        content=ASSIGNMENTS,
        headers=sales | {"Content-Type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text
    return runtime


def test_a_provider_loads_its_registry_over_the_api_and_attribution_works(
    loaded: Runtime,
) -> None:
    assert_loaded_and_attributed(loaded, assignments=2)


def test_the_answer_is_the_report_the_cli_prints(
    runtime: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    answer = client.post(f"{API}/import/customers", content=CUSTOMERS, headers=sales | CSV)
    assert answer.status_code == 200
    assert answer.json() == {
        "kind": "customers",
        "total": 2,
        "created": 2,
        "updated": 0,
        "unchanged": 0,
        "skipped": 0,
        "dry_run": False,
        "written": True,
        "errors": [],
    }
    again = client.post(f"{API}/import/customers", content=CUSTOMERS, headers=sales | CSV)
    assert (again.json()["unchanged"], again.json()["created"]) == (2, 0)


def test_every_imported_change_is_audited_as_the_token_user(
    runtime: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    before = entries(runtime)
    client.post(f"{API}/import/customers", content=CUSTOMERS, headers=sales | CSV)
    with runtime.reading() as session:
        made = session.scalars(select(AuditEntry).where(AuditEntry.seq > before)).all()
        trail = [(e.action, e.actor, e.reason) for e in made]
    assert trail == [("customer.create", "sally", "bulk import")] * 2
    assert audit.verify(runtime).ok


def test_a_dry_run_reports_what_would_happen_and_writes_nothing(
    runtime: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    before = entries(runtime)
    answer = client.post(
        f"{API}/import/customers",
        params={"dry_run": "true"},
        content=CUSTOMERS,
        headers=sales | CSV,
    )
    assert answer.status_code == 200
    report = answer.json()
    assert (report["created"], report["dry_run"], report["written"]) == (2, True, False)
    assert count(runtime, Customer) == 0
    assert entries(runtime) == before


def test_a_bad_row_refuses_the_whole_file_naming_row_and_column(
    loaded: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    bad = (
        "external_id,hostname,kind,customer_external_id\n"
        "vm-9,vps-9.example.net,vps,C-1\n"
        "vm-10,vps-10.example.net,vps,C-404\n"
    )
    before = entries(loaded)
    answer = client.post(f"{API}/import/instances", content=bad, headers=sales | CSV)
    assert answer.status_code == 422
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["type"] == "urn:hostwarden:problem:import-refused"
    assert "nothing was written" in problem["detail"]
    assert "skip_invalid=true" in problem["detail"]
    assert problem["errors"] == [
        {
            "row": 2,
            "column": "customer_external_id",
            "problem": "no customer with external id 'C-404'",
        }
    ]
    assert (problem["total"], problem["written"]) == (2, False)
    assert count(loaded, Instance) == 2, "vm-9 of row 1 was not written either"
    assert entries(loaded) == before


def test_skip_invalid_writes_the_good_rows_and_lists_the_bad(
    loaded: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    mixed = (
        "external_id,hostname,kind,customer_external_id\n"
        "vm-9,vps-9.example.net,vps,C-1\n"
        "vm-10,vps-10.example.net,spaceship,C-1\n"
    )
    answer = client.post(
        f"{API}/import/instances",
        params={"skip_invalid": "true"},
        content=mixed,
        headers=sales | CSV,
    )
    assert answer.status_code == 200
    report = answer.json()
    assert (report["created"], report["skipped"], report["written"]) == (1, 1, True)
    assert report["errors"] == [
        {
            "row": 2,
            "column": "kind",
            "problem": "'spaceship' is not one of vps, dedicated, colocation",
        }
    ]
    assert count(loaded, Instance) == 3


def test_format_comes_from_the_query_when_the_content_type_says_nothing(
    runtime: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    # What curl --data-binary sends when no Content-Type is given.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    refused = client.post(f"{API}/import/ranges", content=RANGES, headers=sales | form)
    assert refused.status_code == 422
    assert "Content-Type text/csv" in refused.json()["detail"]
    answer = client.post(
        f"{API}/import/ranges", params={"format": "csv"}, content=RANGES, headers=sales | form
    )
    assert answer.status_code == 200, answer.text
    assert count(runtime, IpRange) == 2


@pytest.mark.parametrize(
    ("method", "path", "params", "body", "message"),
    [
        ("POST", "/import/planets", {}, RANGES, "Use one of: customers, ranges, instances"),
        ("GET", "/export/planets", {}, None, "'planets' is not something to import or export"),
        ("GET", "/export/ranges", {"format": "xml"}, None, "'xml' is not an export format"),
        ("POST", "/import/ranges", {"format": "xml"}, RANGES, "'xml' is not an import format"),
        ("POST", "/import/ranges", {}, "", "the request body is empty"),
        ("POST", "/import/ranges", {}, "cidr,colour\n192.0.2.0/24,red\n", "unknown column(s)"),
        ("POST", "/import/ranges", {"format": "json"}, "[{", "the JSON is malformed"),
    ],
)
def test_what_cannot_be_imported_or_exported_is_refused_saying_what_to_do(
    runtime: Runtime,
    client: TestClient,
    sales: dict[str, str],
    method: str,
    path: str,
    params: dict[str, str],
    body: str | None,
    message: str,
) -> None:
    before = entries(runtime)
    answer = client.request(
        method, f"{API}{path}", params=params, content=body, headers=sales | CSV
    )
    assert answer.status_code == 422, answer.text
    assert answer.headers["content-type"].startswith("application/problem+json")
    assert message in answer.json()["detail"]
    assert entries(runtime) == before


def test_a_body_over_the_limit_is_refused_with_413_and_nothing_written(
    runtime: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    runtime.settings.server.import_max_mb = 1
    rows = "".join(f"198.51.{i // 256 % 256}.{i % 256}/32,x\n" for i in range(60_000))
    body = ("cidr,purpose\n" + rows).encode()
    assert len(body) > 1024 * 1024

    def chunked() -> Iterator[bytes]:  # no Content-Length: counted while read
        for start in range(0, len(body), 64 * 1024):
            yield body[start : start + 64 * 1024]

    before = entries(runtime)
    for content in (body, chunked()):
        answer = client.post(f"{API}/import/ranges", content=content, headers=sales | CSV)
        assert answer.status_code == 413
        problem = answer.json()
        assert problem["type"] == "urn:hostwarden:problem:too-large"
        assert "larger than 1 MiB" in problem["detail"]
        assert "hostwarden import" in problem["detail"]
    assert count(runtime, IpRange) == 0
    assert entries(runtime) == before


@pytest.mark.parametrize(
    ("role", "method", "path", "allowed"),
    [
        ("noc", "POST", "/import/ranges", True),
        ("noc", "POST", "/import/customers", False),
        ("abuse", "POST", "/import/ranges", False),
        ("auditor", "POST", "/import/assignments", False),
        ("compliance", "POST", "/import/customers", False),
        ("abuse", "GET", "/export/ranges", True),
        ("auditor", "GET", "/export/assignments", True),
        ("abuse", "GET", "/export/customers", False),
        ("compliance", "GET", "/export/customers", False),
    ],
)
def test_each_kind_is_imported_and_exported_by_the_roles_that_maintain_it(
    runtime: Runtime, client: TestClient, role: str, method: str, path: str, allowed: bool
) -> None:
    headers = bearer(runtime, f"u-{role}", role)
    before = (count(runtime, Customer), count(runtime, IpRange))
    body = CUSTOMERS if path.endswith("customers") else RANGES
    answer = client.request(
        method,
        f"{API}{path}",
        content=body if method == "POST" else None,
        headers=headers | CSV,
    )
    assert (answer.status_code != 403) == allowed, answer.text
    if not allowed:
        assert "needs '" in answer.json()["detail"]
        assert (count(runtime, Customer), count(runtime, IpRange)) == before


def test_exports_stream_what_the_import_reads_without_phone_numbers(
    loaded: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    for kind in ("customers", "ranges", "instances", "assignments"):
        for fmt, media, suffix in (
            ("csv", "text/csv", "csv"),
            ("json", "application/x-ndjson", "jsonl"),
        ):
            answer = client.get(f"{API}/export/{kind}", params={"format": fmt}, headers=sales)
            assert answer.status_code == 200
            assert answer.headers["content-type"].startswith(media)
            assert (
                answer.headers["content-disposition"] == f'attachment; filename="{kind}.{suffix}"'
            )
            media_type = {"Content-Type": media}
            again = client.post(
                f"{API}/import/{kind}", content=answer.content, headers=sales | media_type
            )
            assert again.status_code == 200, (kind, fmt, again.text)
            assert again.json()["created"] == 0, f"{kind} {fmt} round trip"
    exported = client.get(f"{API}/export/customers", headers=sales).text
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["external_id"] for r in rows] == ["C-1", "C-2"]
    assert "phone" not in rows[0]
    assert "13812345678" not in exported


def test_every_export_is_audited_with_who_took_which_records(
    loaded: Runtime, client: TestClient, sales: dict[str, str]
) -> None:
    answer = client.get(f"{API}/export/customers", params={"format": "json"}, headers=sales)
    assert answer.status_code == 200
    with loaded.reading() as session:
        entries = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "registry.export")
        ).all()
    assert [(e.object_id, e.actor) for e in entries] == [("customers", "sally")]
    assert json.loads(entries[0].after)["format"] == "json"
    refused = client.get(f"{API}/export/customers", params={"format": "xml"}, headers=sales)
    assert refused.status_code == 422
    with loaded.reading() as session:
        count_after = session.scalar(
            select(func.count())
            .select_from(AuditEntry)
            .where(AuditEntry.action == "registry.export")
        )
    assert count_after == 1, "a refused export is not recorded as one"
