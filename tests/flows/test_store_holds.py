"""Legal holds from the API and the shell, and retention run by hand."""

from __future__ import annotations

import json
import time

from fastapi.testclient import TestClient
from typer.testing import CliRunner

from hostwarden.cli.main import app
from hostwarden.core.runtime import Runtime
from hostwarden.flows.store.parquet import ParquetStore
from tests.conftest import make_token, make_user
from tests.flows.store_support import DAY_MS, make_batch

runner = CliRunner()


def hw(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def bearer(runtime: Runtime, role: str) -> dict[str, str]:
    make_user(runtime, f"{role}-user", [role])
    return {"Authorization": f"Bearer {make_token(runtime, f'{role}-user')}"}


def test_legal_places_lists_and_releases_a_hold_through_the_api(
    client: TestClient, runtime: Runtime
) -> None:
    headers = bearer(runtime, "legal")
    body = {
        "start": "2026-05-01T00:00:00+08:00",
        "end": "2026-05-02",
        "ips": ["203.0.113.5", "198.51.100.0/24"],
        "reason": "请求协助调查 / request for assistance",
        "case_ref": "京公网安-2026-0042",
    }
    created = client.post("/api/v1/legal-holds", json=body, headers=headers)
    assert created.status_code == 201, created.text
    hold = created.json()
    assert hold["ips"] == ["203.0.113.5/32", "198.51.100.0/24"]
    assert hold["start_at"] == "2026-04-30T16:00:00Z"
    assert hold["end_at"] == "2026-05-03T00:00:00Z"
    assert hold["active"] is True and hold["created_by"] == "legal-user"
    listed = client.get("/api/v1/legal-holds", params={"active": True}, headers=headers).json()
    assert [h["id"] for h in listed] == [hold["id"]]
    released = client.post(
        f"/api/v1/legal-holds/{hold['id']}/release",
        json={"reason": "investigation closed"},
        headers=headers,
    )
    assert released.status_code == 200
    assert released.json()["active"] is False
    assert released.json()["released_by"] == "legal-user"
    assert client.get("/api/v1/legal-holds?active=true", headers=headers).json() == []
    again = client.post(
        f"/api/v1/legal-holds/{hold['id']}/release", json={"reason": "x"}, headers=headers
    )
    assert again.status_code == 409


def test_a_hold_without_reason_or_with_a_bad_scope_is_refused(
    client: TestClient, runtime: Runtime
) -> None:
    headers = bearer(runtime, "compliance")
    missing = client.post("/api/v1/legal-holds", json={"start": "2026-05-01"}, headers=headers)
    assert missing.status_code == 422
    blank = client.post(
        "/api/v1/legal-holds", json={"start": "2026-05-01", "reason": ""}, headers=headers
    )
    assert blank.status_code == 422
    naive = client.post(
        "/api/v1/legal-holds",
        json={"start": "2026-05-01T10:00:00", "reason": "x"},
        headers=headers,
    )
    assert naive.status_code == 422 and "time zone" in naive.json()["detail"]
    unknown = client.post("/api/v1/legal-holds/999/release", json={"reason": "x"}, headers=headers)
    assert unknown.status_code == 404


def test_only_legal_compliance_and_admin_place_holds_auditors_see_them(
    client: TestClient, runtime: Runtime
) -> None:
    body = {"start": "2026-05-01", "reason": "case"}
    assert (
        client.post("/api/v1/legal-holds", json=body, headers=bearer(runtime, "abuse")).status_code
        == 403
    )
    auditor = bearer(runtime, "auditor")
    assert client.post("/api/v1/legal-holds", json=body, headers=auditor).status_code == 403
    assert client.get("/api/v1/legal-holds", headers=auditor).status_code == 200
    assert client.get("/api/v1/legal-holds", headers=bearer(runtime, "noc")).status_code == 403


def test_holds_from_the_shell(runtime: Runtime, env_for_home: dict[str, str]) -> None:
    code, out, _ = hw(
        "logs", "hold", "add", "--from", "2026-05-01", "--to", "2026-05-02",
        "--ip", "203.0.113.5", "--reason", "LE request", "--case", "LE-1", "--json",
    )  # fmt: skip
    assert code == 0, out
    hold = json.loads(out)
    assert hold["ips"] == ["203.0.113.5/32"] and hold["case_ref"] == "LE-1"
    code, out, _ = hw("logs", "hold", "list")
    assert code == 0 and "Legal holds" in out
    code, out, _ = hw("logs", "hold", "list", "--json")
    assert [(h["id"], h["active"]) for h in json.loads(out)] == [(hold["id"], True)]
    code, _, err = hw("logs", "hold", "add", "--from", "2026-05-01")
    assert code == 2 and "--reason" in err
    code, _, err = hw("logs", "hold", "release", str(hold["id"]))
    assert code == 2 and "--reason" in err
    code, out, _ = hw("logs", "hold", "release", str(hold["id"]), "--reason", "closed")
    assert code == 0 and f"Legal hold {hold['id']} released" in out
    code, out, _ = hw("logs", "hold", "list", "--json")
    assert code == 0 and json.loads(out) == []
    code, out, _ = hw("logs", "hold", "list", "--all", "--json")
    assert [h["release_reason"] for h in json.loads(out)] == ["closed"]
    code, _, err = hw("logs", "hold", "release", str(hold["id"]), "--reason", "again")
    assert code == 1 and "already released" in err


def test_retention_can_be_run_from_the_shell(
    runtime: Runtime, env_for_home: dict[str, str]
) -> None:
    today = int(time.time() * 1000) // DAY_MS * DAY_MS
    store = ParquetStore(runtime)
    store.write(make_batch(500, day_start_ms=today - 400 * DAY_MS))
    store.write(make_batch(500, day_start_ms=today - DAY_MS))
    store.close()
    code, out, _ = hw("logs", "expire", "--json")
    assert code == 0, out
    report = json.loads(out)
    assert len(report["expired"]) == 1 and report["rows_expired"] == 500
    code, out, _ = hw("logs", "verify")
    assert code == 0
