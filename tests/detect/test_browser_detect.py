"""The detection console in a real browser (Debian chromium through Playwright): the
alert list, an alert with its traffic chart, and adding a suppression, in English and
in Chinese."""

from __future__ import annotations

import pytest

from hostwarden.core.runtime import Runtime
from hostwarden.flows.store.parquet import ParquetStore
from tests.conftest import ARTIFACTS, Initialised, browser_sign_in
from tests.detect.test_web_detect import FLOODER, SCANNER, raise_alerts, scan_records

pytestmark = pytest.mark.browser


def test_in_a_browser_open_alerts_and_their_chart_and_suppress_in_english_and_chinese(
    live_server: str, initialised: Initialised, runtime: Runtime, browser_page: object
) -> None:
    from playwright.sync_api import Page, expect

    raise_alerts(runtime)
    store = ParquetStore(runtime)
    store.write(scan_records())
    store.flush()
    store.close()
    page = browser_page
    assert isinstance(page, Page)
    browser_sign_in(
        page, live_server, "/detect", "admin", initialised.admin_password, lands_on="/alerts"
    )

    listing = page.get_by_test_id("alerts")
    expect(listing.locator("tbody tr")).to_have_count(2)
    expect(listing.locator("tbody tr").first).to_contain_text(FLOODER)
    expect(listing.locator("tbody tr").first.locator(".sev-critical")).to_have_text("critical")
    expect(page.get_by_test_id("category-counts").locator("tr")).to_have_count(2)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-alerts.png"), full_page=True)
    filters = page.get_by_test_id("alert-filters")
    filters.locator("select[name=category]").select_option("scan")
    filters.locator("button[type=submit]").click()
    expect(listing.locator("tbody tr")).to_have_count(1)
    listing.get_by_role("link", name="1", exact=True).click()
    expect(page).to_have_url(f"{live_server}/alerts/1")

    chart = page.get_by_test_id("traffic-chart")
    expect(chart.locator("svg")).to_be_visible()
    expect(chart.locator("svg rect")).to_have_count(2 * 4 + 1)
    expect(page.get_by_test_id("chart-mark")).to_have_count(1)
    expect(page.get_by_test_id("records").locator("tbody tr")).to_have_count(3)
    expect(page.get_by_test_id("holder")).to_contain_text("Acme Hosting Ltd")
    page.screenshot(path=str(ARTIFACTS / "console-alert.png"), full_page=True)

    page.get_by_test_id("suppress-link").click()
    form = page.get_by_test_id("new-suppression")
    expect(form.locator("input[name=cidr]")).to_have_value(SCANNER)
    form.locator("input[name=expires]").fill("7d")
    form.locator("input[name=reason]").fill("authorised pentest, ticket 4711")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_have_text("Suppression 1 added.")
    expect(page.get_by_test_id("suppressions")).to_contain_text(f"{SCANNER}/32")
    expect(page.get_by_test_id("suppressions")).to_contain_text("in effect")
    page.screenshot(path=str(ARTIFACTS / "console-suppressions.png"), full_page=True)

    page.click("header >> text=简体中文")
    expect(page.locator("h1")).to_have_text("告警抑制")
    expect(page.get_by_test_id("suppressions")).to_contain_text("生效中")
    page.get_by_text("添加告警抑制").click()
    form = page.get_by_test_id("new-suppression")
    form.locator("input[name=cidr]").fill("198.51.100.7/24")
    form.locator("input[name=reason]").fill("备份流量")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("error")).to_contain_text("host bits")
    form = page.get_by_test_id("new-suppression")
    expect(form.locator("input[name=reason]")).to_have_value("备份流量")
    form.locator("input[name=cidr]").fill("198.51.100.0/24")
    form.locator("button[type=submit]").click()
    expect(page.get_by_test_id("notice")).to_have_text("告警抑制 2 已添加。")

    page.click('nav.tabs >> text="告警"')
    expect(page).to_have_url(f"{live_server}/alerts")
    page.get_by_test_id("alerts").get_by_role("link", name="2", exact=True).click()
    expect(page.locator("h1")).to_contain_text("告警 2")
    expect(page.get_by_test_id("severity")).to_have_text("严重")
    expect(page.get_by_test_id("traffic-chart").locator("svg")).to_be_visible()
    page.screenshot(path=str(ARTIFACTS / "console-alert-zh.png"), full_page=True)
