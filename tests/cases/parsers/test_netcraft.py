"""Netcraft takedown notices."""

from __future__ import annotations

from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.parsers.netcraft import NetcraftParser
from tests.cases.parsers.samples import parse_sample, utc


def test_netcraft_notice_gives_a_phishing_event_per_attack_url_on_the_stated_ip() -> None:
    _, chosen, report = parse_sample("netcraft_phishing.eml")

    assert chosen == "netcraft"
    assert [(e.category, e.ip, e.url) for e in report.events] == [
        ("phishing", "203.0.113.50", "http://secure-login.example.net/bank/verify.php"),
        ("phishing", "203.0.113.50", "http://secure-login.example.net/bank/otp.php"),
    ]
    first = report.events[0]
    assert first.domain == "secure-login.example.net"
    assert first.occurred_at == utc(2026, 5, 1, 9, 42, 0)
    assert first.zone == "UTC"
    assert first.extra == {"incident_id": "NC-6F2A91C4", "attack_type": "Phishing"}
    assert "http://secure-login.example.net/bank/verify.php" in first.excerpt
    assert "IP address: 203.0.113.50" in first.excerpt


def test_netcrafts_own_incident_link_is_not_an_attack_url() -> None:
    _, _, report = parse_sample("netcraft_phishing.eml")

    assert all("netcraft" not in (e.url or "") for e in report.events)


def test_netcraft_notice_with_only_an_ip_gives_an_event_for_it() -> None:
    raw = (
        b"From: takedown@netcraft.example.com\n"
        b"Subject: Netcraft: malware distribution on 198.51.100.31 [NC-1234ABCD]\n"
        b"Date: Fri, 01 May 2026 12:00:00 +0000\n\n"
        b"A malicious download is served from 198.51.100.31:8080 (web shell found).\n"
    )
    [event] = NetcraftParser().parse(read_message(raw)).events

    assert event.category == "malware"
    assert event.ip == "198.51.100.31"
    assert event.port == 8080
    assert event.occurred_at == utc(2026, 5, 1, 12, 0, 0)  # no date in the body: the mail's
    assert event.extra["incident_id"] == "NC-1234ABCD"


def test_fake_shop_notice_is_fraud() -> None:
    raw = (
        b"From: takedown@netcraft.example.com\nSubject: Netcraft: fake shop [NC-FAKE0001]\n\n"
        b"Attack type: Fake shop\nURL: https://cheap-shoes.example.com/\n"
        b"IP address: 192.0.2.140\nDate: 2026-05-01 08:00 UTC\n"
    )
    [event] = NetcraftParser().parse(read_message(raw)).events

    assert event.category == "fraud"
    assert event.ip == "192.0.2.140"
    assert event.url == "https://cheap-shoes.example.com/"
