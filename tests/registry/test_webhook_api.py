"""The change-feed endpoint over HTTP, and the curl example of docs/webhooks.md."""

from __future__ import annotations

import json
import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hostwarden.core import audit
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.registry import inventory, webhooks
from hostwarden.registry.models import Customer, Instance, IpAssignment

DOC = Path(__file__).resolve().parents[2] / "docs" / "webhooks.md"
AT = "2026-05-01T10:00:00+08:00"


@pytest.fixture
def secret(runtime: Runtime) -> str:
    with runtime.operation(system_actor("test")) as op:
        op.session.add(
            Customer(kind="organisation", name="Example Ltd", external_id="C-1001", status="active")
        )
        inventory.create_range(op, "203.0.113.0/24", purpose="VPS")
        _, value = webhooks.create_source(op, "billing")
    return value


def post(client: TestClient, secret: str, payload: dict[str, Any], **headers: str) -> Any:
    body = json.dumps(payload).encode()
    signature = webhooks.sign(secret, body, int(time.time()))
    return client.post(
        "/api/v1/webhooks/billing",
        content=body,
        headers={
            "Content-Type": "application/json",
            webhooks.SIGNATURE_HEADER: signature,
            **headers,
        },
    )


def held(runtime: Runtime) -> list[tuple[str, int | None, str | None]]:
    with runtime.reading() as session:
        rows = session.scalars(select(IpAssignment).order_by(IpAssignment.id))
        return [(r.prefix, r.instance_id, r.valid_to and r.valid_to.isoformat()) for r in rows]


def test_a_billing_system_creates_an_instance_assigns_and_releases_an_ip(
    client: TestClient, runtime: Runtime, secret: str
) -> None:
    created = post(
        client,
        secret,
        {
            "id": "e1",
            "type": "instance.created",
            "data": {
                "external_id": "vm-1",
                "hostname": "vps-1.example.net",
                "kind": "vps",
                "customer_external_id": "C-1001",
                "at": AT,
            },
        },
    )
    assert created.status_code == 200, created.text
    assigned = post(
        client,
        secret,
        {
            "id": "e2",
            "type": "ip.assigned",
            "data": {"ip": "203.0.113.7", "instance_external_id": "vm-1", "at": AT},
        },
    )
    assert assigned.json()["status"] == "applied"
    released = post(
        client,
        secret,
        {
            "id": "e3",
            "type": "ip.released",
            "data": {"ip": "203.0.113.7", "at": "2026-06-01T00:00:00+08:00"},
        },
    )
    assert released.status_code == 200, released.text
    ((prefix, instance_id, valid_to),) = held(runtime)
    assert prefix == "203.0.113.7/32"
    assert instance_id is not None
    assert valid_to is not None and valid_to.startswith("2026-05-31T16:00:00")
    with runtime.reading() as session:
        entries, _ = audit.list_entries(session, actor="webhook:billing")
    assert {e.action for e in entries} >= {"instance.create"}
    assert audit.verify(runtime).ok


def test_termination_closes_the_instances_assignments(
    client: TestClient, runtime: Runtime, secret: str
) -> None:
    post(
        client,
        secret,
        {
            "id": "e1",
            "type": "instance.created",
            "data": {
                "external_id": "vm-1",
                "hostname": "vps-1",
                "kind": "vps",
                "customer_external_id": "C-1001",
                "at": AT,
            },
        },
    )
    post(
        client,
        secret,
        {
            "id": "e2",
            "type": "ip.assigned",
            "data": {"ip": "203.0.113.8", "instance_external_id": "vm-1", "at": AT},
        },
    )
    done = post(
        client,
        secret,
        {
            "id": "e3",
            "type": "instance.terminated",
            "data": {"instance_external_id": "vm-1", "at": "2026-07-01T00:00:00Z"},
        },
    )
    assert done.status_code == 200, done.text
    assert held(runtime)[0][2] is not None
    with runtime.reading() as session:
        assert session.scalar(select(Instance.status)) == "terminated"


def test_a_repeated_event_is_answered_but_not_applied_twice(
    client: TestClient, runtime: Runtime, secret: str
) -> None:
    event = {
        "id": "e9",
        "type": "ip.assigned",
        "data": {"ip": "203.0.113.9", "customer_external_id": "C-1001", "at": AT},
    }
    assert post(client, secret, event).json()["duplicate"] is False
    assert post(client, secret, event).json()["duplicate"] is True
    assert len(held(runtime)) == 1


@pytest.mark.parametrize(
    ("data", "status", "words"),
    [
        ({"ip": "203.0.113.9", "customer_external_id": "C-404", "at": AT}, 404, "C-404"),
        ({"ip": "198.51.100.1", "customer_external_id": "C-1001", "at": AT}, 422, "range"),
        (
            {"ip": "203.0.113.9", "customer_external_id": "C-1001", "at": "2026-05-01 10:00"},
            422,
            "zone",
        ),
        ({"customer_external_id": "C-1001", "at": AT}, 422, "data.ip"),
    ],
)
def test_bad_events_get_a_problem_and_change_nothing(
    client: TestClient,
    runtime: Runtime,
    secret: str,
    data: dict[str, Any],
    status: int,
    words: str,
) -> None:
    entries = audit.verify(runtime).entries
    response = post(client, secret, {"id": "bad", "type": "ip.assigned", "data": data})
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert words in response.json()["detail"]
    assert held(runtime) == []
    assert audit.verify(runtime).entries == entries


def test_a_wrong_signature_is_401_and_changes_nothing(
    client: TestClient, runtime: Runtime, secret: str
) -> None:
    response = post(
        client,
        "not-the-secret",
        {
            "id": "e1",
            "type": "ip.assigned",
            "data": {"ip": "203.0.113.7", "customer_external_id": "C-1001", "at": AT},
        },
    )
    assert response.status_code == 401
    assert "does not match" in response.json()["detail"]
    assert held(runtime) == []


def test_the_documented_curl_example_works_against_a_live_server(
    live_server: str, runtime: Runtime, secret: str
) -> None:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"<!-- example:begin -->\s*```sh\n(.*?)```", text, re.S)
    assert block, "docs/webhooks.md lost its example"
    script = block.group(1).replace("paste the secret here", secret)
    script = script.replace("http://127.0.0.1:8080", live_server)
    result = subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=30, check=False
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "applied", result.stdout
    assert held(runtime)[0][0] == "203.0.113.7/32"


def test_an_oversized_event_is_413_before_anything_is_checked(
    client: TestClient, runtime: Runtime, secret: str
) -> None:
    entries = audit.verify(runtime).entries
    payload = {
        "id": "big",
        "type": "ip.assigned",
        "data": {"ip": "203.0.113.7", "customer_external_id": "C-1001", "at": AT},
        "padding": "x" * 70_000,
    }
    response = post(client, secret, payload)
    assert response.status_code == 413, response.text
    assert "64 KiB" in response.json()["detail"]
    assert held(runtime) == []
    assert audit.verify(runtime).entries == entries
