"""Helpers every report parser shares: times with zones, addresses, URLs, excerpts, keywords.

Regular expressions are compiled once here, at import, because intake parses thousands of
reports a second and a parser must not pay for compiling a pattern per report.
"""

from __future__ import annotations

import codecs
import ipaddress
import re
import string
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, NamedTuple
from urllib.parse import urlsplit

from hostwarden.cases.parsers.base import CATEGORIES, EXCERPT_CHARS, ReportEvent, ReportMessage

# --- text decoding ---------------------------------------------------------------------

#: Charsets that mail clients declare for Chinese text but whose bytes are often outside
#: the declared set; GB18030 is a superset of both, so decoding with it loses nothing.
_CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "euc-cn": "gb18030",
    "x-euc-cn": "gb18030",
    "csgb2312": "gb18030",
    "chinese": "gb18030",
    # Mailers send "unknown-8bit" and "x-user-defined" when they do not know either.
    "unknown-8bit": "",
    "x-unknown": "",
    "x-user-defined": "",
}


def codec_for(charset: str | None) -> str | None:
    """The Python codec for a declared charset, or None when it is missing or unknown."""
    if not charset:
        return None
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name:
        return None
    try:
        return codecs.lookup(name).name
    except LookupError:
        return None


def decode_bytes(data: bytes, charset: str | None = None) -> tuple[str, str | None]:
    """``data`` as text and, when the declared charset was missing, unknown or wrong, a
    warning saying what was used instead. Tries the declared charset, then UTF-8, then
    GB18030 (Chinese reporters' usual encoding), then Latin-1 (never fails)."""
    codec = codec_for(charset)
    if codec is not None:
        try:
            return data.decode(codec), None
        except UnicodeDecodeError:
            problem = f"declared charset {charset!r} does not fit the bytes"
    elif charset:
        problem = f"declared charset {charset!r} is unknown"
    else:
        problem = ""
    for fallback in ("utf-8", "gb18030"):
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        if problem:
            return text, f"{problem}; read as {fallback}"
        if fallback != "utf-8":
            return text, f"no charset declared; read as {fallback}"
        return text, None
    return (
        data.decode("latin-1", errors="replace"),
        f"{problem or 'no charset declared'}; read as latin-1 (some characters may be wrong)",
    )


# --- times -------------------------------------------------------------------------------


class Moment(NamedTuple):
    """A point in time as a report gave it: ``at`` in UTC, ``zone`` as written."""

    at: datetime
    zone: str


#: Offsets (minutes east of UTC) for the zone names reports use. CST is US Central, as in
#: RFC 5322, except in Chinese text (see ``find_times``), where it means China Standard Time.
_ZONE_OFFSETS = {
    "UTC": 0,
    "UT": 0,
    "GMT": 0,
    "Z": 0,
    "WET": 0,
    "EST": -300,
    "EDT": -240,
    "CST": -360,
    "CDT": -300,
    "MST": -420,
    "MDT": -360,
    "PST": -480,
    "PDT": -420,
    "AKST": -540,
    "AKDT": -480,
    "HST": -600,
    "BST": 60,
    "CET": 60,
    "CEST": 120,
    "MET": 60,
    "MEST": 120,
    "WEST": 60,
    "EET": 120,
    "EEST": 180,
    "MSK": 180,
    "HKT": 480,
    "SGT": 480,
    "AWST": 480,
    "JST": 540,
    "KST": 540,
    "ACST": 570,
    "AEST": 600,
    "AEDT": 660,
    "NZST": 720,
    "NZDT": 780,
}
_CHINA_OFFSET = 480
_BEIJING = "北京时间"
ASSUMED_CHINA_ZONE = "+08:00 (assumed)"

# The patterns below run on the text with ASCII letters lower-cased (same length, so
# positions carry over) and without re.IGNORECASE: every pattern then starts with a digit
# or a lower-case literal, which lets the regex engine skip ahead to where a timestamp
# can start instead of trying every position; a digit just before a match is checked in
# ``find_times`` for the same reason.
_ASCII_LOWER = str.maketrans(string.ascii_uppercase, string.ascii_lowercase)
_ZONE_NAMES = "|".join(
    sorted((n.lower() for n in _ZONE_OFFSETS if n != "Z"), key=len, reverse=True)
)
_ZONE = (
    r"(?P<zone>(?:utc|gmt|ut)\s?[+-]\d{1,2}(?::?\d{2})?(?![\d:])"
    r"|[+-](?:0\d|1[0-4])(?::?[0-5]\d)?(?![\d:])"
    r"|z(?![a-z])"
    rf"|(?:{_ZONE_NAMES})(?![a-z])"
    r")"
)
_OPT_ZONE = rf"(?:\s*\(?{_ZONE}\)?)?"
_TIME = (
    r"(?P<h>[01]?\d|2[0-3]):(?P<mi>[0-5]\d)"
    r"(?::(?P<s>[0-5]\d|60)(?:[.,](?P<frac>\d{1,9}))?)?"
)
_AMPM = r"(?:\s*(?P<ampm>[ap]\.?m\.?)(?![a-z]))?"
_MONTH = (
    r"(?P<mon>jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sept?(?:ember)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)(?![a-z])"
)
_DAY = r"(?P<d>\d\d?)"  # range checked by datetime(); \d first keeps the fast start
_YEAR = r"(?P<y>(?:19|20)\d\d)"

_TIME_PATTERNS = (
    # 2026-05-01T10:00:00Z, 2026-05-01 10:00:00 +0800, 2026/05/01 10:00 UTC
    re.compile(
        rf"{_YEAR}(?P<sep>[-/])(?P<mo>\d\d?)(?P=sep){_DAY}(?:t|\s+|\s*t\s*){_TIME}{_OPT_ZONE}"
    ),
    # 01/May/2026:10:00:00 +0000 (web server logs)
    re.compile(rf"{_DAY}/{_MONTH}/{_YEAR}:{_TIME}{_OPT_ZONE}"),
    # (Fri,) 1 May 2026 10:00:00 +0000 (RFC 5322), 01-May-2026 08:00 GMT, 1 May 2026 at 10:00
    re.compile(
        rf"{_DAY}(?:st|nd|rd|th)?[\s-]+{_MONTH}\.?,?[\s-]+{_YEAR},?\s+(?:at\s+)?"
        rf"{_TIME}{_AMPM}{_OPT_ZONE}"
    ),
    # May 1, 2026 10:00 AM UTC
    re.compile(
        rf"{_MONTH}\.?\s+{_DAY}(?:st|nd|rd|th)?,?\s+{_YEAR},?\s+(?:at\s+)?"
        rf"{_TIME}{_AMPM}{_OPT_ZONE}"
    ),
    # Fri May  1 10:00:00 UTC 2026 (date(1), ctime)
    re.compile(
        rf"(?:mon|tue|wed|thu|fri|sat|sun)\s+{_MONTH}\s+{_DAY}\s+{_TIME}"
        rf"(?:\s+{_ZONE})?\s+{_YEAR}(?!\d)"
    ),
    # 2026年5月1日 10:00, 2026年05月01日下午3时30分, 2026年5月1日 (date only)
    re.compile(
        rf"{_YEAR}\s*年\s*(?P<mo>\d\d?)\s*月\s*{_DAY}\s*[日号]"
        r"\s*(?:(?P<cnampm>凌晨|早上|上午|中午|下午|晚上)\s*)?"
        r"(?:(?P<h>[01]?\d|2[0-3])\s*[:：时点]\s*(?:(?P<mi>[0-5]?\d)(?!\d))?"
        r"(?:\s*[:：]\s*(?P<s>[0-5]?\d)|\s*分\s*(?:(?P<s2>[0-5]?\d)\s*秒)?)?)?"
        rf"{_OPT_ZONE}"
    ),
)
_CHINESE_PATTERN = _TIME_PATTERNS[-1]
_BEIJING_AFTER = re.compile(r"\s*[（(]?\s*北京时间")
_BEIJING_BEFORE = re.compile(r"北京时间\s*[:：]?\s*$")
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
_ZONE_NUMBER = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?$")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def has_chinese(text: str) -> bool:
    return _CJK.search(text) is not None


def _offset_minutes(zone: str, chinese: bool) -> int | None:
    name = zone.upper()
    if name in _ZONE_OFFSETS:
        return _CHINA_OFFSET if chinese and name == "CST" else _ZONE_OFFSETS[name]
    number = _ZONE_NUMBER.search(name)
    if number is None:
        return None
    minutes = int(number.group(2)) * 60 + int(number.group(3) or 0)
    return -minutes if number.group(1) == "-" else minutes


def _moment(match: re.Match[str], text: str, chinese: bool) -> Moment | None:
    fields = match.groupdict()
    try:
        year = int(fields["y"])
        month = int(fields["mo"]) if fields.get("mo") else _MONTHS[fields["mon"][:3]]
        day = int(fields["d"])
        hour = int(fields["h"] or 0)
        minute = int(fields.get("mi") or 0)
        second = min(int(fields.get("s") or fields.get("s2") or 0), 59)
        micro = int((fields.get("frac") or "0")[:6].ljust(6, "0"))
    except (KeyError, ValueError):
        return None
    ampm = (fields.get("ampm") or "").replace(".", "")
    if ampm == "pm" and hour < 12:
        hour += 12
    elif ampm == "am" and hour == 12:
        hour = 0
    cnampm = fields.get("cnampm")
    if (cnampm in ("下午", "晚上") and hour < 12) or (cnampm == "中午" and hour < 11):
        hour += 12
    # The match ran on lower-cased text; the zone is reported as the report wrote it.
    zone = text[match.start("zone") : match.end("zone")] if fields.get("zone") else ""
    if zone:
        offset = _offset_minutes(zone, chinese)
    elif _BEIJING_AFTER.match(text, match.end()) or _BEIJING_BEFORE.search(
        text, max(0, match.start() - 8), match.start()
    ):
        zone, offset = _BEIJING, _CHINA_OFFSET
    elif chinese or match.re is _CHINESE_PATTERN:
        # Chinese reporters write local time without a zone; Beijing time is the only
        # zone in use in mainland China, so assuming it is right far more often than UTC.
        zone, offset = ASSUMED_CHINA_ZONE, _CHINA_OFFSET
    else:
        offset = 0
    if offset is None:
        return None
    try:
        local = datetime(
            year,
            month,
            day,
            hour,
            minute,
            second,
            micro,
            tzinfo=timezone(timedelta(minutes=offset)),
        )
    except ValueError:
        return None
    return Moment(local.astimezone(UTC), zone)


def find_times(text: str, *, chinese: bool | None = None) -> list[tuple[int, Moment]]:
    """Every timestamp in ``text`` with where it starts, in order.

    A timestamp without a zone is UTC (zone ""), except in Chinese text (``chinese``,
    by default: the text contains Chinese characters), where Beijing time is assumed and
    ``zone`` says so; ``北京时间`` written next to a time sets +08:00 too.
    """
    if chinese is None:
        chinese = has_chinese(text)
    lowered = text.translate(_ASCII_LOWER)
    spans: list[tuple[int, int, re.Match[str]]] = []
    for pattern in _TIME_PATTERNS:
        if pattern is _CHINESE_PATTERN and "年" not in text:
            continue
        for m in pattern.finditer(lowered):
            # A timestamp cannot start inside a longer number ("12026-05-01").
            if m.start() == 0 or not lowered[m.start() - 1].isdigit():
                spans.append((m.start(), -m.end(), m))
    spans.sort(key=lambda span: (span[0], span[1]))
    found: list[tuple[int, Moment]] = []
    reached = -1
    for start, negative_end, match in spans:
        if start < reached:
            continue  # the same timestamp read by a second, shorter pattern
        moment = _moment(match, text, chinese)
        if moment is not None:
            found.append((start, moment))
            reached = -negative_end
    return found


def parse_time(value: str, *, chinese: bool | None = None) -> Moment | None:
    """The first timestamp in ``value`` (a header or field), or None."""
    times = find_times(value, chinese=chinese)
    return times[0][1] if times else None


def moment_of(value: datetime) -> Moment:
    """A ``datetime`` from a structured source (YAML) as a Moment; naive means UTC."""
    if value.tzinfo is None:
        return Moment(value.replace(tzinfo=UTC), "")
    return Moment(value.astimezone(UTC), value.strftime("%z") or "UTC")


def report_time(message: ReportMessage, notes: list[str]) -> Moment:
    """When the report itself was sent, for events whose report gives no time of its own."""
    sent = parse_time(message.headers.get("date", ""), chinese=False)
    if sent is not None:
        return sent
    notes.append("the report gives no time and has no Date header; used the time of reading")
    return Moment(datetime.now(UTC), "")


# --- addresses ---------------------------------------------------------------------------

# Starts with a plain digit so the regex engine can skip to digits; the guards a
# lookbehind would give (no digit or dot just before) are checked in ``find_ips``, and
# octet ranges by ``ipaddress``. ASCII-only letters in the lookahead: Python's \w also
# matches Chinese characters, which often touch an address.
_IPV4_RE = re.compile(
    r"(?P<ip>\d\d?\d?\.\d\d?\d?\.\d\d?\d?\.\d\d?\d?)(?![0-9A-Za-z]|\.\d)"
    r"(?::(?P<port>\d{1,5})(?!\d))?"
)
_IPV6_RE = re.compile(
    r"(?<![0-9A-Za-z:.])(?P<bracket>\[)?"
    r"(?P<ip>[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}(?:\.\d{1,3}){0,3})"
    r"(?(bracket)\](?::(?P<port>\d{1,5})(?!\d))?)"
)
_NOT_BEFORE_IPV4 = frozenset("0123456789.")
_PORT_AFTER = re.compile(r"\s*,?\s*(?:port|端口)\s*[:：#]?\s*(\d{1,5})(?!\d)", re.I)
_HEX = re.compile(r"[0-9A-Fa-f]")

#: Networks that are hops inside a mail system, never the outside sender: loopback,
#: RFC 1918, carrier-grade NAT, link-local, unique-local. The documentation ranges are
#: deliberately not here (Python counts them "private"): they stand for public addresses.
INTERNAL_NETWORKS = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "::1/128",
        "::/128",
        "fc00::/7",
        "fe80::/10",
    )
)


class IpMention(NamedTuple):
    start: int
    end: int
    ip: str
    port: int | None


def normalise_ip(value: str) -> str | None:
    """``value`` as a canonical address text, or None when it is not one. Accepts
    brackets around IPv6 and a trailing ``:port`` on IPv4."""
    text = value.strip().strip("[]")
    if text.count(":") == 1 and "." in text:
        text = text.split(":", 1)[0]
    try:
        return _canonical(ipaddress.ip_address(text))
    except ValueError:
        return None


def _canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # An IPv4-mapped IPv6 address (::ffff:192.0.2.1) is the IPv4 host; say it that way so
    # ownership lookups by address find it.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


def is_internal(ip: str) -> bool:
    address = ipaddress.ip_address(ip)
    return any(address.version == n.version and address in n for n in INTERNAL_NETWORKS)


def port_number(value: object) -> int | None:
    """A port from a field (int or digits), or None when missing or out of range."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        number = int(value.strip())
    else:
        return None
    return number if 0 <= number <= 65535 else None


def find_ips(text: str) -> list[IpMention]:
    """Every IPv4 and IPv6 address in ``text``, with a port when one is written right
    after it (``192.0.2.1:22``, ``[2001:db8::1]:22``, ``192.0.2.1 port 22``)."""
    found: list[IpMention] = []
    for match in _IPV4_RE.finditer(text):
        start = match.start()
        if start and text[start - 1] in _NOT_BEFORE_IPV4:
            continue
        try:
            v4 = ipaddress.IPv4Address(match.group("ip"))
        except ValueError:
            continue
        found.append(_mention(text, match, str(v4)))
    if text.count(":") >= 2:
        for match in _IPV6_RE.finditer(text):
            candidate = match.group("ip").rstrip(":.")
            if candidate.count(":") < 2 or not _HEX.search(candidate):
                continue
            try:
                v6 = ipaddress.IPv6Address(candidate)
            except ValueError:
                continue
            found.append(_mention(text, match, _canonical(v6)))
    if not found:
        return found
    found.sort(key=lambda m: (m.start, -m.end))
    kept: list[IpMention] = []
    for mention in found:
        # An IPv4 tail of an IPv6 address (::ffff:192.0.2.1) is part of it, not a second one.
        if kept and mention.start < kept[-1].end:
            continue
        kept.append(mention)
    return kept


def _mention(text: str, match: re.Match[str], ip: str) -> IpMention:
    port = port_number(match.group("port")) if match.group("port") else None
    end = match.end()
    if port is None:
        after = _PORT_AFTER.match(text, end)
        if after is not None:
            port = port_number(after.group(1))
            end = after.end()
    return IpMention(match.start(), end, ip, port)


# --- URLs and domains --------------------------------------------------------------------

_URL_RE = re.compile(
    r"(?<![A-Za-z])(?:https?|hxxps?|ftp)://[^\s<>\"'`{}|\\^\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+",
    re.I,
)
_URL_TAIL = ".,;:!?)]}'\"*"
_DOMAIN_RE = re.compile(
    r"(?<![0-9A-Za-z@._/-])"
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{2,59}))"
    r"(?![0-9A-Za-z_-]|\.[A-Za-z0-9])"
)
#: Things that look like domains in free text but are file names.
_NOT_TLDS = frozenset(
    word
    for line in (
        "txt csv zip gz tgz bz2 xz rar 7z html htm php asp aspx jsp js css json xml yaml yml",
        "log pdf doc docx xls xlsx ppt pptx jpg jpeg png gif bmp svg ico exe dll bat sh py pl",
        "rb eml msg tmp bak cfg conf ini sql db mp3 mp4 avi mov iso bin dat",
    )
    for word in line.split()
)


class UrlMention(NamedTuple):
    start: int
    end: int
    url: str


def find_urls(text: str) -> list[UrlMention]:
    """Every http(s)/ftp URL in ``text``; defanged ``hxxp`` is read as ``http``."""
    found: list[UrlMention] = []
    for match in _URL_RE.finditer(text):
        url = match.group(0).rstrip(_URL_TAIL)
        if url.lower().startswith("hxxp"):
            url = "http" + url[4:]
        if "://" in url and len(url.split("://", 1)[1]) > 0:
            found.append(UrlMention(match.start(), match.start() + len(url), url))
    return found


def url_host(url: str) -> tuple[str | None, str | None]:
    """(domain, ip) of a URL's host: one of them is set, or neither if it has no host."""
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None, None
    if not host:
        return None, None
    ip = normalise_ip(host)
    if ip is not None:
        return None, ip
    return host.rstrip(".").lower(), None


def find_domains(text: str) -> list[tuple[int, int, str]]:
    """Domain names in free text (lower-cased), skipping file names and e-mail addresses."""
    found: list[tuple[int, int, str]] = []
    for match in _DOMAIN_RE.finditer(text):
        written = match.group("domain")
        tld = written.rsplit(".", 1)[1]
        # "Mr.Smith" or "Report.Txt": a capitalised last label is a word, not a TLD.
        if tld.lower() in _NOT_TLDS or (not tld.islower() and not tld.isupper()):
            continue
        domain = written.lower()
        found.append((match.start(), match.end(), domain))
    return found


def same_site(domain: str, other: str) -> bool:
    """Whether two host names share their last two labels (a rough registrable domain)."""
    return domain.split(".")[-2:] == other.split(".")[-2:]


def address_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


# --- header blocks -----------------------------------------------------------------------

_FIELD_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*(.*?)\s*$")


def header_fields(block: str) -> dict[str, list[str]]:
    """``Name: value`` lines (RFC 5322 style, continuation lines folded in) as lower-cased
    names to their values in order; other lines are skipped."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in block.splitlines():
        if line[:1] in (" ", "\t"):
            if last is not None and line.strip():
                last[-1] = f"{last[-1]} {line.strip()}".strip()
            continue
        match = _FIELD_LINE.match(line)
        if match is None:
            last = None
            continue
        last = fields.setdefault(match.group(1).lower(), [])
        last.append(match.group(2))
    return fields


def header_section(message_text: str) -> str:
    """The header block of a message kept as text (up to the first empty line)."""
    for separator in ("\r\n\r\n", "\n\n"):
        index = message_text.find(separator)
        if index >= 0:
            return message_text[:index]
    return message_text


_RECEIVED_FROM = re.compile(
    r"^\s*from\s+(?P<helo>\S+)(?P<clause>.*?)(?:\bby\s+(?P<by>\S+)|$)", re.I
)
_BRACKETED = re.compile(r"[\[(](?:IPv6:)?([0-9A-Fa-f:.]+)[\])]", re.I)


def received_sender_ip(received: Iterable[str]) -> tuple[str, str] | None:
    """The first external sender in ``Received:`` values (newest first): the IP address and
    the header it came from. A hop is internal when its address is in INTERNAL_NETWORKS
    or its from- and by-hosts share a domain (a relay inside the receiving system)."""
    for value in received:
        match = _RECEIVED_FROM.match(value)
        if match is None:
            continue
        helo = match.group("helo").strip("()[]").lower()
        by = (match.group("by") or "").lower()
        clause = f"{match.group('helo')} {match.group('clause')}"
        candidates = [m.group(1) for m in _BRACKETED.finditer(clause)] or [helo]
        for candidate in candidates:
            ip = normalise_ip(candidate)
            if ip is None or is_internal(ip):
                continue
            if by and "." in helo and normalise_ip(helo) is None and same_site(helo, by):
                break
            return ip, value
    return None


# --- evidence and categories -------------------------------------------------------------


def excerpt(text: str) -> str:
    """``text`` trimmed to EXCERPT_CHARS, cut at a line end when one is near."""
    text = text.strip()
    if len(text) <= EXCERPT_CHARS:
        return text
    cut = text.rfind("\n", EXCERPT_CHARS // 2, EXCERPT_CHARS - 1)
    return text[: cut if cut > 0 else EXCERPT_CHARS - 1].rstrip() + "…"


def line_excerpt(text: str, start: int, end: int | None = None, *, context: int = 1) -> str:
    """The lines holding ``text[start:end]`` and ``context`` lines either side."""
    first = text.rfind("\n", 0, start) + 1
    for _ in range(context):
        if first <= 0:
            break
        first = text.rfind("\n", 0, first - 1) + 1
    last = text.find("\n", end if end is not None else start)
    for _ in range(context):
        if last < 0:
            break
        last = text.find("\n", last + 1)
    return excerpt(text[first : last if last >= 0 else len(text)])


#: Words naming each category, English and Chinese, in the order categories are tried: the
#: first category found wins, most specific first (a phishing mail is also spam; a
#: brute-force report usually mentions the scan before it). A "=" at either end of a word
#: asks for a word boundary there ("=bot=" is not "bottom").
_CATEGORY_WORDS = (
    ("phishing", "phish 钓鱼 仿冒 假冒网站"),
    (
        "malware",
        "malware =virus trojan botnet =bot= c&c command-and-control |command and control| =c2= "
        "webshell |web shell| ransomware =worm= drive-by =infected 木马 挂马 病毒 恶意软件 "
        "恶意程序 僵尸网络 后门 勒索",
    ),
    (
        "ddos",
        "=ddos |=dos attack| denial-of-service |denial of service| =flood= =flooding= =floods= "
        "amplification 攻击流量 拒绝服务 流量攻击 洪水攻击",
    ),
    (
        "bruteforce",
        "brute-forc |brute forc| bruteforc login-attack |login attack| |password guessing| "
        "|failed login| |failed password| |failed auth| |credential stuffing| "
        "|dictionary attack| 暴力破解 爆破 撞库 密码猜解",
    ),
    (
        "scanning",
        "=portscan |=port scan| =scan= =scans= =scanning= =scanned= =scanner 扫描 探测",
    ),
    ("copyright", "copyright =dmca= infring =piracy= =pirated= =pirate= 侵权 版权 盗版"),
    ("gambling", "gambling casino =betting= 赌博 博彩 赌场"),
    (
        "data-leak",
        "|data leak| |data breach| |leaked data| |leaked credentials| 数据泄露 信息泄露",
    ),
    ("unfiled-site", "未备案 没有备案 未经备案 |=icp filing| |=icp licence| |=icp license|"),
    ("fraud", "fraud =scam 诈骗 欺诈 骗局"),
    (
        "spam",
        "=spam |unsolicited email| |unsolicited e-mail| |unsolicited bulk| "
        "|unsolicited commercial| |junk mail| 垃圾邮件 垃圾短信",
    ),
    (
        "illegal-content",
        "|illegal content| |child abuse| |child sexual abuse| =csam= 违法 非法 色情 淫秽",
    ),
)


def _keyword_table() -> tuple[tuple[str, tuple[str, ...], re.Pattern[str]], ...]:
    table = []
    for category, spec in _CATEGORY_WORDS:
        # Words are separated by spaces; |…| holds a phrase with spaces in it.
        words = [w.strip("|") for w in re.findall(r"\|[^|]+\||\S+", spec)]
        stems = tuple(w.strip("=") for w in words)
        pattern = "|".join(
            ("\\b" if w.startswith("=") else "")
            + re.escape(w.strip("="))
            + ("\\b" if w.endswith("=") else "")
            for w in words
        )
        table.append((category, stems, re.compile(pattern)))
    return tuple(table)


#: (category, plain words, pattern). The pattern runs on lower-cased text and only when
#: one of the plain words occurs in it: a substring test is far cheaper than a regex scan.
_CATEGORY_KEYWORDS = _keyword_table()


def _category_matches(text: str) -> Iterator[tuple[str, re.Match[str]]]:
    lowered = text.lower()
    for category, stems, pattern in _CATEGORY_KEYWORDS:
        if any(stem in lowered for stem in stems):
            match = pattern.search(lowered)
            if match is not None:
                yield category, match


def category_from_text(text: str) -> str | None:
    """The abuse category the words in ``text`` name (English or Chinese), or None."""
    return next((category for category, _ in _category_matches(text)), None)


def first_category(text: str) -> str | None:
    """The category named first in ``text`` (free text states its complaint before the
    details), ties settled like ``category_from_text``; None when none is named."""
    found = [
        (match.start(), order, category)
        for order, (category, match) in enumerate(_category_matches(text))
    ]
    return min(found)[2] if found else None


def category_from_vocabulary(term: str, vocabulary: Mapping[str, str]) -> str | None:
    """A feed's own term (``Login-Attack``, ``botnet_drone``) mapped through ``vocabulary``
    (keys lower-case, ``-`` and ``_`` and spaces removed), or None when it has no entry."""
    key = re.sub(r"[-_\s]", "", term.lower())
    return vocabulary.get(key)


def new_event(
    category: str,
    when: Moment,
    reporter: str,
    evidence: str,
    *,
    ip: str | None = None,
    port: int | None = None,
    domain: str | None = None,
    url: str | None = None,
    extra: dict[str, Any] | None = None,
) -> ReportEvent:
    """A ReportEvent with the excerpt trimmed and an unknown category filed as ``other``."""
    return ReportEvent(
        category=category if category in CATEGORIES else "other",
        ip=ip,
        port=port,
        domain=domain,
        url=url,
        occurred_at=when.at,
        zone=when.zone,
        reporter=reporter,
        excerpt=excerpt(evidence),
        extra=extra or {},
    )
