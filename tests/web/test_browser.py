"""The console in a real browser: Debian chromium driven by Playwright over loopback."""

from __future__ import annotations

import pytest

from tests.conftest import ARTIFACTS, Initialised

pytestmark = pytest.mark.browser


def test_admin_signs_in_creates_a_user_and_sees_it_in_the_audit_trail(
    live_server: str, initialised: Initialised, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    page = browser_page
    assert isinstance(page, Page)
    server = live_server
    page.goto(f"{server}/users")
    expect(page).to_have_url(f"{server}/login?next=/users")
    page.fill("input[name=username]", "admin")
    page.fill("input[name=password]", initialised.admin_password)
    page.click("button[type=submit]")
    expect(page).to_have_url(f"{server}/users")
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
