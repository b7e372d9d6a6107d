"""The HTTP API of the core: users, tokens, problem responses, health, metrics, request ids."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, select, text

from hostwarden.api.app import create_app
from hostwarden.core import audit, auth
from hostwarden.core.db import Database
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.errors import AuthenticationFailed
from tests.conftest import IS_POSTGRES, DatabaseTarget, make_token, make_user

UNREACHABLE_DB = "postgresql+psycopg://postgres@127.0.0.1:1/none"
PASSWORD = "correct-horse-9"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_problem(
    response: httpx2.Response, status: int, code: str | None = None
) -> dict[str, Any]:
    """An RFC 9457 problem answer with the fields every client may rely on."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:hostwarden:problem:")
    if code is not None:
        assert body["type"] == f"urn:hostwarden:problem:{code}"
    assert body["title"]
    assert body["detail"]
    assert body["instance"] == response.request.url.path
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def audit_entries(runtime: Runtime, action: str) -> list[AuditEntry]:
    with runtime.reading() as session:
        return list(
            session.scalars(
                select(AuditEntry).where(AuditEntry.action == action).order_by(AuditEntry.seq)
            )
        )


@pytest.fixture
def auditor_token(runtime: Runtime) -> str:
    make_user(runtime, "audrey", ["auditor"], PASSWORD)
    return make_token(runtime, "audrey")


# --- users -------------------------------------------------------------------------------


def test_an_admin_creates_reads_updates_and_disables_a_user(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    created = client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={
            "username": "Alice",
            "password": PASSWORD,
            "roles": ["abuse"],
            "display_name": "Alice Wong",
            "email": "alice@example.net",
        },
    )
    assert created.status_code == 201, created.text
    user = created.json()
    assert (user["username"], user["roles"], user["is_active"]) == ("alice", ["abuse"], True)
    assert "password" not in json.dumps(user).lower()

    listed = client.get("/api/v1/users", headers=bearer(admin_token)).json()
    assert [u["username"] for u in listed] == ["admin", "alice"]
    fetched = client.get(f"/api/v1/users/{user['id']}", headers=bearer(admin_token))
    assert fetched.json()["display_name"] == "Alice Wong"

    patched = client.patch(
        f"/api/v1/users/{user['id']}",
        headers=bearer(admin_token),
        json={"roles": ["abuse", "noc"], "display_name": "A. Wong"},
    )
    assert patched.status_code == 200
    assert (patched.json()["roles"], patched.json()["display_name"]) == (
        ["abuse", "noc"],
        "A. Wong",
    )

    disabled = client.patch(
        f"/api/v1/users/{user['id']}", headers=bearer(admin_token), json={"is_active": False}
    )
    assert disabled.json()["is_active"] is False
    with pytest.raises(AuthenticationFailed):
        auth.login(runtime, "alice", PASSWORD)

    actions = [e.action for e in audit_entries(runtime, "user.create")]
    assert actions == ["user.create", "user.create"]  # the first admin, then alice
    assert len(audit_entries(runtime, "user.update")) == 1
    assert len(audit_entries(runtime, "user.disable")) == 1


def test_an_admin_sets_a_password_that_then_works(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    user_id = make_user(runtime, "alice", ["abuse"], PASSWORD)

    response = client.put(
        f"/api/v1/users/{user_id}/password",
        headers=bearer(admin_token),
        json={"password": "a-brand-new-pass", "reason": "forgotten"},
    )

    assert response.status_code == 204
    assert auth.login(runtime, "alice", "a-brand-new-pass").user_id == user_id


def test_me_answers_for_the_tokens_owner(client: TestClient, auditor_token: str) -> None:
    response = client.get("/api/v1/users/me", headers=bearer(auditor_token))

    assert response.status_code == 200
    assert (response.json()["username"], response.json()["roles"]) == ("audrey", ["auditor"])


def test_readers_without_write_permission_see_emails_masked(
    client: TestClient, admin_token: str, auditor_token: str, runtime: Runtime
) -> None:
    with runtime.operation(system_actor("test")) as op:
        auth.create_user(op, "alice", PASSWORD, ["abuse"], email="alice.wong@example.net")

    as_admin = client.get("/api/v1/users", headers=bearer(admin_token)).json()
    as_auditor = client.get("/api/v1/users", headers=bearer(auditor_token)).json()

    assert {u["username"]: u["email"] for u in as_admin}["alice"] == "alice.wong@example.net"
    assert {u["username"]: u["email"] for u in as_auditor}["alice"] == "a***@example.net"


# --- tokens ------------------------------------------------------------------------------


def test_tokens_are_created_listed_without_secret_and_revoked(
    client: TestClient, admin_token: str
) -> None:
    created = client.post(
        "/api/v1/tokens", headers=bearer(admin_token), json={"name": "billing", "days": 7}
    )
    assert created.status_code == 201, created.text
    body = created.json()
    secret = body["token"]
    assert secret.startswith(f"hw_{body['prefix']}_")
    assert body["roles"] == ["admin"]

    listed = client.get("/api/v1/tokens", headers=bearer(admin_token))
    assert listed.status_code == 200
    assert "billing" in [t["name"] for t in listed.json()]
    assert secret not in listed.text
    assert all("token" not in t for t in listed.json())

    assert client.get("/api/v1/users/me", headers=bearer(secret)).status_code == 200

    revoked = client.delete(f"/api/v1/tokens/{body['id']}", headers=bearer(admin_token))
    assert revoked.status_code == 200
    assert revoked.json()["revoked_at"] is not None

    refused = client.get("/api/v1/users/me", headers=bearer(secret))
    assert_problem(refused, 401, "unauthenticated")


def test_a_token_with_narrower_roles_is_limited_to_them(
    client: TestClient, admin_token: str
) -> None:
    created = client.post(
        "/api/v1/tokens", headers=bearer(admin_token), json={"name": "ro", "roles": ["auditor"]}
    )
    assert created.status_code == 403  # the admin does not hold the auditor role
    assert_problem(created, 403, "forbidden")

    user = client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={"username": "multi", "password": PASSWORD, "roles": ["admin", "auditor"]},
    ).json()
    token = client.post(
        "/api/v1/tokens",
        headers=bearer(admin_token),
        json={"name": "ro", "roles": ["auditor"], "user_id": user["id"]},
    ).json()["token"]

    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 200
    denied = client.post(
        "/api/v1/users",
        headers=bearer(token),
        json={"username": "x1", "password": PASSWORD, "roles": ["noc"]},
    )
    assert_problem(denied, 403, "forbidden")


def test_a_user_cannot_revoke_someone_elses_token(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    make_user(runtime, "alice", ["abuse"], PASSWORD)
    alice = make_token(runtime, "alice")
    admin_tokens = client.get("/api/v1/tokens", headers=bearer(admin_token)).json()

    response = client.delete(f"/api/v1/tokens/{admin_tokens[0]['id']}", headers=bearer(alice))

    assert_problem(response, 403, "forbidden")
    assert client.get("/api/v1/users/me", headers=bearer(admin_token)).status_code == 200


# --- problem responses -------------------------------------------------------------------


def test_no_token_is_a_401_problem_asking_for_a_bearer_token(client: TestClient) -> None:
    response = client.get("/api/v1/users")

    body = assert_problem(response, 401, "unauthenticated")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "bearer token" in body["detail"]


@pytest.mark.parametrize(
    "header",
    ["Bearer hw_deadbeef_nottherealsecret", "Bearer ", "Basic YWRtaW46YWRtaW4=", "hw_x_y"],
)
def test_a_bad_authorization_header_is_a_401_problem(client: TestClient, header: str) -> None:
    response = client.get("/api/v1/users", headers={"Authorization": header})

    assert_problem(response, 401, "unauthenticated")


def test_a_role_without_the_permission_gets_a_403_problem_naming_it(
    client: TestClient, auditor_token: str
) -> None:
    response = client.post(
        "/api/v1/users",
        headers=bearer(auditor_token),
        json={"username": "eve", "password": PASSWORD, "roles": ["admin"]},
    )

    body = assert_problem(response, 403, "forbidden")
    assert "users:write" in body["detail"]
    assert "auditor" in body["detail"]


def test_an_unknown_user_is_a_404_problem(client: TestClient, admin_token: str) -> None:
    response = client.get("/api/v1/users/999999", headers=bearer(admin_token))

    body = assert_problem(response, 404, "not-found")
    assert "999999" in body["detail"]


def test_an_unknown_api_path_is_a_404_problem(client: TestClient, admin_token: str) -> None:
    assert_problem(client.get("/api/v1/nothing-here", headers=bearer(admin_token)), 404)


def test_a_duplicate_username_is_a_409_problem(client: TestClient, admin_token: str) -> None:
    response = client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={"username": "ADMIN", "password": PASSWORD, "roles": ["noc"]},
    )

    body = assert_problem(response, 409, "conflict")
    assert "'admin' already exists" in body["detail"]


def test_removing_the_last_admin_is_a_409_problem(client: TestClient, admin_token: str) -> None:
    me = client.get("/api/v1/users/me", headers=bearer(admin_token)).json()

    response = client.patch(
        f"/api/v1/users/{me['id']}", headers=bearer(admin_token), json={"roles": ["auditor"]}
    )

    assert_problem(response, 409, "conflict")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"password": PASSWORD, "roles": ["noc"]}, "username"),
        ({"username": "bob", "password": PASSWORD, "roles": []}, "roles"),
        ({"username": "bob", "password": PASSWORD, "roles": ["noc"], "colour": "x"}, "colour"),
    ],
)
def test_a_malformed_body_is_a_422_problem_naming_the_field(
    client: TestClient, admin_token: str, body: dict[str, Any], field: str
) -> None:
    response = client.post("/api/v1/users", headers=bearer(admin_token), json=body)

    problem = assert_problem(response, 422, "validation-failed")
    assert field in [e["field"] for e in problem["errors"]]
    assert field in problem["detail"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"username": "bob", "password": "short", "roles": ["noc"]}, "at least 10"),
        ({"username": "bob", "password": PASSWORD, "roles": ["wizard"]}, "'wizard' is not a role"),
        ({"username": "b ob", "password": PASSWORD, "roles": ["noc"]}, "not a valid username"),
    ],
)
def test_a_rule_violation_is_a_422_problem_saying_which_rule(
    client: TestClient, admin_token: str, body: dict[str, Any], says: str
) -> None:
    response = client.post("/api/v1/users", headers=bearer(admin_token), json=body)

    problem = assert_problem(response, 422, "validation-failed")
    assert says in problem["detail"]


def test_a_failed_request_changes_nothing_and_writes_no_audit_entry(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    before = audit.verify(runtime).entries
    client.post(
        "/api/v1/users",
        headers=bearer(admin_token),
        json={"username": "bob", "password": "short", "roles": ["noc"]},
    )

    assert audit.verify(runtime).entries == before
    with runtime.reading() as session:
        assert [u.username for u in auth.list_users(session)] == ["admin"]


# --- health and readiness ----------------------------------------------------------------


def test_healthz_answers_without_credentials(client: TestClient) -> None:
    response = client.get("/healthz")

    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_readyz_is_200_when_the_database_answers_and_the_schema_is_current(
    client: TestClient,
) -> None:
    response = client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == {"ready": True, "checks": {"database": "ok", "migrations": "ok"}}


@pytest.fixture
def unreachable_client(runtime: Runtime) -> Iterator[TestClient]:
    """An app whose runtime points at a PostgreSQL server that is not there."""
    broken = Runtime(runtime.settings, Database(UNREACHABLE_DB), runtime.signer)
    try:
        # As a real server would: answer the request, don't re-raise into the test.
        with TestClient(create_app(broken), raise_server_exceptions=False) as client:
            yield client
    finally:
        broken.close()


def test_readyz_is_503_when_the_database_cannot_be_reached(
    unreachable_client: TestClient,
) -> None:
    response = unreachable_client.get("/readyz")

    assert response.status_code == 503
    body = response.json()
    assert body["ready"] is False
    assert "cannot reach the database" in body["checks"]["database"]
    assert unreachable_client.get("/healthz").status_code == 200


def test_metrics_still_answer_when_the_database_cannot_be_reached(
    unreachable_client: TestClient,
) -> None:
    response = unreachable_client.get("/metrics")

    assert response.status_code == 200
    assert "hostwarden_build_info" in response.text
    assert "hostwarden_audit_entries" not in response.text


def test_an_api_call_while_the_database_is_down_is_a_problem_not_a_crash(
    unreachable_client: TestClient,
) -> None:
    response = unreachable_client.get("/api/v1/users", headers=bearer("hw_abcd1234_x"))

    body = assert_problem(response, 503, "database-unavailable")
    assert response.headers["retry-after"] == "30"
    assert "request id" in body["detail"]
    assert "127.0.0.1" not in json.dumps(body)  # no driver text or address leaks out


def drop_schema(runtime: Runtime, database_target: DatabaseTarget) -> None:
    """Take the database away from under the running app: the tables are gone."""
    if IS_POSTGRES:
        assert database_target.schema is not None
        admin = create_engine(database_target.url.split("?")[0], isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA "{database_target.schema}" CASCADE'))
            conn.execute(text(f'CREATE SCHEMA "{database_target.schema}"'))
        admin.dispose()
        runtime.db.dispose()
    else:
        runtime.db.dispose()
        db_file = Path(runtime.db.engine.url.database or "")
        for path in db_file.parent.glob(db_file.name + "*"):
            path.unlink()


def test_readyz_is_503_when_the_database_schema_is_gone(
    client: TestClient, runtime: Runtime, database_target: DatabaseTarget
) -> None:
    assert client.get("/readyz").status_code == 200
    drop_schema(runtime, database_target)

    response = client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["ready"] is False
    assert "hostwarden db upgrade" in response.json()["checks"]["migrations"]


def test_readyz_is_503_when_migrations_are_behind(client: TestClient, runtime: Runtime) -> None:
    with runtime.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))

    response = client.get("/readyz")

    assert response.status_code == 503
    assert "at none" in response.json()["checks"]["migrations"]


# --- metrics and OpenAPI -----------------------------------------------------------------


def metric_value(exposition: str, name: str, labels: str = "") -> float:
    pattern = re.escape(name + (f"{{{labels}}}" if labels else "")) + r" ([0-9.e+-]+)$"
    match = re.search(pattern, exposition, re.MULTILINE)
    assert match is not None, f"{name}{{{labels}}} not in:\n{exposition}"
    return float(match.group(1))


def test_metrics_are_prometheus_text_with_request_counts_and_audit_entries(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    for _ in range(3):
        client.get("/healthz")
    client.get("/api/v1/users/1", headers=bearer(admin_token))
    client.get("/api/v1/users/999999", headers=bearer(admin_token))

    response = client.get("/metrics")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    exposition = response.text
    assert "# TYPE hostwarden_http_requests_total counter" in exposition
    assert (
        metric_value(
            exposition,
            "hostwarden_http_requests_total",
            'method="GET",route="/healthz",status="200"',
        )
        == 3
    )
    # Counted under the route template, not the concrete id, and by status.
    user_route = 'method="GET",route="/api/v1/users/{user_id}"'
    assert (
        metric_value(exposition, "hostwarden_http_requests_total", user_route + ',status="200"')
        == 1
    )
    assert (
        metric_value(exposition, "hostwarden_http_requests_total", user_route + ',status="404"')
        == 1
    )
    assert "/api/v1/users/999999" not in exposition
    assert "# TYPE hostwarden_audit_entries gauge" in exposition
    assert metric_value(exposition, "hostwarden_audit_entries") == audit.verify(runtime).entries
    assert metric_value(exposition, "hostwarden_users_active") == 1


def test_the_openapi_document_is_published(client: TestClient) -> None:
    response = client.get("/api/v1/openapi.json")

    assert response.status_code == 200
    spec = response.json()
    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"] == "hostwarden"
    for path in ("/api/v1/users", "/api/v1/users/{user_id}", "/api/v1/tokens", "/api/v1/audit"):
        assert path in spec["paths"], path


# --- request ids -------------------------------------------------------------------------


def test_the_request_id_is_echoed_and_recorded_on_the_audit_entry_of_a_change(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    response = client.post(
        "/api/v1/users",
        headers={**bearer(admin_token), "X-Request-ID": "ticket-4711.a"},
        json={"username": "alice", "password": PASSWORD, "roles": ["abuse"]},
    )

    assert response.status_code == 201
    assert response.headers["x-request-id"] == "ticket-4711.a"
    entry = audit_entries(runtime, "user.create")[-1]
    assert (entry.object_id, entry.request_id) == (str(response.json()["id"]), "ticket-4711.a")
    assert entry.actor == "admin"


def test_a_request_without_an_id_gets_a_fresh_one(client: TestClient) -> None:
    first = client.get("/healthz").headers["x-request-id"]
    second = client.get("/healthz").headers["x-request-id"]

    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert first != second


@pytest.mark.parametrize("incoming", ["has space", "x" * 65, "semi;colon", "ünïcode", ""])
def test_an_unsafe_request_id_is_replaced(client: TestClient, incoming: str) -> None:
    response = client.get("/healthz", headers={"X-Request-ID": incoming.encode()})

    assert re.fullmatch(r"[0-9a-f]{32}", response.headers["x-request-id"])


def test_a_problem_answer_carries_the_request_id(client: TestClient) -> None:
    response = client.get("/api/v1/users", headers={"X-Request-ID": "req-problem-1"})

    assert assert_problem(response, 401)["request_id"] == "req-problem-1"


# --- audit over the API ------------------------------------------------------------------


def test_audit_verify_over_the_api_names_a_tampered_entry(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    assert client.get("/api/v1/audit/verify", headers=bearer(admin_token)).json()["ok"] is True
    with runtime.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET reason = 'edited' WHERE seq = 1"))

    report = client.get("/api/v1/audit/verify", headers=bearer(admin_token)).json()

    assert report["ok"] is False
    assert (report["first_problem"]["seq"], report["first_problem"]["kind"]) == (1, "altered")


def test_audit_export_over_the_api_is_json_lines_in_chain_order_within_the_window(
    client: TestClient, admin_token: str, runtime: Runtime
) -> None:
    make_user(runtime, "early", ["noc"])
    since = utcnow()
    make_user(runtime, "inside1", ["noc"])
    make_user(runtime, "inside2", ["noc"])
    until = utcnow()
    make_user(runtime, "late", ["noc"])

    response = client.get(
        "/api/v1/audit/export",
        params={"from": isoformat(since), "to": isoformat(until)},
        headers=bearer(admin_token),
    )

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in response.text.splitlines()]
    assert [line["after"]["username"] for line in lines] == ["inside1", "inside2"]
    assert lines[1]["prev_hash"] == lines[0]["entry_hash"]
    assert lines[0]["seq"] < lines[1]["seq"]
