"""The console over HTTP: sign-in, CSRF, lock-out, language, users and audit pages."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient

from hostwarden.core import audit
from hostwarden.core.runtime import Runtime
from tests.conftest import Initialised, make_user

HTML = {"Accept": "text/html"}


def csrf_of(client: TestClient) -> str:
    client.get("/login", headers=HTML)
    token = client.cookies.get("hw_csrf")
    assert token
    return token


def sign_in(client: TestClient, username: str, password: str) -> str:
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={"username": username, "password": password, "csrf_token": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert response.status_code == 303, response.text
    return str(client.cookies.get("hw_csrf"))


def test_sign_in_sets_an_httponly_samesite_session_cookie(
    client: TestClient, initialised: Initialised
) -> None:
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={"username": "admin", "password": initialised.admin_password, "csrf_token": token},
        follow_redirects=False,
    )
    assert response.status_code == 303
    cookies = response.headers.get_list("set-cookie")
    session = next(c for c in cookies if c.startswith("hw_session="))
    assert "HttpOnly" in session
    assert "SameSite=lax" in session or "SameSite=Lax" in session
    rotated = next(c for c in cookies if c.startswith("hw_csrf="))
    assert f"hw_csrf={token};" not in rotated, "the CSRF token must change at sign-in"


def test_a_form_without_the_csrf_token_is_refused(
    client: TestClient, initialised: Initialised, runtime: Runtime
) -> None:
    sign_in(client, "admin", initialised.admin_password)
    before = audit.verify(runtime).entries
    response = client.post(
        "/users",
        data={"username": "mallory", "password": "long-enough-1", "roles": "admin"},
        headers=HTML,
    )
    assert response.status_code == 403
    assert "security token" in response.text
    wrong = client.post(
        "/users",
        data={
            "username": "mallory",
            "password": "long-enough-1",
            "roles": "admin",
            "csrf_token": "forged",
        },
        headers=HTML,
    )
    assert wrong.status_code == 403
    assert audit.verify(runtime).entries == before, "a refused form must change nothing"


def test_the_login_form_itself_needs_the_csrf_token(
    client: TestClient, initialised: Initialised
) -> None:
    response = client.post(
        "/login",
        data={"username": "admin", "password": initialised.admin_password},
        follow_redirects=False,
    )
    assert response.status_code == 403
    assert "hw_session" not in client.cookies


def test_repeated_failures_lock_the_account_and_say_until_when(
    client: TestClient, runtime: Runtime
) -> None:
    make_user(runtime, "bob", ["abuse"], "bobs-password-1")
    threshold = runtime.settings.auth.lockout_threshold
    token = csrf_of(client)
    for attempt in range(threshold):
        response = client.post(
            "/login",
            data={"username": "bob", "password": f"nope{attempt}", "csrf_token": token},
            headers=HTML,
        )
    assert response.status_code == 423
    assert "locked until" in response.text
    right = client.post(
        "/login",
        data={"username": "bob", "password": "bobs-password-1", "csrf_token": token},
        headers=HTML,
        follow_redirects=False,
    )
    assert right.status_code == 423, "the right password must not open a locked account"


def test_admin_creates_a_user_and_the_audit_page_shows_it(
    client: TestClient, initialised: Initialised
) -> None:
    token = sign_in(client, "admin", initialised.admin_password)
    response = client.post(
        "/users",
        data={
            "username": "carol",
            "display_name": "Carol",
            "roles": ["abuse", "noc"],
            "reason": "new abuse desk hire",
            "csrf_token": token,
        },
        headers=HTML,
    )
    assert response.status_code == 201, response.text
    password = re.search(r"Initial password \(shown once\): (\S+)<", response.text)
    assert password, "a generated password is shown once"
    page = client.get("/audit", headers=HTML)
    assert "user.create" in page.text and "new abuse desk hire" in page.text
    verify = client.get("/audit/verify", headers={**HTML, "HX-Request": "true"})
    assert 'data-testid="verify-ok"' in verify.text


def test_a_bad_user_form_says_what_is_wrong_and_stores_nothing(
    client: TestClient, initialised: Initialised, runtime: Runtime
) -> None:
    token = sign_in(client, "admin", initialised.admin_password)
    before = audit.verify(runtime).entries
    response = client.post(
        "/users", data={"username": "dave", "roles": ["wizard"], "csrf_token": token}, headers=HTML
    )
    assert response.status_code == 422
    assert "&#39;wizard&#39; is not a role" in response.text
    assert audit.verify(runtime).entries == before


def test_language_is_chosen_per_user_and_kept(
    client: TestClient, initialised: Initialised, runtime: Runtime
) -> None:
    token = sign_in(client, "admin", initialised.admin_password)
    assert "Dashboard" in client.get("/", headers=HTML).text
    response = client.post(
        "/account/locale", data={"locale": "zh-CN", "back": "/", "csrf_token": token}, headers=HTML
    )
    assert response.status_code == 200
    assert "概览" in response.text and "审计日志" in response.text
    client.cookies.delete("hw_lang")
    assert "概览" in client.get("/", headers=HTML).text, "the choice is stored on the user"
    with runtime.reading() as session:
        rows, _ = audit.list_entries(session, action="user.update")
    assert rows and '"locale":"zh-CN"' in rows[0].after


def test_sign_in_page_follows_accept_language(client: TestClient) -> None:
    page = client.get("/login", headers={**HTML, "Accept-Language": "zh-CN,zh;q=0.9"})
    assert "登录" in page.text
    page = client.get("/login", headers={**HTML, "Accept-Language": "en-GB"})
    assert "Sign in" in page.text


def test_areas_not_built_yet_say_so_and_show_no_data(
    client: TestClient, initialised: Initialised
) -> None:
    sign_in(client, "admin", initialised.admin_password)
    page = client.get("/filing", headers=HTML)
    assert page.status_code == 200
    assert "Not built yet" in page.text and "a later issue" in page.text
    assert "<table" not in page.text


def test_sign_in_refuses_to_redirect_off_site(client: TestClient, initialised: Initialised) -> None:
    token = csrf_of(client)
    response = client.post(
        "/login",
        data={
            "username": "admin",
            "password": initialised.admin_password,
            "csrf_token": token,
            "next": "//evil.example/",
        },
        follow_redirects=False,
    )
    assert response.headers["location"] == "/"


def test_sign_out_ends_the_session(client: TestClient, initialised: Initialised) -> None:
    token = sign_in(client, "admin", initialised.admin_password)
    session = client.cookies.get("hw_session")
    response = client.post("/logout", data={"csrf_token": token}, follow_redirects=False)
    assert response.status_code == 303
    client.cookies.set("hw_session", str(session))
    again = client.get("/", headers=HTML, follow_redirects=False)
    assert again.status_code == 303 and again.headers["location"].startswith("/login")


def test_the_navigation_shows_only_the_areas_a_role_may_open(
    client: TestClient, runtime: Runtime
) -> None:
    make_user(runtime, "sally", ["sales"], "sallys-password-1")
    sign_in(client, "sally", "sallys-password-1")
    home = client.get("/", headers={"Accept": "text/html"}).text
    assert 'href="/customers"' in home
    assert 'href="/flows"' not in home
    assert client.get("/flows", headers={"Accept": "text/html"}).status_code == 403
    client.cookies.clear()
    make_user(runtime, "desk", ["abuse"], "desk-password-12")
    sign_in(client, "desk", "desk-password-12")
    assert 'href="/flows"' in client.get("/", headers={"Accept": "text/html"}).text
