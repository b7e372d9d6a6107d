"""Google Safe Browsing notices to network administrators."""

from __future__ import annotations

from hostwarden.cases.parsers import choose
from hostwarden.cases.parsers.mime import read_message
from tests.cases.parsers.samples import parse_sample, sample, utc


def test_safe_browsing_notice_gives_an_event_per_flagged_url_with_its_threat() -> None:
    _, chosen, report = parse_sample("safebrowsing_notice.eml")

    assert chosen == "safebrowsing"
    assert [(e.category, e.ip, e.domain, e.url) for e in report.events] == [
        (
            "malware",
            "203.0.113.15",
            "downloads.example.net",
            "http://downloads.example.net/setup.exe",
        ),
        ("malware", "203.0.113.16", None, "http://203.0.113.16/payload.bin"),
        (
            "phishing",
            "198.51.100.44",
            "account-check.example.com",
            "https://account-check.example.com/login",
        ),
        ("malware", None, "free-toolbar.example.net", "http://free-toolbar.example.net/install"),
    ]
    assert [e.extra["threat"] for e in report.events] == [
        "Malware",
        "Malware",
        "Phishing (social engineering)",
        "Unwanted software",
    ]


def test_a_url_line_with_a_time_uses_it_and_the_others_use_the_notice_date() -> None:
    _, _, report = parse_sample("safebrowsing_notice.eml")

    assert report.events[0].occurred_at == utc(2026, 5, 1, 7, 30, 0)
    assert report.events[0].zone == "UTC"
    assert report.events[1].occurred_at == utc(2026, 5, 1, 12, 0, 0)
    assert report.events[1].zone == "+0000"


def test_the_excerpt_names_the_threat_and_the_url_line() -> None:
    _, _, report = parse_sample("safebrowsing_notice.eml")

    assert report.events[2].excerpt == (
        "Phishing (social engineering):\nhttps://account-check.example.com/login (198.51.100.44)"
    )


def test_googles_own_links_after_the_list_are_no_events() -> None:
    _, _, report = parse_sample("safebrowsing_notice.eml")

    assert all("transparencyreport" not in (e.url or "") for e in report.events)


def test_a_notice_from_googles_noreply_address_is_recognised_by_its_text() -> None:
    raw = (
        sample("safebrowsing_notice.eml")
        .replace(
            b"From: Google Safe Browsing <safebrowsing-noreply@example.com>",
            b"From: Google <noreply@google.com>",
        )
        .replace(b"Subject: Safe Browsing alert for AS64496", b"Subject: Alert for AS64496")
    )
    message = read_message(raw)

    assert choose(message).name == "safebrowsing"
