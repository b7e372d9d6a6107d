"""Spamhaus listing notices (SBL, XBL, CSS, DROP)."""

from __future__ import annotations

from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.parsers.spamhaus import SpamhausParser
from tests.cases.parsers.samples import parse_sample, utc


def test_sbl_snowshoe_listing_gives_a_spam_event_for_the_listed_range() -> None:
    _, chosen, report = parse_sample("spamhaus_sbl.eml")

    assert chosen == "spamhaus"
    [event] = report.events
    assert event.category == "spam"
    assert event.ip == "198.51.100.0"
    assert event.extra["range"] == "198.51.100.0/24"
    assert event.extra["listings"] == ["SBL612345"]
    assert event.extra["lists"] == ["SBL"]
    assert event.occurred_at == utc(2026, 5, 1, 8, 14, 0)
    assert event.zone == "GMT"
    assert "Listed: 198.51.100.0/24" in event.excerpt
    assert "Reason: Snowshoe spam range" in event.excerpt


def test_botnet_controller_listing_is_malware_for_the_single_address() -> None:
    raw = (
        b"From: sbl-notify@spamhaus.example.net\n"
        b"Subject: [SBL700001] 203.0.113.44 listed: botnet C&C\n"
        b"Date: Fri, 01 May 2026 09:00:00 +0000\n\n"
        b"Ref: SBL700001\n203.0.113.44/32 is listed on the Spamhaus SBL.\n"
        b"Reason: Botnet controller (C&C) for a banking trojan\n"
    )
    [event] = SpamhausParser().parse(read_message(raw)).events

    assert event.category == "malware"
    assert event.ip == "203.0.113.44"
    assert "range" not in event.extra
    assert event.occurred_at == utc(2026, 5, 1, 9, 0, 0)


def test_xbl_listing_without_a_reason_is_malware_and_its_lookup_link_is_no_event() -> None:
    raw = (
        b"From: xbl@spamhaus.example.net\nSubject: XBL listing for 192.0.2.77\n\n"
        b"192.0.2.77 is listed in the XBL (exploited hosts).\n"
        b"Lookup: https://check.spamhaus.example.net/listing?ip=192.0.2.78\n"
    )
    [event] = SpamhausParser().parse(read_message(raw)).events

    assert event.category == "malware"
    assert event.ip == "192.0.2.77"
