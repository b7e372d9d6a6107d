"""The console in a real browser: Debian chromium driven by Playwright over loopback."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, Initialised, browser_sign_in

pytestmark = pytest.mark.browser


def test_admin_signs_in_creates_a_user_and_sees_it_in_the_audit_trail(
    live_server: str, initialised: Initialised, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    server = live_server
    browser_sign_in(page, server, "/users", "admin", initialised.admin_password)
    expect(page.get_by_test_id("whoami")).to_have_text("admin")

    form = page.get_by_test_id("new-user")
    form.locator("input[name=username]").fill("wang.fang")
    form.locator("input[name=display_name]").fill("王芳")
    form.locator("input[name=roles][value=abuse]").check()
    form.locator("input[name=reason]").fill("joins the abuse desk")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_contain_text("User wang.fang created.")
    expect(page.get_by_test_id("users")).to_contain_text("王芳")

    page.click("nav >> text=Audit trail")
    expect(page).to_have_url(f"{server}/audit")
    row = page.get_by_test_id("audit").locator("tr", has_text="user.create").first
    expect(row).to_contain_text("joins the abuse desk")
    expect(row).to_contain_text("admin")

    page.get_by_test_id("verify").click()
    expect(page.get_by_test_id("verify-ok")).to_be_visible()

    page.click("header >> text=简体中文")
    expect(page.locator("nav")).to_contain_text("审计日志")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-audit-zh.png"), full_page=True)


def test_a_console_request_that_fails_says_why_instead_of_doing_nothing(
    live_server: str, initialised: Initialised, browser_page: object
) -> None:
    """htmx swaps nothing on an error answer: the banner must say what went wrong."""
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    browser_sign_in(page, live_server, "/flows/integrity", "admin", initialised.admin_password)
    banner = page.get_by_test_id("request-error")
    expect(banner).to_be_hidden()

    # A tab left open across a new sign-in elsewhere carries a token that no longer
    # matches: the server refuses the request with 403.
    page.wait_for_function("window.htmx !== undefined")
    page.evaluate(
        """() => { const b = document.body; b.dataset.kept = b.getAttribute('hx-headers');
                   b.setAttribute('hx-headers', '{"X-CSRF-Token": "stale"}'); }"""
    )
    page.get_by_test_id("run-verify").click()
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("That did not work: the form's security token")
    expect(page.get_by_test_id("verify-never")).to_be_visible()

    # The same click with the right token goes through and clears the complaint.
    page.evaluate("() => document.body.setAttribute('hx-headers', document.body.dataset.kept)")
    page.get_by_test_id("run-verify").click()
    expect(page.get_by_test_id("verify-ok")).to_be_visible(timeout=30_000)
    expect(banner).to_be_hidden()

    page.click("header >> text=简体中文")
    page.wait_for_function("window.htmx !== undefined")
    page.evaluate("""() => document.body.setAttribute('hx-headers', '{"X-CSRF-Token": "x"}')""")
    page.get_by_test_id("run-verify").click()
    expect(banner).to_contain_text("操作未成功：")
