"""Parser for Spamhaus listing notices (SBL, XBL, CSS, DROP): one event per listed address or range.

A notice names the listing (``SBL123456``), the listed address or CIDR range and the
reason (snowshoe spam, botnet C&C, phishing …). A range's event carries its first
address as ``ip`` (what ownership lookups take) and the range itself in
``extra["range"]``.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from hostwarden.cases.parsers.base import ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.common import (
    CaselessPattern,
    LinePattern,
    Moment,
    find_ips,
    find_times,
    find_urls,
    line_excerpt,
    lowered_text_head,
    new_event,
    parse_time,
    report_time,
)

_LISTING = re.compile(r"\b(?P<list>SBL|XBL|CSS|EDROP|DROP|PBL)(?P<number>\d{2,})?\b")
_PREFIX = re.compile(r"/(?P<length>\d{1,3})(?!\d)")
_REASON_LINE = LinePattern(r"\s*(?:Reason|Listing reason|Description)\s*:\s*(?P<reason>.+)$", re.I)
_DATE_LINE = LinePattern(
    r"\s*(?:Date|Listed on|Date listed|Listing date)[\w ]{0,12}:\s*(?P<when>.+)$", re.I
)
#: Reason words to categories, in order: a "spam-sending botnet controller" is malware.
_REASONS = (
    (CaselessPattern(r"c&c|c2\b|controller|command and control|botnet|bot\b"), "malware"),
    (CaselessPattern("phish"), "phishing"),
    (CaselessPattern("malware|trojan|infected|exploit|ransom"), "malware"),
    (CaselessPattern("snowshoe|spam|bulk|e-?mail"), "spam"),
    (CaselessPattern("fraud|scam"), "fraud"),
)
#: What a listing on each list means when the notice gives no reason.
_LIST_DEFAULTS = {
    "SBL": "spam",
    "CSS": "spam",
    "XBL": "malware",
    "DROP": "other",
    "EDROP": "other",
    "PBL": "other",
}


class SpamhausParser:
    name = "spamhaus"

    def certain(self, message: ReportMessage) -> bool:
        """Whether ``score`` is 1.0 (see ``parsers.choose``)."""
        subject = message.headers.get("subject", "")
        return _from_spamhaus(message, subject) and _LISTING.search(subject) is not None

    def score(self, message: ReportMessage) -> float:
        subject = message.headers.get("subject", "")
        spamhaus = _from_spamhaus(message, subject)
        listed = _LISTING.search(subject) is not None
        if spamhaus and listed:
            return 1.0
        if spamhaus:
            return 0.9
        if not listed:
            return 0.0
        return 0.6 if "spamhaus" in lowered_text_head(message, 3000) else 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        subject = message.headers.get("subject", "")
        text = message.text()
        # The subject goes last so that an address's evidence is its body line when it has one.
        whole = f"{text}\n{subject}"
        found = list(_LISTING.finditer(whole))
        listings = list(dict.fromkeys(m.group(0) for m in found if m.group("number")))
        lists = list(dict.fromkeys(m.group("list") for m in found))
        reason_line = _REASON_LINE.search(text)
        reason = reason_line.group("reason").strip() if reason_line else subject
        category = _category(reason, lists)
        when = _when(text) or report_time(message, notes)

        url_spans = [(u.start, u.end) for u in find_urls(whole)]
        events: list[ReportEvent] = []
        seen: set[str] = set()
        for mention in find_ips(whole):
            if any(start <= mention.start < end for start, end in url_spans):
                continue
            network = _network(whole, mention.ip, mention.end)
            if network is None:
                notes.append(f"{mention.ip}: the prefix length after it is not valid")
                continue
            key = str(network)
            if key in seen:
                continue
            seen.add(key)
            extra: dict[str, Any] = {"listings": listings, "lists": lists, "reason": reason}
            if network.num_addresses > 1:
                extra["range"] = key
            evidence = line_excerpt(whole, mention.start)
            if reason_line and reason_line.group(0).strip() not in evidence:
                evidence += "\n" + reason_line.group(0).strip()
            events.append(
                new_event(
                    category,
                    when,
                    message.reporter,
                    evidence,
                    ip=str(network.network_address),
                    extra=extra,
                )
            )
        if not events:
            notes.append("the Spamhaus notice names no listed address or range")
        return ParsedReport(parser=self.name, events=events, notes=notes)


def _network(text: str, ip: str, end: int) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    prefix = _PREFIX.match(text, end)
    try:
        if prefix is None:
            return ipaddress.ip_network(ip)
        return ipaddress.ip_network(f"{ip}/{prefix.group('length')}", strict=False)
    except ValueError:
        return None


def _category(reason: str, lists: list[str]) -> str:
    for pattern, category in _REASONS:
        if pattern.search(reason):
            return category
    for name in lists:
        if name in _LIST_DEFAULTS:
            return _LIST_DEFAULTS[name]
    return "other"


def _when(text: str) -> Moment | None:
    for line in _DATE_LINE.finditer(text):
        moment = parse_time(line.group("when"), chinese=False)
        if moment is not None:
            return moment
    times = find_times(text, chinese=False)
    return times[0][1] if times else None


def _from_spamhaus(message: ReportMessage, subject: str) -> bool:
    return "spamhaus" in message.reporter or "spamhaus" in subject.lower()
