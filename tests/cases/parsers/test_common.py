"""Shared helpers: timestamps with zones, addresses, URLs, domains, Received hops, keywords."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from hostwarden.cases.parsers.base import EXCERPT_CHARS
from hostwarden.cases.parsers.common import (
    category_from_text,
    decode_bytes,
    excerpt,
    find_domains,
    find_ips,
    find_times,
    find_urls,
    first_category,
    normalise_ip,
    parse_time,
    port_number,
    received_sender_ip,
)
from tests.cases.parsers.samples import utc


@pytest.mark.parametrize(
    ("written", "at", "zone"),
    [
        ("Fri, 1 May 2026 10:00:00 -0700 (PDT)", utc(2026, 5, 1, 17, 0, 0), "-0700"),
        ("2026-05-01 10:00:00 +0800", utc(2026, 5, 1, 2, 0, 0), "+0800"),
        ("2026-05-01T10:00:00Z", utc(2026, 5, 1, 10, 0, 0), "Z"),
        (
            "2026-05-01T10:00:00.250+02:00",
            datetime(2026, 5, 1, 8, 0, 0, 250000, UTC),
            "+02:00",
        ),
        ("01/May/2026:10:00:00 +0000", utc(2026, 5, 1, 10, 0, 0), "+0000"),
        ("May 1, 2026 10:00 PM UTC", utc(2026, 5, 1, 22, 0, 0), "UTC"),
        ("1 May 2026 at 10:00 CET", utc(2026, 5, 1, 9, 0, 0), "CET"),
        ("01-May-2026 08:14 GMT", utc(2026, 5, 1, 8, 14, 0), "GMT"),
        ("Fri May  1 10:00:00 UTC 2026", utc(2026, 5, 1, 10, 0, 0), "UTC"),
        ("2026-05-01 10:00 UTC+8", utc(2026, 5, 1, 2, 0, 0), "UTC+8"),
        ("2026-05-01 10:00:00", utc(2026, 5, 1, 10, 0, 0), ""),
        ("2026年5月1日 10:00", utc(2026, 5, 1, 2, 0, 0), "+08:00 (assumed)"),
        ("2026年05月01日下午3时30分", utc(2026, 5, 1, 7, 30, 0), "+08:00 (assumed)"),
        ("北京时间2026年5月1日 10:00", utc(2026, 5, 1, 2, 0, 0), "北京时间"),
        ("2026-05-01 10:00（北京时间）", utc(2026, 5, 1, 2, 0, 0), "北京时间"),
        ("2026年5月1日 10:00 UTC", utc(2026, 5, 1, 10, 0, 0), "UTC"),
    ],
)
def test_timestamps_are_read_with_their_zone_and_converted_to_utc(
    written: str, at: datetime, zone: str
) -> None:
    moment = parse_time(written)

    assert moment is not None
    assert moment.at == at
    assert moment.at.tzinfo is UTC
    assert moment.zone == zone


def test_cst_is_us_central_in_english_and_china_time_in_chinese_text() -> None:
    english = parse_time("1 May 2026 10:00 CST")
    chinese = parse_time("时间：2026-05-01 10:00 CST")

    assert english is not None and english.at == utc(2026, 5, 1, 16, 0, 0)
    assert chinese is not None and chinese.at == utc(2026, 5, 1, 2, 0, 0)


def test_zone_less_times_in_chinese_text_are_beijing_time() -> None:
    [(_, moment)] = find_times("攻击时间：2026-05-01 10:00:00")

    assert moment.at == utc(2026, 5, 1, 2, 0, 0)
    assert moment.zone == "+08:00 (assumed)"


def test_impossible_dates_and_plain_numbers_are_no_times() -> None:
    assert parse_time("2026-02-30 10:00:00 UTC") is None
    assert parse_time("version 2026-05 build 10:00") is None
    assert find_times("192.0.2.1 port 22, 3389 and 10:00:00") == []


def test_addresses_are_found_with_ports_in_each_notation() -> None:
    text = (
        "src 192.0.2.1:22, [2001:db8::1]:443, 2001:db8::2 port 8080, 203.0.113.7端口3389, "
        "贵司IP203.0.113.8被利用, ::ffff:198.51.100.9 and 198.51.100.10."
    )

    assert [(m.ip, m.port) for m in find_ips(text)] == [
        ("192.0.2.1", 22),
        ("2001:db8::1", 443),
        ("2001:db8::2", 8080),
        ("203.0.113.7", 3389),
        ("203.0.113.8", None),
        ("198.51.100.9", None),
        ("198.51.100.10", None),
    ]


def test_versions_times_and_macs_are_not_addresses() -> None:
    assert find_ips("OpenSSH 1.2.3.4.5 at 10:00:00 on 00:11:22:33:44:55, 999.1.1.1") == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (" 192.0.2.1 ", "192.0.2.1"),
        ("[2001:DB8::0:1]", "2001:db8::1"),
        ("192.0.2.1:25", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("192.0.2", None),
        ("example.com", None),
    ],
)
def test_normalise_ip(value: str, expected: str | None) -> None:
    assert normalise_ip(value) == expected


def test_port_numbers_must_be_plain_digits_in_range() -> None:
    assert [port_number(v) for v in (22, "443", " 80 ", "70000", "22²", True, None)] == [
        22,
        443,
        80,
        None,
        None,
        None,
        None,
    ]


def test_urls_stop_at_punctuation_and_chinese_text() -> None:
    text = "见 https://bad.example.com/a?b=1，以及(http://x.example.net/p). hxxp://y.example.net/q"

    assert [u.url for u in find_urls(text)] == [
        "https://bad.example.com/a?b=1",
        "http://x.example.net/p",
        "http://y.example.net/q",
    ]


def test_domains_skip_file_names_email_addresses_and_capitalised_words() -> None:
    text = "bad.example.com served report.txt; mail abuse@example.net. Mr.Smith said EXAMPLE.NET"

    assert [d for _, _, d in find_domains(text)] == ["bad.example.com", "example.net"]


def test_received_sender_skips_internal_hops_and_relays_of_the_same_domain() -> None:
    received = [
        "from relay2.mx.example.com (relay2.mx.example.com [198.51.100.2]) by store.mx.example.com",
        "from edge.mx.example.com (10.0.0.5) by relay2.mx.example.com",
        "from mail.example.net (mail.example.net [IPv6:2001:db8::25]) by edge.mx.example.com",
    ]

    assert received_sender_ip(received) == ("2001:db8::25", received[2])
    assert received_sender_ip(["from localhost (127.0.0.1) by x.example.com"]) is None


def test_keywords_in_english_and_chinese_name_a_category() -> None:
    assert category_from_text("SSH brute-force attempts after a port scan") == "bruteforce"
    assert category_from_text("a phishing e-mail (spam) for a fake bank") == "phishing"
    assert category_from_text("发现木马程序") == "malware"
    assert category_from_text("hello world") is None
    # Free text: the complaint is named first, the details later.
    assert first_category("DDoS from your network; the host also runs a trojan") == "ddos"


def test_decode_bytes_says_when_it_had_to_guess() -> None:
    gbk = "中文".encode("gbk")

    assert decode_bytes(gbk, "gbk") == ("中文", None)
    assert decode_bytes(gbk, "GB2312") == ("中文", None)
    assert decode_bytes(gbk, None) == ("中文", "no charset declared; read as gb18030")
    assert decode_bytes(b"caf\xe9", "utf-8") == (
        "café",
        "declared charset 'utf-8' does not fit the bytes; read as latin-1 "
        "(some characters may be wrong)",
    )


def test_excerpts_are_trimmed_to_the_limit() -> None:
    trimmed = excerpt("line of evidence\n" * 500)

    assert len(trimmed) <= EXCERPT_CHARS
    assert trimmed.endswith("…")


@pytest.mark.parametrize(
    "text",
    [
        "Phishing site at HTTP://Example.COM/Login",
        "phishing site at http://example.com/login and PHISHING again",
        "ſpam with a long s, and Spam",  # not ASCII: searched with IGNORECASE itself
        "nothing here",
        "",
    ],
)
def test_a_caseless_pattern_finds_what_ignorecase_finds_with_the_text_as_written(
    text: str,
) -> None:
    import re

    from hostwarden.cases.parsers.common import CaselessPattern

    pattern = r"(phishing|spam)\W+(\S+)?"
    fast = CaselessPattern(pattern)
    slow = re.compile(pattern, re.IGNORECASE)
    want = slow.search(text)
    got = fast.search(text)
    assert (got and (got.span(), got.groups())) == (want and (want.span(), want.groups()))
    assert [(m.span(), m.groups()) for m in fast.finditer(text)] == [
        (m.span(), m.groups()) for m in slow.finditer(text)
    ]


def test_a_caseless_pattern_must_be_written_in_lower_case() -> None:
    from hostwarden.cases.parsers.common import CaselessPattern

    with pytest.raises(ValueError, match="lower case"):
        CaselessPattern(r"Spam\S+")
    CaselessPattern(r"spam\S+\W")  # escapes are not letters
