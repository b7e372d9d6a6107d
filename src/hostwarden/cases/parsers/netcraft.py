"""Parser for Netcraft takedown notices: phishing, malware and fraud URLs hosted on an address.

A notice's subject reads like ``Netcraft: phishing site hosted on 192.0.2.1 [incident]``;
the body lists the attack URLs, the hosting IP address and when the attack was seen.
Netcraft's own links (incident pages, help) are not attack URLs and are left out.
"""

from __future__ import annotations

import re
from typing import Any

from hostwarden.cases.parsers.base import ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.common import (
    CaselessPattern,
    IpMention,
    LinePattern,
    Moment,
    category_from_text,
    find_ips,
    find_times,
    find_urls,
    line_excerpt,
    lowered_text_head,
    new_event,
    parse_time,
    report_time,
    url_host,
)

_SUBJECT_ID = re.compile(r"\[(?P<id>[A-Za-z0-9][A-Za-z0-9_-]{3,})\]\s*$")
_INCIDENT_LINE = LinePattern(r"\s*(?:Incident|Reference|Ticket)(?: ID)?\s*:\s*(?P<id>\S+)", re.I)
_ATTACK_LINE = LinePattern(r"\s*(?:Attack|Threat|Incident) type\s*:\s*(?P<kind>.+)$", re.I)
_DATE_LINE = LinePattern(
    r"\s*(?:Date|Time|First seen|Detected|Reported|Discovered)[\w ]{0,20}:\s*(?P<when>.+)$",
    re.I,
)
#: Netcraft names a few attack kinds our keyword table does not know.
_EXTRA_KINDS = (
    (
        CaselessPattern(r"fake shop|investment scam|advance[- ]fee|crypto(?:currency)? scam"),
        "fraud",
    ),
    (CaselessPattern(r"skimm|web ?shell|malicious (?:javascript|script|download)"), "malware"),
)


class NetcraftParser:
    name = "netcraft"

    #: ``score`` is never 1.0 (see ``parsers.choose``).
    certain = None

    def score(self, message: ReportMessage) -> float:
        subject = message.headers.get("subject", "")
        if subject.lower().startswith("netcraft"):
            return 0.95
        if "netcraft" in message.reporter:
            return 0.9
        head = lowered_text_head(message, 3000)
        return 0.5 if "netcraft" in head and "incident" in head else 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        text = message.text()
        subject = message.headers.get("subject", "")
        kind = _ATTACK_LINE.search(text)
        category = _category(f"{kind.group('kind') if kind else ''} {subject}") or _category(
            text[:3000]
        )
        if category is None:
            category = "other"
        when = _when(text) or report_time(message, notes)
        extra: dict[str, Any] = {}
        incident = _SUBJECT_ID.search(subject) or _INCIDENT_LINE.search(text)
        if incident is not None:
            extra["incident_id"] = incident.group("id")
        if kind is not None:
            extra["attack_type"] = kind.group("kind").strip()

        urls = [u for u in find_urls(text) if not _is_netcrafts(url_host(u.url)[0])]
        url_spans = [(u.start, u.end) for u in urls]
        ips = [m for m in find_ips(text) if not any(s <= m.start < e for s, e in url_spans)]
        for mention in find_ips(subject):
            if all(m.ip != mention.ip for m in ips):
                ips.append(mention._replace(start=-1, end=-1))
        # One stated address hosts every URL; with several, each URL takes the one on its line.
        hosting = ips[0] if len({m.ip for m in ips}) == 1 else None

        events: list[ReportEvent] = []
        used_ips: set[str] = set()
        for found in urls:
            domain, url_ip = url_host(found.url)
            evidence = [f"Subject: {subject}", line_excerpt(text, found.start, found.end)]
            stated = _ip_on_line(text, found.start, ips) or hosting
            ip = url_ip or (stated.ip if stated else None)
            if stated is not None and stated.start >= 0 and ip == stated.ip:
                evidence.append(line_excerpt(text, stated.start, context=0))
            if ip:
                used_ips.add(ip)
            events.append(
                new_event(
                    category,
                    when,
                    message.reporter,
                    "\n".join(dict.fromkeys(evidence)),
                    ip=ip,
                    domain=domain,
                    url=found.url,
                    extra=dict(extra),
                )
            )
        for mention in ips:
            if mention.ip in used_ips:
                continue
            used_ips.add(mention.ip)
            events.append(
                new_event(
                    category,
                    when,
                    message.reporter,
                    subject if mention.start < 0 else line_excerpt(text, mention.start),
                    ip=mention.ip,
                    port=mention.port,
                    extra=dict(extra),
                )
            )
        if not events:
            notes.append("the Netcraft notice names no attack URL and no IP address")
        return ParsedReport(parser=self.name, events=events, notes=notes)


def _category(text: str) -> str | None:
    for pattern, category in _EXTRA_KINDS:
        if pattern.search(text):
            return category
    return category_from_text(text)


def _when(text: str) -> Moment | None:
    for line in _DATE_LINE.finditer(text):
        moment = parse_time(line.group("when"), chinese=False)
        if moment is not None:
            return moment
    times = find_times(text, chinese=False)
    return times[0][1] if times else None


def _is_netcrafts(domain: str | None) -> bool:
    # Netcraft's incident pages and help links sit on its own domains.
    return domain is not None and "netcraft" in domain


def _ip_on_line(text: str, position: int, ips: list[IpMention]) -> IpMention | None:
    start = text.rfind("\n", 0, position) + 1
    end = text.find("\n", position)
    end = len(text) if end < 0 else end
    for mention in ips:
        if start <= mention.start < end:
            return mention
    return None
