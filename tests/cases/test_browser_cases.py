"""The abuse desk's whole path in a real browser (Debian chromium through Playwright) with
real mail on loopback: a report arrives over SMTP, a case appears attributed to the right
customer, the desk notifies, the notice goes out through the relay, the customer answers
through the link in it with a file, and the desk resolves the case."""

from __future__ import annotations

import smtplib
from collections.abc import Iterator
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller

from hostwarden.cases import intake_smtp, notify
from hostwarden.core.runtime import Runtime
from tests.cases.support import build, mail
from tests.cases.test_mail import REPORT, Sink, free_port
from tests.conftest import ARTIFACTS, Initialised, browser_sign_in

pytestmark = pytest.mark.browser


@pytest.fixture
def mail_on_loopback(runtime: Runtime) -> Iterator[tuple[int, Sink]]:
    """The intake listener and a relay that keeps what the outbox sends."""
    sink = Sink()
    relay = Controller(sink, hostname="127.0.0.1", port=free_port())
    relay.start()
    runtime.settings.mail.relay_host = "127.0.0.1"
    runtime.settings.mail.relay_port = relay.port
    intake_port = free_port()
    listener = intake_smtp.start(runtime, port=intake_port)
    try:
        yield intake_port, sink
    finally:
        listener.stop()
        relay.stop()


def test_in_a_browser_a_mailed_report_becomes_a_case_the_customer_answers_and_it_is_resolved(
    live_server: str,
    initialised: Initialised,
    runtime: Runtime,
    browser_page: object,
    mail_on_loopback: tuple[int, Sink],
    tmp_path: Path,
) -> None:
    from playwright.sync_api import Page, expect

    intake_port, relay = mail_on_loopback
    scene = build(runtime)
    runtime.settings.cases.public_url = live_server
    with smtplib.SMTP("127.0.0.1", intake_port, timeout=10) as smtp:
        smtp.sendmail("abuse@reporter.example.org", ["abuse@localhost"], mail(REPORT))

    page = browser_page
    assert isinstance(page, Page)
    browser_sign_in(page, live_server, "/cases", "admin", initialised.admin_password)
    rows = page.get_by_test_id("cases").locator("tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("203.0.113.10")
    expect(rows.first).to_contain_text(f"#{scene.alice}")
    rows.first.get_by_role("link").first.click()
    expect(page.get_by_test_id("customer")).to_contain_text("Alice Hosting")
    expect(page.get_by_test_id("state")).to_have_text("new")

    page.get_by_test_id("note").locator("textarea").fill("reseller; call before suspending")
    page.get_by_test_id("note").locator("button").click()
    expect(page.get_by_test_id("notice")).to_have_text("Internal note added.")
    expect(page.locator("li.entry.note")).to_contain_text("Internal note — never sent")

    page.get_by_test_id("notify").locator("select[name=locale]").select_option("en")
    page.get_by_test_id("notify").locator("button").click()
    expect(page.get_by_test_id("state")).to_have_text("notified")
    # The reporter's acknowledgement and the customer's notice.
    assert notify.send_due(runtime).sent == 2
    by_recipient = {rcpt[0]: data for _, rcpt, data in relay.messages}
    assert set(by_recipient) == {"abuse@reporter.example.org", "alice@example.com"}
    delivered = message_from_bytes(by_recipient["alice@example.com"], policy=policy.default)
    text = delivered.get_content()
    assert "reseller" not in text
    link = next(line for line in text.splitlines() if "/respond/" in line).strip()

    page.reload()  # a redirect after the action: reloading sends nothing again
    expect(page.get_by_test_id("state")).to_have_text("awaiting response")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "console-case.png"), full_page=True)

    evidence = tmp_path / "cleanup.log"
    evidence.write_text("removed /tmp/.x/mailer.pl; changed passwords\n")
    case_url = page.url
    page.goto(link)
    expect(page.locator("h1")).to_contain_text("AB-")
    reply = page.get_by_test_id("reply")
    reply.locator("textarea").fill("We removed the spam script and changed all passwords.")
    reply.locator("input[type=file]").set_input_files(str(evidence))
    reply.locator("button").click()
    expect(page.get_by_test_id("notice")).to_contain_text("your reply is on the case")

    page.goto(case_url)
    answer = page.locator("li.entry.customer-reply")
    expect(answer).to_contain_text("We removed the spam script")
    expect(answer).to_contain_text("cleanup.log")
    form = page.get_by_test_id("state-form")
    form.locator("select[name=to]").select_option("resolved")
    form.locator("input[name=reason]").fill("customer cleaned the server")
    form.locator("button").click()
    expect(page.get_by_test_id("state")).to_have_text("resolved")

    # The desk in Chinese: the case list and the case page.
    page.click("header >> text=简体中文")
    expect(page.get_by_test_id("state")).to_have_text("已解决")
    expect(page.locator("li.entry.note")).to_contain_text("内部备注")
    page.click('nav.tabs >> text="案件"')
    page.get_by_test_id("filters").locator("select[name=state]").select_option("resolved")
    page.get_by_test_id("filters").locator("button").click()
    row = page.get_by_test_id("cases").locator("tbody tr").first
    expect(row).to_contain_text("已解决")
    expect(row).to_contain_text("垃圾邮件")
    page.screenshot(path=str(ARTIFACTS / "console-cases-zh.png"), full_page=True)
