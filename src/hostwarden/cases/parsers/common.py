"""Helpers every report parser shares: times with zones, addresses, URLs, excerpts, keywords.

Regular expressions are compiled once here, at import, because intake parses thousands of
reports a second and a parser must not pay for compiling a pattern per report.
"""

from __future__ import annotations

import codecs
import functools
import ipaddress
import itertools
import operator
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any, NamedTuple, cast
from urllib.parse import urlsplit

from hostwarden.cases.parsers.base import (
    CATEGORIES,
    EXCERPT_CHARS,
    MessagePart,
    ReportEvent,
    ReportMessage,
    made_with,
)

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
    known = _KNOWN_CODECS.get(charset)
    if known is not None:
        return known
    name = charset.strip().strip("\"'").lower()
    name = _CHARSET_ALIASES.get(name, name)
    if not name:
        return None
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return None
    if len(_KNOWN_CODECS) < _KNOWN_CODECS_MAX:
        _KNOWN_CODECS[charset] = codec
    return codec


#: Charsets as declared to the codec found for them, so a report's charset is looked up
#: once. Only found codecs are kept: the codec registry finds a codec the same way every
#: time once it found it (it caches the lookup itself), while a codec registered later
#: can make an unknown charset known.
_KNOWN_CODECS: dict[str, str] = {}
_KNOWN_CODECS_MAX = 1024


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


# --- patterns -----------------------------------------------------------------------------


class CaselessPattern:
    """A regular expression that ignores case, written in lower case, fast on ASCII text.

    Python's ``re`` cannot skip ahead to where a pattern compiled with IGNORECASE may
    start, so it tries every alternative at every position of the text. On ASCII text
    (nearly every report) the same pattern without IGNORECASE finds the same matches in
    the lower-cased text, skipping ahead; the match found is then made again with
    IGNORECASE at its position, so that its groups hold the text as written. Other text
    is searched with IGNORECASE, because Unicode case rules (``ſ`` matches ``s``) are
    not what ``str.lower`` does.
    """

    def __init__(self, pattern: str, flags: int = 0) -> None:
        literal = re.sub(r"\\.", "", pattern)  # escapes such as \S and \W are not letters
        if literal != literal.lower():
            raise ValueError(f"write a caseless pattern in lower case: {pattern!r}")
        self.lower = re.compile(pattern, flags)
        self.caseless = re.compile(pattern, flags | re.IGNORECASE)

    def search(self, text: str) -> re.Match[str] | None:
        if not text.isascii():
            return self.caseless.search(text)
        found = self.lower.search(text.lower())
        return None if found is None else self.caseless.match(text, found.start())

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        if not text.isascii():
            yield from self.caseless.finditer(text)
            return
        for found in self.lower.finditer(text.lower()):
            match = self.caseless.match(text, found.start())
            if match is not None:  # always: the same pattern at the same place
                yield match


class LinePattern:
    """``re.compile("^(?:" + body + ")", re.MULTILINE | flags)``, searched much faster.

    A pattern anchored at line starts gives the regex engine nothing to skip ahead to, so
    a search tries the pattern at every position of the text. Here a second pattern, a
    line break followed by ``body``, finds the line starts where ``body`` matches (the
    engine skips ahead to the line breaks), and the anchored pattern then makes the match
    at that line start. The anchored pattern is tried at the first line start before
    each search, as the line break before it may be outside the text searched (or the
    line is the first). So ``search`` and ``finditer`` give the very matches (spans,
    groups, ``re``) that the anchored pattern's own search and finditer give.
    ``body`` must not match an empty string (``finditer`` would then differ).
    """

    def __init__(self, body: str, flags: int = 0) -> None:
        self.pattern = re.compile(f"^(?:{body})", re.MULTILINE | flags)
        self._after_break = re.compile(f"\n(?:{body})", re.MULTILINE | flags)

    def search(self, text: str, pos: int = 0) -> re.Match[str] | None:
        """The first match at a line start at or after ``pos``."""
        # The anchor fails unless pos starts a line (the text's start, or after "\n").
        found = self.pattern.match(text, pos)
        while found is None:
            hint = self._after_break.search(text, pos)
            if hint is None:
                return None
            pos = hint.start() + 1
            found = self.pattern.match(text, pos)  # always matches: the same body there
        return found

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """Every match, as ``self.pattern.finditer(text)`` gives them: each search
        resumes where the last match ended."""
        pos = 0
        while (found := self.search(text, pos)) is not None:
            yield found
            pos = max(found.end(), found.start() + 1)


# --- times -------------------------------------------------------------------------------


class Moment(NamedTuple):
    """A point in time as a report gave it: ``at`` in UTC, ``zone`` as written."""

    at: datetime
    zone: str


#: ``Moment(at, zone)`` made from ``(at, zone)`` without the __new__ written in Python
#: that a NamedTuple has (which calls tuple.__new__ so itself): the same object.
_new_moment = cast(
    Callable[[tuple[datetime, str]], Moment], functools.partial(tuple.__new__, Moment)
)

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

# The patterns below run on the text with ASCII letters lower-cased (``_ascii_lower``:
# same length, so positions carry over) and without re.IGNORECASE: every pattern then
# starts with a digit or a lower-case literal, which lets the regex engine skip ahead to
# where a timestamp can start instead of trying every position; a digit just before a
# match is checked in ``find_times`` for the same reason.
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
_WEB_LOG = _TIME_PATTERNS[1]
#: For each pattern, what ``_moment`` reads of a match's groups: the groups named here, in
#: this order, from ``(*match.groups(), None)`` (index -1, the None, for a group the
#: pattern does not have). Every pattern has y, d, h and zone, and mo or mon. Keyed by
#: the pattern's id: hashing a compiled pattern hashes all of its code, every time.
_MOMENT_NAMES = ("y", "mo", "mon", "d", "h", "mi", "s", "s2", "frac", "ampm", "cnampm", "zone")
_MOMENT_GROUPS = {
    id(pattern): operator.itemgetter(
        *(pattern.groupindex.get(name, 0) - 1 for name in _MOMENT_NAMES)
    )
    for pattern in _TIME_PATTERNS
}
#: The patterns that start with a digit (\d is what str.isdecimal tests; the year's
#: "19|20" is a digit too) and those that start with a month or weekday name.
_DIGIT_FIRST = (*_TIME_PATTERNS[:3], _CHINESE_PATTERN)
_WORD_FIRST = _TIME_PATTERNS[3:5]
_BEIJING_AFTER = re.compile(r"\s*[（(]?\s*北京时间")
_BEIJING_BEFORE = re.compile(r"北京时间\s*[:：]?\s*$")
#: Digit strings of the numbers in timestamps, to their values.
_NUMBERS = {
    **{str(n): n for n in range(100)},
    **{f"{n:02d}": n for n in range(10)},
    **{str(n): n for n in range(1900, 2100)},
}
_MONTHS = {
    m: i
    for i, m in enumerate(
        ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"], 1
    )
}
#: Three letters, a comma and a space: a timestamp pattern starts with a digit, a month
#: name or a weekday followed by a space, so none can start inside these five characters.
_WEEKDAY_COMMA = re.compile(r"[a-z]{3}, ")
#: Any month name: all timestamp patterns but the ISO and Chinese ones need one.
_MONTH_WORD = re.compile("jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec")
#: What the web-log and the "1 May 2026" patterns hold, found by scans that start at a
#: "/" or a month name, not at every digit as those patterns do.
_SLASH_MONTH = re.compile("/(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)")
_MONTH_YEAR = re.compile(rf"{_MONTH}\.?,?[\s-]+{_YEAR}")
#: A month name followed by no letter, as the patterns read one.
_MONTH_NAME = re.compile(_MONTH)
_ZONE_NUMBER = re.compile(r"([+-])(\d{1,2})(?::?(\d{2}))?$")
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _ascii_lower(text: str) -> str:
    """``text`` with ASCII letters lower-cased and nothing else changed."""
    if text.isascii():
        return text.lower()
    # bytes.lower changes ASCII letters only, and UTF-8 encodes every other character in
    # bytes above 127: several times faster than str.translate, to the same text.
    return text.encode("utf-8", "surrogatepass").lower().decode("utf-8", "surrogatepass")


def has_chinese(text: str) -> bool:
    return _CJK.search(text) is not None


@lru_cache(maxsize=256)
def _offset_minutes(zone: str, chinese: bool) -> int | None:
    name = zone.upper()
    if name in _ZONE_OFFSETS:
        return _CHINA_OFFSET if chinese and name == "CST" else _ZONE_OFFSETS[name]
    number = _ZONE_NUMBER.search(name)
    if number is None:
        return None
    minutes = int(number.group(2)) * 60 + int(number.group(3) or 0)
    return -minutes if number.group(1) == "-" else minutes


def _utc_shift(offset: int) -> timedelta:
    """``offset`` minutes as a timedelta to subtract for UTC; ValueError where a fixed zone
    of that offset cannot exist (a day or more either way), as ``timezone()`` raises."""
    shift = _SHIFTS.get(offset)
    if shift is None:
        shift = timezone(timedelta(minutes=offset)).utcoffset(None)
        _SHIFTS[offset] = shift
    return shift


#: UTC offsets by minutes, each checked once (a report names a handful of offsets).
_SHIFTS: dict[int, timedelta] = {}


def _on_24_hour_clock(hour: int, ampm: str | None, cnampm: str | None) -> int:
    """``hour`` as read with its marker: "am"/"pm" (dots allowed), or 下午/晚上/中午."""
    if ampm:
        ampm = ampm.replace(".", "")
        if ampm == "pm" and hour < 12:
            hour += 12
        elif ampm == "am" and hour == 12:
            hour = 0
    if (cnampm in ("下午", "晚上") and hour < 12) or (cnampm == "中午" and hour < 11):
        hour += 12
    return hour


def _moment(match: re.Match[str], text: str, chinese: bool) -> Moment | None:
    # The groups by name as in match.groupdict() (None where a pattern has no such group),
    # taken from the groups tuple at once: a dict of them costs more than the rest.
    y, mo, mon, d, h, mi, s, s2, frac, ampm, cnampm, zone_group = _MOMENT_GROUPS[id(match.re)](
        (*match.groups(), None)
    )
    # int() of the usual digit strings looked up (_NUMBERS: the same numbers), as int()
    # is slow for how often timestamps are read.
    numbers = _NUMBERS
    second_text = s or s2 or 0
    try:
        year = numbers[y] if y in numbers else int(y)
        month = (numbers[mo] if mo in numbers else int(mo)) if mo else _MONTHS[mon[:3]]
        day = numbers[d] if d in numbers else int(d)
        hour = numbers[h] if h in numbers else int(h or 0)
        minute = numbers[mi] if mi in numbers else int(mi or 0)
        second = min(numbers[second_text] if second_text in numbers else int(second_text), 59)
        micro = int(frac[:6].ljust(6, "0")) if frac else 0
    except (KeyError, ValueError):
        return None
    hour = _on_24_hour_clock(hour, ampm, cnampm)
    # The match ran on lower-cased text; the zone is reported as the report wrote it.
    zone = text[match.start("zone") : match.end("zone")] if zone_group else ""
    if zone:
        offset = _offset_minutes(zone, chinese)
    elif _BEIJING in text and (
        _BEIJING_AFTER.match(text, match.end())
        or _BEIJING_BEFORE.search(text, max(0, match.start() - 8), match.start())
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
        # The local time less its offset, in UTC: what astimezone(UTC) gives for a time in
        # a fixed zone (years 1900-2099 cannot overflow), without making the local time.
        shift = _utc_shift(offset)
        at = datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC) - shift
    except ValueError:
        return None
    return _new_moment((at, zone))


def _time_matches(text: str, lowered: str) -> list[Iterable[re.Match[str]]]:
    """``pattern.finditer(lowered)`` for each timestamp pattern that can match ``text`` at
    all (each needs literals, ":" of the time, a month name, "年" …, whose absence a
    substring test or one quick scan shows), in pattern order, found with fewer scans of
    the text.

    The patterns that start with a month name (and ``_MONTH_YEAR``) can only match where
    a month name stands, followed by no letter; one scan finds all those places (two
    cannot overlap: no month name ends with another), and the patterns are tried there
    only. The weekday pattern's weekday is followed by blanks and then such a month
    name, so it can only start three characters before the blanks before one."""
    found: list[Iterable[re.Match[str]]] = []
    if ":" in text:
        if "-" in text or "/" in text:
            found.append(_TIME_PATTERNS[0].finditer(lowered))
        if _MONTH_WORD.search(lowered) is not None:
            months = [match.start() for match in _MONTH_NAME.finditer(lowered)]
            if _SLASH_MONTH.search(lowered) is not None:
                found.append(_web_log_times(lowered))
            if any(_MONTH_YEAR.match(lowered, at) for at in months):
                found.append(_TIME_PATTERNS[2].finditer(lowered))
            found.append(_matches_at(_TIME_PATTERNS[3], lowered, months))
            found.append(_matches_at(_TIME_PATTERNS[4], lowered, _weekday_starts(lowered, months)))
    if "年" in text:
        found.append(_CHINESE_PATTERN.finditer(lowered))
    return found


def _matches_at(
    pattern: re.Pattern[str], text: str, starts: Iterable[int]
) -> Iterator[re.Match[str]]:
    """What ``pattern.finditer(text)`` finds when a match can only start at ``starts``
    (rising): each is tried unless inside the last match, as a search resumes after it."""
    resume = 0
    for start in starts:
        if start >= resume and (match := pattern.match(text, start)) is not None:
            yield match
            resume = match.end()


def _weekday_starts(lowered: str, months: list[int]) -> Iterator[int]:
    """Where a weekday name can start before each month name: three characters before
    the blanks (``\\s``, which is what str.isspace tests) that come right before it."""
    for at in months:
        blanks = at
        while blanks and lowered[blanks - 1].isspace():
            blanks -= 1
        if blanks < at and blanks >= 3:
            yield blanks - 3


def _web_log_times(lowered: str) -> Iterator[re.Match[str]]:
    """What ``_WEB_LOG.finditer(lowered)`` finds, trying the pattern only where a match
    can start: a web-log time is one or two digits, then "/" and a month name, so it
    starts one or two characters before a "/month" that ``_SLASH_MONTH`` finds (these
    never overlap, and come at least four characters apart, so the positions tried
    rise as a search's do), and each search resumes where the last match ended."""
    resume = 0
    for slash in _SLASH_MONTH.finditer(lowered):
        for start in (slash.start() - 2, slash.start() - 1):
            if start >= resume and (match := _WEB_LOG.match(lowered, start)) is not None:
                yield match
                resume = match.end()


def find_times(text: str, *, chinese: bool | None = None) -> list[tuple[int, Moment]]:
    """Every timestamp in ``text`` with where it starts, in order.

    A timestamp without a zone is UTC (zone ""), except in Chinese text (``chinese``,
    by default: the text contains Chinese characters), where Beijing time is assumed and
    ``zone`` says so; ``北京时间`` written next to a time sets +08:00 too.
    """
    if chinese is None:
        chinese = has_chinese(text)
    lowered = _ascii_lower(text)
    spans: list[tuple[int, int, re.Match[str]]] = []
    for matches in _time_matches(text, lowered):
        for m in matches:
            # A timestamp cannot start inside a longer number ("12026-05-01").
            if m.start() == 0 or not lowered[m.start() - 1].isdigit():
                spans.append((m.start(), -m.end(), m))
    if not spans:
        return []
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
    # Not cached: real feeds rarely repeat a time (the benchmark's corpus does).
    if chinese is None:
        chinese = has_chinese(value)
    # Most fields start with their timestamp. Timestamps found where the first one can
    # start come first in ``find_times`` (longest first, then pattern order), so when one
    # of them reads as a time it is the answer and the rest of the value need not be
    # scanned.
    lowered = _ascii_lower(value)
    # No pattern can start inside the "Sun, " of an RFC 5322 date: the first is after it.
    first = 5 if _WEEKDAY_COMMA.match(lowered) else 0
    # Only the patterns that start with what is there are tried, in pattern order.
    at = lowered[first : first + 1]
    starting = _DIGIT_FIRST if at.isdecimal() else _WORD_FIRST if at.isalpha() else ()
    at_start = [m for p in starting if (m := p.match(lowered, first))]
    if len(at_start) > 1:
        at_start.sort(key=lambda m: -m.end())
    for match in at_start:
        moment = _moment(match, value, chinese)
        if moment is not None:
            return moment
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
#: An IPv4 address exactly as ``ipaddress`` accepts it (ASCII digits, octets 0-255, no
#: leading zeros), which is then also its canonical text: checking the text against this
#: is several times cheaper than building an ``IPv4Address`` and printing it back.
_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9][0-9]|[0-9])"
_IPV4_CANONICAL = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_IPV6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
_NOT_BEFORE_IPV4 = frozenset("0123456789.")
#: What the lookbehind of _IPV6_RE refuses before a match.
_NOT_BEFORE_IPV6 = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz:.")
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
    if _IPV4_CANONICAL.fullmatch(text):
        return text
    if ":" not in text:
        return None  # neither IPv4 (checked above) nor IPv6, which has two colons at least
    if len(text) <= _CACHED_ADDRESS_CHARS:
        return _cached_address_text(text)
    return _address_text(text)


def _address_text(text: str) -> str | None:
    try:
        return _canonical(ipaddress.ip_address(text))
    except ValueError:
        return None


#: Addresses ``ipaddress`` reads are remembered (the answer depends on the text alone):
#: it is slow, and the same mail relays and sources come up in report after report.
_CACHED_ADDRESS_CHARS = 100
_cached_address_text = lru_cache(maxsize=4096)(_address_text)


def _canonical(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # An IPv4-mapped IPv6 address (::ffff:192.0.2.1) is the IPv4 host; say it that way so
    # ownership lookups by address find it.
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


#: INTERNAL_NETWORKS as first and last address numbers, by IP version: comparing numbers
#: is much cheaper than ``address in network``, which builds objects on every test.
_INTERNAL_RANGES = {
    version: tuple(
        (int(n.network_address), int(n.broadcast_address))
        for n in INTERNAL_NETWORKS
        if n.version == version
    )
    for version in (4, 6)
}


@lru_cache(maxsize=4096)
def is_internal(ip: str) -> bool:
    # Cached: a mail system's own relays appear in report after report.
    if _IPV4_CANONICAL.fullmatch(ip):
        version, number = 4, int.from_bytes(bytes(int(octet) for octet in ip.split(".")))
    else:
        address = ipaddress.ip_address(ip)
        version, number = address.version, int(address)
    return any(first <= number <= last for first, last in _INTERNAL_RANGES[version])


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
        written = match.group("ip")
        if _IPV4_CANONICAL.fullmatch(written) is None:
            continue
        found.append(_mention(text, match, written))
    if text.count(":") >= 2:
        for match in _ipv6_matches(text):
            candidate = match.group("ip").rstrip(":.")
            colons = candidate.count(":")
            if colons < 2 or not _HEX.search(candidate):
                continue
            if "::" not in candidate and colons + ("." in candidate.rpartition(":")[2]) != 7:
                continue  # without "::" it takes 8 groups (an IPv4 tail is 2), as ipaddress says
            canonical = _ipv6_text(candidate)
            if canonical is not None:
                found.append(_mention(text, match, canonical))
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


@lru_cache(maxsize=4096)
def _ipv6_text(candidate: str) -> str | None:
    """The canonical text of an IPv6 address as written, or None when it is not one.
    Cached: ``ipaddress`` is slow, and reports name the same addresses again and again."""
    try:
        return _canonical(ipaddress.IPv6Address(candidate))
    except ValueError:
        return None


def _ipv6_matches(text: str) -> Iterator[re.Match[str]]:
    """What ``_IPV6_RE.finditer(text)`` finds, without trying the pattern at every
    position: a match holds two colons at most four hex digits apart (``_IPV6_HINT``),
    the first of them at most five characters (a bracket and four hex digits) after the
    match starts, so only the few positions before such a pair need trying."""
    pos = 0
    while (hint := _IPV6_HINT.search(text, pos)) is not None:
        colon = hint.start()
        for start in range(max(pos, colon - 5), colon + 1):
            if start and text[start - 1] in _NOT_BEFORE_IPV6:
                continue  # the pattern's lookbehind fails there, so skip the regex call
            match = _IPV6_RE.match(text, start)
            if match is not None:
                yield match
                pos = match.end()
                break
        else:
            pos = colon + 1


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

# Not after a letter; the test follows the first letter of the scheme so that the pattern
# starts with a literal (see ``_word_pattern``).
_URL_RE = CaselessPattern(
    r"(?:h(?<![a-z]h)(?:ttps?|xxps?)|f(?<![a-z]f)tp)"
    r"://[^\s<>\"'`{}|\\^\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]+"
)
_URL_TAIL = ".,;:!?)]}'\"*"
#: A domain name: labels of letters, digits and inner hyphens, each ending with a dot, then a
#: top-level label, not followed by more of a name. It must not start right after a
#: character that could continue a name, an address or a path ``[0-9A-Za-z@._/-]``; the
#: patterns below say that in a way the regex engine can search quickly.
_DOMAIN = (
    r"(?P<domain>(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"(?:[A-Za-z]{2,24}|xn--[A-Za-z0-9-]{2,59}))"
    r"(?![0-9A-Za-z_-]|\.[A-Za-z0-9])"
)
#: A domain's first label is the whole run of letters, digits and hyphens before its dot
#: (a label cannot end before the dot, since "." must follow it), so the lookahead only
#: states what a match needs anyway: it fails a word without a dot after it in one quick
#: scan, where the label pattern would try every shorter length of the word first.
_FIRST_LABEL = r"(?=[A-Za-z0-9-]++\.)"
#: A domain at the start of the text, where nothing comes before it.
_DOMAIN_AT_START = re.compile(_FIRST_LABEL + _DOMAIN)
#: A domain after a character that may come before one, the character taken by the match.
#: A pattern that starts with a lookbehind makes the engine try every position of the
#: text; one that starts with a character set lets it skip to the characters in the set.
#: The matches are those of "no such character before" (a lookbehind) searched through
#: the text: a search that resumes after a match resumes on the match's last character,
#: a letter, which cannot come before a domain, so no domain starting there is missed.
_DOMAIN_AFTER = re.compile(r"[^0-9A-Za-z@._/-]" + _FIRST_LABEL + _DOMAIN)
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
    # Cached (the answer depends on the URL alone) for URLs of a usual length: the same
    # sites are reported again and again, and urlsplit is slow.
    if len(url) <= _CACHED_URL_CHARS:
        return _cached_url_host(url)
    return _url_host(url)


def _url_host(url: str) -> tuple[str | None, str | None]:
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


_CACHED_URL_CHARS = 500
_cached_url_host = lru_cache(maxsize=4096)(_url_host)


def find_domains(text: str) -> list[tuple[int, int, str]]:
    """Domain names in free text (lower-cased), skipping file names and e-mail addresses."""
    found: list[tuple[int, int, str]] = []
    first = _DOMAIN_AT_START.match(text)
    matches = _DOMAIN_AFTER.finditer(text, 0 if first is None else first.end())
    for match in matches if first is None else itertools.chain((first,), matches):
        written = match.group("domain")
        tld = written.rsplit(".", 1)[1]
        # "Mr.Smith" or "Report.Txt": a capitalised last label is a word, not a TLD.
        if tld.lower() in _NOT_TLDS or (not tld.islower() and not tld.isupper()):
            continue
        domain = written.lower()
        found.append((match.start("domain"), match.end("domain"), domain))
    return found


def same_site(domain: str, other: str) -> bool:
    """Whether two host names share their last two labels (a rough registrable domain)."""
    return domain.split(".")[-2:] == other.split(".")[-2:]


def address_domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


# --- header blocks -----------------------------------------------------------------------

#: The name of a ``Name: value`` line; the value is the rest, without trailing space.
_FIELD_NAME = re.compile(r"([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*")


def header_fields(block: str) -> dict[str, list[str]]:
    """``Name: value`` lines (RFC 5322 style, continuation lines folded in) as lower-cased
    names to their values in order; other lines are skipped."""
    if breaks_only_at_newlines(block):
        return _header_fields_lf(block)
    return _header_fields_by_line(block)


def breaks_only_at_newlines(text: str) -> bool:
    """Whether ``str.splitlines()`` breaks ``text`` only at "\n" (ASCII text without the
    other breaks it knows), so that splitting at "\n" gives the same lines."""
    return text.isascii() and not any(brk in text for brk in _ODD_LINE_BREAKS)


def _header_fields_by_line(block: str) -> dict[str, list[str]]:
    """``header_fields`` line by line, for any line break (the reference of the fast
    reading ``_header_fields_lf``)."""
    fields: dict[str, list[str]] = {}
    last: list[str] | None = None
    for line in block.splitlines():
        if line[:1] in (" ", "\t"):
            if last is not None and line.strip():
                last[-1] = f"{last[-1]} {line.strip()}".strip()
            continue
        match = _FIELD_NAME.match(line)
        if match is None:
            last = None
            continue
        last = fields.setdefault(match.group(1).lower(), [])
        last.append(line[match.end() :].rstrip())
    return fields


#: What str.splitlines() breaks ASCII lines at besides "\n".
_ODD_LINE_BREAKS = ("\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e")
#: A field line of ``header_fields`` with the continuation lines that follow it.
#: It starts with the line break before the line (the text gets one put before it): a
#: pattern anchored at line starts would be tried at every position of the text.
#: (``[^\n]`` is ``.`` without DOTALL, matched faster.)
_FIELD_LINES = re.compile(r"\n([A-Za-z][A-Za-z0-9_-]*)[ \t]*:[ \t]*([^\n]*(?:\n[ \t][^\n]*)*)")


def _header_fields_lf(block: str) -> dict[str, list[str]]:
    """``header_fields`` of ASCII text whose only line break is "\n", in one regex pass:
    a field line is found where the loop finds it (a line start, the same name pattern),
    ``.`` stops only at "\n" there, and the continuation lines a field takes are the
    lines starting with a blank right after it, which the loop would fold into it; a
    continuation line after any other line is dropped by both."""
    fields: dict[str, list[str]] = {}
    for name, value in _FIELD_LINES.findall("\n" + block):
        if "\n" in value:
            first, *more = value.split("\n")
            value = first.rstrip()
            for line in more:
                if line.strip():
                    value = f"{value} {line.strip()}".strip()
        else:
            value = value.rstrip()
        key = name.lower()
        if key in fields:
            fields[key].append(value)
        else:
            fields[key] = [value]
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


def text_head(message: ReportMessage, limit: int) -> str:
    """``message.text()[:limit]`` without copying all of every text part of a large
    report (``score`` looks at the start of every report, most of which are not its
    format)."""
    pieces = [p.content[:limit] for p in message.parts if isinstance(p.content, str)]
    return "\n\n".join(pieces)[:limit]


def lowered_text_head(message: ReportMessage, limit: int) -> str:
    """``text_head(message, limit).lower()``. The parsers' ``score`` each look at the start
    of the same report, so the start of the last report asked about is kept lowered.

    Exact: the first ``limit`` characters of ``text_head(message, _HEAD_CHARS)`` are
    ``text_head(message, limit)`` for a smaller limit (a piece cut at the larger limit
    agrees with its cut at the smaller one up to the smaller limit, and so does the join),
    and lower-casing ASCII text keeps every position, so its lowered start is the start
    lowered. The kept head is used only for the same message with the same parts (the
    parts and their contents cannot change; the list holding them could)."""
    if limit > _HEAD_CHARS:
        return text_head(message, limit).lower()
    parts = tuple(message.parts)
    last = _LAST_HEAD[0]
    if last is None or last.message is not message or last.parts != parts:
        head = text_head(message, _HEAD_CHARS)
        last = _LAST_HEAD[0] = _Head(message, parts, head, head.lower(), head.isascii())
    if limit >= len(last.head):
        return last.lowered
    if last.ascii:
        return last.lowered[:limit]
    return last.head[:limit].lower()


class _Head(NamedTuple):
    message: ReportMessage
    parts: tuple[MessagePart, ...]
    head: str
    lowered: str
    ascii: bool


_HEAD_CHARS = 3000
_LAST_HEAD: list[_Head | None] = [None]


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


_WORD_CHAR = re.compile(r"\w")


def _word_pattern(word: str) -> str:
    """One keyword as a pattern; "=" asks for a word boundary at that end.

    A boundary before a word that starts with a letter is checked just after that letter
    (``v(?<!\\wv)irus`` for ``\\bvirus``: the same test), so that every alternative of a
    pattern starts with a literal, which lets the regex engine pass quickly over text
    that cannot start a keyword instead of trying every alternative at every position.
    """
    stem = word.strip("=")
    if word.startswith("=") and _WORD_CHAR.fullmatch(stem[0]):
        first = re.escape(stem[0])
        core = rf"{first}(?<!\w{first}){re.escape(stem[1:])}"
    else:
        core = ("\\b" if word.startswith("=") else "") + re.escape(stem)
    return core + ("\\b" if word.endswith("=") else "")


def _keyword_words() -> tuple[tuple[str, list[str]], ...]:
    # Words are separated by spaces; |…| holds a phrase with spaces in it.
    return tuple(
        (category, [w.strip("|") for w in re.findall(r"\|[^|]+\||\S+", spec)])
        for category, spec in _CATEGORY_WORDS
    )


def _keyword_categories() -> dict[str, str]:
    categories: dict[str, str] = {}
    for category, words in _keyword_words():
        for word in words:
            # A word must name one category, for ``first_category`` to tell which it is.
            if categories.setdefault(word.strip("="), category) != category:
                raise ValueError(f"the keyword {word!r} names two categories")
    return categories


def _alternatives(words: list[str]) -> str:
    """The keywords' patterns as one alternation that matches what ``"|".join`` of them
    matches, with the alternatives that start with the same character gathered behind
    it (``v(?:irus|…)``): the engine then tries each character once at a position, not
    every keyword. At a position only keywords starting with the character there can
    match, and they are tried in their own order, so the same keyword matches first.
    A keyword whose pattern does not start with its first character (a boundary before
    a non-word character) leaves the alternation as it is."""
    patterns = [_word_pattern(word) for word in words]
    groups: dict[str, list[str]] = {}
    for word, pattern in zip(words, patterns, strict=True):
        first = re.escape(word.strip("=")[0])
        if not pattern.startswith(first):
            return "|".join(patterns)
        groups.setdefault(first, []).append(pattern[len(first) :])
    return "|".join(f"{first}(?:{'|'.join(tails)})" for first, tails in groups.items())


#: (category, pattern), in the order categories are tried. The patterns run on
#: lower-cased text.
_CATEGORY_KEYWORDS = tuple(
    (category, re.compile(_alternatives(words))) for category, words in _keyword_words()
)
#: Every category's keywords in one pattern, in the same order, and the category of each
#: keyword (which is what this pattern matches: boundaries take no characters).
_ANY_KEYWORD = re.compile(_alternatives([w for _, words in _keyword_words() for w in words]))
_KEYWORD_CATEGORY = _keyword_categories()


def category_from_text(text: str) -> str | None:
    """The abuse category the words in ``text`` name (English or Chinese), or None."""
    lowered = text.lower()
    if _ANY_KEYWORD.search(lowered) is None:
        return None
    return next(
        (category for category, pattern in _CATEGORY_KEYWORDS if pattern.search(lowered)), None
    )


def first_category(text: str) -> str | None:
    """The category named first in ``text`` (free text states its complaint before the
    details), ties settled like ``category_from_text``; None when none is named."""
    # The search finds the first position where any keyword starts and there, trying
    # the keywords in table order, the keyword of the earliest category.
    first = _ANY_KEYWORD.search(text.lower())
    return None if first is None else _KEYWORD_CATEGORY[first.group()]


def category_from_vocabulary(term: str, vocabulary: Mapping[str, str]) -> str | None:
    """A feed's own term (``Login-Attack``, ``botnet_drone``) mapped through ``vocabulary``
    (keys lower-case, ``-`` and ``_`` and spaces removed), or None when it has no entry."""
    return vocabulary.get(_VOCABULARY_IGNORED.sub("", term.lower()))


_VOCABULARY_IGNORED = re.compile(r"[-_\s]")


_CATEGORY_SET = frozenset(CATEGORIES)


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
    return made_with(
        ReportEvent,
        {
            "category": category if category in _CATEGORY_SET else "other",
            "ip": ip,
            "port": port,
            "domain": domain,
            "url": url,
            "occurred_at": when.at,
            "zone": when.zone,
            "reporter": reporter,
            "excerpt": excerpt(evidence),
            "extra": extra or {},
        },
    )
