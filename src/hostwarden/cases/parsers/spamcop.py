"""Parser for SpamCop reports: spam sources ("Email from IP / date") and spamvertised web sites.

SpamCop subjects read ``[SpamCop (what) id:NNN]original subject``. A source report has
a line ``Email from 192.0.2.1 / <RFC 5322 date>``; a spamvertised-site report has
``Spamvertised web site: URL`` and usually ``URL is 192.0.2.1; <date>``. The spam follows,
attached as message/rfc822 or quoted after ``[ Offending message ]``.
"""

from __future__ import annotations

import re
from typing import Any

from hostwarden.cases.parsers.base import ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.common import (
    CaselessPattern,
    LinePattern,
    Moment,
    breaks_only_at_newlines,
    line_excerpt,
    new_event,
    normalise_ip,
    parse_time,
    report_time,
    url_host,
)

_SUBJECT = re.compile(r"\[SpamCop \((?P<what>[^)]*)\) id:(?P<id>\d+)\]", re.I)
_EMAIL_FROM = LinePattern(r"[ \t]*Email from (?P<ip>[0-9A-Fa-f:.]+)\s*/\s*(?P<date>.+?)\s*$")
_SPAMVERTISED = LinePattern(r"[ \t]*Spamvertised web site:\s*(?P<url>\S+)", re.I)
_RESOLVED = LinePattern(
    r"[ \t]*(?P<url>\S+://\S+) is (?P<ip>[0-9A-Fa-f:.]+)\s*;\s*(?P<date>.+?)\s*$"
)
_OFFENDING = "[ Offending message ]"
_BANNER = CaselessPattern(r"spamcop v\d")
#: Words in the spam that make a spamvertised site a phishing site rather than an advert.
_PHISHING = CaselessPattern(
    r"phish|verify your (?:account|identity|mailbox)|account (?:will be )?(?:suspended|locked|"
    r"closed)|confirm your (?:password|account|login)|unusual sign-?in"
)


class SpamCopParser:
    name = "spamcop"

    def certain(self, message: ReportMessage) -> bool:
        """Whether ``score`` is 1.0 (see ``parsers.choose``)."""
        return _SUBJECT.search(message.headers.get("subject", "")) is not None

    def score(self, message: ReportMessage) -> float:
        if _SUBJECT.search(message.headers.get("subject", "")):
            return 1.0
        if message.reporter.endswith("spamcop.net"):
            return 0.9
        first = next((p.content for p in message.parts if isinstance(p.content, str)), "")
        if _BANNER.search(first[:500]) and (
            _EMAIL_FROM.search(first[:3000]) or _SPAMVERTISED.search(first[:3000])
        ):
            return 0.9
        return 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        report_text, spam = _split(message)
        subject = _SUBJECT.search(message.headers.get("subject", ""))
        common_extra: dict[str, Any] = {}
        if subject is not None:
            common_extra["spamcop_id"] = subject.group("id")
        events: list[ReportEvent] = []
        fallback: Moment | None = None

        for match in _EMAIL_FROM.finditer(report_text):
            ip = normalise_ip(match.group("ip"))
            if ip is None:
                notes.append(f"'Email from' names {match.group('ip')!r}, not an IP address")
                continue
            when = parse_time(match.group("date"), chinese=False)
            if when is None:
                fallback = fallback or report_time(message, notes)
                when = fallback
            evidence = line_excerpt(report_text, match.start(), match.end())
            hop = _received_line(spam, ip)
            events.append(
                new_event(
                    "spam",
                    when,
                    message.reporter,
                    f"{evidence}\n{hop}" if hop else evidence,
                    ip=ip,
                    extra=dict(common_extra),
                )
            )

        category = "phishing" if _PHISHING.search(spam) else "spam"
        resolved = {m.group("url"): m for m in _RESOLVED.finditer(report_text)}
        for match in _SPAMVERTISED.finditer(report_text):
            url = match.group("url")
            domain, url_ip = url_host(url)
            found = resolved.get(url)
            ip = normalise_ip(found.group("ip")) if found else url_ip
            when = parse_time(found.group("date"), chinese=False) if found else None
            if when is None:
                fallback = fallback or report_time(message, notes)
                when = fallback
            evidence = line_excerpt(report_text, match.start(), match.end())
            if found is not None:
                evidence += "\n" + found.group(0).strip()
            events.append(
                new_event(
                    category,
                    when,
                    message.reporter,
                    evidence,
                    ip=ip,
                    domain=domain,
                    url=url,
                    extra={**common_extra, "spamvertised": True},
                )
            )
        if not events:
            notes.append("the SpamCop report has no 'Email from' or 'Spamvertised web site' line")
        return ParsedReport(parser=self.name, events=events, notes=notes)


def _split(message: ReportMessage) -> tuple[str, str]:
    """(SpamCop's own text, the spam), the spam from an attached message or from what
    follows the ``[ Offending message ]`` marker."""
    report = ""
    spam = ""
    for part in message.parts:
        if not isinstance(part.content, str):
            continue
        if part.content_type == "message/rfc822":
            spam = spam or part.content
        elif not report:
            report = part.content
    marker = report.find(_OFFENDING)
    if marker >= 0:
        spam = spam or report[marker + len(_OFFENDING) :]
        report = report[:marker]
    return report, spam


_LINES_READ = 200


def _received_line(spam: str, ip: str) -> str:
    """The Received header of the spam that names ``ip``, as corroboration."""
    if breaks_only_at_newlines(spam):
        # Only "\n" breaks lines here, so the first 200 pieces of a split at it are the
        # first 200 lines (and an empty piece after a last line end matches nothing),
        # without splitting all of a long spam.
        lines = spam.split("\n", _LINES_READ)[:_LINES_READ]
    else:
        lines = spam.splitlines()[:_LINES_READ]
    for line in lines:
        if ip in line and line.lower().startswith("received:"):
            return line.strip()
    return ""
