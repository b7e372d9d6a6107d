"""Shared fixtures: a fresh data directory and database for every test.

The relational backend is chosen by HOSTWARDEN_TEST_DATABASE: unset or "sqlite" for the
embedded SQLite file, or a PostgreSQL URL, in which case every test gets its own schema
in that database (dropped afterwards). `make test` runs the suite once for each.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from hostwarden.api.app import create_app
from hostwarden.core import auth
from hostwarden.core.config import Settings, load_settings
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.setup import init

BACKEND = os.environ.get("HOSTWARDEN_TEST_DATABASE", "sqlite")
IS_POSTGRES = BACKEND.startswith("postgresql")


def pytest_report_header() -> str:
    return f"hostwarden relational backend: {'PostgreSQL' if IS_POSTGRES else 'SQLite'}"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    if IS_POSTGRES:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL; runs in the PostgreSQL pass of make test")
    for item in items:
        if "postgres_only" in item.keywords:
            item.add_marker(skip)


@dataclass
class DatabaseTarget:
    url: str  # "" means the embedded SQLite file of the data directory
    schema: str | None


@pytest.fixture
def database_target() -> Iterator[DatabaseTarget]:
    if not IS_POSTGRES:
        yield DatabaseTarget("", None)
        return
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(BACKEND, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in BACKEND else "?"
    try:
        yield DatabaseTarget(f"{BACKEND}{sep}options=-csearch_path%3D{schema}", schema)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "hw-home"


@pytest.fixture
def env_for_home(
    home: Path, database_target: DatabaseTarget, monkeypatch: pytest.MonkeyPatch
) -> dict[str, str]:
    """Environment variables pointing a CLI run or subprocess at this test's data."""
    for key in list(os.environ):
        if key.startswith("HOSTWARDEN_") and key != "HOSTWARDEN_TEST_DATABASE":
            monkeypatch.delenv(key, raising=False)
    env = {"HOSTWARDEN_HOME": str(home), "HOSTWARDEN_LOGGING__LEVEL": "WARNING"}
    if database_target.url:
        env["HOSTWARDEN_DATABASE__URL"] = database_target.url
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def settings(env_for_home: dict[str, str]) -> Settings:
    return load_settings()


@dataclass
class Initialised:
    settings: Settings
    admin_password: str


@pytest.fixture
def initialised(settings: Settings) -> Initialised:
    result = init(settings)
    assert result.admin_password is not None
    return Initialised(settings, result.admin_password)


@pytest.fixture
def runtime(initialised: Initialised) -> Iterator[Runtime]:
    rt = Runtime.open(initialised.settings)
    yield rt
    rt.close()


@pytest.fixture
def app(runtime: Runtime) -> object:
    return create_app(runtime)


@pytest.fixture
def client(app: object) -> Iterator[TestClient]:
    with TestClient(app) as test_client:  # type: ignore[arg-type]
        yield test_client


def make_user(
    runtime: Runtime, username: str, roles: list[str], password: str = "correct-horse-9"
) -> int:
    with runtime.operation(system_actor("test")) as op:
        return auth.create_user(op, username, password, roles).id


def make_token(runtime: Runtime, username: str, roles: list[str] | None = None) -> str:
    with runtime.reading() as session:
        user_id = auth.get_user_by_name(session, username).id
    with runtime.operation(system_actor("test")) as op:
        _, secret = auth.create_token(op, user_id, "test", roles=roles, days=1)
    return secret


@pytest.fixture
def admin_token(runtime: Runtime) -> str:
    return make_token(runtime, "admin")


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> object:
    """Keep each phase's report on the item, so fixtures can act on a failed test
    (the browser fixture saves a screenshot)."""
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest.fixture
def live_server(runtime: Runtime) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, as `hostwarden serve` does."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(runtime), host="127.0.0.1", port=port, log_config=None, access_log=False
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the app did not start within 15 s")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"


def browser_sign_in(
    page: object, server: str, path: str, username: str, password: str, *, lands_on: str = ""
) -> None:
    """Open ``path`` signed out, check that it sends to the login page, sign in there and
    wait to be back on ``path`` (or ``lands_on``, where ``path`` redirects)."""
    from playwright.sync_api import Page, expect

    assert isinstance(page, Page)
    page.goto(f"{server}{path}")
    expect(page).to_have_url(f"{server}/login?next={path}")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}{lands_on or path}")


@pytest.fixture
def browser_page(request: pytest.FixtureRequest) -> Iterator[object]:
    """A page in Debian's chromium, driven by Playwright (no browser download); a failing
    test leaves a screenshot in test-artifacts/."""
    import shutil

    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs Debian's chromium first")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        page = browser.new_page(locale="en-US")
        # What the page asked and got, and what its scripts said: printed when a test
        # fails, as a screenshot cannot tell a lost click from a failed request.
        events: list[str] = []
        started = time.monotonic()

        def note(text: str) -> None:
            events.append(f"{time.monotonic() - started:7.3f}s {text}")

        page.on("request", lambda r: note(f"→ {r.method} {r.url}"))
        page.on("response", lambda r: note(f"← {r.status} {r.request.method} {r.url}"))
        page.on("requestfailed", lambda r: note(f"✘ {r.method} {r.url}: {r.failure}"))
        page.on("console", lambda m: note(f"console {m.type}: {m.text}"))
        page.on("pageerror", lambda e: note(f"page error: {e}"))
        page.on(
            "framenavigated", lambda f: note(f"navigated {f.url}") if f == page.main_frame else None
        )
        try:
            yield page
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is not None and report.failed:
                ARTIFACTS.mkdir(exist_ok=True)
                shot = ARTIFACTS / f"{request.node.name}.png"
                page.screenshot(path=str(shot), full_page=True)
                print(f"screenshot of the failure: {shot}")
                print("the page's requests, responses and messages:")
                print("\n".join(events[-80:]))
            browser.close()
