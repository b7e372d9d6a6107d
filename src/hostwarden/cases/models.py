"""Tables of the abuse desk: reports as received, the events they hold, cases, the case
timeline, playbooks, allowlists and the outgoing mail queue."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hostwarden.core.db import Base, UtcDateTime
from hostwarden.core.timeutil import utcnow

#: Where a report came in.
CHANNELS = ("smtp", "lmtp", "imap", "api", "form", "import", "detection")
#: parsed: gave events; unparsed: no parser found an event, queued for a person;
#: ignored: its reporter is on the allowlist as ignored; duplicate: the same bytes again.
REPORT_STATUSES = ("parsed", "unparsed", "ignored", "duplicate", "reviewed")
#: grouped: in a case; unresolved: nobody held the address then (queued with the reason);
#: allowlisted: recorded, no case (address or reporter allowlist); duplicate: dropped.
EVENT_STATUSES = ("grouped", "unresolved", "allowlisted", "logged", "resolved-by-hand")
CASE_STATES = (
    "new",
    "notified",
    "awaiting_response",
    "resolved",
    "escalated",
    "suspended",
    "terminated",
    "ignored",
)
#: States in which a case takes new events; the others reopen (or, terminated, open anew).
OPEN_STATES = ("new", "notified", "awaiting_response", "escalated", "suspended")
#: Open states still waiting on the customer: a playbook's threshold escalates them, and
#: idle ones close by themselves.
AWAITING_STATES = ("new", "notified", "awaiting_response")
#: Timeline entries. ``note`` is internal and never sent.
ENTRY_KINDS = (
    "event",
    "note",
    "to-customer",
    "to-reporter",
    "customer-reply",
    "state",
    "action",
    "authority",
)


class RawReport(Base):
    """Bytes exactly as received (a report, or a file a customer attached), under their
    SHA-256: the first piece of evidence (cases/rawstore.py)."""

    __tablename__ = "abuse_raw"

    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(Integer)
    data: Mapped[bytes] = mapped_column(LargeBinary)
    stored_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AbuseReport(Base):
    """A report as it arrived; its bytes are in ``abuse_raw`` under ``sha256``."""

    __tablename__ = "abuse_reports"
    __table_args__ = (Index("ix_abuse_reports_status_received", "status", "received_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    reporter: Mapped[str] = mapped_column(String(320), index=True)
    subject: Mapped[str] = mapped_column(String(500), default="")
    message_id: Mapped[str] = mapped_column(String(500), default="")
    parser: Mapped[str] = mapped_column(String(64), default="")
    status: Mapped[str] = mapped_column(String(16))
    events: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    #: JSON lists: the parser's notes and the reader's warnings.
    notes: Mapped[str] = mapped_column(Text, default="[]")
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    reviewed_by: Mapped[str] = mapped_column(String(200), default="")
    review_note: Mapped[str] = mapped_column(Text, default="")


class AbuseCase(Base):
    """Events of one customer, subject (address or domain) and category."""

    __tablename__ = "abuse_cases"
    __table_args__ = (
        # Grouping reads the cases of a batch's subjects (before it knows their customers),
        # then takes the newest of each customer, subject and category.
        Index("ix_abuse_cases_subject", "subject_key", "customer_id", "category"),
        Index("ix_abuse_cases_state_opened", "state", "opened_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    reference: Mapped[str] = mapped_column(String(32), unique=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), nullable=True)
    category: Mapped[str] = mapped_column(String(32))
    #: The address as the registry's 32-hex key, or ``d:`` + the lower-case domain.
    subject_key: Mapped[str] = mapped_column(String(300))
    #: As a person reads it: the address or the domain.
    subject: Mapped[str] = mapped_column(String(300))
    state: Mapped[str] = mapped_column(String(24), default="new")
    events: Mapped[int] = mapped_column(Integer, default=0)
    duplicates: Mapped[int] = mapped_column(Integer, default=0)
    first_event_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_event_at: Mapped[datetime] = mapped_column(UtcDateTime)
    opened_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    state_changed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: Last time anything happened (an event, an action, a reply): idle closing reads it.
    activity_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: The customer's deadline, set when notified (the playbook's hours).
    deadline_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: SLA: the first action by the desk (notify, escalate, ignore, resolve), and the
    #: moment the abuse was stopped (resolved, suspended or terminated).
    first_action_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    mitigated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    close_reason: Mapped[str] = mapped_column(Text, default="")
    #: "Report to authorities" decision, when the playbook asks for one.
    authority_required: Mapped[bool] = mapped_column(Boolean, default=False)
    authority_decided_by: Mapped[str] = mapped_column(String(200), default="")
    authority_decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    authority_reported: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    authority_to: Mapped[str] = mapped_column(String(300), default="")
    authority_reference: Mapped[str] = mapped_column(String(200), default="")
    #: SHA-256 of the customer's response-page token (the token itself is only mailed).
    response_token_sha256: Mapped[str] = mapped_column(String(64), default="", index=True)
    customer_locale: Mapped[str] = mapped_column(String(8), default="zh-CN")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class AbuseEvent(Base):
    """One thing a report (or a detection) says happened."""

    __tablename__ = "abuse_events"
    __table_args__ = (Index("ix_abuse_events_status_time", "status", "occurred_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("abuse_reports.id"), nullable=True, index=True
    )
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("abuse_cases.id"), nullable=True, index=True
    )
    #: SHA-256 of (source, category, subject, port, url, time, excerpt): the same event
    #: sent again (a re-sent report, a feed repeating itself) is dropped and counted.
    fingerprint: Mapped[str] = mapped_column(String(64), unique=True)
    source: Mapped[str] = mapped_column(String(320))
    category: Mapped[str] = mapped_column(String(32))
    ip: Mapped[str | None] = mapped_column(String(64), nullable=True)
    ip_key: Mapped[str | None] = mapped_column(String(32), nullable=True, index=True)
    port: Mapped[int | None] = mapped_column(Integer, nullable=True)
    domain: Mapped[str | None] = mapped_column(String(255), nullable=True)
    url: Mapped[str | None] = mapped_column(Text, nullable=True)
    occurred_at: Mapped[datetime] = mapped_column(UtcDateTime)
    zone: Mapped[str] = mapped_column(String(32), default="")
    excerpt: Mapped[str] = mapped_column(Text, default="")
    extra: Mapped[str] = mapped_column(Text, default="{}")
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), nullable=True)
    status: Mapped[str] = mapped_column(String(20))
    #: Why the event is in the unresolvable queue or on the allowlist.
    reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class CaseEntry(Base):
    """One line of a case's timeline. ``note`` entries are internal; ``to-customer`` and
    ``to-reporter`` were sent (or queued) to that party; ``customer-reply`` came back."""

    __tablename__ = "abuse_case_entries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int] = mapped_column(ForeignKey("abuse_cases.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    author: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text, default="")
    #: JSON: event id, mail id, attachments [{name, sha256, size}], state from/to …
    data: Mapped[str] = mapped_column(Text, default="{}")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Playbook(Base):
    """How the desk handles one category; a category without a row uses the defaults in
    cases/playbooks.py."""

    __tablename__ = "abuse_playbooks"

    category: Mapped[str] = mapped_column(String(32), primary_key=True)
    deadline_hours: Mapped[int] = mapped_column(Integer)
    escalate_after_events: Mapped[int] = mapped_column(Integer)
    #: none | suspend: what escalation does by itself.
    escalation_action: Mapped[str] = mapped_column(String(16))
    authority_decision: Mapped[bool] = mapped_column(Boolean)
    #: Notify the customer as soon as the case opens.
    auto_notify: Mapped[bool] = mapped_column(Boolean)
    updated_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class AllowlistEntry(Base):
    """A reporter whose reports are ignored or only logged, or an address range whose
    events are recorded without opening a case (the provider's scanners, honeypots)."""

    __tablename__ = "abuse_allowlist"
    __table_args__ = (Index("ix_abuse_allowlist_active", "removed_at", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: reporter | address
    kind: Mapped[str] = mapped_column(String(16))
    #: The reporter's address (lower case) or ``@domain``, or the CIDR.
    value: Mapped[str] = mapped_column(String(320))
    first_key: Mapped[str] = mapped_column(String(32), default="")
    last_key: Mapped[str] = mapped_column(String(32), default="")
    #: reporter: ignore | log | no-ack (cases as usual, no acknowledgement mail).
    #: address: record.
    mode: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str] = mapped_column(Text)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    removed_by: Mapped[str] = mapped_column(String(200), default="")


class OutgoingMail(Base):
    """A message for the SMTP relay, written in the transaction that decided to send it;
    the mail job sends it and retries with back-off until ``[mail] max_attempts``."""

    __tablename__ = "mail_outbox"
    __table_args__ = (Index("ix_mail_outbox_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    case_id: Mapped[int | None] = mapped_column(
        ForeignKey("abuse_cases.id"), nullable=True, index=True
    )
    recipient: Mapped[str] = mapped_column(String(320))
    subject: Mapped[str] = mapped_column(String(500))
    #: The whole RFC 5322 message as sent (Message-ID included).
    message: Mapped[str] = mapped_column(Text)
    #: pending | sent | failed
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
