"""Identity verification: providers found by entry point, the manual review queue and its
four-eyes rule, and the http provider against a real local server, including its failures."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from alembic import command
from alembic.config import Config
from fastapi.testclient import TestClient
from sqlalchemy import MetaData, create_engine, text

from hostwarden.core import migrate
from hostwarden.core.config import RegistrySettings, Settings
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime
from hostwarden.errors import Conflict, PermissionDenied, ValidationFailed
from hostwarden.registry import customers, verification
from hostwarden.registry.models import VerificationRequest
from tests.conftest import make_token, make_user
from tests.registry.customer_fixtures import (
    RESIDENT_ID,
    actor,
    add_document,
    audit_actions,
    count,
    new_customer,
    second_reviewer,
)


@dataclass
class FakeIdvService:
    """A verification service on 127.0.0.1: answers ``status``/``body`` after ``delay``."""

    url: str = ""
    status: int = 200
    body: bytes = b"{}"
    delay: float = 0.0
    received: list[tuple[dict[str, str], Any]] = field(default_factory=list)

    def answer(self, payload: Any, status: int = 200) -> None:
        self.status = status
        self.body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()


@pytest.fixture
def idv_service() -> Iterator[FakeIdvService]:
    service = FakeIdvService()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            payload = json.loads(self.rfile.read(length))
            service.received.append((dict(self.headers), payload))
            if service.delay:
                time.sleep(service.delay)
            try:
                self.send_response(service.status)
                self.send_header("content-type", "application/json")
                self.end_headers()
                self.wfile.write(service.body)
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (timeout test)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    service.url = f"http://127.0.0.1:{server.server_address[1]}/verify"
    try:
        yield service
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def http_env(
    idv_service: FakeIdvService, monkeypatch: pytest.MonkeyPatch, runtime: Runtime
) -> FakeIdvService:
    monkeypatch.setenv("HOSTWARDEN_IDV_HTTP_URL", idv_service.url)
    monkeypatch.setenv("HOSTWARDEN_IDV_HTTP_TOKEN", "idv-secret")
    monkeypatch.setenv("HOSTWARDEN_IDV_HTTP_TIMEOUT", "0.5")
    return idv_service


@pytest.fixture
def applicant(runtime: Runtime) -> int:
    customer_id = new_customer(runtime, "Zhao Lei", phone="13812345678")
    add_document(runtime, customer_id, "resident-id", RESIDENT_ID)
    return customer_id


def _identity_status(runtime: Runtime, customer_id: int) -> str:
    with runtime.reading() as session:
        return customers.get_customer(session, customer_id).identity_status


def test_the_built_in_providers_are_found_through_the_entry_point_group() -> None:
    assert {"manual", "http"} <= set(verification.available_providers())
    assert isinstance(verification.load_provider("manual"), verification.ManualProvider)
    assert isinstance(verification.load_provider("http"), verification.HttpProvider)
    with pytest.raises(ValidationFailed, match="not an identity verification provider"):
        verification.load_provider("carrier-pigeon")


def test_a_manual_request_waits_in_the_queue_until_a_reviewer_approves(
    runtime: Runtime, applicant: int
) -> None:
    request = verification.request_verification(runtime, actor("sales"), applicant, "manual")
    assert request.status == "pending"
    assert _identity_status(runtime, applicant) == "pending"
    with runtime.reading() as session:
        assert [r.id for r in verification.list_requests(session)] == [request.id]
    with runtime.operation(second_reviewer()) as op:
        decided = verification.approve(op, request.id, "card and face checked at the counter")
        assert decided.decided_by == "second-reviewer"
    assert _identity_status(runtime, applicant) == "verified"
    assert audit_actions(runtime)[-2:] == ["verification.submit", "verification.approved"]
    with runtime.reading() as session:
        assert verification.list_requests(session) == []


def test_a_rejected_request_leaves_the_customer_rejected(runtime: Runtime, applicant: int) -> None:
    request = verification.request_verification(runtime, actor("sales"), applicant, "manual")
    with runtime.operation(actor("sales")) as op:
        verification.reject(op, request.id, "photo does not match")
    assert _identity_status(runtime, applicant) == "rejected"
    with pytest.raises(Conflict, match="already rejected"), runtime.operation(actor("sales")) as op:
        verification.approve(op, request.id, "second thoughts")


def test_a_decision_needs_kyc_review_and_a_reason_and_changes_nothing_otherwise(
    runtime: Runtime, applicant: int
) -> None:
    request = verification.request_verification(runtime, actor("sales"), applicant, "manual")
    entries = count(runtime, AuditEntry)
    with (
        pytest.raises(PermissionDenied, match="kyc:review"),
        runtime.operation(actor("compliance")) as op,
    ):
        verification.approve(op, request.id, "fine by me")
    with (
        pytest.raises(ValidationFailed, match="needs a reason"),
        runtime.operation(actor("sales")) as op,
    ):
        verification.reject(op, request.id, "")
    assert count(runtime, AuditEntry) == entries
    assert _identity_status(runtime, applicant) == "pending"


def test_whoever_requested_the_verification_or_created_the_customer_may_not_approve_it(
    runtime: Runtime, applicant: int
) -> None:
    request = verification.request_verification(runtime, actor("admin"), applicant, "manual")
    assert request.requested_by == "admin-person"
    entries = count(runtime, AuditEntry)
    with (
        pytest.raises(verification.FourEyesRequired, match="requested this verification") as asked,
        runtime.operation(actor("admin")) as op,
    ):
        verification.approve(op, request.id, "I checked it myself")
    assert asked.value.hint == (
        "Another reviewer must approve: identity verification needs four eyes."
    )
    assert isinstance(asked.value, Conflict)
    with (
        pytest.raises(verification.FourEyesRequired, match=f"created customer {applicant}"),
        runtime.operation(actor("sales")) as op,  # admitted the customer (applicant fixture)
    ):
        verification.approve(op, request.id, "I admitted them, they are fine")
    assert count(runtime, AuditEntry) == entries, "a refusal changes nothing"
    assert _identity_status(runtime, applicant) == "pending"
    with runtime.operation(second_reviewer()) as op:
        assert verification.approve(op, request.id, "checked by a second person").status == (
            "approved"
        )


def test_the_requester_may_still_reject_their_own_request(runtime: Runtime, applicant: int) -> None:
    # Rejecting grants nothing: the requester may withdraw a request made by mistake.
    request = verification.request_verification(runtime, actor("sales"), applicant, "manual")
    with runtime.operation(actor("sales")) as op:
        assert verification.reject(op, request.id, "wrong card uploaded").status == "rejected"


def test_four_eyes_can_be_turned_off_in_the_settings(runtime: Runtime, applicant: int) -> None:
    assert runtime.settings.registry.four_eyes_verification, "on unless turned off"
    runtime.settings = runtime.settings.model_copy(
        update={"registry": RegistrySettings(four_eyes_verification=False)}
    )
    request = verification.request_verification(runtime, actor("sales"), applicant, "manual")
    with runtime.operation(actor("sales")) as op:
        assert verification.approve(op, request.id, "one-person office").status == "approved"


def test_a_provider_decision_is_not_held_to_four_eyes(
    runtime: Runtime, applicant: int, http_env: FakeIdvService
) -> None:
    http_env.answer({"status": "approved", "reference": "idv-1"})
    request = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert (request.status, request.requested_by, request.decided_by) == (
        "approved",
        "sales-person",
        "provider:http",
    )


def test_verification_needs_a_document_and_one_request_at_a_time(
    runtime: Runtime, applicant: int
) -> None:
    bare = new_customer(runtime, "No Papers")
    before = (count(runtime, VerificationRequest), count(runtime, AuditEntry))
    with pytest.raises(ValidationFailed, match="no identity document"):
        verification.request_verification(runtime, actor("sales"), bare, "manual")
    with pytest.raises(ValidationFailed, match="not an identity verification provider"):
        verification.request_verification(runtime, actor("sales"), applicant, "fax")
    assert (count(runtime, VerificationRequest), count(runtime, AuditEntry)) == before
    verification.request_verification(runtime, actor("sales"), applicant, "manual")
    with pytest.raises(Conflict, match="pending"):
        verification.request_verification(runtime, actor("sales"), applicant, "manual")


def test_the_http_provider_posts_the_documents_and_maps_an_approval(
    runtime: Runtime, applicant: int, http_env: FakeIdvService
) -> None:
    http_env.answer({"status": "approved", "reference": "idv-778", "reason": "match 0.98"})
    request = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert (request.status, request.provider_reference, request.reason) == (
        "approved",
        "idv-778",
        "match 0.98",
    )
    assert request.decided_by == "provider:http"
    assert _identity_status(runtime, applicant) == "verified"
    ((headers, payload),) = http_env.received
    assert headers["Authorization"] == "Bearer idv-secret"
    assert payload["applicant"]["customer_id"] == applicant
    assert payload["applicant"]["request_id"] == request.id
    assert payload["documents"] == [
        {"doc_type": "resident-id", "type_name": "", "number": RESIDENT_ID}
    ]


def test_the_http_provider_maps_a_rejection_and_a_pending_answer(
    runtime: Runtime, applicant: int, http_env: FakeIdvService
) -> None:
    http_env.answer({"status": "pending", "reference": "idv-9"})
    request = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert (request.status, request.provider_reference) == ("pending", "idv-9")
    with runtime.operation(actor("sales")) as op:
        verification.reject(op, request.id, "the service's report came back negative")
    http_env.answer({"status": "rejected", "reason": "document reported lost"})
    second = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert (second.status, second.reason) == ("rejected", "document reported lost")
    assert _identity_status(runtime, applicant) == "rejected"


@pytest.mark.parametrize(
    ("status", "body", "delay", "reason"),
    [
        (500, b'{"error": "internal"}', 0.0, "answered HTTP 500"),
        (403, b"forbidden", 0.0, "answered HTTP 403"),
        (200, b"<html>not json</html>", 0.0, "not JSON"),
        (200, b'["approved"]', 0.0, "not a JSON object"),
        (200, b'{"status": "maybe"}', 0.0, "unknown status 'maybe'"),
        (200, b'{"status": "approved"}', 2.0, "did not answer within 0.5 s"),
    ],
)
def test_http_provider_failures_become_an_error_status_with_a_clear_reason(
    runtime: Runtime,
    applicant: int,
    http_env: FakeIdvService,
    status: int,
    body: bytes,
    delay: float,
    reason: str,
) -> None:
    http_env.answer(body, status)
    http_env.delay = delay
    request = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert request.status == "error"
    assert reason in request.reason
    assert _identity_status(runtime, applicant) == "unverified"
    assert audit_actions(runtime)[-1] == "verification.error"
    # An error closes the request: the customer can be sent again.
    http_env.delay = 0.0
    http_env.answer({"status": "approved"})
    again = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert again.status == "approved"


def test_http_provider_without_a_usable_endpoint_answers_error(
    runtime: Runtime, applicant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOSTWARDEN_IDV_HTTP_URL", raising=False)
    request = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert request.status == "error" and "HOSTWARDEN_IDV_HTTP_URL is not set" in request.reason
    monkeypatch.setenv("HOSTWARDEN_IDV_HTTP_URL", "http://idv.example.com/verify")
    request = verification.request_verification(runtime, actor("sales"), applicant, "http")
    assert request.status == "error" and "https" in request.reason


def test_http_provider_reports_a_refused_connection(runtime: Runtime, applicant: int) -> None:
    # A port that was just free: nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    provider = verification.HttpProvider(url=f"http://127.0.0.1:{port}/verify", timeout=2)
    result = provider.submit(
        runtime,
        verification.Applicant(1, applicant, "individual", "Zhao Lei", "", "", ""),
        [verification.DocumentForCheck("resident-id", "", RESIDENT_ID)],
    )
    assert result.status == "error" and "cannot reach the service" in result.reason


def test_a_provider_that_raises_is_recorded_as_an_error_not_a_crash(
    runtime: Runtime, applicant: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Broken:
        def submit(self, *args: object) -> verification.ProviderResult:
            raise RuntimeError("plugin bug")

    monkeypatch.setattr(verification, "load_provider", lambda name: Broken())
    request = verification.request_verification(runtime, actor("sales"), applicant, "broken")
    assert request.status == "error"
    assert "RuntimeError: plugin bug" in request.reason


def test_verification_runs_through_the_api(
    runtime: Runtime, client: TestClient, applicant: int
) -> None:
    make_user(runtime, "sally", ["sales"])
    make_user(runtime, "victor", ["sales"])
    headers = {"Authorization": f"Bearer {make_token(runtime, 'sally')}"}
    second = {"Authorization": f"Bearer {make_token(runtime, 'victor')}"}
    started = client.post(
        f"/api/v1/customers/{applicant}/verification", json={"provider": "manual"}, headers=headers
    )
    assert started.status_code == 201, started.text
    assert started.json()["requested_by"] == "sally"
    request_id = started.json()["id"]
    queue = client.get("/api/v1/verification", headers=headers).json()
    assert [r["id"] for r in queue] == [request_id]
    missing_reason = client.post(
        f"/api/v1/verification/{request_id}/approve", json={"reason": ""}, headers=headers
    )
    assert missing_reason.status_code == 422
    own = client.post(
        f"/api/v1/verification/{request_id}/approve",
        json={"reason": "checked against the scan"},
        headers=headers,
    )
    assert own.status_code == 409, own.text
    assert own.json()["type"] == "urn:hostwarden:problem:four-eyes-required"
    assert "you (sally) requested this verification" in own.json()["detail"]
    assert "Another reviewer must approve" in own.json()["detail"]
    approved = client.post(
        f"/api/v1/verification/{request_id}/approve",
        json={"reason": "checked against the scan"},
        headers=second,
    )
    assert approved.status_code == 200, approved.text
    assert approved.json()["status"] == "approved"
    assert (approved.json()["requested_by"], approved.json()["decided_by"]) == ("sally", "victor")
    detail = client.get(f"/api/v1/customers/{applicant}", headers=headers).json()
    assert detail["identity_status"] == "verified"


def test_an_upgrade_takes_who_created_and_who_requested_from_the_audit_trail(
    settings: Settings,
) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0002_registry")
            tables = MetaData()
            tables.reflect(conn, only=["audit_entries", "customers", "verification_requests"])
            now = datetime.now(UTC)
            conn.execute(
                tables.tables["customers"].insert(),
                [
                    {
                        "id": customer_id,
                        "external_id": None,
                        "kind": "individual",
                        "name": name,
                        "email": "",
                        "email_norm": "",
                        "phone_enc": None,
                        "phone_bidx": "",
                        "phone_masked": "",
                        "address": "",
                        "status": "pending",
                        "risk_tier": "low",
                        "identity_status": "pending",
                        "terminated_for_abuse": False,
                        "signup_ip": "",
                        "device_fingerprint": "",
                        "payment_fingerprint": "",
                        "created_at": now,
                        "updated_at": now,
                    }
                    for customer_id, name in ((1, "Audited"), (2, "Loaded by hand"))
                ],
            )
            conn.execute(
                tables.tables["verification_requests"].insert(),
                [
                    {
                        "id": 1,
                        "customer_id": 1,
                        "provider": "manual",
                        "status": "pending",
                        "reason": "",
                        "provider_reference": "",
                        "created_at": now,
                        "decided_at": None,
                        "decided_by": "",
                    }
                ],
            )
            conn.execute(
                tables.tables["audit_entries"].insert(),
                [
                    {
                        "seq": seq,
                        "ts": now.isoformat(),
                        "actor": actor_name,
                        "role": "sales",
                        "action": action,
                        "object_type": object_type,
                        "object_id": "1",
                        "before": "null",
                        "after": "null",
                        "reason": "",
                        "request_id": "",
                        "prev_hash": "0" * 64,
                        "entry_hash": f"{seq:064x}",
                    }
                    for seq, actor_name, action, object_type in (
                        (1, "alice", "customer.create", "customer"),
                        (2, "mallory", "customer.update", "customer"),
                        (3, "bob", "verification.submit", "verification_request"),
                    )
                ],
            )
            command.upgrade(config, "head")
            created = dict(conn.execute(text("SELECT id, created_by FROM customers")).all())
            requested = conn.execute(text("SELECT requested_by FROM verification_requests"))
            assert created == {1: "alice", 2: ""}
            assert requested.scalar_one() == "bob"
    finally:
        engine.dispose()
