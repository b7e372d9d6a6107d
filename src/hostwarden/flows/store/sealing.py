"""The write side every flow store backend shares: day buffers, when to seal, and the seal's record.

A backend subclasses ``BufferedStore`` and implements ``_seal(day, batch)``: store the
records as one immutable segment, hash its canonical bytes, and call ``record_seal``,
which chains the SHA-256 and adds the segment's index row in one transaction. Buffering,
sealing on size or age, and keeping records through a failed seal are the same for
every backend, so they live here once.
"""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.timeutil import isoformat
from hostwarden.flows.models import CHAIN_SEAL, FLOWS_DATASET, FlowSegment
from hostwarden.flows.schema import LOCAL_DST, FlowBatch
from hostwarden.flows.store import DAY_MS, Segment, StoreWriteFailed, integrity
from hostwarden.registry import netaddr

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime

log = get_logger("hostwarden.flows.store")

#: After a failed seal, writes buffer without trying again for this long.
RETRY_SECONDS = 10.0

#: The fields of a seal entry: what verification needs and what holds and queries use.
CHAINED_FIELDS = ("day", "sha256", "size", "rows", "first_ms", "last_ms", "min_local", "max_local")


def day_text(day_index: int) -> str:
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(days=day_index)).strftime("%Y-%m-%d")


def local_address(batch: FlowBatch) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """The provider-side address of every record (``src`` unless ``local_side`` says dst)."""
    on_dst = batch["local_side"] == LOCAL_DST
    return (
        np.where(on_dst, batch["dst_hi"], batch["src_hi"]),
        np.where(on_dst, batch["dst_lo"], batch["src_lo"]),
    )


def _min_max_key(hi: NDArray[np.uint64], lo: NDArray[np.uint64]) -> tuple[str, str]:
    low_hi, high_hi = hi.min(), hi.max()
    low = (int(low_hi) << 64) | int(lo[hi == low_hi].min())
    high = (int(high_hi) << 64) | int(lo[hi == high_hi].max())
    return netaddr.key_of_int(low), netaddr.key_of_int(high)


def index_fields(batch: FlowBatch) -> dict[str, Any]:
    """A segment's index fields: rows, time range, provider-side address and customer
    ranges (what queries and legal holds decide on without opening it)."""
    min_local, max_local = _min_max_key(*local_address(batch))
    customers = batch["customer_id"]
    known = customers[customers >= 0]
    starts = batch["start"]
    # A record lasts from its start to its end, but never counts as longer than a day: one
    # exporter's wrong end time must not keep a whole segment past its expiry.
    ends = np.minimum(np.maximum(batch["end"], starts), starts + DAY_MS)
    return {
        "rows": len(batch),
        "first_ms": int(starts.min()),
        "last_ms": int(ends.max()),
        "min_local": min_local,
        "max_local": max_local,
        "min_customer": int(known.min()) if len(known) else -1,
        "max_customer": int(known.max()) if len(known) else -1,
    }


def record_seal(
    runtime: Runtime,
    *,
    name: str,
    day: str,
    sha256: str,
    size: int,
    fields: dict[str, Any],
    sealed_at: datetime,
    dataset: str = FLOWS_DATASET,
) -> tuple[Segment, dict[str, Any] | None]:
    """Chain a stored segment and add its index row, in one transaction; returns the
    segment and the signed checkpoint to publish once that transaction has committed.
    If this raises, nothing was chained and the caller removes what it stored."""
    with runtime.db.session() as session:
        integrity.lock_chain(session)
        row = add_seal(
            session,
            name=name,
            day=day,
            sha256=sha256,
            size=size,
            fields=fields,
            sealed_at=sealed_at,
            dataset=dataset,
        )
        checkpoint = integrity.sign_head(session, runtime.signer)
        session.flush()
        segment = Segment.of(row)
    return segment, checkpoint


def add_seal(
    session: Session,
    *,
    name: str,
    day: str,
    sha256: str,
    size: int,
    fields: dict[str, Any],
    sealed_at: datetime,
    dataset: str = FLOWS_DATASET,
    extra: dict[str, Any] | None = None,
) -> FlowSegment:
    """The seal entry and index row of a stored segment, in the caller's transaction
    (which holds ``lock_chain`` and signs the head). ``extra`` adds chained fields (a
    compacted segment's companion file and the segments it replaces); entries without
    it hash as they always did."""
    body = {"day": day, "sha256": sha256, "size": size, **fields}
    chained = {k: body[k] for k in CHAINED_FIELDS}
    chained["sealed_at"] = isoformat(sealed_at)
    if dataset != FLOWS_DATASET:
        # Only log segments name their dataset: entries chained before there were log
        # datasets must hash as they did.
        chained["dataset"] = dataset
    if extra:
        chained.update(extra)
    entry = integrity.append(session, CHAIN_SEAL, name, chained)
    row = FlowSegment(
        name=name,
        day=day,
        sha256=sha256,
        size=size,
        sealed_at=sealed_at,
        seal_seq=entry.seq,
        dataset=dataset,
        **fields,
    )
    session.add(row)
    session.flush()
    return row


def publish_head(runtime: Runtime, checkpoint: dict[str, Any] | None) -> None:
    """Write the head file after a committed seal; the seal stands even if this fails
    (the database holds the same checkpoint, and the next seal writes the file again)."""
    try:
        integrity.publish_head(runtime, checkpoint)
    except OSError:
        log.exception("flows head file not written")


class BufferedStore:
    """Per-day buffers in front of a backend's ``_seal``; one per process (collector
    worker, CLI call, job)."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        settings = runtime.settings.flows
        self.segment_records = settings.segment_records
        self.segment_seconds = settings.segment_seconds
        self._buffers: dict[int, list[FlowBatch]] = {}
        self._rows: dict[int, int] = {}
        self._opened: dict[int, float] = {}
        self._lock = threading.Lock()
        self._seal_lock = threading.Lock()
        #: The last seal's failure (None once a seal succeeds), and when write() may
        #: try again.
        self._failure: Exception | None = None
        self._retry_at = 0.0

    def _seal(self, day: int, batch: FlowBatch) -> Segment:
        """Store ``batch`` (records of one UTC day) as one sealed segment, or raise
        having stored nothing."""
        raise NotImplementedError

    @property
    def buffered_rows(self) -> int:
        with self._lock:
            return sum(self._rows.values())

    def write(self, batch: FlowBatch) -> None:
        """Buffer ``batch`` and seal the days that are due. A failed seal does not fail
        the write: its records stay buffered (logged, retried after
        ``RETRY_SECONDS`` or at the next flush). Only when seals keep failing and the
        buffer holds ``2 × segment_records`` does a write raise, without taking the
        batch, so that the caller keeps it and nothing is stored twice."""
        if len(batch) == 0:
            return
        with self._lock:
            waiting = sum(self._rows.values())
            failure = self._failure
        if failure is not None and waiting + len(batch) > 2 * self.segment_records:
            raise StoreWriteFailed(
                f"the flow store took none of these {len(batch)} records: {waiting} records "
                f"already wait for a seal that failed ({failure}).",
                hint="Fix the cause named (disk space, database, ClickHouse); keep the "
                "records and write them again later.",
            )
        days = batch["start"] // DAY_MS
        first = int(days[0])
        if (days == first).all():
            parts = [(first, batch)]
        else:
            values, inverse = np.unique(days, return_inverse=True)
            parts = [(int(d), batch.take(inverse == i)) for i, d in enumerate(values)]
        now = time.monotonic()
        with self._lock:
            for day, part in parts:
                self._buffers.setdefault(day, []).append(part)
                self._rows[day] = self._rows.get(day, 0) + len(part)
                self._opened.setdefault(day, now)
        if now < self._retry_at:
            return
        try:
            self.seal_due()
        except Exception:
            # Logged by _seal_days, which also put the records back in the buffer.
            self._retry_at = time.monotonic() + RETRY_SECONDS

    def seal_due(self) -> list[Segment]:
        """Seal each day whose buffer reached ``segment_records`` or is older than
        ``segment_seconds``; a collector calls this from its timer too."""
        now = time.monotonic()
        with self._lock:
            due = [
                day
                for day, rows in self._rows.items()
                if rows >= self.segment_records or now - self._opened[day] >= self.segment_seconds
            ]
        return self._seal_days(due)

    def flush(self) -> list[Segment]:
        with self._lock:
            days = list(self._buffers)
        return self._seal_days(days)

    def _take(self, day: int) -> tuple[FlowBatch, float] | None:
        with self._lock:
            parts = self._buffers.pop(day, None)
            self._rows.pop(day, None)
            opened = self._opened.pop(day, time.monotonic())
        return None if parts is None else (FlowBatch.concat(parts), opened)

    def _give_back(self, day: int, batch: FlowBatch, opened: float) -> None:
        """Put records whose seal failed back in front of the buffer, for the next try."""
        with self._lock:
            self._buffers.setdefault(day, []).insert(0, batch)
            self._rows[day] = self._rows.get(day, 0) + len(batch)
            self._opened[day] = min(self._opened.get(day, opened), opened)

    def _seal_days(self, days: list[int]) -> list[Segment]:
        sealed: list[Segment] = []
        failure: Exception | None = None
        tried = False
        with self._seal_lock:
            for day in sorted(days):
                taken = self._take(day)
                if taken is None or len(taken[0]) == 0:
                    continue
                batch, opened = taken
                tried = True
                try:
                    sealed.append(self._seal(day, batch))
                except Exception as exc:
                    self._give_back(day, batch, opened)
                    log.error(
                        "flow segment not sealed; its records stay buffered for the next try",
                        day=day_text(day),
                        rows=len(batch),
                        error=f"{exc.__class__.__name__}: {exc}",
                    )
                    failure = failure or exc
        if tried:
            self._failure = failure
        if failure is not None:
            raise failure
        self._retry_at = 0.0
        return sealed

    # --- the index ---------------------------------------------------------------------

    def segments(self, *, since_ms: int | None = None) -> list[Segment]:
        query = (
            select(FlowSegment)
            .where(FlowSegment.dataset == FLOWS_DATASET)
            .order_by(FlowSegment.first_ms, FlowSegment.id)
        )
        if since_ms is not None:
            query = query.where(FlowSegment.last_ms >= since_ms)
        with self.runtime.reading() as session:
            return [Segment.of(row) for row in session.scalars(query)]

    @staticmethod
    def live_segments(
        session: Session, start_ms: int, end_ms: int, *, dataset: str = FLOWS_DATASET
    ) -> list[FlowSegment]:
        """Unexpired segments of ``dataset`` with records in [start_ms, end_ms), oldest
        first."""
        return list(
            session.scalars(
                select(FlowSegment)
                .where(
                    FlowSegment.dataset == dataset,
                    FlowSegment.expired_at.is_(None),
                    FlowSegment.first_ms < end_ms,
                    FlowSegment.last_ms >= start_ms,
                )
                .order_by(FlowSegment.first_ms, FlowSegment.id)
            )
        )
