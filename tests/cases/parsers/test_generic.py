"""The generic free-text parser, in English and Chinese."""

from __future__ import annotations

import pytest

from hostwarden.cases.parsers import generic
from hostwarden.cases.parsers.generic import GenericParser
from hostwarden.cases.parsers.mime import read_message
from tests.cases.parsers.samples import parse_sample, utc


def test_english_complaint_gives_ddos_events_with_ports_and_a_malware_url() -> None:
    _, chosen, report = parse_sample("generic_english_ddos.eml")

    assert chosen == "generic"
    events = {(e.ip, e.url): e for e in report.events}
    assert set(events) == {
        (None, "http://files.example.net/dropper.js"),
        ("203.0.113.5", None),
        ("2001:db8:cafe::17", None),
    }
    v4 = events[("203.0.113.5", None)]
    assert (v4.category, v4.port) == ("ddos", 443)
    assert v4.occurred_at == utc(2026, 5, 1, 13, 5, 12)
    assert v4.zone == "+0000"
    assert "203.0.113.5:443" in v4.excerpt
    v6 = events[("2001:db8:cafe::17", None)]
    assert (v6.category, v6.port) == ("ddos", 8080)
    url = events[(None, "http://files.example.net/dropper.js")]
    assert url.category == "malware"  # its paragraph names a trojan
    assert url.domain == "files.example.net"
    assert url.occurred_at == utc(2026, 5, 1, 12, 40, 0)
    assert url.zone == "UTC"


def test_the_reporters_own_domain_in_the_signature_is_no_event() -> None:
    _, _, report = parse_sample("generic_english_ddos.eml")

    assert all(e.domain != "victim.example.com" for e in report.events)


def test_chinese_gbk_complaint_gives_bruteforce_and_phishing_events_in_beijing_time() -> None:
    message, chosen, report = parse_sample("generic_chinese_gbk.eml")

    assert chosen == "generic"
    assert message.headers["subject"] == "关于贵司IP 203.0.113.9 暴力破解攻击的投诉"
    assert [(e.category, e.ip, e.url) for e in report.events] == [
        ("phishing", "203.0.113.9", "http://203.0.113.9/login.html"),
        ("bruteforce", "203.0.113.9", None),
        ("bruteforce", "198.51.100.20", None),
    ]
    for event in report.events:
        assert event.occurred_at == utc(2026, 5, 1, 2, 0, 0)
        assert event.zone == "+08:00 (assumed)"
    assert "涉嫌钓鱼" in report.events[0].excerpt
    assert "198.51.100.20的SSH服务（22端口）进行暴力破解攻击" in report.events[2].excerpt


def test_chinese_time_marked_beijing_time_says_so_in_the_zone() -> None:
    raw = (
        "From: a@example.com\nSubject: 投诉\nContent-Type: text/plain; charset=utf-8\n\n"
        "北京时间 2026-05-01 22:30:00，IP 192.0.2.8 大量发送垃圾邮件。\n"
    ).encode()
    [event] = GenericParser().parse(read_message(raw)).events

    assert event.category == "spam"
    assert event.occurred_at == utc(2026, 5, 1, 14, 30, 0)
    assert event.zone == "北京时间"


UTF8_HEADERS = "From: a@example.com\nContent-Type: text/plain; charset=utf-8\n\n"


def test_chinese_category_keywords() -> None:
    cases = {
        "该网站涉嫌赌博": "gambling",
        "网站未备案": "unfiled-site",
        "存在网站挂马": "malware",
        "侵犯我司版权": "copyright",
        "电信诈骗网站": "fraud",
        "用户数据泄露": "data-leak",
        "持续攻击流量": "ddos",
        "对我方进行扫描": "scanning",
        "违法内容": "illegal-content",
    }
    parser = GenericParser()
    found = {}
    for sentence in cases:
        raw = f"{UTF8_HEADERS}{sentence} 192.0.2.3\n"
        [event] = parser.parse(read_message(raw.encode())).events
        found[sentence] = event.category

    assert found == cases


def test_defanged_addresses_and_urls_are_read() -> None:
    raw = b"From: a@example.com\n\nPhishing at hxxp://bad[.]example[.]com/x from 192.0.2[.]50\n"
    events = GenericParser().parse(read_message(raw)).events

    assert [(e.ip, e.url) for e in events] == [
        (None, "http://bad.example.com/x"),
        ("192.0.2.50", None),
    ]
    assert {e.category for e in events} == {"phishing"}


def test_report_without_any_subject_gives_no_event_and_a_note_not_an_error() -> None:
    report = GenericParser().parse(read_message(b"From: a@example.com\n\nPlease call me.\n"))

    assert report.events == []
    assert report.notes == ["no IP address, URL or domain found in the report text"]


def test_report_without_a_time_uses_the_date_header() -> None:
    raw = b"From: a@example.com\nDate: Sat, 02 May 2026 03:04:05 +0200\n\nspam from 192.0.2.1\n"
    [event] = GenericParser().parse(read_message(raw)).events

    assert event.occurred_at == utc(2026, 5, 2, 1, 4, 5)
    assert event.zone == "+0200"


def test_generic_always_scores_low() -> None:
    message = read_message(b"From: a@example.com\n\nanything\n")

    assert GenericParser().score(message) == 0.01


def test_a_huge_text_is_read_only_up_to_the_limit_with_a_note(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(generic, "MAX_TEXT_CHARS", 40)
    raw = b"From: a@example.com\nSubject: log\n\nfirst 192.0.2.1\n" + b"x" * 100 + b" 192.0.2.2\n"

    report = GenericParser().parse(read_message(raw))

    assert [e.ip for e in report.events] == ["192.0.2.1"]
    assert report.notes[0] == "the report text is 131 characters; read the first 40"
