"""Parser for Google Safe Browsing notices to network administrators: flagged URLs on our network.

The notice lists URLs under headings naming the threat (malware, phishing / social
engineering, unwanted software), sometimes with the hosting IP on the same line. A URL
whose host is a name and whose line gives no IP becomes an event with ``ip`` None and the
``domain`` set; the caller resolves it.
"""

from __future__ import annotations

import re

from hostwarden.cases.parsers.base import ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.common import (
    CaselessPattern,
    Moment,
    category_from_text,
    find_ips,
    find_times,
    find_urls,
    lowered_text_head,
    new_event,
    report_time,
    url_host,
)

#: A heading line, e.g. "Malware:", "Phishing (social engineering) URLs:".
_HEADING = re.compile(
    r"^\s*(?P<threat>[A-Za-z][A-Za-z ()/,-]{2,60}?)(?:\s+(?:URLs?|sites?|pages?))?\s*:\s*$"
)
_THREATS = (
    (CaselessPattern("phish|social engineering|deceptive"), "phishing"),
    (CaselessPattern("malware|harmful|malicious"), "malware"),
    (CaselessPattern("unwanted software"), "malware"),
)
_IGNORED_HOSTS = ("google.com", "googleusercontent.com", "transparencyreport.google.com")


class SafeBrowsingParser:
    name = "safebrowsing"

    #: ``score`` is never 1.0 (see ``parsers.choose``).
    certain = None

    def score(self, message: ReportMessage) -> float:
        if "safebrowsing" in message.reporter or "safe-browsing" in message.reporter:
            return 0.95
        subject = message.headers.get("subject", "").lower()
        if "safe browsing" in subject:
            return 0.9
        if "safe browsing" not in lowered_text_head(message, 1000):
            return 0.0
        # Google also sends these from a plain noreply address.
        return 0.9 if message.reporter.endswith("@google.com") else 0.6

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        text = message.text()
        fallback: Moment | None = None
        events: list[ReportEvent] = []
        threat: tuple[str, str] | None = None  # (category, heading as written)
        for line in text.splitlines():
            stripped = line.strip()
            if not stripped:
                continue
            # A heading ends with its colon (the line is stripped): only such lines can be one.
            heading = _HEADING.match(stripped) if stripped.endswith(":") else None
            if heading is not None:
                threat = _threat(heading.group("threat"))
                continue
            if threat is None:
                continue  # not in a list
            urls = find_urls(stripped)
            line_ips = find_ips(stripped)
            if not urls and not line_ips:
                threat = None  # prose ends a list; a link in it is not a flagged URL
                continue
            ips = [m for m in line_ips if not any(u.start <= m.start < u.end for u in urls)]
            times = find_times(stripped, chinese=False)
            if times:
                when = times[0][1]
            else:
                fallback = fallback or report_time(message, notes)
                when = fallback
            category, written = threat
            extra = {"threat": written}
            if not urls:
                for mention in ips:
                    events.append(
                        new_event(
                            category, when, message.reporter, stripped, ip=mention.ip, extra=extra
                        )
                    )
                continue
            for found in urls:
                domain, url_ip = url_host(found.url)
                if domain and domain.endswith(_IGNORED_HOSTS):
                    continue  # Google's own help and transparency-report links
                events.append(
                    new_event(
                        category,
                        when,
                        message.reporter,
                        f"{written}:\n{stripped}",
                        ip=url_ip or (ips[0].ip if ips else None),
                        domain=domain,
                        url=found.url,
                        extra=dict(extra),
                    )
                )
        if not events:
            notes.append("the Safe Browsing notice lists no URL under a threat heading")
        return ParsedReport(parser=self.name, events=events, notes=notes)


def _threat(heading: str) -> tuple[str, str] | None:
    for pattern, category in _THREATS:
        if pattern.search(heading):
            return category, heading.strip()
    found = category_from_text(heading)
    return (found, heading.strip()) if found else None
