"""The flow store interface: what every backend (Parquet, ClickHouse) offers and reports.

A backend buffers records, seals them into immutable segments whose SHA-256 goes into
the segment hash chain, answers queries, re-checks every segment against the chain, and
expires whole segments past the retention policy unless a legal hold pins them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from hostwarden.core.timeutil import isoformat
from hostwarden.errors import ConfigError, HostwardenError

if TYPE_CHECKING:
    # Only for annotations: the CLI imports this module for every command, and pyarrow
    # takes a noticeable moment to load.
    import pyarrow as pa

    from hostwarden.core.runtime import Operation, Runtime
    from hostwarden.flows.models import FlowSegment
    from hostwarden.flows.schema import FlowBatch

#: Called while verifying with (bytes hashed so far, bytes to hash in all).
ProgressFn = Callable[[int, int], None]

DAY_MS = 86_400_000


class SegmentUnreadable(HostwardenError):
    code = "segment-unreadable"
    title = "A stored flow segment cannot be read"
    status = 500


class StoreWriteFailed(HostwardenError):
    code = "store-write-failed"
    title = "Flow records could not be written"
    status = 507


@dataclass(frozen=True)
class Segment:
    """A sealed segment as the store's index knows it."""

    name: str
    day: str
    rows: int
    size: int
    sha256: str
    first_ms: int
    last_ms: int
    min_local: str
    max_local: str
    min_customer: int
    max_customer: int
    sealed_at: datetime
    seal_seq: int
    expired_at: datetime | None = None
    expire_seq: int | None = None

    @property
    def live(self) -> bool:
        return self.expired_at is None

    @classmethod
    def of(cls, row: FlowSegment) -> Segment:
        return cls(
            name=row.name,
            day=row.day,
            rows=row.rows,
            size=row.size,
            sha256=row.sha256,
            first_ms=row.first_ms,
            last_ms=row.last_ms,
            min_local=row.min_local,
            max_local=row.max_local,
            min_customer=row.min_customer,
            max_customer=row.max_customer,
            sealed_at=row.sealed_at,
            seal_seq=row.seal_seq,
            expired_at=row.expired_at,
            expire_seq=row.expire_seq,
        )

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["sealed_at"] = isoformat(self.sealed_at)
        data["expired_at"] = None if self.expired_at is None else isoformat(self.expired_at)
        return data


#: What verify can find. Segments: modified (same size, other bytes, or grown), truncated
#: (smaller), deleted (file gone though not expired), added (file with no chain entry).
#: Chain: altered (entry no longer matches its hash), broken-link (an entry does not link
#: to the one before: deleted, inserted or reordered), forged (a checkpoint this key did
#: not sign), rewritten (a genuine checkpoint's head differs from the chain), unsigned
#: (entries past the last signed checkpoint), index (the segment table disagrees with
#: the chain).
PROBLEM_KINDS = (
    "modified",
    "truncated",
    "deleted",
    "added",
    "altered",
    "broken-link",
    "forged",
    "rewritten",
    "unsigned",
    "index",
)


@dataclass(frozen=True)
class StoreProblem:
    kind: str
    message: str
    segment: str | None = None
    seq: int | None = None


@dataclass
class StoreVerifyReport:
    chain_entries: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    head_hash: str = ""
    segments_checked: int = 0
    bytes_hashed: int = 0
    problems: list[StoreProblem] = field(default_factory=list)
    #: Not tampering but worth knowing: leftover temporary files, files of expired
    #: segments not yet removed.
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def by_kind(self, kind: str) -> list[str]:
        return sorted(p.segment or "" for p in self.problems if p.kind == kind)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "chain_entries": self.chain_entries,
            "checkpoints": self.checkpoints,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "segments_checked": self.segments_checked,
            "bytes_hashed": self.bytes_hashed,
            "problems": [asdict(p) for p in self.problems],
            "notes": list(self.notes),
        }


@dataclass
class ExpiryReport:
    cutoff_ms: int
    retention_days: int
    expired: list[str] = field(default_factory=list)
    rows_expired: int = 0
    bytes_expired: int = 0
    #: Segment name → ids of the legal holds that keep it.
    pinned: dict[str, list[int]] = field(default_factory=dict)
    #: Expired segments whose file was already missing or resized (recorded in the chain).
    damaged: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class FlowStore(Protocol):
    def write(self, batch: FlowBatch) -> None:
        """Buffer records; seals a day's buffer once it reaches the segment size or age."""

    def flush(self) -> list[Segment]:
        """Seal everything buffered (temporary file, fsync, rename, fsync directory, then
        chain); returns the new segments."""

    def query(
        self,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int | None = None,
    ) -> pa.Table:
        """Records starting in [start_ms, end_ms), matching any of ``ips`` (addresses or
        prefixes, on either side), any of ``customers``, any of ``ports`` (on either
        side) and any of ``protos`` (IP protocol numbers), ordered by start."""

    def query_batches(
        self,
        *,
        start_ms: int,
        end_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int | None = None,
    ) -> Iterator[pa.Table]:
        """What ``query`` answers, in pieces as the engine produces them, so that a
        large answer is never held whole. Bad input and unreadable segments raise
        before the first piece."""

    def top_talkers(
        self,
        *,
        start_ms: int,
        end_ms: int,
        by: str = "bytes",
        group: str = "ip",
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
        limit: int = 20,
    ) -> pa.Table:
        """The ``limit`` largest provider-side addresses (``group="ip"``) or customers
        by ``by`` (bytes, packets or flows) over the matching records: columns key
        (address text, or customer id as text, "-" for records nobody held),
        customer_id (-1: none), flows, packets, bytes; largest first."""

    def time_series(
        self,
        *,
        start_ms: int,
        end_ms: int,
        step_ms: int,
        ips: Sequence[str] = (),
        customers: Sequence[int] = (),
        ports: Sequence[int] = (),
        protos: Sequence[int] = (),
    ) -> pa.Table:
        """Totals of the matching records per step from ``start_ms``: columns bucket_ms
        (each step's start), flows, packets, bytes; every step present, empty ones
        zero. At least 1 s a step and at most ``common.MAX_BUCKETS`` steps."""

    def segments(self, *, since_ms: int | None = None) -> list[Segment]:
        """Sealed segments (expired ones included), oldest first."""

    def verify(
        self, *, since_ms: int | None = None, progress: ProgressFn | None = None
    ) -> StoreVerifyReport:
        """Check the chain's links and signatures and re-hash every live segment."""

    def expire(self, op: Operation, now_ms: int) -> ExpiryReport:
        """Expire the segments past retention that no legal hold pins."""

    def close(self) -> None:
        """Seal what is buffered and release resources."""


def open_store(runtime: Runtime) -> FlowStore:
    """The backend ``flows.store`` names."""
    kind = runtime.settings.flows.store
    if kind == "parquet":
        from hostwarden.flows.store.parquet import ParquetStore

        return ParquetStore(runtime)
    if kind == "clickhouse":
        from hostwarden.flows.store.clickhouse import ClickHouseStore

        return ClickHouseStore(runtime)
    raise ConfigError(
        f"flow store backend '{kind}' is unknown.",
        hint='Set [flows] store = "parquet" (embedded) or "clickhouse" (with clickhouse_url).',
    )
