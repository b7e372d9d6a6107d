"""API routes of legal holds on flow and log records."""

from __future__ import annotations

from fastapi import APIRouter, Request

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core.rbac import Perm
from hostwarden.flows import holds
from hostwarden.flows.schemas_holds import LegalHoldCreate, LegalHoldOut, LegalHoldRelease

router = APIRouter(prefix="/api/v1/legal-holds", tags=["legal holds"])


@router.get("")
def list_holds(
    request: Request, active: bool = False, who: Principal = require(Perm.LEGAL_HOLDS_READ)
) -> list[LegalHoldOut]:
    """Legal holds, newest first; ``active=true`` leaves out the released ones."""
    with runtime_of(request).reading() as session:
        return [LegalHoldOut.of(h) for h in holds.list_holds(session, active_only=active)]


@router.post("", status_code=201)
def place_hold(
    body: LegalHoldCreate, request: Request, who: Principal = require(Perm.LEGAL_HOLDS_WRITE)
) -> LegalHoldOut:
    """Keep the records of a time range (narrowed to addresses and/or customers) past
    the retention policy until released."""
    with runtime_of(request).operation(who.actor()) as op:
        hold = holds.place_hold(
            op,
            start=body.start,
            end=body.end,
            ips=body.ips,
            customers=body.customer_ids,
            reason=body.reason,
            case_ref=body.case_ref,
        )
        return LegalHoldOut.of(hold)


@router.post("/{hold_id}/release")
def release_hold(
    hold_id: int,
    body: LegalHoldRelease,
    request: Request,
    who: Principal = require(Perm.LEGAL_HOLDS_WRITE),
) -> LegalHoldOut:
    """End a hold; its records expire at the next retention run unless another hold
    keeps them."""
    with runtime_of(request).operation(who.actor()) as op:
        return LegalHoldOut.of(holds.release_hold(op, hold_id, reason=body.reason))
