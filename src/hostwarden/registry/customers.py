"""Customers and their admission: records, identity documents, full views, screening.

Scans of documents are kept by ``hostwarden.registry.scans``."""

from __future__ import annotations

import ipaddress
import json
import re
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import ColumnElement, Select, String, and_, func, literal_column, select, union_all
from sqlalchemy.orm import Session, aliased

from hostwarden.core.masking import mask_email, mask_id_number, mask_phone
from hostwarden.core.rbac import Perm, permissions_for
from hostwarden.core.runtime import Operation
from hostwarden.core.timeutil import utcnow
from hostwarden.core.vault import PiiVault, normalise_identifier, normalise_phone
from hostwarden.errors import Conflict, NotFound, PermissionDenied, ValidationFailed
from hostwarden.registry import identity
from hostwarden.registry.models import (
    CUSTOMER_KINDS,
    CUSTOMER_STATUSES,
    RISK_TIERS,
    BanEvasionFlag,
    Customer,
    DocumentScan,
    IdentityDocument,
)

#: Vault field names: authenticated with each ciphertext and keyed into each blind index.
PHONE_FIELD = "customer.phone"
ID_NUMBER_FIELD = "identity_document.number"

#: Which status may follow which; terminated is final.
STATUS_TRANSITIONS: dict[str, frozenset[str]] = {
    "pending": frozenset({"active", "restricted", "suspended", "terminated"}),
    "active": frozenset({"restricted", "suspended", "terminated"}),
    "restricted": frozenset({"active", "suspended", "terminated"}),
    "suspended": frozenset({"active", "restricted", "terminated"}),
    "terminated": frozenset(),
}
#: What screening compares with customers terminated for abuse; flags list these names.
SCREENED_ATTRIBUTES = (
    "id_number",
    "phone",
    "email",
    "payment_fingerprint",
    "device_fingerprint",
    "signup_ip",
)
FLAG_RESOLUTIONS = ("cleared", "confirmed")


@dataclass(frozen=True)
class MailboxRule:
    """How one mail provider delivers: which domain is canonical, whether dots in the local
    part are ignored. Every provider is treated as case-insensitive with +tags."""

    domain: str
    ignore_dots: bool


#: One row per provider with rules beyond lower case and +tags.
MAILBOX_RULES: dict[str, MailboxRule] = {
    "gmail.com": MailboxRule("gmail.com", ignore_dots=True),
    "googlemail.com": MailboxRule("gmail.com", ignore_dots=True),
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def normalise_email(value: str) -> str:
    """The mailbox an address delivers to: ``J.Doe+vps@GoogleMail.com`` → ``jdoe@gmail.com``."""
    text = value.strip().lower()
    if not text:
        return ""
    local, _, domain = text.rpartition("@")
    local = local.split("+", 1)[0]
    rule = MAILBOX_RULES.get(domain)
    if rule is not None:
        domain = rule.domain
        if rule.ignore_dots:
            local = local.replace(".", "")
    return f"{local}@{domain}"


# --- checks shared by create and update ----------------------------------------------------


def _choice(value: str, allowed: tuple[str, ...], what: str) -> str:
    cleaned = value.strip().lower()
    if cleaned not in allowed:
        raise ValidationFailed(
            f"'{value}' is not a {what}.", hint=f"Use one of: {', '.join(allowed)}."
        )
    return cleaned


def _name(value: str) -> str:
    cleaned = value.strip()
    if not cleaned:
        raise ValidationFailed(
            "a customer needs a name.", hint="Give the person's or company's name."
        )
    if len(cleaned) > 300:
        raise ValidationFailed("the name is longer than 300 characters.", hint="Shorten it.")
    return cleaned


def _email(value: str) -> str:
    cleaned = value.strip()
    if cleaned and (not _EMAIL.match(cleaned) or len(cleaned) > 320):
        raise ValidationFailed(
            "the e-mail address is not in the form name@domain.", hint="Check the address."
        )
    return cleaned


def _phone(value: str) -> str:
    digits = normalise_phone(value)
    if value.strip() and not 6 <= len(digits) <= 15:
        raise ValidationFailed(
            f"a phone number has 6 to 15 digits; {len(digits)} were given.",
            hint="Write it with its country code, e.g. +86 138 1234 5678.",
        )
    return digits


def _signup_ip(value: str) -> str:
    if not value.strip():
        return ""
    try:
        return str(ipaddress.ip_address(value.strip()))
    except ValueError:
        raise ValidationFailed(
            "the sign-up address is not an IPv4 or IPv6 address.", hint="E.g. 203.0.113.7."
        ) from None


def _fingerprint(value: str, what: str) -> str:
    cleaned = value.strip()
    if len(cleaned) > 128:
        raise ValidationFailed(f"the {what} is longer than 128 characters.", hint="Hash it first.")
    return cleaned


def _external_id(session: Session, value: str | None, customer_id: int | None) -> str | None:
    cleaned = (value or "").strip() or None
    if cleaned is None:
        return None
    if len(cleaned) > 100:
        raise ValidationFailed("the external id is longer than 100 characters.", hint="Shorten it.")
    holder = session.scalar(select(Customer.id).where(Customer.external_id == cleaned))
    if holder is not None and holder != customer_id:
        raise Conflict(
            f"customer {holder} already has external id '{cleaned}'.",
            hint="External ids are unique: update that customer instead.",
        )
    return cleaned


def require_permission(op: Operation, perm: Perm, doing: str) -> None:
    if perm not in permissions_for(op.actor.roles):
        raise PermissionDenied(
            f"{doing} needs the '{perm.value}' permission, which your role(s) "
            f"{op.actor.role_text or 'none'} do not grant.",
            hint="Ask a user with a role that grants it.",
        )


def required_reason(reason: str, doing: str) -> str:
    cleaned = reason.strip()
    if not cleaned:
        raise ValidationFailed(
            f"{doing} needs a reason.", hint="Say why; it goes into the audit trail."
        )
    return cleaned


def _set_phone(vault: PiiVault, customer: Customer, digits: str) -> None:
    if digits:
        customer.phone_enc = vault.encrypt(PHONE_FIELD, digits)
        customer.phone_bidx = vault.blind_index(PHONE_FIELD, digits)
        customer.phone_masked = mask_phone(digits)
    else:
        customer.phone_enc = None
        customer.phone_bidx = ""
        customer.phone_masked = ""


def customer_summary(customer: Customer) -> dict[str, object]:
    """What the audit trail records of a customer: masked contacts, no identifiers."""
    return {
        "kind": customer.kind,
        "name": customer.name,
        "email": mask_email(customer.email) if customer.email else "",
        "phone": customer.phone_masked,
        "address_set": bool(customer.address),
        "external_id": customer.external_id,
        "risk_tier": customer.risk_tier,
        "status": customer.status,
        "identity_status": customer.identity_status,
        "terminated_for_abuse": customer.terminated_for_abuse,
        # Which screening signals are on file, not their values.
        "signals": [
            name
            for name, present in (
                ("signup_ip", customer.signup_ip),
                ("device_fingerprint", customer.device_fingerprint),
                ("payment_fingerprint", customer.payment_fingerprint),
            )
            if present
        ],
    }


# --- customers --------------------------------------------------------------------------


def get_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise NotFound(
            f"no customer with id {customer_id}.", hint="List customers to find the right id."
        )
    return customer


def list_customers(
    session: Session,
    *,
    status: str | None = None,
    kind: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[Customer], int]:
    query = select(Customer)
    if status:
        query = query.where(Customer.status == _choice(status, CUSTOMER_STATUSES, "status"))
    if kind:
        query = query.where(Customer.kind == _choice(kind, CUSTOMER_KINDS, "customer kind"))
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(Customer.id).limit(limit).offset(offset))
    return list(rows), total


def create_customer(
    op: Operation,
    *,
    kind: str,
    name: str,
    email: str = "",
    phone: str = "",
    address: str = "",
    risk_tier: str = "low",
    external_id: str | None = None,
    signup_ip: str = "",
    device_fingerprint: str = "",
    payment_fingerprint: str = "",
    reason: str = "",
) -> Customer:
    """Admit a new customer as pending, then screen them against banned customers."""
    email_text = _email(email)
    customer = Customer(
        kind=_choice(kind, CUSTOMER_KINDS, "customer kind"),
        name=_name(name),
        email=email_text,
        email_norm=normalise_email(email_text),
        address=address.strip(),
        risk_tier=_choice(risk_tier, RISK_TIERS, "risk tier"),
        external_id=_external_id(op.session, external_id, None),
        signup_ip=_signup_ip(signup_ip),
        device_fingerprint=_fingerprint(device_fingerprint, "device fingerprint"),
        payment_fingerprint=_fingerprint(payment_fingerprint, "payment fingerprint"),
        status="pending",
        identity_status="unverified",
        terminated_for_abuse=False,
        created_by=op.actor.name[:200],
    )
    _set_phone(op.runtime.vault, customer, _phone(phone))
    op.session.add(customer)
    op.session.flush()
    op.audit(
        "customer.create", "customer", customer.id, after=customer_summary(customer), reason=reason
    )
    screen(op, customer.id)
    return customer


def update_customer(
    op: Operation,
    customer_id: int,
    *,
    name: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    address: str | None = None,
    risk_tier: str | None = None,
    external_id: str | None = None,
    signup_ip: str | None = None,
    device_fingerprint: str | None = None,
    payment_fingerprint: str | None = None,
    reason: str = "",
) -> Customer:
    """Change the given fields (None leaves a field alone); status has its own function."""
    customer = get_customer(op.session, customer_id)
    before = customer_summary(customer)
    changed: list[str] = []
    if name is not None and _name(name) != customer.name:
        customer.name = _name(name)
        changed.append("name")
    if email is not None and _email(email) != customer.email:
        customer.email = _email(email)
        customer.email_norm = normalise_email(customer.email)
        changed.append("email")
    if phone is not None:
        digits = _phone(phone)
        current = op.runtime.vault.blind_index(PHONE_FIELD, digits) if digits else ""
        if current != customer.phone_bidx:
            _set_phone(op.runtime.vault, customer, digits)
            changed.append("phone")
    if address is not None and address.strip() != customer.address:
        customer.address = address.strip()
        changed.append("address")
    if risk_tier is not None and _choice(risk_tier, RISK_TIERS, "risk tier") != customer.risk_tier:
        customer.risk_tier = _choice(risk_tier, RISK_TIERS, "risk tier")
        changed.append("risk_tier")
    if external_id is not None:
        wanted = _external_id(op.session, external_id, customer.id)
        if wanted != customer.external_id:
            customer.external_id = wanted
            changed.append("external_id")
    for field, value, check in (
        ("signup_ip", signup_ip, _signup_ip),
        ("device_fingerprint", device_fingerprint, lambda v: _fingerprint(v, "device fingerprint")),
        (
            "payment_fingerprint",
            payment_fingerprint,
            lambda v: _fingerprint(v, "payment fingerprint"),
        ),
    ):
        if value is not None and check(value) != getattr(customer, field):
            setattr(customer, field, check(value))
            changed.append(field)
    if not changed:
        return customer
    after = customer_summary(customer)
    after["changed"] = changed
    op.audit("customer.update", "customer", customer.id, before=before, after=after, reason=reason)
    return customer


def set_status(
    op: Operation, customer_id: int, status: str, *, reason: str, for_abuse: bool = False
) -> Customer:
    """Move a customer along STATUS_TRANSITIONS; ``for_abuse`` marks a termination as one
    that screening should hold new sign-ups against, and screens every customer not
    terminated against this one at once."""
    customer = get_customer(op.session, customer_id)
    wanted = _choice(status, CUSTOMER_STATUSES, "customer status")
    why = required_reason(reason, "changing a customer's status")
    if for_abuse and wanted != "terminated":
        raise ValidationFailed(
            "only a termination can be marked as for abuse.", hint="Use status terminated."
        )
    if wanted not in STATUS_TRANSITIONS[customer.status]:
        allowed = ", ".join(sorted(STATUS_TRANSITIONS[customer.status])) or "none (it is final)"
        raise Conflict(
            f"customer {customer.id} is {customer.status} and cannot become {wanted}.",
            hint=f"From {customer.status} the allowed statuses are: {allowed}.",
        )
    _change_status(op, customer, wanted, reason=why, for_abuse=for_abuse)
    if for_abuse:
        screen_against(op, customer.id)
    return customer


def _change_status(
    op: Operation,
    customer: Customer,
    wanted: str,
    *,
    reason: str,
    for_abuse: bool = False,
    cause: dict[str, object] | None = None,
) -> None:
    before = {"status": customer.status, "terminated_for_abuse": customer.terminated_for_abuse}
    customer.status = wanted
    customer.terminated_for_abuse = for_abuse
    after: dict[str, object] = {
        "status": customer.status,
        "terminated_for_abuse": customer.terminated_for_abuse,
    }
    if cause:
        after.update(cause)
    op.audit("customer.status", "customer", customer.id, before=before, after=after, reason=reason)


def search_customers(
    session: Session, vault: PiiVault, *, id_number: str = "", phone: str = ""
) -> list[Customer]:
    """Customers holding exactly this ID number or phone, found through the blind indexes."""
    if not id_number.strip() and not phone.strip():
        raise ValidationFailed("give an ID number or a phone number to search for.")
    ids: set[int] = set()
    if id_number.strip():
        bidx = vault.blind_index(ID_NUMBER_FIELD, normalise_identifier(id_number))
        ids.update(
            session.scalars(
                select(IdentityDocument.customer_id).where(IdentityDocument.number_bidx == bidx)
            )
        )
    if phone.strip():
        digits = normalise_phone(phone)
        if digits:
            bidx = vault.blind_index(PHONE_FIELD, digits)
            ids.update(session.scalars(select(Customer.id).where(Customer.phone_bidx == bidx)))
    if not ids:
        return []
    return list(session.scalars(select(Customer).where(Customer.id.in_(ids)).order_by(Customer.id)))


# --- identity documents -----------------------------------------------------------------


def list_documents(session: Session, customer_id: int) -> list[IdentityDocument]:
    return list(
        session.scalars(
            select(IdentityDocument)
            .where(IdentityDocument.customer_id == customer_id)
            .order_by(IdentityDocument.id)
        )
    )


def add_document(
    op: Operation,
    customer_id: int,
    doc_type: str,
    number: str,
    *,
    type_name: str = "",
    override_reason: str = "",
    reason: str = "",
) -> IdentityDocument:
    """Record an identity document. A number that fails validation is refused, unless an
    ``override_reason`` is given by an actor holding kyc:review."""
    customer = get_customer(op.session, customer_id)
    kind = identity.parse_doc_type(doc_type)
    label = identity.DOC_TYPE_LABELS[kind][0]
    compact = normalise_identifier(number)
    result = identity.validate(kind, number, type_name=type_name)
    # Some failures leave nothing sensible to store, whoever vouches for the number.
    if not compact or len(compact) > identity.OTHER_NUMBER_MAX or result.rule == "type-name":
        raise ValidationFailed(f"{label}: {result.message} (rule: {result.rule})")
    why_override = override_reason.strip()
    if not result.ok:
        if not why_override:
            raise ValidationFailed(
                f"{label} number fails the '{result.rule}' rule: {result.message}",
                hint="Correct the number. A reviewer with kyc:review may accept it anyway "
                "by giving an override reason.",
            )
        require_permission(op, Perm.KYC_REVIEW, "accepting a number that fails validation")
    vault = op.runtime.vault
    bidx = vault.blind_index(ID_NUMBER_FIELD, compact)
    duplicate = op.session.scalar(
        select(IdentityDocument.id).where(
            IdentityDocument.customer_id == customer.id, IdentityDocument.number_bidx == bidx
        )
    )
    if duplicate is not None:
        raise Conflict(
            f"customer {customer.id} already has this number on file (document {duplicate}).",
            hint="Nothing to add.",
        )
    document = IdentityDocument(
        customer_id=customer.id,
        doc_type=kind.value,
        other_type=type_name.strip() if kind is identity.DocType.OTHER else "",
        number_enc=vault.encrypt(ID_NUMBER_FIELD, compact),
        number_bidx=bidx,
        number_masked=mask_id_number(compact),
        override_reason=why_override if not result.ok else "",
    )
    op.session.add(document)
    op.session.flush()
    after: dict[str, object] = {
        "customer_id": customer.id,
        "doc_type": document.doc_type,
        "other_type": document.other_type,
        "number": document.number_masked,
    }
    if result.ok:
        op.audit("identity.add", "identity_document", document.id, after=after, reason=reason)
    else:
        after["failed_rule"] = result.rule
        op.audit(
            "identity.override", "identity_document", document.id, after=after, reason=why_override
        )
    return document


# --- document scans ---------------------------------------------------------------------


def list_scans(session: Session, customer_id: int) -> list[DocumentScan]:
    return list(
        session.scalars(
            select(DocumentScan)
            .where(DocumentScan.customer_id == customer_id)
            .order_by(DocumentScan.id)
        )
    )


# --- full view --------------------------------------------------------------------------


@dataclass(frozen=True)
class RevealedDocument:
    id: int
    doc_type: str
    other_type: str
    number: str


@dataclass(frozen=True)
class PiiView:
    customer_id: int
    phone: str
    email: str
    documents: list[RevealedDocument]


def reveal(op: Operation, customer_id: int, reason: str) -> PiiView:
    """The full e-mail, phone and ID numbers of a customer, for pii:view only; each view
    is audited with the reason given."""
    require_permission(op, Perm.PII_VIEW, "seeing full phone and ID numbers")
    why = required_reason(reason, "seeing full phone and ID numbers")
    customer = get_customer(op.session, customer_id)
    vault = op.runtime.vault
    phone = vault.decrypt(PHONE_FIELD, customer.phone_enc) if customer.phone_enc else ""
    documents = [
        RevealedDocument(
            d.id, d.doc_type, d.other_type, vault.decrypt(ID_NUMBER_FIELD, d.number_enc)
        )
        for d in list_documents(op.session, customer.id)
    ]
    op.audit(
        "customer.pii_view",
        "customer",
        customer.id,
        after={"phone": bool(phone), "documents": [d.id for d in documents]},
        reason=why,
    )
    return PiiView(customer.id, phone, customer.email, documents)


# --- ban-evasion screening --------------------------------------------------------------


#: Customer columns screening compares, under the attribute names flags use. ID numbers
#: are compared through identity_documents.number_bidx as "id_number".
_COMPARED_COLUMNS = (
    ("phone", "phone_bidx"),
    ("email", "email_norm"),
    ("payment_fingerprint", "payment_fingerprint"),
    ("device_fingerprint", "device_fingerprint"),
    ("signup_ip", "signup_ip"),
)
#: The two sides of a screening comparison: a customer who may be a banned one returning,
#: and a customer terminated for abuse.
_CANDIDATE = aliased(Customer, name="candidate")
_BANNED = aliased(Customer, name="banned")
_CANDIDATE_DOCUMENT = aliased(IdentityDocument, name="candidate_document")
_BANNED_DOCUMENT = aliased(IdentityDocument, name="banned_document")


def _shared(session: Session, pairs: ColumnElement[bool]) -> dict[tuple[int, int], set[str]]:
    """(candidate id, banned id) → names of what they share, for the pairs of customers
    that ``pairs`` (a condition on _CANDIDATE and _BANNED) selects. One query in SQL on
    the indexed blind indexes and normalised columns: no value is loaded or decrypted."""
    pair = and_(pairs, _BANNED.terminated_for_abuse.is_(True), _CANDIDATE.id != _BANNED.id)
    parts: list[Select[str, int, int]] = [
        select(
            literal_column("'id_number'", String).label("attribute"),
            _CANDIDATE.id.label("candidate_id"),
            _BANNED.id.label("banned_id"),
        )
        .select_from(_CANDIDATE_DOCUMENT)
        .join(_BANNED_DOCUMENT, _BANNED_DOCUMENT.number_bidx == _CANDIDATE_DOCUMENT.number_bidx)
        .join(_CANDIDATE, _CANDIDATE.id == _CANDIDATE_DOCUMENT.customer_id)
        .join(_BANNED, _BANNED.id == _BANNED_DOCUMENT.customer_id)
        .where(pair)
    ]
    for attribute, column in _COMPARED_COLUMNS:
        mine, theirs = getattr(_CANDIDATE, column), getattr(_BANNED, column)
        parts.append(
            select(
                literal_column(f"'{attribute}'", String).label("attribute"),
                _CANDIDATE.id.label("candidate_id"),
                _BANNED.id.label("banned_id"),
            )
            .select_from(_CANDIDATE)
            .join(_BANNED, and_(theirs == mine, mine != ""))
            .where(pair)
        )
    found: dict[tuple[int, int], set[str]] = defaultdict(set)
    for attribute, candidate_id, banned_id in session.execute(union_all(*parts)):
        found[(candidate_id, banned_id)].add(attribute)
    return found


def flag_attributes(flag: BanEvasionFlag) -> list[str]:
    names: list[str] = json.loads(flag.attributes)
    return names


def _ordered(names: set[str]) -> list[str]:
    return [a for a in SCREENED_ATTRIBUTES if a in names]


def screen(op: Operation, customer_id: int) -> list[BanEvasionFlag]:
    """Compare a customer with every customer terminated for abuse; open one flag per
    matched customer naming the matched attributes. Returns the flags opened or grown."""
    customer = get_customer(op.session, customer_id)
    return _raise_flags(op, _shared(op.session, _CANDIDATE.id == customer.id))


def screen_against(op: Operation, banned_id: int) -> list[BanEvasionFlag]:
    """Compare every customer not terminated with ``banned_id``, just terminated for abuse:
    whoever shares something with them gets a flag, as at sign-up. Returns the flags
    opened or grown."""
    op.session.flush()  # the termination itself must be visible to the query
    candidates = and_(_BANNED.id == banned_id, _CANDIDATE.status != "terminated")
    return _raise_flags(op, _shared(op.session, candidates))


def _raise_flags(op: Operation, found: dict[tuple[int, int], set[str]]) -> list[BanEvasionFlag]:
    """One flag per (candidate, banned) pair. An open flag for the same pair grows instead
    of doubling; a resolved flag is not raised again for the same evidence."""
    touched: list[BanEvasionFlag] = []
    for (customer_id, matched_id), names in sorted(found.items()):
        earlier = list(
            op.session.scalars(
                select(BanEvasionFlag)
                .where(
                    BanEvasionFlag.customer_id == customer_id,
                    BanEvasionFlag.matched_customer_id == matched_id,
                )
                .order_by(BanEvasionFlag.id)
            )
        )
        open_flag = next((f for f in earlier if f.status == "open"), None)
        if open_flag is not None:
            before = flag_attributes(open_flag)
            merged = _ordered(set(before) | names)
            if merged != before:
                open_flag.attributes = json.dumps(merged)
                op.audit(
                    "ban_evasion.flag_update",
                    "ban_evasion_flag",
                    open_flag.id,
                    before={"attributes": before},
                    after={"attributes": merged},
                )
                touched.append(open_flag)
            continue
        if any(names <= set(flag_attributes(f)) for f in earlier):
            continue
        flag = BanEvasionFlag(
            customer_id=customer_id,
            matched_customer_id=matched_id,
            attributes=json.dumps(_ordered(names)),
            status="open",
        )
        op.session.add(flag)
        op.session.flush()
        op.audit(
            "ban_evasion.flag",
            "ban_evasion_flag",
            flag.id,
            after={
                "customer_id": customer_id,
                "matched_customer_id": matched_id,
                "attributes": _ordered(names),
            },
        )
        touched.append(flag)
    return touched


def list_flags(
    session: Session, *, status: str | None = None, customer_id: int | None = None
) -> list[BanEvasionFlag]:
    query = select(BanEvasionFlag).order_by(BanEvasionFlag.id)
    if status:
        query = query.where(
            BanEvasionFlag.status == _choice(status, ("open", *FLAG_RESOLUTIONS), "flag status")
        )
    if customer_id is not None:
        query = query.where(BanEvasionFlag.customer_id == customer_id)
    return list(session.scalars(query))


def resolve_flag(op: Operation, flag_id: int, resolution: str, reason: str) -> BanEvasionFlag:
    """Close a flag as cleared (not the same person) or confirmed (ban evasion). Confirming
    also restricts a pending or active customer, in the same unit of work.

    A resolved flag may be revised to the other outcome (new evidence, a mistake), audited
    as ``ban_evasion.revise`` with the earlier outcome. Clearing a confirmed flag does not
    lift the restriction it caused: whether the customer may have servers again is a
    separate, deliberate status change."""
    require_permission(op, Perm.KYC_REVIEW, "resolving a ban-evasion flag")
    outcome = _choice(resolution, FLAG_RESOLUTIONS, "flag resolution")
    why = required_reason(reason, "resolving a ban-evasion flag")
    flag = op.session.get(BanEvasionFlag, flag_id)
    if flag is None:
        raise NotFound(f"no ban-evasion flag with id {flag_id}.", hint="List the open flags.")
    if flag.status == outcome:
        raise Conflict(
            f"flag {flag.id} was already resolved as {flag.status}.", hint="Nothing to do."
        )
    before = {"status": flag.status}
    if flag.status != "open":
        before |= {"resolved_by": flag.resolved_by, "reason": flag.resolution_reason}
    flag.status = outcome
    flag.resolved_at = utcnow()
    flag.resolved_by = op.actor.name
    flag.resolution_reason = why
    op.audit(
        "ban_evasion.resolve" if before["status"] == "open" else "ban_evasion.revise",
        "ban_evasion_flag",
        flag.id,
        before=before,
        after={"status": outcome, "customer_id": flag.customer_id},
        reason=why,
    )
    if outcome == "confirmed":
        _restrict_for_evasion(op, flag)
    return flag


#: Statuses a confirmed ban evasion moves to restricted; the others already allow no new
#: servers and are left as they are.
_RESTRICTED_ON_EVASION = ("pending", "active")


def _restrict_for_evasion(op: Operation, flag: BanEvasionFlag) -> None:
    """A confirmed ban evasion restricts the customer (no new servers; the gate also
    refuses on the confirmed flag itself), audited as automation with the flag as reason."""
    customer = get_customer(op.session, flag.customer_id)
    if customer.status not in _RESTRICTED_ON_EVASION:
        return
    with op.automated("registry"):
        _change_status(
            op,
            customer,
            "restricted",
            reason=f"ban-evasion flag #{flag.id} confirmed: matches customer "
            f"{flag.matched_customer_id}, terminated for abuse",
            cause={"ban_evasion_flag": flag.id},
        )
