"""Parser for ARF feedback-loop reports (RFC 5965) and the older variants mailbox providers send.

An RFC 5965 report is ``multipart/report; report-type=feedback-report`` with a human part,
a ``message/feedback-report`` part of ``Name: value`` fields and the original message
(``message/rfc822`` or just its headers as ``text/rfc822-headers``). Older feedback loops
(Microsoft JMRP, AOL-style) send the fields as ``text/plain`` or leave them out; then the
source is the first external ``Received:`` hop of the included original.
"""

from __future__ import annotations

import re
from typing import Any

from hostwarden.cases.parsers.base import MessagePart, ParsedReport, ReportMessage
from hostwarden.cases.parsers.common import (
    CaselessPattern,
    LinePattern,
    Moment,
    header_fields,
    header_section,
    new_event,
    normalise_ip,
    parse_time,
    received_sender_ip,
    report_time,
    url_host,
)

_FEEDBACK_TYPES = {
    "abuse": "spam",
    "fraud": "fraud",
    "virus": "malware",
    "other": "other",
    "not-spam": "other",
    "auth-failure": "other",
    "dkim": "other",
}
_FEEDBACK_LINE = LinePattern(r"Feedback-Type:[ \t]*\S", re.I)
_PHISHING = CaselessPattern("phish")
#: Senders of feedback-loop reports that predate or bend RFC 5965.
_LEGACY_SENDERS = (
    "hotmail.com",
    "outlook.com",
    "microsoft.com",
    "aol.net",
    "aol.com",
    "yahoo.com",
    "yahoo-inc.com",
    "comcast.net",
)
_LEGACY_SUBJECT = CaselessPattern(r"complaint about message|abuse report|\bfbl\b|feedback loop")
_LEGACY_TEXT = CaselessPattern(r"(?:e-?mail|spam) (?:abuse )?(?:report|complaint)")
_ORIGINAL_TYPES = ("message/rfc822", "text/rfc822-headers")
_ORIGINAL_FIELDS = ("subject", "from", "date", "message-id")


class ArfParser:
    name = "arf"

    def certain(self, message: ReportMessage) -> bool:
        """Whether ``score`` is 1.0 (see ``parsers.choose``)."""
        content_type = message.content_type.lower()
        return "multipart/report" in content_type and "feedback-report" in content_type

    def score(self, message: ReportMessage) -> float:
        content_type = message.content_type.lower()
        if "multipart/report" in content_type and "feedback-report" in content_type:
            return 1.0
        part_types = {p.content_type for p in message.parts}
        if "message/feedback-report" in part_types:
            return 0.95
        if part_types.isdisjoint(_ORIGINAL_TYPES):
            return 0.0
        if _feedback_part(message) is not None:
            return 0.9
        human = _human_text(message, None)[:2000]
        if (
            message.reporter.endswith(_LEGACY_SENDERS)
            or _LEGACY_SUBJECT.search(message.headers.get("subject", ""))
            or _LEGACY_TEXT.search(human)
        ):
            return 0.7
        return 0.0

    def parse(self, message: ReportMessage) -> ParsedReport:
        notes: list[str] = []
        feedback = _feedback_part(message)
        feedback_text = feedback.content if feedback and isinstance(feedback.content, str) else ""
        fields = header_fields(feedback_text)
        # Each field's first value, read once: most fields are looked at more than once.
        first = {name: values[0].strip() for name, values in fields.items()}
        original = next((p.content for p in message.parts if p.content_type in _ORIGINAL_TYPES), "")
        original_text = original if isinstance(original, str) else ""
        original_headers = header_fields(header_section(original_text))
        human = _human_text(message, feedback)

        def field(name: str) -> str:
            return first.get(name, "")

        evidence = [feedback_text.strip() or human.strip()[:600]]
        ip, source = self._source(field("source-ip"), original_headers, notes, evidence)

        url = next((u.strip("<> ") for u in fields.get("reported-uri", []) if "://" in u), None)
        domain = field("reported-domain").lower() or None
        if url and domain is None:
            domain = url_host(url)[0]
        if ip is None and domain is None and url is None:
            notes.append(
                "the feedback report has no Source-IP, no external Received header in the "
                "original and no Reported-Domain or Reported-URI; nothing to attribute"
            )
            return ParsedReport(parser=self.name, events=[], notes=notes)

        feedback_type = field("feedback-type").lower()
        # A feedback loop report without a type is a recipient's "this is spam" click.
        category = _FEEDBACK_TYPES.get(feedback_type, "other") if feedback_type else "spam"
        if _PHISHING.search(f"{feedback_type} {human} {message.headers.get('subject', '')}"):
            category = "phishing"

        when = self._when(field("arrival-date") or field("received-date"), original_headers)
        if when is None:
            when = report_time(message, notes)

        for name in _ORIGINAL_FIELDS:
            if original_headers.get(name):
                evidence.append(f"{name.title()}: {original_headers[name][0]}")
        extra: dict[str, Any] = {"ip_source": source}
        for name in (
            "feedback-type",
            "user-agent",
            "version",
            "original-mail-from",
            "original-rcpt-to",
            "reporting-mta",
            "incidents",
            "authentication-results",
        ):
            if field(name):
                extra[name.replace("-", "_")] = field(name)
        for name in _ORIGINAL_FIELDS:
            if original_headers.get(name):
                extra[f"original_{name.replace('-', '_')}"] = original_headers[name][0]
        event = new_event(
            category,
            when,
            message.reporter,
            "\n".join(e for e in evidence if e),
            ip=ip,
            domain=domain,
            url=url,
            extra=extra,
        )
        return ParsedReport(parser=self.name, events=[event], notes=notes)

    @staticmethod
    def _source(
        declared: str,
        original_headers: dict[str, list[str]],
        notes: list[str],
        evidence: list[str],
    ) -> tuple[str | None, str]:
        if declared:
            ip = normalise_ip(declared)
            if ip is not None:
                return ip, "Source-IP"
            notes.append(f"Source-IP {declared!r} is not an IP address; used Received headers")
        hop = received_sender_ip(original_headers.get("received", []))
        if hop is None:
            return None, ""
        evidence.append(f"Received: {hop[1]}")
        return hop[0], "Received"

    @staticmethod
    def _when(arrival: str, original_headers: dict[str, list[str]]) -> Moment | None:
        if arrival:
            moment = parse_time(arrival, chinese=False)
            if moment is not None:
                return moment
        date = (original_headers.get("date") or [""])[0]
        return parse_time(date, chinese=False) if date else None


def _feedback_part(message: ReportMessage) -> MessagePart | None:
    """The part holding the feedback fields: the RFC 5965 one, or a text part that
    carries them (older feedback loops)."""
    for part in message.parts:
        if part.content_type == "message/feedback-report":
            return part
    for part in message.parts:
        if (
            part.content_type == "text/plain"
            and isinstance(part.content, str)
            and _FEEDBACK_LINE.search(part.content[:4000])
        ):
            return part
    return None


def _human_text(message: ReportMessage, feedback: MessagePart | None) -> str:
    for part in message.parts:
        if part is not feedback and part.content_type == "text/plain":
            return part.content if isinstance(part.content, str) else ""
    return ""
