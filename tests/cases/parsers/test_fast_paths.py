"""The parsers' fast paths give exactly what the plain way of computing the same gives.

Each test runs a fast path and a reference (the straightforward code it stands in for)
over crafted edge cases and many random texts made of the fragments reports are made of.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import hostwarden.cases.parsers as parsers
from hostwarden.cases.parsers import arf, common, netcraft, spamcop, spamhaus, xarf
from hostwarden.cases.parsers.base import MessagePart, ReportEvent, ReportMessage, made_with
from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.parsers.shadowserver import _csv_values
from tests.cases.parsers.samples import REPORTS

FRAGMENTS = [
    " ",
    "  ",
    "\t",
    "\n",
    "\n\n",
    "\r\n",
    "\r",
    "\x0b",
    "\x1c",
    "-",
    ".",
    "..",
    "/",
    ":",
    ";",
    ",",
    "@",
    "_",
    "[",
    "]",
    "(",
    ")",
    '"',
    "*",
    "#",
    "a",
    "Z",
    "xn--",
    "example",
    "Example.COM",
    "mail.example.net",
    "a-b.c",
    "-x.org",
    "x-.org",
    "report.txt",
    "Mr.Smith",
    "1",
    "2026",
    "12",
    "05",
    "192.0.2.1",
    "10.0.0.300",
    "2001:db8::1",
    "[2001:db8:cafe::17]:8080",
    "::ffff:192.0.2.9",
    "fe80::1%",
    "13:05:12",
    "10:00",
    "2026-05-01",
    "2026/05/01",
    "01/May/2026:13:05:12 +0000",
    "Fri, 01 May 2026 09:58:41 +0000",
    "May 1, 2026 12:40 PM UTC",
    "1st May 2026 at 10:00 CET",
    "Fri May  1 10:00:00 UTC 2026",
    "2026年5月1日 下午3时30分",
    "北京时间",
    "+0800",
    "GMT+8",
    "utc",
    "jan",
    "janov",
    "Sept",
    "mon",
    "Date:",
    "Source:",
    "Email from",
    "Spamvertised web site:",
    "Reason:",
    "Incident ID:",
    "Attack type:",
    "Feedback-Type:",
    "Report-Type:",
    "Received: from a.example (a [192.0.2.7])",
    "http://files.example.net/x.js",
    "hxxps://bad.example.org/",
    "Ｘ",
    "钓鱼",
    "é",
    "ſ",
    "K",
    "İ",
    "٣",
]


def random_texts(count: int, seed: int, longest: int = 40) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choices(FRAGMENTS, k=rng.randint(0, longest))) for _ in range(count)]


def sample_texts() -> list[str]:
    texts = []
    for path in sorted(REPORTS.glob("*.eml")):
        message = read_message(path.read_bytes())
        texts.append(message.text())
        texts.extend(str(v) for v in message.headers.values())
    return texts


TEXTS = sample_texts() + random_texts(1500, 7) + random_texts(300, 8, longest=200)


def spans(matches: Any) -> list[tuple[tuple[int, int], tuple[Any, ...]]]:
    return [(m.span(), m.groups()) for m in matches]


# --- LinePattern -----------------------------------------------------------------------

LINE_PATTERNS = [
    arf._FEEDBACK_LINE,
    netcraft._INCIDENT_LINE,
    netcraft._ATTACK_LINE,
    netcraft._DATE_LINE,
    spamcop._EMAIL_FROM,
    spamcop._SPAMVERTISED,
    spamcop._RESOLVED,
    spamhaus._REASON_LINE,
    spamhaus._DATE_LINE,
    xarf._DATE_LINE,
    xarf._SOURCE_LINE,
    xarf._XARF02_MARKERS,
]


@pytest.mark.parametrize("line", LINE_PATTERNS, ids=lambda p: p.pattern.pattern[:30])
def test_line_patterns_find_what_the_anchored_pattern_finds(line: common.LinePattern) -> None:
    crafted = [
        "",
        "\n",
        "Date: x",
        "\nDate: x\n",
        "x\n  Reason : spam\nReason: other",
        "  Email from 192.0.2.1 / Fri, 1 May 2026 10:00:00 +0000\n\n  Email from ::1 / now\n",
        "Email from 1.2.3.4 / a\n\nEmail from 5.6.7.8 / b",
        "xSource: a\nSOURCE: b",
        "http://a.example/ is 192.0.2.1; today\nhttp://b.example/ is ::1 ; then",
    ]
    for text in crafted + TEXTS:
        first = line.pattern.search(text)
        found = line.search(text)
        assert (found is None) == (first is None), text
        if found is not None and first is not None:
            assert (found.span(), found.groups()) == (first.span(), first.groups())
            assert found.re is first.re
        assert spans(line.finditer(text)) == spans(line.pattern.finditer(text)), text


# --- domains, web-log times, IPv6 ---------------------------------------------------------

REFERENCE_DOMAIN = re.compile(r"(?<![0-9A-Za-z@._/-])" + common._DOMAIN)


def test_domains_are_found_where_the_lookbehind_pattern_finds_them() -> None:
    crafted = [
        "example.com",
        ".example.com",
        "a.example.com.",
        "x@example.com",
        "a.b.c1 example.com.x1 a.com.-x",
        "Report.Txt and files.example.net/dropper.js",
        "ab" * 40 + ".com " + "c" * 70 + ".net",
        "_a.com -a.com /a.com 1.2.3.4.example",
    ]
    for text in crafted + TEXTS:
        want = []
        for match in REFERENCE_DOMAIN.finditer(text):
            written = match.group("domain")
            tld = written.rsplit(".", 1)[1]
            if tld.lower() in common._NOT_TLDS or (not tld.islower() and not tld.isupper()):
                continue
            want.append((match.start(), match.end(), written.lower()))
        assert common.find_domains(text) == want, text


def test_web_log_times_are_found_where_the_pattern_finds_them() -> None:
    crafted = [
        "01/may/2026:13:05:12 +0000",
        "1/may/2026:13:05:12 101/may/2026:10:00:00",
        "/may/2026:10:00 5/jan/2026:01:02 /jan 7/janov/2026:10:00",
        "11/dec/2026:10:00:00/dec/2026:10:00:00",
    ]
    for text in crafted + TEXTS:
        lowered = common._ascii_lower(text)
        want = spans(common._WEB_LOG.finditer(lowered))
        assert spans(common._web_log_times(lowered)) == want, text


def candidate_patterns(text: str, lowered: str) -> list[re.Pattern[str]]:
    """The timestamp patterns that can match ``text`` at all, in order, found plainly (the
    reference ``_time_matches`` and ``parse_time`` are tested against): each needs
    literals (":" of the time, a month name, "年" …)."""
    patterns = []
    if ":" in text:
        if "-" in text or "/" in text:
            patterns.append(common._TIME_PATTERNS[0])
        if common._MONTH_WORD.search(lowered) is not None:
            if common._SLASH_MONTH.search(lowered) is not None:
                patterns.append(common._TIME_PATTERNS[1])
            if common._MONTH_YEAR.search(lowered) is not None:
                patterns.append(common._TIME_PATTERNS[2])
            patterns += common._TIME_PATTERNS[3:5]
    if "年" in text:
        patterns.append(common._CHINESE_PATTERN)
    return patterns


def test_time_matches_are_what_each_candidate_pattern_finds() -> None:
    crafted = [
        "Fri May  1 10:00:00 UTC 2026, thu\u2003dec 31 23:59 2026 wed\n\tjan 2 10:00 2026",
        "may may 1, 2026 10:00 janov 3 2026 10:00 xmon june 4 12:00:00 2026",
        "1 May 2026 10:00 and 2nd-dec-2026 10:00 sept 3, 2026 at 10:00 pm",
        "mon  may 1 10:00 2026 mon may 1 10:00 2026 may",
    ]
    for text in crafted + TEXTS:
        lowered = common._ascii_lower(text)
        want = [spans(p.finditer(lowered)) for p in candidate_patterns(text, lowered)]
        assert [spans(found) for found in common._time_matches(text, lowered)] == want, text


def test_ipv6_matches_skip_only_positions_the_lookbehind_refuses() -> None:
    for text in [*TEXTS, "x::1 [::1]:22 a1:b2:c3::d :::: 1:2:3:4:5:6:7:8"]:
        want = []
        pos = 0
        while (hint := common._IPV6_HINT.search(text, pos)) is not None:
            colon = hint.start()
            for start in range(max(pos, colon - 5), colon + 1):
                match = common._IPV6_RE.match(text, start)
                if match is not None:
                    want.append((match.span(), match.groups()))
                    pos = match.end()
                    break
            else:
                pos = colon + 1
        assert spans(common._ipv6_matches(text)) == want, text


@pytest.mark.parametrize("candidate", ["2001:db8::1", "::ffff:192.0.2.1", "1:2:3", "g::1", ""])
def test_the_cached_ipv6_text_is_what_ipaddress_says(candidate: str) -> None:
    import ipaddress

    try:
        want: str | None = common._canonical(ipaddress.IPv6Address(candidate))
    except ValueError:
        want = None
    assert common._ipv6_text(candidate) == want


# --- times -----------------------------------------------------------------------------


def reference_moment(match: re.Match[str], text: str, chinese: bool) -> common.Moment | None:
    """_moment as it read the groups before (by groupdict) and converted (by astimezone)."""
    fields = match.groupdict()
    try:
        year = int(fields["y"])
        month = int(fields["mo"]) if fields.get("mo") else common._MONTHS[fields["mon"][:3]]
        day = int(fields["d"])
        hour = int(fields["h"] or 0)
        minute = int(fields.get("mi") or 0)
        second = min(int(fields.get("s") or fields.get("s2") or 0), 59)
        frac = fields.get("frac")
        micro = int(frac[:6].ljust(6, "0")) if frac else 0
    except (KeyError, ValueError):
        return None
    # The clock's marker is read as before (the fast path changed how groups are read).
    hour = common._on_24_hour_clock(hour, fields.get("ampm"), fields.get("cnampm"))
    zone = text[match.start("zone") : match.end("zone")] if fields.get("zone") else ""
    if zone:
        offset = common._offset_minutes(zone, chinese)
    elif common._BEIJING in text and (
        common._BEIJING_AFTER.match(text, match.end())
        or common._BEIJING_BEFORE.search(text, max(0, match.start() - 8), match.start())
    ):
        zone, offset = common._BEIJING, common._CHINA_OFFSET
    elif chinese or match.re is common._CHINESE_PATTERN:
        zone, offset = common.ASSUMED_CHINA_ZONE, common._CHINA_OFFSET
    else:
        offset = 0
    if offset is None:
        return None
    try:
        tz = timezone(timedelta(minutes=offset))
        local = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
    except ValueError:
        return None
    return common.Moment(local.astimezone(UTC), zone)


def reference_parse_time(value: str, chinese: bool | None) -> common.Moment | None:
    """parse_time as it was: every candidate pattern tried at the start, no cache."""
    if chinese is None:
        chinese = common.has_chinese(value)
    lowered = common._ascii_lower(value)
    first = 5 if common._WEEKDAY_COMMA.match(lowered) else 0
    candidates = candidate_patterns(value, lowered)
    at_start = [m for p in candidates if (m := p.match(lowered, first))]
    at_start.sort(key=lambda m: -m.end())
    for match in at_start:
        moment = reference_moment(match, value, chinese)
        if moment is not None:
            return moment
    found = []
    for pattern in candidates:
        for m in pattern.finditer(lowered):
            if m.start() == 0 or not lowered[m.start() - 1].isdigit():
                found.append((m.start(), -m.end(), m))
    found.sort(key=lambda span: (span[0], span[1]))
    for _, _, match in found:
        moment = reference_moment(match, value, chinese)
        if moment is not None:
            return moment
    return None


TIMES = [
    "Fri, 01 May 2026 09:58:41 +0000",
    "2026-05-01T10:00:00+02:00",
    "2026-05-01T10:00:00.1234567Z",
    "2026-02-30 10:00:00",
    "2026-05-01 10:00 utc+99:99",
    "2026-05-01 10:00 GMT+14",
    "01/May/2026:13:05:12 +0000",
    "May 1, 2026 12:40 PM UTC",
    "Sat, 2 Jan 1900 00:10:00 +1400",
    "1 Jan 1900 00:00 +0100",
    "31 Dec 2099 23:59:60 -1200",
    "Fri May  1 10:00:00 CST 2026",
    "2026年5月1日 下午3时30分 北京时间",
    "北京时间 2026-05-01 10:00",
    "٢٠٢٦-05-01 10:00",
    "2026-٠٥-٠١ ١٠:٠٠",
    "Mon, 1 May 2026",
    "  2026-05-01 10:00",
]


@pytest.mark.parametrize("chinese", [None, False, True])
def test_parse_time_reads_as_every_candidate_pattern_read_it(chinese: bool | None) -> None:
    for value in TIMES + TEXTS:
        want = reference_parse_time(value, chinese)
        assert common.parse_time(value, chinese=chinese) == want, value


def test_every_time_is_read_with_its_groups_as_groupdict_has_them() -> None:
    for value in TIMES + TEXTS:
        lowered = common._ascii_lower(value)
        for pattern in common._TIME_PATTERNS:
            for match in pattern.finditer(lowered):
                for chinese in (False, True):
                    got = common._moment(match, value, chinese)
                    assert got == reference_moment(match, value, chinese), value
                    assert got is None or type(got) is common.Moment


def test_digit_strings_are_read_as_int_reads_them() -> None:
    assert all(common._NUMBERS[text] == int(text) for text in common._NUMBERS)


# --- header blocks -----------------------------------------------------------------------


def test_header_fields_of_plain_text_are_read_as_line_by_line() -> None:
    crafted = [
        "",
        "A: 1",
        "A: 1\n",
        "A : 1 \nB:2\n\tcont\n \n  more  \nnot a field\n cont dropped\nA: 3\x1f\n",
        " lead\nA:\n  x\n\x1fB: y",
        "Source-IP: 192.0.2.1\r\nA: b",
        "A: b\x0bB: c",
        "1A: no\nA_b-C: yes\n",
    ]
    rng = random.Random(11)
    lines = ["A: 1", "Received: from x", " by y", "\tid z", "", " ", "junk", "b: two  ", "B:"]
    made = ["\n".join(rng.choices(lines, k=rng.randint(0, 12))) for _ in range(500)]
    for block in crafted + made + TEXTS:
        assert common.header_fields(block) == common._header_fields_by_line(block), block


# --- scoring ------------------------------------------------------------------------------


def messages() -> list[ReportMessage]:
    found = [read_message(p.read_bytes()) for p in sorted(REPORTS.glob("*.eml"))]
    rng = random.Random(5)
    for message in list(found):
        subjects = ("[SpamCop (x) id:1]s", "Shadowserver", "spamhaus SBL12", "Spamhaus", "Netcraft")
        for subject in subjects:
            headers = {**message.headers, "subject": subject}
            found.append(made_copy(message, headers=headers))
        for reporter in ("a@shadowserver.org", "x@spamhaus.org", "y@spamcop.net"):
            found.append(made_copy(message, reporter=reporter))
        found.append(made_copy(message, headers={**message.headers, "x-arf": "yes"}))
        found.append(made_copy(message, content_type="multipart/report; report-type=x"))
        found.append(made_copy(message, parts=rng.sample(message.parts, len(message.parts))))
    return found


def made_copy(message: ReportMessage, **changes: Any) -> ReportMessage:
    fields = {name: getattr(message, name) for name in message.__dataclass_fields__}
    return ReportMessage(**{**fields, **changes})


def reference_choose(message: ReportMessage) -> str:
    best, best_score = None, 0.0
    for parser in parsers.load_parsers():
        score = parser.score(message)
        if best is None or score > best_score:
            best, best_score = parser, score
    assert best is not None
    return best.name


def test_certain_is_true_exactly_when_the_score_is_certain() -> None:
    for message in messages():
        for parser in parsers.load_parsers():
            certain = getattr(parser, "certain", None)
            is_certain = parser.score(message) >= parsers.CERTAIN
            assert (certain is not None and certain(message)) == is_certain, parser.name
        assert parsers.choose(message).name == reference_choose(message)


def test_the_lowered_text_head_is_the_text_head_lowered() -> None:
    for message in messages():
        for limit in (0, 1, 500, 1000, 2999, 3000, 3001, 10_000):
            assert common.lowered_text_head(message, limit) == (
                common.text_head(message, limit).lower()
            )
    message = messages()[0]
    head = common.lowered_text_head(message, 1000)
    message.parts[0] = MessagePart("text/plain", None, "İSTANBUL Safe Browsing")
    assert common.lowered_text_head(message, 1000) != head
    assert common.lowered_text_head(message, 5) == common.text_head(message, 5).lower()


# --- values -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line",
    ["", " ", "a,b", ",", "a, b ,c", '"a,b",c', 'a"b', "a\0b", "x\x1fy", "\ufeffa,b", "é,ü"],
)
def test_csv_values_are_what_the_csv_reader_reads(line: str) -> None:
    try:
        want: list[str] | str = next(csv.reader([line]))
    except csv.Error as error:
        want = str(error)
    try:
        got: list[str] | str = _csv_values(line, csv.field_size_limit())
    except csv.Error as error:
        got = str(error)
    assert got == want


def test_a_line_over_the_field_size_limit_is_left_to_the_csv_reader() -> None:
    old = csv.field_size_limit(5)
    try:
        with pytest.raises(csv.Error):
            _csv_values("abcdefgh", csv.field_size_limit())
    finally:
        csv.field_size_limit(old)


class Odd:
    def __str__(self) -> str:
        return "odd"


JSON_VALUES: list[Any] = [
    {},
    {"a": []},
    {"a": {}, "b": [1, [2, []], {"c": None}], "d": 'é\n"\\', "e": True, "f": False},
    {"n": 1.5, "nan": float("nan"), "inf": float("inf"), "ninf": float("-inf"), "big": 10**30},
    {"date": date(2026, 5, 1), "odd": Odd(), "tuple": (1, 2), "set": {1}},
    {1: "int key", None: "none key", False: "bool key", 1.5: "float key"},
    {"s": type("S", (str,), {})("sub"), "i": type("I", (int,), {})(3)},
    {"u": "\u2028\ud800", "e": "", "zero": -0.0},
]


@pytest.mark.parametrize("value", JSON_VALUES, ids=range(len(JSON_VALUES)))
def test_indented_json_is_what_json_dumps_writes(value: dict[str, Any]) -> None:
    want = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    assert xarf._indented_json(value) == want


def test_indented_json_leaves_a_cycle_to_json_dumps() -> None:
    cyclic: dict[str, Any] = {"a": []}
    cyclic["a"].append(cyclic)
    with pytest.raises(ValueError, match="Circular reference"):
        xarf._indented_json(cyclic)


def test_the_frozen_report_classes_are_made_as_their_constructors_make_them() -> None:
    at = datetime(2026, 5, 1, tzinfo=UTC)
    values: list[tuple[type[Any], dict[str, Any]]] = [
        (MessagePart, {"content_type": "text/plain", "filename": None, "content": b"x"}),
        (
            ReportMessage,
            {
                "raw": b"x",
                "headers": {"a": "b"},
                "content_type": "text/plain",
                "parts": [],
                "reporter": "r",
                "warnings": ["w"],
            },
        ),
        (
            ReportEvent,
            {
                "category": "spam",
                "ip": "192.0.2.1",
                "port": 22,
                "domain": None,
                "url": None,
                "occurred_at": at,
                "zone": "",
                "reporter": "r",
                "excerpt": "e",
                "extra": {"k": 1},
            },
        ),
    ]
    for cls, fields in values:
        assert list(fields) == list(cls.__dataclass_fields__)
        made = made_with(cls, dict(fields))
        plain = cls(**fields)
        assert made == plain
        assert vars(made) == vars(plain)
        assert list(vars(made)) == list(vars(plain))
        assert repr(made) == repr(plain)
        with pytest.raises(AttributeError):
            made.reporter = "other"  # still frozen


def test_a_made_part_hashes_as_a_constructed_one() -> None:
    fields = {"content_type": "text/plain", "filename": "a.txt", "content": "x"}
    assert hash(made_with(MessagePart, dict(fields))) == hash(MessagePart(**fields))


def test_a_charset_codec_is_the_same_found_again() -> None:
    for charset in ["utf-8", "UTF8", '"gb2312"', " Latin-1 ", "x-unknown", "klingon", ""]:
        first = common.codec_for(charset)
        assert common.codec_for(charset) == first
        if first is not None:
            assert common._KNOWN_CODECS[charset] == first
    assert common.codec_for("klingon") is None
    assert "klingon" not in common._KNOWN_CODECS


def test_sample_reports_parse_the_same_with_cold_and_warm_caches() -> None:
    paths = sorted(Path(REPORTS).glob("*.eml"))
    first = [parsers.parse_message(read_message(p.read_bytes())) for p in paths]
    common._cached_url_host.cache_clear()
    common._ipv6_text.cache_clear()
    common._LAST_HEAD[0] = None
    again = [parsers.parse_message(read_message(p.read_bytes())) for p in paths]
    assert again == first


@pytest.mark.parametrize(
    "value",
    ["2001:DB8::1", "[::ffff:192.0.2.1]", "fe80::1%eth0", "1:2:3", "::", " 2001:db8:0:0:0:0:0:1 "],
)
def test_cached_addresses_normalise_as_ipaddress_reads_them(value: str) -> None:
    import ipaddress

    text = value.strip().strip("[]")
    try:
        want: str | None = common._canonical(ipaddress.ip_address(text))
    except ValueError:
        want = None
    assert common.normalise_ip(value) == want
    assert common.normalise_ip(value) == want  # from the cache


def reference_received_line(spam: str, ip: str) -> str:
    for line in spam.splitlines()[:200]:
        if ip in line and line.lower().startswith("received:"):
            return line.strip()
    return ""


def test_the_received_line_is_looked_for_in_the_first_200_lines_only() -> None:
    hop = "Received: from x ([192.0.2.1])"
    spams = [
        "\n".join(["x"] * 199 + [hop]),
        "\n".join(["x"] * 200 + [hop]),
        "\n".join(["x"] * 199 + [hop]) + "\n",
        "x\rReceived: from y ([192.0.2.1])\n" * 2,
        "\x85".join(["x"] * 199 + [hop]),
        "x\n" * 198 + "\n" + hop,
        "",
        hop,
    ]
    for spam in spams + TEXTS:
        assert spamcop._received_line(spam, "192.0.2.1") == reference_received_line(
            spam, "192.0.2.1"
        )


def test_shadowserver_extra_keeps_the_columns_after_its_own_three() -> None:
    from hostwarden.cases.parsers.shadowserver import ShadowserverParser

    csv_text = "timestamp,ip,file,port,row,asn,report_type,tag\n"
    csv_text += "2026-05-01 10:00:00,192.0.2.1,f.csv,22,9,64496,other,botnet\n"
    message = ReportMessage(
        raw=b"",
        headers={"subject": "Shadowserver"},
        content_type="multipart/mixed",
        parts=[MessagePart("text/csv", "2026-05-01-scan_ssh-asn1.csv", csv_text)],
        reporter="a@shadowserver.org",
    )
    event = ShadowserverParser().parse(message).events[0]
    assert list(event.extra.items()) == [
        ("report_type", "scan_ssh"),
        ("file", "2026-05-01-scan_ssh-asn1.csv"),
        ("row", 2),
        ("asn", "64496"),
        ("tag", "botnet"),
    ]


def test_gathered_keyword_patterns_match_as_the_plain_alternation() -> None:
    words = [w for _, ws in common._keyword_words() for w in ws]
    plain = re.compile("|".join(common._word_pattern(w) for w in words))
    categories = [
        (re.compile("|".join(common._word_pattern(w) for w in ws)), pattern)
        for (_, ws), (_, pattern) in zip(
            common._keyword_words(), common._CATEGORY_KEYWORDS, strict=True
        )
    ]
    crafted = [
        "a botnet c&c and c2 server, viruses, =bot= robot bot.",
        "ddos attack / dos attack / scan scanning scanned portscan 钓鱼 垃圾邮件",
        "the infected host ran a web shell; brute-forcing and bruteforcing",
    ]
    for text in crafted + TEXTS:
        lowered = text.lower()
        assert spans(common._ANY_KEYWORD.finditer(lowered)) == spans(plain.finditer(lowered))
        for want, got in categories:
            assert spans(got.finditer(lowered)) == spans(want.finditer(lowered))


def test_made_with_builds_with_the_constructor_when_a_field_is_left_out() -> None:
    """made_with sets the fields at once only when it is given every field; otherwise the
    class's own constructor applies its defaults (or refuses)."""
    from hostwarden.cases.parsers.base import ReportEvent, made_with

    whole = {f.name: None for f in dataclasses.fields(ReportEvent)}
    given = {
        **whole,
        "category": "spam",
        "occurred_at": datetime(2026, 5, 1, tzinfo=UTC),
        "zone": "UTC",
        "reporter": "r@example.org",
        "excerpt": "x",
    }
    fast = made_with(ReportEvent, dict(given))
    assert fast == ReportEvent(**given)
    partial = {k: v for k, v in given.items() if k != "extra"}
    slow = made_with(ReportEvent, partial)
    assert slow == ReportEvent(**partial) and slow.extra == ReportEvent(**partial).extra
