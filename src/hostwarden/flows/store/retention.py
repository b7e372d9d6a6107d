"""Which segments a legal hold pins: the rule every store backend applies before expiry.

A segment is pinned by a hold when their time ranges overlap and, if the hold is
narrowed to addresses or customers, the segment may hold one of them. "May" is decided
conservatively: first from the segment's index (range of provider-side addresses,
range of customer ids), which over-pins but costs nothing; when that says no, the
backend looks into the segment itself (an address in the hold can also be the remote
side of a flow), and any doubt (an unreadable segment) pins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import isoformat
from hostwarden.flows.models import CHAIN_EXPIRE, FLOWS_DATASET, FlowSegment, LegalHold
from hostwarden.flows.store import DAY_MS, ExpiryReport, Segment, integrity
from hostwarden.registry import netaddr

if TYPE_CHECKING:
    from hostwarden.core.runtime import Operation, Runtime

log = get_logger("hostwarden.flows.store")


@dataclass(frozen=True)
class HoldScope:
    """A legal hold in the store's terms: epoch milliseconds and 128-bit address ranges."""

    hold_id: int
    start_ms: int
    end_ms: int | None
    #: (first, last) address of each prefix, in the registry's 128-bit space.
    ranges: tuple[tuple[int, int], ...]
    customers: frozenset[int]

    @property
    def everything(self) -> bool:
        return not self.ranges and not self.customers


def epoch_ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def address_ranges(prefixes: Iterable[str]) -> tuple[tuple[int, int], ...]:
    ranges = []
    for text in prefixes:
        network = netaddr.parse_prefix(text)
        first = netaddr.address_int(network.network_address)
        ranges.append((first, first + network.num_addresses - 1))
    return tuple(ranges)


def scope_of(hold: LegalHold) -> HoldScope:
    return HoldScope(
        hold_id=hold.id,
        start_ms=epoch_ms(hold.start_at),
        end_ms=None if hold.end_at is None else epoch_ms(hold.end_at),
        ranges=address_ranges(hold.prefix_list),
        customers=frozenset(hold.customer_list),
    )


def overlaps_in_time(segment: Segment, scope: HoldScope) -> bool:
    if segment.last_ms < scope.start_ms:
        return False
    return scope.end_ms is None or segment.first_ms <= scope.end_ms


def index_may_match(segment: Segment, scope: HoldScope) -> bool:
    """From the index alone: could the segment hold a record in the hold's scope on the
    provider side?"""
    if scope.everything:
        return True
    low, high = int(segment.min_local, 16), int(segment.max_local, 16)
    if any(first <= high and last >= low for first, last in scope.ranges):
        return True
    return any(segment.min_customer <= c <= segment.max_customer for c in scope.customers)


#: Looks into a segment: does any record match the scope? Must answer True when unsure.
ContentCheck = Callable[[Segment, HoldScope], bool]


def pinning_holds(
    segment: Segment, scopes: Iterable[HoldScope], contains: ContentCheck
) -> list[int]:
    """Ids of the holds that keep ``segment``."""
    pinned: list[int] = []
    for scope in scopes:
        if not overlaps_in_time(segment, scope):
            continue
        if index_may_match(segment, scope) or contains(segment, scope):
            pinned.append(scope.hold_id)
    return pinned


#: What a segment's stored data looked like when it expired: "present" (as sealed),
#: "missing" or "resized" (recorded in its expire entry, so that expiry does not erase
#: the evidence of earlier damage).
StoredState = Callable[[FlowSegment], str]


def expire_segments(
    runtime: Runtime,
    op: Operation,
    now_ms: int,
    *,
    backend: str,
    contains: ContentCheck,
    stored_state: StoredState,
    leftovers: Callable[[Session, int], list[str]],
    remove: Callable[[Sequence[str]], None],
    datasets: Sequence[str] = (FLOWS_DATASET,),
) -> ExpiryReport:
    """Expire, in ``op``'s transaction, every live segment past retention that no legal
    hold pins: one ``expire`` chain entry each, one audit entry for the run, a signed
    head. The backend's ``remove`` deletes the data of those segments (and of
    ``leftovers``: segments expired earlier whose data a crash left behind) only once
    the transaction has committed, so a rolled-back run removes nothing. Only segments
    of ``datasets`` are considered: each backend expires what it stores."""
    days = runtime.settings.flows.retention_days
    cutoff = now_ms - days * DAY_MS
    report = ExpiryReport(cutoff_ms=cutoff, retention_days=days)
    session = op.session
    integrity.lock_chain(session)
    holds = session.scalars(select(LegalHold).where(LegalHold.released_at.is_(None)))
    scopes = [scope_of(h) for h in holds]
    candidates = list(
        session.scalars(
            select(FlowSegment)
            .where(
                FlowSegment.dataset.in_(list(datasets)),
                FlowSegment.expired_at.is_(None),
                FlowSegment.last_ms < cutoff,
            )
            .order_by(FlowSegment.first_ms, FlowSegment.id)
        )
    )
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    removed: list[str] = []
    for row in candidates:
        pins = pinning_holds(Segment.of(row), scopes, contains)
        if pins:
            report.pinned[row.name] = pins
            continue
        state = stored_state(row)
        if state != "present":
            report.damaged[row.name] = state
            log.warning("flow segment expired while damaged", segment=row.name, file=state)
        entry = integrity.append(
            session,
            CHAIN_EXPIRE,
            row.name,
            {
                "sha256": row.sha256,
                "seal_seq": row.seal_seq,
                "rows": row.rows,
                "retention_days": days,
                "cutoff_ms": cutoff,
                "expired_at": isoformat(now),
                "file": state,
            },
        )
        row.expired_at = now
        row.expire_seq = entry.seq
        removed.append(row.name)
        report.rows_expired += row.rows
        report.bytes_expired += row.size
    report.expired = removed
    left = leftovers(session, cutoff)
    if removed:
        op.audit(
            "flow_segments.expire",
            "flow_store",
            backend,
            after={
                "segments": removed,
                "rows": report.rows_expired,
                "bytes": report.bytes_expired,
                "cutoff": isoformat(datetime.fromtimestamp(cutoff / 1000, tz=UTC)),
                "pinned": report.pinned,
                "damaged": report.damaged,
            },
            reason=f"older than the {days}-day retention "
            f"(profile {runtime.settings.flows.profile})",
        )
    checkpoint = integrity.sign_head(session, runtime.signer)
    doomed = removed + left

    def _after_commit(_session: Session) -> None:
        try:
            integrity.publish_head(runtime, checkpoint)
        except OSError:
            log.exception("flows head file not written")
        remove(doomed)

    if doomed or checkpoint is not None:
        event.listen(session, "after_commit", _after_commit, once=True)
    return report
