"""Legal holds on flow and log records: place, list, release (the only place that writes)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.runtime import Operation
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from hostwarden.flows.models import LegalHold
from hostwarden.registry import netaddr
from hostwarden.registry.inventory import aware_time
from hostwarden.registry.models import Customer

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def moment_ms(text: str, what: str, *, end: bool = False) -> int:
    """A time a person typed, as epoch ms, by the rule of holds, queries, replay and
    the console: a zone is required ("10:00" in Beijing and in UTC are eight hours
    apart), and a bare date is that UTC day (as an end, the whole day)."""
    from hostwarden.flows.store.retention import epoch_ms

    return epoch_ms(hold_time(text, what, end=end))


def hold_time(value: datetime | str, what: str, *, end: bool = False) -> datetime:
    """A hold boundary: a moment with its zone, or a bare date meaning that UTC day (as
    an end, the whole day: up to the next midnight)."""
    if isinstance(value, str) and _DATE.match(value.strip()):
        day = aware_time(f"{value.strip()}T00:00:00Z", what)
        return day + timedelta(days=1) if end else day
    return aware_time(value, what)


def _prefixes(ips: Sequence[str]) -> list[str]:
    seen: dict[str, None] = {}
    for text in ips:
        if text.strip():
            seen[str(netaddr.parse_prefix(text))] = None
    return list(seen)


def _customers(session: Session, ids: Sequence[int]) -> list[int]:
    wanted = sorted({int(i) for i in ids})
    if not wanted:
        return []
    known = set(session.scalars(select(Customer.id).where(Customer.id.in_(wanted))))
    missing = [i for i in wanted if i not in known]
    if missing:
        raise NotFound(
            f"no customer with id {', '.join(str(i) for i in missing)}.",
            hint="Check the ids with `hostwarden customer list`.",
        )
    return wanted


def summary(hold: LegalHold) -> dict[str, Any]:
    return {
        "id": hold.id,
        "case_ref": hold.case_ref,
        "reason": hold.reason,
        "start_at": isoformat(hold.start_at),
        "end_at": None if hold.end_at is None else isoformat(hold.end_at),
        "prefixes": hold.prefix_list,
        "customer_ids": hold.customer_list,
        "created_by": hold.created_by,
        "released_at": None if hold.released_at is None else isoformat(hold.released_at),
        "released_by": hold.released_by,
        "release_reason": hold.release_reason,
    }


def place_hold(
    op: Operation,
    *,
    start: datetime | str,
    end: datetime | str | None = None,
    ips: Sequence[str] = (),
    customers: Sequence[int] = (),
    reason: str,
    case_ref: str = "",
) -> LegalHold:
    """Keep every record in [start, end] (narrowed to ``ips`` and/or ``customers`` when
    given) past the retention policy until the hold is released."""
    if not reason.strip():
        raise ValidationFailed(
            "a legal hold needs a reason.",
            hint="Say why the records must be kept, e.g. the request or case it serves.",
        )
    start_at = hold_time(start, "start")
    end_at = None if end is None else hold_time(end, "end", end=True)
    if end_at is not None and end_at <= start_at:
        raise ValidationFailed(
            f"the hold's end {isoformat(end_at)} is not after its start {isoformat(start_at)}.",
            hint="Give an end after the start, or none to hold everything from the start on.",
        )
    hold = LegalHold(
        case_ref=case_ref.strip(),
        reason=reason.strip(),
        start_at=start_at,
        end_at=end_at,
        prefixes=",".join(_prefixes(ips)),
        customer_ids=",".join(str(c) for c in _customers(op.session, customers)),
        created_by=op.actor.name,
        created_at=utcnow(),
        released_by="",
        release_reason="",
    )
    op.session.add(hold)
    op.session.flush()
    op.audit("legal_hold.place", "legal_hold", hold.id, after=summary(hold), reason=hold.reason)
    return hold


def get_hold(session: Session, hold_id: int) -> LegalHold:
    hold = session.get(LegalHold, hold_id)
    if hold is None:
        raise NotFound(
            f"no legal hold with id {hold_id}.", hint="List them with `hostwarden logs hold list`."
        )
    return hold


def list_holds(session: Session, *, active_only: bool = False) -> list[LegalHold]:
    query = select(LegalHold).order_by(LegalHold.id.desc())
    if active_only:
        query = query.where(LegalHold.released_at.is_(None))
    return list(session.scalars(query))


def release_hold(op: Operation, hold_id: int, *, reason: str) -> LegalHold:
    """End a hold: its records expire with the next retention run unless another hold
    keeps them."""
    if not reason.strip():
        raise ValidationFailed(
            "releasing a legal hold needs a reason.",
            hint="Say why the records may now expire, e.g. the case was closed.",
        )
    hold = get_hold(op.session, hold_id)
    if hold.released_at is not None:
        raise Conflict(
            f"legal hold {hold_id} was already released at {isoformat(as_utc(hold.released_at))}.",
            hint="Place a new hold if the records must be kept again.",
        )
    before = summary(hold)
    hold.released_at = utcnow()
    hold.released_by = op.actor.name
    hold.release_reason = reason.strip()
    op.session.flush()
    op.audit(
        "legal_hold.release",
        "legal_hold",
        hold.id,
        before=before,
        after=summary(hold),
        reason=hold.release_reason,
    )
    return hold
