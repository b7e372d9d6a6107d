"""The commitment letter (承诺书): versioned texts, customers' acceptances, signed PDFs.

Rules this module keeps:

- A version is published in every supported language at once (``publish(op, texts)``
  with one text per locale in ``LOCALES``). Version numbers go 1, 2, 3 … and are shared by
  the languages, so "version 3" means the same commitments in Chinese and in English.
- A letter's text is its title, two line feeds and its body, after normalisation (Unicode
  NFC, CR LF and CR turned into LF, surrounding whitespace removed). Its SHA-256 is taken
  over exactly those UTF-8 bytes, and the normalised title and body are what is stored, so
  ``sha256(title + "\\n\\n" + body)`` of a stored template always reproduces its hash.
- An acceptance is for the version current at that moment. Publishing a new version means
  every customer has to accept again before the provisioning gate lets them through.
"""

from __future__ import annotations

import hashlib
import ipaddress
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from importlib import resources
from typing import cast

from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from hostwarden.core.auth import LOCALES
from hostwarden.core.runtime import Operation, Runtime
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from hostwarden.registry import customers
from hostwarden.registry.models import (
    CommitmentAcceptance,
    CommitmentTemplate,
    DocumentScan,
)

CLICK_THROUGH = "click-through"
SIGNED_SCAN = "signed-scan"
METHODS = (CLICK_THROUGH, SIGNED_SCAN)
MAX_TITLE = 300


@dataclass(frozen=True)
class LetterText:
    title: str
    body: str

    @property
    def text(self) -> str:
        """The hashed form: title, a blank line, body."""
        return f"{self.title}\n\n{self.body}"

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class LetterVersion:
    """One published version: the same number in every language."""

    version: int
    published_at: datetime
    published_by: str
    templates: dict[str, CommitmentTemplate]


def normalise(text: str) -> str:
    return unicodedata.normalize("NFC", text).replace("\r\n", "\n").replace("\r", "\n").strip()


def letter_text(title: str, body: str) -> LetterText:
    return LetterText(normalise(title), normalise(body))


def parse_letter(text: str) -> LetterText:
    """Read the file form of a letter: the first line is the title, the rest the body."""
    title, _, body = normalise(text).partition("\n")
    return letter_text(title, body)


def default_letters() -> dict[str, LetterText]:
    """The bilingual letter shipped in ``registry/letters/default.<locale>.txt``."""
    folder = resources.files("hostwarden.registry") / "letters"
    return {
        locale: parse_letter((folder / f"default.{locale}.txt").read_text(encoding="utf-8"))
        for locale in LOCALES
    }


def check_locale(locale: str) -> str:
    if locale not in LOCALES:
        raise ValidationFailed(
            f"'{locale}' is not a language of the commitment letter.",
            hint=f"Use one of: {', '.join(LOCALES)}.",
        )
    return locale


# --- templates ---------------------------------------------------------------------------


def current_version(session: Session) -> int | None:
    """The newest published version, or None while no letter has been published."""
    return session.scalar(select(func.max(CommitmentTemplate.version)))


def list_versions(session: Session) -> list[LetterVersion]:
    """Every published version, newest first."""
    rows = session.scalars(
        select(CommitmentTemplate).order_by(
            CommitmentTemplate.version.desc(), CommitmentTemplate.locale
        )
    )
    grouped: dict[int, list[CommitmentTemplate]] = {}
    for row in rows:
        grouped.setdefault(row.version, []).append(row)
    return [_version_of(templates) for templates in grouped.values()]


def get_version(session: Session, version: int | None = None) -> LetterVersion:
    """One version (the current one when ``version`` is None)."""
    wanted = current_version(session) if version is None else version
    if wanted is None:
        raise NotFound(
            "no commitment letter has been published yet.",
            hint="Publish one with `hostwarden commitment publish-default` or POST "
            "/api/v1/commitments.",
        )
    templates = list(
        session.scalars(select(CommitmentTemplate).where(CommitmentTemplate.version == wanted))
    )
    if not templates:
        raise NotFound(
            f"there is no version {wanted} of the commitment letter.",
            hint="List the published versions with `hostwarden commitment list`.",
        )
    return _version_of(templates)


def _version_of(templates: list[CommitmentTemplate]) -> LetterVersion:
    first = min(templates, key=lambda t: t.published_at)
    return LetterVersion(
        version=first.version,
        published_at=first.published_at,
        published_by=first.published_by,
        templates={t.locale: t for t in templates},
    )


def _checked_texts(texts: Mapping[str, LetterText]) -> dict[str, LetterText]:
    for locale in texts:
        check_locale(locale)
    missing = [locale for locale in LOCALES if locale not in texts]
    if missing:
        raise ValidationFailed(
            f"the letter has no text in {', '.join(missing)}.",
            hint=f"A version is published in every language at once: give {', '.join(LOCALES)}.",
        )
    checked: dict[str, LetterText] = {}
    for locale in LOCALES:
        text = letter_text(texts[locale].title, texts[locale].body)
        if not text.title or not text.body:
            part = "title" if not text.title else "body"
            raise ValidationFailed(
                f"the {locale} letter has an empty {part}.",
                hint="Give both a title and the full text of the commitments.",
            )
        if "\n" in text.title or len(text.title) > MAX_TITLE:
            raise ValidationFailed(
                f"the {locale} title must be one line of at most {MAX_TITLE} characters.",
                hint="Put the commitments themselves in the body.",
            )
        checked[locale] = text
    return checked


def publish(op: Operation, texts: Mapping[str, LetterText], *, reason: str = "") -> LetterVersion:
    """Publish the next version in every language. Refuses a text identical to the
    current version, since that would only make every customer accept again."""
    checked = _checked_texts(texts)
    session = op.session
    latest = current_version(session)
    if latest is not None:
        current = get_version(session, latest)
        if all(current.templates[loc].sha256 == checked[loc].sha256 for loc in LOCALES):
            raise Conflict(
                f"the text is the same as the current version {latest}; nothing was published.",
                hint="Change the text, or keep the current version.",
            )
    version = (latest or 0) + 1
    now = utcnow()
    rows = [
        CommitmentTemplate(
            version=version,
            locale=locale,
            title=text.title,
            body=text.body,
            sha256=text.sha256,
            published_at=now,
            published_by=op.actor.name[:200],
        )
        for locale, text in checked.items()
    ]
    session.add_all(rows)
    try:
        session.flush()
    except IntegrityError:
        raise Conflict(
            f"version {version} was published by someone else at the same time.",
            hint="Look at the current version and publish again if still needed.",
        ) from None
    op.audit(
        "commitment.publish",
        "commitment_letter",
        version,
        after={
            "version": version,
            "texts": {r.locale: {"title": r.title, "sha256": r.sha256} for r in rows},
        },
        reason=reason,
    )
    return LetterVersion(version, now, op.actor.name, {r.locale: r for r in rows})


# --- acceptances -------------------------------------------------------------------------


def acceptance_summary(row: CommitmentAcceptance) -> dict[str, object]:
    return {
        "customer_id": row.customer_id,
        "version": row.version,
        "template_id": row.template_id,
        "text_sha256": row.text_sha256,
        "method": row.method,
        "ip": row.ip,
        "user_agent": row.user_agent,
        "scan_id": row.scan_id,
        "accepted_at": isoformat(row.accepted_at),
    }


def _checked_ip(ip: str, method: str) -> str:
    ip = ip.strip()
    if not ip:
        if method == CLICK_THROUGH:
            raise ValidationFailed(
                "a click-through acceptance needs the customer's IP address.",
                hint="Send the address the customer clicked from.",
            )
        return ""
    try:
        return str(ipaddress.ip_address(ip))
    except ValueError:
        raise ValidationFailed(
            f"'{ip}' is not an IP address.", hint="Give an IPv4 or IPv6 address."
        ) from None


def _checked_scan(session: Session, customer_id: int, method: str, scan_id: int | None) -> None:
    if method == CLICK_THROUGH:
        if scan_id is not None:
            raise ValidationFailed(
                "a scan goes with method signed-scan, not click-through.",
                hint="Use method signed-scan for a signed paper letter.",
            )
        return
    if scan_id is None:
        raise ValidationFailed(
            "a signed-scan acceptance needs the scan of the signed letter.",
            hint="Upload the scan first and give its id.",
        )
    scan = session.get(DocumentScan, scan_id)
    if scan is None or scan.customer_id != customer_id:
        raise ValidationFailed(
            f"customer {customer_id} has no document scan with id {scan_id}.",
            hint="Upload the signed letter for this customer and use that scan's id.",
        )
    if scan.purpose != "commitment":
        raise ValidationFailed(
            f"scan {scan_id} was uploaded as '{scan.purpose}', not as a signed commitment letter.",
            hint="Upload the signed letter with purpose commitment.",
        )


def accept(
    op: Operation,
    customer_id: int,
    locale: str,
    method: str = CLICK_THROUGH,
    *,
    ip: str = "",
    user_agent: str = "",
    scan_id: int | None = None,
    version: int | None = None,
    reason: str = "",
) -> CommitmentAcceptance:
    """Record that a customer accepted the current version in ``locale``.

    ``version``, when given, is the version the customer was shown; if another version
    has become current since, nothing is recorded and Conflict is raised, so that nobody
    is recorded as accepting a text they never saw."""
    check_locale(locale)
    if method not in METHODS:
        raise ValidationFailed(
            f"'{method}' is not an acceptance method.", hint=f"Use {' or '.join(METHODS)}."
        )
    clean_ip = _checked_ip(ip, method)
    session = op.session
    customers.get_customer(session, customer_id)
    current = current_version(session)
    if current is None:
        raise Conflict(
            "no commitment letter has been published, so there is nothing to accept.",
            hint="Publish one first with `hostwarden commitment publish-default`.",
        )
    if version is not None and version != current:
        raise Conflict(
            f"the customer was shown version {version}, but version {current} is current.",
            hint="Show the customer the current version and record that acceptance.",
        )
    _checked_scan(session, customer_id, method, scan_id)
    template = session.scalar(
        select(CommitmentTemplate).where(
            CommitmentTemplate.version == current, CommitmentTemplate.locale == locale
        )
    )
    if template is None:  # every version is published in every locale
        raise NotFound(f"version {current} has no {locale} text.", hint="Publish it again.")
    row = CommitmentAcceptance(
        customer_id=customer_id,
        template_id=template.id,
        version=template.version,
        text_sha256=template.sha256,
        accepted_at=utcnow(),
        ip=clean_ip,
        user_agent=user_agent.strip()[:400],
        method=method,
        scan_id=scan_id,
    )
    session.add(row)
    session.flush()
    op.audit(
        "commitment.accept",
        "commitment_acceptance",
        row.id,
        after={**acceptance_summary(row), "locale": locale},
        reason=reason,
    )
    return row


def get_acceptance(session: Session, acceptance_id: int) -> CommitmentAcceptance:
    row = session.get(CommitmentAcceptance, acceptance_id)
    if row is None:
        raise NotFound(
            f"no commitment acceptance with id {acceptance_id}.",
            hint="List the customer's acceptances to find the id.",
        )
    return row


def list_acceptances(session: Session, customer_id: int) -> list[CommitmentAcceptance]:
    """A customer's acceptances, newest first."""
    customers.get_customer(session, customer_id)
    return list(
        session.scalars(
            select(CommitmentAcceptance)
            .where(CommitmentAcceptance.customer_id == customer_id)
            .order_by(CommitmentAcceptance.accepted_at.desc(), CommitmentAcceptance.id.desc())
        )
    )


def latest_acceptance(session: Session, customer_id: int) -> CommitmentAcceptance | None:
    return session.scalar(
        select(CommitmentAcceptance)
        .where(CommitmentAcceptance.customer_id == customer_id)
        .order_by(CommitmentAcceptance.version.desc(), CommitmentAcceptance.id.desc())
        .limit(1)
    )


def has_accepted_current(session: Session, customer_id: int) -> bool:
    current = current_version(session)
    if current is None:
        return False
    found = session.scalar(
        select(CommitmentAcceptance.id)
        .where(
            CommitmentAcceptance.customer_id == customer_id,
            CommitmentAcceptance.version == current,
        )
        .limit(1)
    )
    return found is not None


# --- PDF ---------------------------------------------------------------------------------

_LABELS: dict[str, dict[str, str]] = {
    "zh-CN": {
        "record": "确认记录",
        "customer": "客户",
        "version": "承诺书版本",
        "method": "确认方式",
        "accepted_at": "确认时间",
        "ip": "IP 地址",
        "user_agent": "浏览器标识（User-Agent）",
        "scan": "签字扫描件",
        "text_sha256": "承诺书文本 SHA-256",
        "acceptance_id": "确认记录编号",
        "hash_note": "SHA-256 按 UTF-8 编码计算，内容为标题、两个换行符和正文，"
        "与上文所载承诺书文本一致，可据此核验文本未被改动。",
        "generated": "本文件由 hostwarden 生成于",
        CLICK_THROUGH: "在线点击确认",
        SIGNED_SCAN: "纸质签字（扫描件存档）",
    },
    "en": {
        "record": "Record of acceptance",
        "customer": "Customer",
        "version": "Letter version",
        "method": "Method",
        "accepted_at": "Accepted at",
        "ip": "IP address",
        "user_agent": "Browser (User-Agent)",
        "scan": "Signed scan",
        "text_sha256": "SHA-256 of the letter text",
        "acceptance_id": "Acceptance record",
        "hash_note": "The SHA-256 is taken over the UTF-8 bytes of the title, two line feeds "
        "and the body as printed above, so anyone can check that the text was not changed.",
        "generated": "Generated by hostwarden at",
        CLICK_THROUGH: "Confirmed online (click-through)",
        SIGNED_SCAN: "Signed on paper (scan kept)",
    },
}


@cache
def _letters_environment() -> Environment:
    return Environment(
        loader=PackageLoader("hostwarden.registry", "letters/templates"),
        autoescape=select_autoescape(["html"]),
        keep_trailing_newline=True,
    )


def _display_time(value: datetime) -> str:
    return as_utc(value).strftime("%Y-%m-%d %H:%M:%S UTC")


def render_html(session: Session, acceptance_id: int) -> str:
    """The signed letter as HTML: the text the customer accepted and how they accepted it."""
    row = get_acceptance(session, acceptance_id)
    template = session.get(CommitmentTemplate, row.template_id)
    customer = customers.get_customer(session, row.customer_id)
    assert template is not None  # a foreign key
    scan = session.get(DocumentScan, row.scan_id) if row.scan_id is not None else None
    labels = _LABELS[template.locale]
    return (
        _letters_environment()
        .get_template("letter.html")
        .render(
            locale=template.locale,
            title=template.title,
            body=template.body,
            labels=labels,
            version=row.version,
            customer_name=customer.name,
            customer_ref=customer.external_id or f"#{customer.id}",
            method_label=labels.get(row.method, row.method),
            accepted_at=_display_time(row.accepted_at),
            ip=row.ip,
            user_agent=row.user_agent,
            scan=scan,
            text_sha256=row.text_sha256,
            acceptance_id=row.id,
            generated_at=_display_time(utcnow()),
        )
    )


def render_pdf(runtime: Runtime, acceptance_id: int) -> bytes:
    """The signed letter as a PDF (WeasyPrint; Chinese needs Debian's fonts-noto-cjk)."""
    from weasyprint import HTML

    with runtime.reading() as session:
        html = render_html(session, acceptance_id)
    return cast(bytes, HTML(string=html).write_pdf())
