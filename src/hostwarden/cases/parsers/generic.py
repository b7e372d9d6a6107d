"""Fallback parser for free-text reports in English or Chinese: every address, URL and domain named.

It reads the subject and the body text only, never the transport headers, so the
reporter's own mail servers (their ``Received:`` lines) do not become events. Every
address is kept, documentation and private ranges included: whether an address is ours
is the caller's decision. A paragraph's own keywords set its events' category, else the
report's (the category named first); a time on the same line or paragraph sets the
event's time, else the report's first time.
Chinese times without a zone are taken as Beijing time and ``zone`` says it was assumed.
"""

from __future__ import annotations

from hostwarden.cases.parsers.base import ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.common import (
    Moment,
    address_domain,
    find_domains,
    find_ips,
    find_times,
    find_urls,
    first_category,
    has_chinese,
    line_excerpt,
    new_event,
    report_time,
    url_host,
)

#: Events kept per report; a report naming more is a list for a person, not a complaint.
MAX_EVENTS = 500
#: Characters of text read; beyond this a report is a log dump, and scanning all of it
#: would hold up intake for seconds.
MAX_TEXT_CHARS = 1_000_000

#: Defanged notation reporters use so that mail clients do not link the address.
_DEFANGED = (("[.]", "."), ("(.)", "."), ("[dot]", "."), ("[:]", ":"), ("[://]", "://"))


class GenericParser:
    name = "generic"

    #: ``score`` is never 1.0 (see ``parsers.choose``).
    certain = None

    def score(self, message: ReportMessage) -> float:
        return 0.01

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        text = f"{message.headers.get('subject', '')}\n{message.text()}".replace("\r\n", "\n")
        if len(text) > MAX_TEXT_CHARS:
            notes.append(
                f"the report text is {len(text)} characters; read the first {MAX_TEXT_CHARS}"
            )
            text = text[:MAX_TEXT_CHARS]
        for written, meant in _DEFANGED:
            if written in text:
                text = text.replace(written, meant)
        times = find_times(text, chinese=has_chinese(text))
        report_category = first_category(text) or "other"
        reporter_site = address_domain(message.reporter)
        fallback: list[Moment] = [times[0][1]] if times else []

        def when_at(position: int) -> Moment:
            # The time on the mention's line, else in its paragraph, else the report's first.
            for start, end in (_span(text, position, "\n"), _span(text, position, "\n\n")):
                for found_at, moment in times:
                    if start <= found_at < end:
                        return moment
            if not fallback:
                fallback.append(report_time(message, notes))
            return fallback[0]

        paragraph_categories: dict[tuple[int, int], str] = {}

        def category_at(position: int) -> str:
            # A paragraph's keywords set its events' category, so read each paragraph once.
            paragraph = _span(text, position, "\n\n")
            if paragraph not in paragraph_categories:
                start, end = paragraph
                paragraph_categories[paragraph] = first_category(text[start:end]) or report_category
            return paragraph_categories[paragraph]

        events: list[ReportEvent] = []
        seen: set[tuple[str | None, str | None, str | None]] = set()

        def add(
            start: int,
            end: int,
            *,
            ip: str | None = None,
            port: int | None = None,
            domain: str | None = None,
            url: str | None = None,
        ) -> None:
            key = (ip, domain, url)  # an address named twice, once with a port, is one event
            if key in seen:
                return
            seen.add(key)
            if len(events) >= MAX_EVENTS:
                return
            events.append(
                new_event(
                    category_at(start),
                    when_at(start),
                    message.reporter,
                    line_excerpt(text, start, end),
                    ip=ip,
                    port=port,
                    domain=domain,
                    url=url,
                )
            )

        urls = find_urls(text)
        spans = [(u.start, u.end) for u in urls]
        url_hosts: set[str] = set()
        for found in urls:
            domain, ip = url_host(found.url)
            if domain:
                url_hosts.add(domain)
            add(found.start, found.end, ip=ip, domain=domain, url=found.url)
        for mention in find_ips(text):
            if not _inside(mention.start, spans):
                add(mention.start, mention.end, ip=mention.ip, port=mention.port)
        for start, end, domain in find_domains(text):
            if _inside(start, spans) or domain in url_hosts or _is_reporters(domain, reporter_site):
                continue
            add(start, end, domain=domain)
        if len(seen) > MAX_EVENTS:
            notes.append(f"the report names {len(seen)} subjects; only the first {MAX_EVENTS} kept")
        if not events:
            notes.append("no IP address, URL or domain found in the report text")
        return ParsedReport(parser=self.name, events=events, notes=notes)


def _span(text: str, position: int, separator: str) -> tuple[int, int]:
    """Start and end of the line (separator "\\n") or paragraph ("\\n\\n") around position."""
    start = text.rfind(separator, 0, position)
    end = text.find(separator, position)
    return (0 if start < 0 else start + len(separator)), (len(text) if end < 0 else end)


def _inside(position: int, spans: list[tuple[int, int]]) -> bool:
    return any(start <= position < end for start, end in spans)


def _is_reporters(domain: str, reporter_site: str) -> bool:
    # The reporter's own domain (signature, "reply to abuse@...") is not what it reports.
    return bool(reporter_site) and (domain == reporter_site or domain.endswith("." + reporter_site))
