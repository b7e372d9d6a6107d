"""Messages of the abuse desk: the customer notice with its response link, messages to the
customer and the reporter, acknowledgements, and the outbox that sends them through the
configured SMTP relay with retries."""

from __future__ import annotations

import re
import smtplib
from dataclasses import dataclass
from datetime import datetime, timedelta
from email import message_from_string, policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from sqlalchemy import select

from hostwarden.cases.models import AbuseCase, AbuseEvent, AbuseReport, OutgoingMail
from hostwarden.cases.playbooks import CATEGORY_LABELS, all_playbooks
from hostwarden.cases.service import _change_state, _entry, get_case, new_response_token
from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Actor, Operation, Runtime, new_request_id
from hostwarden.core.timeutil import as_utc, doubling_backoff, utcnow
from hostwarden.errors import Conflict, ValidationFailed
from hostwarden.registry.models import Customer, Instance

log = get_logger("hostwarden.cases.notify")

TEMPLATES = Path(__file__).resolve().parent / "templates"
LOCALES = ("en", "zh-CN")
#: Events quoted in a customer notice (the newest ones).
NOTICE_EVENTS = 5
#: Longest wait between retries of one message.
MAX_BACKOFF_SECONDS = 6 * 3600
_CJK = re.compile(r"[\u4e00-\u9fff]")

# Autoescape is off on purpose: these are text/plain mails, not HTML.
_env = Environment(  # noqa: S701
    loader=FileSystemLoader(str(TEMPLATES)),
    undefined=StrictUndefined,
    keep_trailing_newline=True,
    trim_blocks=True,
)


def _check_locale(locale: str) -> str:
    if locale not in LOCALES:
        raise ValidationFailed(
            f"{locale!r} is not a language of notifications.", hint="Use en or zh-CN."
        )
    return locale


def render(name: str, locale: str, **values: Any) -> tuple[str, str]:
    """(subject, body) of template ``name`` in ``locale``."""
    text = _env.get_template(f"{name}.{_check_locale(locale)}.txt").render(**values)
    first, _, body = text.partition("\n")
    return first.removeprefix("Subject:").strip(), body.lstrip("\n")


def _zone_text(moment: datetime, locale: str) -> str:
    # Customers in China read Beijing time; the UTC moment stays beside it.
    utc = as_utc(moment)
    if locale == "zh-CN":
        beijing = utc + timedelta(hours=8)
        return f"{beijing:%Y-%m-%d %H:%M} 北京时间 ({utc:%Y-%m-%d %H:%M} UTC)"
    return f"{utc:%Y-%m-%d %H:%M} UTC"


def _queue(
    op: Operation,
    case: AbuseCase | None,
    recipient: str,
    subject: str,
    body: str,
) -> OutgoingMail:
    settings = op.runtime.settings.mail
    message = EmailMessage()
    message["From"] = settings.from_address
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=settings.from_address.rsplit("@", 1)[-1])
    if case is not None:
        message["X-Hostwarden-Case"] = case.reference
    message.set_content(body, charset="utf-8")
    row = OutgoingMail(
        case_id=case.id if case is not None else None,
        recipient=recipient,
        subject=subject[:500],
        message=message.as_string(policy=policy.SMTP),
        status="pending",
        next_attempt_at=utcnow(),
        created_at=utcnow(),
    )
    op.session.add(row)
    op.session.flush()
    return row


def _customer_mail(op: Operation, case: AbuseCase) -> tuple[Customer, str]:
    customer = op.session.get(Customer, case.customer_id)
    assert customer is not None
    _, address = parseaddr(customer.email or "")
    if "@" not in address:
        raise Conflict(
            f"customer {customer.id} ({customer.name}) has no mail address on record.",
            hint="Add the customer's mail address in the registry, then notify again.",
        )
    return customer, address


def response_link(op: Operation, token: str) -> str:
    return f"{op.runtime.settings.cases.public_url.rstrip('/')}/respond/{token}"


def notify_customer(
    op: Operation, case: AbuseCase, *, locale: str | None = None, extra: str = ""
) -> OutgoingMail:
    """Send the customer the notice (evidence, deadline, response link); the case becomes
    notified and the playbook's deadline starts."""
    if case.state in ("resolved", "ignored", "terminated"):
        raise Conflict(
            f"case {case.reference} is {case.state}; closed cases are not notified.",
            hint="Reopen it by recording new events, or open a new case.",
        )
    language = _check_locale(locale or case.customer_locale)
    customer, address = _customer_mail(op, case)
    rule = all_playbooks(op.session)[case.category]
    now = utcnow()
    deadline = now + timedelta(hours=rule.deadline_hours)
    events = op.session.scalars(
        select(AbuseEvent)
        .where(AbuseEvent.case_id == case.id)
        .order_by(AbuseEvent.occurred_at.desc())
        .limit(NOTICE_EVENTS)
    ).all()
    instance = op.session.get(Instance, case.instance_id) if case.instance_id else None
    token = new_response_token(case)
    en, zh = CATEGORY_LABELS[case.category]
    subject, body = render(
        "customer_notice",
        language,
        case=case,
        customer_name=customer.name,
        category_en=en,
        category_zh=zh,
        instance=(instance.hostname if instance is not None else ""),
        first_seen=_zone_text(case.first_event_at, language),
        last_seen=_zone_text(case.last_event_at, language),
        events=[
            {
                "occurred": _zone_text(e.occurred_at, language),
                "port": e.port,
                "url": e.url,
                "excerpt": e.excerpt[:800],
            }
            for e in events
        ],
        extra=extra.strip(),
        deadline=_zone_text(deadline, language),
        suspend=rule.escalation_action == "suspend",
        link=response_link(op, token),
    )
    mail = _queue(op, case, address, subject, body)
    case.deadline_at = deadline
    case.customer_locale = language
    _entry(op, case, "to-customer", body, mail_id=mail.id, to=address, subject=subject)
    _change_state(
        op,
        case,
        "notified",
        f"customer notified ({language}), deadline {deadline:%Y-%m-%d %H:%M} UTC",
    )
    return mail


def _check_message(subject: str, body: str) -> None:
    if not body.strip() or not subject.strip():
        raise ValidationFailed(
            "the message needs a subject and a text.", hint="Fill in both, then send again."
        )


def _message(
    op: Operation,
    case: AbuseCase,
    party: str,
    address: str,
    locale: str,
    subject: str,
    body: str,
    link: str,
) -> OutgoingMail:
    """Queue a message of the desk to ``party`` (customer or reporter) and put it on the
    case's timeline."""
    subject_line, text = render(
        "message", locale, case=case, subject=subject.strip(), body=body.strip(), link=link
    )
    mail = _queue(op, case, address, subject_line, text)
    _entry(op, case, f"to-{party}", text, mail_id=mail.id, to=address, subject=subject_line)
    op.audit(
        f"case.message_{party}",
        "abuse_case",
        case.id,
        after={"mail": mail.id},
        reason=subject.strip(),
    )
    return mail


def message_customer(op: Operation, case: AbuseCase, subject: str, body: str) -> OutgoingMail:
    """A further message to the customer (it carries a fresh response link)."""
    _check_message(subject, body)
    _, address = _customer_mail(op, case)
    link = response_link(op, new_response_token(case))
    return _message(op, case, "customer", address, case.customer_locale, subject, body, link)


def message_reporter(op: Operation, case: AbuseCase, subject: str, body: str) -> OutgoingMail:
    """A message to whoever reported the case's first event."""
    _check_message(subject, body)
    report = op.session.scalars(
        select(AbuseReport)
        .join(AbuseEvent, AbuseEvent.report_id == AbuseReport.id)
        .where(AbuseEvent.case_id == case.id)
        .order_by(AbuseEvent.id)
        .limit(1)
    ).first()
    if report is None or "@" not in report.reporter:
        raise Conflict(
            f"case {case.reference} has no reporter with a mail address.",
            hint="Its events came from detection or a form without an address.",
        )
    locale = _reporter_locale(report)
    return _message(op, case, "reporter", report.reporter, locale, subject, body, "")


def _reporter_locale(report: AbuseReport) -> str:
    """A reporter who wrote the subject in Chinese is answered in Chinese."""
    return "zh-CN" if _CJK.search(report.subject) else "en"


def acknowledge_reporter(op: Operation, report: AbuseReport, cases: list[AbuseCase]) -> None:
    locale = _reporter_locale(report)
    references = sorted(c.reference for c in cases)
    subject, body = render(
        "reporter_ack",
        locale,
        report=report,
        references=references,
        received=_zone_text(report.received_at, locale),
    )
    with op.automated("intake"):
        mail = _queue(op, None, report.reporter, subject, body)
        for case in cases:
            _entry(
                op, case, "to-reporter", body, mail_id=mail.id, to=report.reporter, subject=subject
            )
        op.audit(
            "report.acknowledged",
            "abuse_report",
            report.id,
            after={"mail": mail.id, "cases": references},
            reason="acknowledgement",
        )


# --- the outbox ------------------------------------------------------------------------


@dataclass
class SendResult:
    sent: int = 0
    retried: int = 0
    failed: int = 0
    waiting: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "sent": self.sent,
            "retried": self.retried,
            "failed": self.failed,
            "waiting": self.waiting,
        }


def _send(runtime: Runtime, mail: OutgoingMail) -> None:
    settings = runtime.settings.mail
    message = message_from_string(mail.message, policy=policy.SMTP)
    with smtplib.SMTP(
        settings.relay_host, settings.relay_port, timeout=settings.timeout_seconds
    ) as smtp:
        if settings.starttls:
            smtp.starttls()
        if settings.username:
            smtp.login(settings.username, settings.password.get_secret_value())
        smtp.send_message(message, from_addr=settings.from_address, to_addrs=[mail.recipient])


def send_due(runtime: Runtime, *, now: datetime | None = None, limit: int = 200) -> SendResult:
    """Send queued mail that is due. A failure waits ``retry_seconds`` doubled per attempt
    (at most 6 h) and gives up, marked failed, after ``max_attempts``."""
    settings = runtime.settings.mail
    result = SendResult()
    moment = utcnow() if now is None else as_utc(now)
    with runtime.reading() as session:
        due = [
            m.id
            for m in session.scalars(
                select(OutgoingMail)
                .where(OutgoingMail.status == "pending", OutgoingMail.next_attempt_at <= moment)
                .order_by(OutgoingMail.id)
                .limit(limit)
            )
        ]
    if not settings.relay_host:
        result.waiting = len(due)
        return result
    actor = Actor("system:mail", ("system",), new_request_id())
    for mail_id in due:
        with runtime.operation(actor) as op:
            mail = op.session.get(OutgoingMail, mail_id)
            if mail is None or mail.status != "pending":
                continue
            mail.attempts += 1
            try:
                _send(runtime, mail)
            except (OSError, smtplib.SMTPException) as exc:
                mail.last_error = f"{exc.__class__.__name__}: {exc}"[:2000]
                if mail.attempts >= settings.max_attempts:
                    mail.status = "failed"
                    result.failed += 1
                    op.audit(
                        "mail.failed",
                        "mail",
                        mail.id,
                        after={"attempts": mail.attempts},
                        reason=mail.last_error,
                    )
                else:
                    mail.next_attempt_at = moment + doubling_backoff(
                        settings.retry_seconds, mail.attempts, MAX_BACKOFF_SECONDS
                    )
                    result.retried += 1
                log.warning(
                    "cases.mail_failed",
                    mail_id=mail.id,
                    attempts=mail.attempts,
                    error=mail.last_error,
                )
                continue
            mail.status = "sent"
            mail.sent_at = utcnow()
            mail.last_error = ""
            result.sent += 1
            op.audit(
                "mail.sent", "mail", mail.id, after={"to": mail.recipient}, reason=mail.subject
            )
            if mail.case_id is not None:
                case = get_case(op.session, mail.case_id)
                if case.state == "notified":
                    _change_state(
                        op,
                        case,
                        "awaiting_response",
                        "the notification left for the customer's mail server",
                    )
    return result
