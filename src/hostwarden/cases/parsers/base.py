"""The abuse-report parser protocol and what a parser returns: events.

A parser is a plugin (entry-point group ``hostwarden.report_parsers``; the built-ins
register through the same group). Each gets the raw message already read into a
``ReportMessage`` (headers decoded, every MIME part with its charset applied) and
answers how sure it is that the report is its format (``score``); the highest score
above zero parses. The generic free-text parser always answers with a low score, so a
report nobody recognises still yields the addresses it mentions; a report with no event
at all is kept and queued for a person by the caller, never dropped.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol, TypeVar, runtime_checkable

#: Categories of abuse (playbooks are per category). Parsers map their feed's own
#: vocabulary to these; anything else is ``other``.
CATEGORIES = (
    "spam",
    "phishing",
    "malware",
    "ddos",
    "scanning",
    "bruteforce",
    "copyright",
    "fraud",
    "gambling",
    "illegal-content",
    "data-leak",
    "unfiled-site",
    "other",
)

#: Longest evidence excerpt kept per event (characters).
EXCERPT_CHARS = 2000


@dataclass(frozen=True)
class MessagePart:
    """One leaf MIME part: its content type, file name, and content (text parts decoded
    to ``str`` with their declared charset, or GB18030 / UTF-8 guessed; others bytes)."""

    content_type: str
    filename: str | None
    content: str | bytes


@dataclass(frozen=True)
class ReportMessage:
    """A report as parsers see it. ``raw`` is the message exactly as received."""

    raw: bytes
    #: Header names lower-cased; values decoded (RFC 2047), first occurrence wins.
    headers: dict[str, str]
    #: The top-level content type, e.g. ``multipart/report; report-type=feedback-report``.
    content_type: str
    parts: list[MessagePart]
    #: The reporter: the address in From (lower-cased), or what the API/form gave.
    reporter: str
    #: Problems met while reading (bad charset, oversize part skipped …), for the record.
    warnings: list[str] = field(default_factory=list)

    def text(self) -> str:
        """Every text part joined, the plain ones first."""
        plain = [p.content for p in self.parts if isinstance(p.content, str)]
        return "\n\n".join(plain)


@dataclass(frozen=True)
class ReportEvent:
    """One thing a report says happened: an address (or domain/URL) did something at a time."""

    category: str
    #: The address the report is about (text, IPv4 or IPv6); None when only a domain/URL.
    ip: str | None
    port: int | None
    domain: str | None
    url: str | None
    #: When it happened, zone-aware (UTC if the report gave no zone; see ``zone``).
    occurred_at: datetime
    #: The zone as the report wrote it ("+0800", "CST", "UTC"), or "" when none was given
    #: and UTC was assumed.
    zone: str
    reporter: str
    #: The lines of the report that say so, at most EXCERPT_CHARS.
    excerpt: str
    #: Anything else the format carries (feed name, ASN, protocol …), JSON-serialisable.
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class ParsedReport:
    parser: str
    events: list[ReportEvent]
    #: Why parts of the report gave no event (e.g. "row 7: no IP address"), for the person.
    notes: list[str] = field(default_factory=list)


_Frozen = TypeVar("_Frozen", MessagePart, ReportMessage, ReportEvent)


#: The fields of each class ``made_with`` builds.
_FIELD_NAMES = {
    cls: {f.name: None for f in dataclasses.fields(cls)}.keys()
    for cls in (MessagePart, ReportMessage, ReportEvent)
}


def made_with(cls: type[_Frozen], fields: dict[str, Any]) -> _Frozen:
    """``cls(**fields)`` for the frozen dataclasses above, in one step; ``fields`` names
    every field, in the order the class declares them.

    The ``__init__`` of a frozen dataclass sets each field through
    ``object.__setattr__``, which is a large part of reading a report when a message, its
    parts and its events are made by the thousand. The instance it makes holds nothing but
    its fields in its ``__dict__``, in declaration order (none of these classes has a
    ``__post_init__``), so giving it that dict at once makes the same object."""
    if fields.keys() != _FIELD_NAMES[cls]:
        return cls(**fields)  # a field left to its default: the class's own constructor
    made = object.__new__(cls)
    object.__setattr__(made, "__dict__", fields)
    return made


@runtime_checkable
class ReportParser(Protocol):
    name: str

    def score(self, message: ReportMessage) -> float:
        """0: not mine; 1: certainly mine; the generic parser answers 0.01."""
        ...

    def parse(self, message: ReportMessage) -> ParsedReport: ...
