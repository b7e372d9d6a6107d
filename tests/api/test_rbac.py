"""Every route of the app against every role: the allow/deny matrix is written out here,
so a route added without a rule, or with a different rule, fails this test."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient

from hostwarden.api.app import api_routes
from hostwarden.api.deps import CSRF_COOKIE, SESSION_COOKIE, access_rule_of
from hostwarden.core import auth
from hostwarden.core.rbac import Role
from hostwarden.core.runtime import Runtime
from tests.conftest import make_token, make_user

ALL = frozenset(r.value for r in Role)
PUBLIC = "public"
ADMIN = frozenset({"admin"})
READERS = frozenset({"admin", "auditor"})
AUDIT = frozenset({"admin", "compliance", "legal", "auditor"})
WRITERS_OF_OWN = ALL - {"auditor"}
INVENTORY = frozenset({"admin", "sales", "noc"})
LEGAL_HOLDS = frozenset({"admin", "compliance", "legal"})
FLOWS = frozenset({"admin", "abuse", "noc", "compliance", "legal", "auditor"})
ALERTS = FLOWS
RESPONDERS = frozenset({"admin", "abuse", "noc"})
CASES = FLOWS
CASE_WRITERS = frozenset({"admin", "abuse", "noc", "compliance", "legal"})
CASES_ADMIN = frozenset({"admin", "abuse"})

EXPECTED: dict[tuple[str, str], frozenset[str] | str] = {
    ("GET", "/healthz"): PUBLIC,
    ("GET", "/readyz"): PUBLIC,
    ("GET", "/metrics"): PUBLIC,
    ("GET", "/login"): PUBLIC,
    ("POST", "/login"): PUBLIC,
    ("GET", "/language"): PUBLIC,
    # Authenticated by the HMAC signature of the body, not by a token (tests/registry).
    ("POST", "/api/v1/webhooks/{source}"): PUBLIC,
    ("GET", "/api/v1/users"): READERS,
    ("POST", "/api/v1/users"): ADMIN,
    ("GET", "/api/v1/users/me"): ALL,
    ("GET", "/api/v1/users/{user_id}"): READERS,
    ("PATCH", "/api/v1/users/{user_id}"): ADMIN,
    ("PUT", "/api/v1/users/{user_id}/password"): ADMIN,
    ("GET", "/api/v1/tokens"): ALL,
    ("POST", "/api/v1/tokens"): WRITERS_OF_OWN,
    ("DELETE", "/api/v1/tokens/{token_id}"): WRITERS_OF_OWN,
    ("GET", "/api/v1/audit"): AUDIT,
    ("GET", "/api/v1/audit/verify"): AUDIT,
    ("GET", "/api/v1/audit/export"): AUDIT,
    ("GET", "/"): ALL,
    ("POST", "/logout"): ALL,
    ("GET", "/users"): READERS,
    ("POST", "/users"): ADMIN,
    ("POST", "/users/{user_id}/active"): ADMIN,
    ("GET", "/audit"): AUDIT,
    ("GET", "/audit/verify"): AUDIT,
    ("GET", "/account"): ALL,
    ("POST", "/account/password"): ALL,
    ("POST", "/account/locale"): ALL,
    ("GET", "/customers"): ALL,
    ("GET", "/customers/review"): ALL,
    ("POST", "/customers/review/{request_id}"): frozenset({"admin", "sales"}),
    ("GET", "/customers/{customer_id}"): ALL,
    ("POST", "/customers/{customer_id}/reveal"): frozenset(
        {"admin", "sales", "compliance", "legal"}
    ),
    ("POST", "/customers/{customer_id}/provisioning-check"): frozenset({"admin", "sales"}),
    ("GET", "/customers/{customer_id}/acceptances/{acceptance_id}.pdf"): ALL,
    ("GET", "/inventory"): ALL,
    ("GET", "/attribution"): ALL,
    # flow console (issue #5): search and store state for everyone who reads flows
    ("GET", "/flows"): ALL - {"sales"},
    ("GET", "/flows/records"): ALL - {"sales"},
    ("GET", "/flows/integrity"): ALL - {"sales"},
    ("GET", "/flows/integrity/verify"): ALL - {"sales"},
    ("POST", "/flows/integrity/verify"): frozenset({"admin", "noc", "compliance", "legal"}),
    ("POST", "/flows/holds"): LEGAL_HOLDS,
    ("POST", "/flows/holds/{hold_id}/release"): LEGAL_HOLDS,
    # detection console (issue #6): alerts:read to see, the responders to act
    ("GET", "/detect"): ALERTS,
    ("GET", "/alerts"): ALERTS,
    ("GET", "/alerts/suppressions"): ALERTS,
    ("POST", "/alerts/suppressions"): RESPONDERS,
    ("POST", "/alerts/suppressions/{suppression_id}/remove"): RESPONDERS,
    ("GET", "/alerts/{alert_id}"): ALERTS,
    ("POST", "/alerts/{alert_id}/close"): RESPONDERS,
    ("POST", "/alerts/{alert_id}/feedback"): RESPONDERS,
    # abuse desk console (issue #7)
    ("GET", "/cases"): CASES,
    ("POST", "/cases/bulk"): CASE_WRITERS,
    ("GET", "/cases/queue"): CASES,
    ("POST", "/cases/queue/attribute-again"): CASE_WRITERS,
    ("POST", "/cases/reports/{report_id}/review"): CASE_WRITERS,
    ("GET", "/cases/reports/{report_id}/raw"): CASES,
    ("GET", "/cases/settings"): CASES,
    ("POST", "/cases/settings/playbooks/{category}"): CASES_ADMIN,
    ("POST", "/cases/settings/allowlist"): CASES_ADMIN,
    ("POST", "/cases/settings/allowlist/{entry_id}/remove"): CASES_ADMIN,
    ("GET", "/cases/{reference}"): CASES,
    ("POST", "/cases/{reference}/notify"): CASE_WRITERS,
    ("POST", "/cases/{reference}/message"): CASE_WRITERS,
    ("POST", "/cases/{reference}/note"): CASE_WRITERS,
    ("POST", "/cases/{reference}/state"): CASE_WRITERS,
    ("POST", "/cases/{reference}/authority"): CASE_WRITERS,
    # The public report form and the customer's response page (its token is the key).
    ("GET", "/report"): PUBLIC,
    ("POST", "/report"): PUBLIC,
    ("GET", "/respond/{token}"): PUBLIC,
    ("POST", "/respond/{token}"): PUBLIC,
    ("GET", "/filing"): ALL,
    ("GET", "/scans"): ALL,
    ("GET", "/enforcement"): ALL,
    ("GET", "/legal"): ALL,
    ("GET", "/reports"): ALL,
    # admission (issue #4): the provisioning gate and the commitment letter
    ("POST", "/api/v1/provisioning/check"): frozenset({"admin", "sales"}),
    ("GET", "/api/v1/customers/{customer_id}/provisioning-decisions"): ALL,
    ("GET", "/api/v1/commitments"): ALL,
    ("POST", "/api/v1/commitments"): frozenset({"admin", "compliance", "legal"}),
    ("GET", "/api/v1/commitments/current"): ALL,
    ("GET", "/api/v1/commitments/{version}"): ALL,
    ("POST", "/api/v1/customers/{customer_id}/commitment-scans"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/customers/{customer_id}/commitment-acceptances"): frozenset(
        {"admin", "sales"}
    ),
    ("GET", "/api/v1/customers/{customer_id}/commitment-acceptances"): ALL,
    ("GET", "/api/v1/commitment-acceptances/{acceptance_id}/pdf"): ALL,
    # admission (issue #4): customers, identity documents, verification, ban-evasion flags
    ("GET", "/api/v1/customers"): ALL,
    ("POST", "/api/v1/customers"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/customers/search"): ALL,
    ("GET", "/api/v1/customers/{customer_id}"): ALL,
    ("PATCH", "/api/v1/customers/{customer_id}"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/customers/{customer_id}/status"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/customers/{customer_id}/documents"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/customers/{customer_id}/identity-scans"): frozenset({"admin", "sales"}),
    ("GET", "/api/v1/customers/{customer_id}/pii"): frozenset(
        {"admin", "sales", "compliance", "legal"}
    ),
    ("GET", "/api/v1/customers/{customer_id}/identity-scans/{scan_id}"): frozenset(
        {"admin", "sales", "compliance", "legal"}
    ),
    ("POST", "/api/v1/customers/{customer_id}/verification"): frozenset({"admin", "sales"}),
    ("GET", "/api/v1/verification"): ALL,
    ("POST", "/api/v1/verification/{request_id}/approve"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/verification/{request_id}/reject"): frozenset({"admin", "sales"}),
    ("GET", "/api/v1/ban-evasion-flags"): ALL,
    ("POST", "/api/v1/ban-evasion-flags/{flag_id}/resolve"): frozenset({"admin", "sales"}),
    # inventory and attribution (issue #4): reads REGISTRY_READ, writes INVENTORY_WRITE
    ("GET", "/api/v1/attribution"): ALL,
    ("GET", "/api/v1/rooms"): ALL,
    ("POST", "/api/v1/rooms"): INVENTORY,
    ("GET", "/api/v1/ip-ranges"): ALL,
    ("POST", "/api/v1/ip-ranges"): INVENTORY,
    ("GET", "/api/v1/instances"): ALL,
    ("POST", "/api/v1/instances"): INVENTORY,
    ("POST", "/api/v1/instances/{instance_id}/terminate"): INVENTORY,
    ("GET", "/api/v1/assignments"): ALL,
    ("POST", "/api/v1/assignments"): INVENTORY,
    ("POST", "/api/v1/assignments/{assignment_id}/release"): INVENTORY,
    ("GET", "/api/v1/nat-mappings"): ALL,
    ("POST", "/api/v1/nat-mappings"): INVENTORY,
    ("POST", "/api/v1/nat-mappings/{nat_id}/release"): INVENTORY,
    ("GET", "/api/v1/domains"): ALL,
    ("POST", "/api/v1/domains"): INVENTORY,
    ("POST", "/api/v1/domains/{domain_id}/release"): INVENTORY,
    # bulk import and export (issue #4): customers need customers:write both ways (an
    # export holds e-mail addresses in full); inventory as its single-record routes
    ("POST", "/api/v1/registry/import/customers"): frozenset({"admin", "sales"}),
    ("POST", "/api/v1/registry/import/ranges"): INVENTORY,
    ("POST", "/api/v1/registry/import/instances"): INVENTORY,
    ("POST", "/api/v1/registry/import/assignments"): INVENTORY,
    ("POST", "/api/v1/registry/import/{kind}"): ALL,  # answers an unknown kind with the list
    ("GET", "/api/v1/registry/export/customers"): frozenset({"admin", "sales"}),
    ("GET", "/api/v1/registry/export/ranges"): ALL,
    ("GET", "/api/v1/registry/export/instances"): ALL,
    ("GET", "/api/v1/registry/export/assignments"): ALL,
    ("GET", "/api/v1/registry/export/{kind}"): ALL,
    # legal holds on flow records (issue #5): auditors read them, as every *:read
    ("GET", "/api/v1/legal-holds"): LEGAL_HOLDS | {"auditor"},
    ("POST", "/api/v1/legal-holds"): LEGAL_HOLDS,
    ("POST", "/api/v1/legal-holds/{hold_id}/release"): LEGAL_HOLDS,
    # stored flow records (issue #5): those who investigate or answer the authorities
    ("GET", "/api/v1/flows/records"): FLOWS,
    ("GET", "/api/v1/flows/top"): FLOWS,
    ("GET", "/api/v1/flows/series"): FLOWS,
    # detection alerts and suppressions (issue #6): the abuse desk and the NOC act on them
    ("GET", "/api/v1/alerts"): ALERTS,
    ("GET", "/api/v1/alerts/{alert_id}"): ALERTS,
    ("POST", "/api/v1/alerts/{alert_id}/feedback"): RESPONDERS,
    ("POST", "/api/v1/alerts/{alert_id}/close"): RESPONDERS,
    ("GET", "/api/v1/suppressions"): ALERTS,
    ("POST", "/api/v1/suppressions"): RESPONDERS,
    ("DELETE", "/api/v1/suppressions/{suppression_id}"): RESPONDERS,
    # abuse desk (issue #7): reports in, cases, playbooks and allowlist
    ("POST", "/api/v1/reports"): RESPONDERS,
    ("GET", "/api/v1/reports/queue"): CASES,
    ("GET", "/api/v1/reports/{report_id}"): CASES,
    ("GET", "/api/v1/reports/{report_id}/raw"): CASES,
    ("POST", "/api/v1/reports/{report_id}/review"): CASE_WRITERS,
    ("GET", "/api/v1/cases"): CASES,
    ("GET", "/api/v1/cases/sla"): CASES,
    ("GET", "/api/v1/cases/{case}"): CASES,
    ("POST", "/api/v1/cases/{case}/notify"): CASE_WRITERS,
    ("POST", "/api/v1/cases/{case}/state"): CASE_WRITERS,
    ("POST", "/api/v1/cases/{case}/notes"): CASE_WRITERS,
    ("POST", "/api/v1/cases/{case}/messages"): CASE_WRITERS,
    ("POST", "/api/v1/cases/{case}/authority"): CASE_WRITERS,
    ("GET", "/api/v1/abuse/playbooks"): CASES,
    ("PUT", "/api/v1/abuse/playbooks/{category}"): CASES_ADMIN,
    ("GET", "/api/v1/abuse/allowlist"): CASES,
    ("POST", "/api/v1/abuse/allowlist"): CASES_ADMIN,
    ("POST", "/api/v1/abuse/allowlist/{entry_id}/remove"): CASES_ADMIN,
}
# FastAPI's own documentation routes carry no dependencies; they publish the OpenAPI spec.
FRAMEWORK_ROUTES = {"/api/v1/openapi.json", "/api/docs", "/api/docs/oauth2-redirect"}
PASSWORD = "matrix-password-1"


def app_routes(app: FastAPI) -> dict[tuple[str, str], APIRoute]:
    found: dict[tuple[str, str], APIRoute] = {}
    for route in api_routes(app):
        for method in route.methods:
            if method != "HEAD":
                found[(method, route.path)] = route
    return found


def concrete(path: str) -> str:
    path = path.replace("{customer_id}", "999999").replace("{acceptance_id}", "999999")
    path = path.replace("{version}", "999999").replace("{scan_id}", "999999")
    path = path.replace("{kind}", "planets")
    for name in ("{instance_id}", "{assignment_id}", "{nat_id}", "{domain_id}"):
        path = path.replace(name, "999999")
    path = path.replace("{request_id}", "999999").replace("{flag_id}", "999999")
    path = path.replace("{hold_id}", "999999")
    path = path.replace("{alert_id}", "999999").replace("{suppression_id}", "999999")
    path = path.replace("{report_id}", "999999").replace("{entry_id}", "999999")
    path = path.replace("{case}", "AB-0-0").replace("{reference}", "AB-0-0")
    path = path.replace("{category}", "spam").replace("{token}", "no-such-token")
    return path.replace("{user_id}", "1").replace("{token_id}", "999999")


def test_every_route_has_a_rule_and_an_expected_row(app: FastAPI) -> None:
    routes = app_routes(app)
    missing_rule = [key for key, route in routes.items() if access_rule_of(route) is None]
    assert missing_rule == [], f"routes without a permission dependency: {missing_rule}"
    assert set(routes) == set(EXPECTED), (
        f"not in the matrix: {sorted(set(routes) - set(EXPECTED))}; "
        f"in the matrix but gone: {sorted(set(EXPECTED) - set(routes))}"
    )
    # Nothing is served past the routers: only FastAPI's documentation and static files.
    others = {
        getattr(r, "path", "")
        for r in app.routes
        if not isinstance(r, APIRoute) and getattr(r, "original_router", None) is None
    }
    assert others <= FRAMEWORK_ROUTES | {"/static"}


def test_rules_in_code_match_the_matrix(app: FastAPI) -> None:
    for key, route in app_routes(app).items():
        rule = access_rule_of(route)
        assert rule is not None
        expected = EXPECTED[key]
        if expected == PUBLIC:
            assert rule.kind == "public", key
        else:
            assert rule.kind == ("api" if key[1].startswith("/api/") else "page"), key


@pytest.fixture
def credentials(runtime: Runtime) -> dict[str, tuple[str, str]]:
    """For each role: an API token and a console session of a user holding only it."""
    creds: dict[str, tuple[str, str]] = {}
    for role in Role:
        name = f"u-{role.value}"
        make_user(runtime, name, [role.value], PASSWORD)
        token = make_token(runtime, name)
        session = auth.login(runtime, name, PASSWORD).session_token
        creds[role.value] = (token, session)
    return creds


def call(client: TestClient, method: str, path: str, role_creds: tuple[str, str]) -> int:
    token, session = role_creds
    url = concrete(path)
    if path.startswith("/api/"):
        headers = {"Authorization": f"Bearer {token}"}
        body = {} if method in {"POST", "PUT", "PATCH"} else None
        response = client.request(method, url, headers=headers, json=body)
    else:
        client.cookies.clear()
        client.cookies.set(SESSION_COOKIE, session)
        client.cookies.set(CSRF_COOKIE, "csrf-value")
        response = client.request(
            method,
            url,
            headers={"X-CSRF-Token": "csrf-value", "Accept": "text/html"},
            data={} if method == "POST" else None,
            follow_redirects=False,
        )
        assert "/login" not in response.headers.get("location", "") or path == "/logout", (
            f"{method} {path} as a signed-in user sent to the sign-in page"
        )
    return response.status_code


def test_allow_deny_matrix_for_every_role(
    app: FastAPI, runtime: Runtime, credentials: dict[str, tuple[str, str]]
) -> None:
    wrong: list[str] = []
    with TestClient(app) as client:
        for (method, path), allowed in sorted(EXPECTED.items()):
            if allowed == PUBLIC:
                continue
            for role in sorted(ALL):
                creds = credentials[role]
                if path == "/logout":  # signing out ends the session: use a fresh one
                    creds = (creds[0], auth.login(runtime, f"u-{role}", PASSWORD).session_token)
                status = call(client, method, path, creds)
                denied = status == 403
                if denied == (role in allowed):
                    wrong.append(f"{method} {path} as {role}: {status}")
    assert wrong == []


def test_every_protected_route_refuses_anonymous_callers(client: TestClient) -> None:
    for (method, path), allowed in sorted(EXPECTED.items()):
        if allowed == PUBLIC:
            continue
        client.cookies.clear()
        response = client.request(method, concrete(path), follow_redirects=False)
        if path.startswith("/api/"):
            assert response.status_code == 401, (method, path)
            assert response.headers["content-type"].startswith("application/problem+json")
        elif method == "GET":
            assert response.status_code == 303, (method, path)
            assert response.headers["location"].startswith("/login")
        else:  # unsafe console calls fail on the missing CSRF token before anything else
            assert response.status_code == 403, (method, path)


def test_public_routes_answer_without_credentials(client: TestClient) -> None:
    for (method, path), allowed in EXPECTED.items():
        if allowed == PUBLIC and method == "GET":
            response = client.get(concrete(path), follow_redirects=False)
            if "{token}" in path:  # an unknown token gets a page saying so
                assert response.status_code == 404 and "not valid" in response.text, path
                continue
            assert response.status_code in (200, 303), path
