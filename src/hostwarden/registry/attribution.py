"""Who held an IP address (and, behind NAT, a port) at a moment: single and bulk lookups.

Lookups never touch the database: they read an in-memory index of every IP assignment,
NAT block and domain, built from the registry and rebuilt when ``RegistryGeneration``
changes. A process checks the generation at most once every ``REFRESH_SECONDS`` (one
cheap query), and at once after it committed an inventory change itself (the inventory
service marks the index stale after commit), so a change made elsewhere is seen within
about a second and one made here on the next lookup. ``current_index(runtime, check=True)``
checks on demand.

The index, per prefix length (longest first), keeps the distinct prefixes sorted by first
address as two ``uint64`` words and, per prefix, its intervals sorted by start. Prefixes
of one length are disjoint, so an address has at most one candidate per length: the
lookup masks the address to that length, finds the prefix by binary search, then the
interval holding at the moment by a second binary search. The first length with a hit
wins: longest-prefix match among the assignments valid *then*. The bulk form runs the
same searches on whole numpy arrays, one pass per prefix length, with no per-record loop.
"""

from __future__ import annotations

import threading
import time
import weakref
from bisect import bisect_left, bisect_right
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import BigInteger, ColumnElement, Select, cast, event, func, select
from sqlalchemy.orm import Session

from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Operation, Runtime
from hostwarden.core.timeutil import isoformat_or_none
from hostwarden.errors import ValidationFailed
from hostwarden.registry import netaddr
from hostwarden.registry.inventory import aware_time, current_generation
from hostwarden.registry.models import Domain, IpAssignment, NatMapping

#: How long a process trusts its index before asking the database for the generation.
REFRESH_SECONDS = 1.0
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_OPEN = np.iinfo(np.int64).max  # valid_to of a current interval
_MICRO = timedelta(microseconds=1)
log = get_logger("hostwarden.attribution")

I64Array = NDArray[np.int64]
U64Array = NDArray[np.uint64]


def to_epoch_us(moment: datetime) -> int:
    """Exact microseconds since the epoch (integer arithmetic, no float rounding)."""
    return (moment - _EPOCH) // _MICRO


def from_epoch_us(value: int) -> datetime:
    return _EPOCH + timedelta(microseconds=int(value))


# --- results ----------------------------------------------------------------------------
#
# Results are plain slotted classes that keep the index's integers and build datetimes and
# address texts only when read: a lookup is a few microseconds, and building every field
# eagerly (frozen dataclasses, ``ipaddress`` objects, datetimes) cost more than the search.


def _when(us: int) -> datetime | None:
    return None if us == _OPEN else from_epoch_us(us)


class AssignmentInterval:
    """The assignment interval that answered a lookup."""

    __slots__ = ("_from_us", "_length", "_start", "_to_us", "id")

    def __init__(self, id: int, start: int, length: int, from_us: int, to_us: int) -> None:
        self.id = id
        self._start = start
        self._length = length
        self._from_us = from_us
        self._to_us = to_us

    @property
    def prefix(self) -> str:
        return netaddr.prefix_text(self._start, self._length)

    @property
    def valid_from(self) -> datetime:
        return from_epoch_us(self._from_us)

    @property
    def valid_to(self) -> datetime | None:
        return _when(self._to_us)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "prefix": self.prefix,
            "valid_from": isoformat_or_none(self.valid_from),
            "valid_to": isoformat_or_none(self.valid_to),
        }


class NatUsed:
    """The NAT port block that turned a public address and port into a private address."""

    __slots__ = ("_block", "_public")

    def __init__(self, block: _Nat, public: int) -> None:
        self._block = block
        self._public = public

    @property
    def id(self) -> int:
        return self._block.id

    @property
    def public_ip(self) -> str:
        return str(netaddr.int_to_address(self._public))

    @property
    def port_start(self) -> int:
        return self._block.port_start

    @property
    def port_end(self) -> int:
        return self._block.port_end

    @property
    def private_ip(self) -> str:
        return self._block.private_ip

    @property
    def valid_from(self) -> datetime:
        return from_epoch_us(self._block.from_us)

    @property
    def valid_to(self) -> datetime | None:
        return _when(self._block.to_us)

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "public_ip": self.public_ip,
            "port_start": self.port_start,
            "port_end": self.port_end,
            "private_ip": self.private_ip,
            "valid_from": isoformat_or_none(self.valid_from),
            "valid_to": isoformat_or_none(self.valid_to),
        }


class Attribution:
    """Who held an address (and port) at a moment, and through which assignment."""

    __slots__ = (
        "_index",
        "_t_us",
        "_value",
        "assignment",
        "at",
        "customer_id",
        "instance_id",
        "nat",
        "port",
    )

    def __init__(
        self,
        index: AttributionIndex,
        value: int,
        at: datetime,
        t_us: int,
        port: int | None,
        customer_id: int,
        instance_id: int | None,
        assignment: AssignmentInterval,
        nat: NatUsed | None,
    ) -> None:
        self._index = index
        self._value = value
        self._t_us = t_us
        self.at = at
        self.port = port
        self.customer_id = customer_id
        self.instance_id = instance_id
        self.assignment = assignment
        self.nat = nat

    @property
    def ip(self) -> str:
        return str(netaddr.int_to_address(self._value))

    @property
    def domains(self) -> tuple[str, ...]:
        return self._index.domains_at(self.customer_id, self.instance_id, self._t_us)

    def __repr__(self) -> str:
        return (
            f"Attribution(ip={self.ip!r}, at={self.at.isoformat()!r}, port={self.port!r}, "
            f"customer_id={self.customer_id}, instance_id={self.instance_id}, "
            f"assignment={self.assignment.prefix!r})"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "ip": self.ip,
            "at": isoformat_or_none(self.at),
            "port": self.port,
            "customer_id": self.customer_id,
            "instance_id": self.instance_id,
            "assignment": self.assignment.as_dict(),
            "nat": self.nat.as_dict() if self.nat is not None else None,
            "domains": list(self.domains),
        }


# --- the index --------------------------------------------------------------------------


#: Largest dense slot table of a level (4 MB of int32).
DENSE_SLOTS = 1 << 20


@dataclass
class _Level:
    """All assignments whose prefix has one length (in the 128-bit space)."""

    length: int
    v4: bool  # IPv4 prefixes and IPv6 prefixes of one length are kept apart
    hi: U64Array  # first address of each distinct prefix, sorted
    lo: U64Array
    same_hi: bool  # every prefix has the same high word (all IPv4, say): one-word search
    hi0: int  # that word, when same_hi
    max_hi_run: int  # most prefixes sharing one high word (bound of the bisection)
    offsets: I64Array  # intervals of prefix p are offsets[p]:offsets[p + 1]
    max_intervals: int
    from_us: I64Array  # per interval, sorted by (prefix, valid_from)
    to_us: I64Array
    assignment_id: I64Array
    customer_id: I64Array
    instance_id: I64Array  # -1: none

    # Single lookups read the arrays through memoryviews with ``bisect``: each read is a
    # plain Python int, and one bisection costs less than one numpy call on a scalar.
    _hi: memoryview = field(init=False, repr=False)
    _lo: memoryview = field(init=False, repr=False)
    _offsets: memoryview = field(init=False, repr=False)
    _from: memoryview = field(init=False, repr=False)
    _to: memoryview = field(init=False, repr=False)
    _assignment: memoryview = field(init=False, repr=False)
    _customer: memoryview = field(init=False, repr=False)
    _instance: memoryview = field(init=False, repr=False)
    #: For a level of one high word whose prefixes span at most DENSE_SLOTS prefixes of
    #: its length (a provider's IPv4 ranges): the prefix index of each slot (-1: none),
    #: slot = (low word - first prefix's) >> (128 - length). One array read per address
    #: instead of a binary search: 2 against about 70 ns (bench/ingest.py's stream).
    _dense: NDArray[np.int32] | None = field(init=False, repr=False, default=None)
    _shift: int = field(init=False, repr=False, default=0)

    def __post_init__(self) -> None:
        def view(array: NDArray[Any]) -> memoryview:
            return np.ascontiguousarray(array).data

        self._hi, self._lo, self._offsets = view(self.hi), view(self.lo), view(self.offsets)
        self._from, self._to = view(self.from_us), view(self.to_us)
        self._assignment = view(self.assignment_id)
        self._customer, self._instance = view(self.customer_id), view(self.instance_id)
        if self.same_hi and self.length > 64 and len(self.lo):  # shifts below 64 bits
            self._shift = 128 - self.length
            slots = ((self.lo - self.lo[0]) >> np.uint64(self._shift)).astype(np.int64)
            if int(slots[-1]) < DENSE_SLOTS:
                dense = np.full(int(slots[-1]) + 1, -1, dtype=np.int32)
                dense[slots] = np.arange(len(slots), dtype=np.int32)
                self._dense = dense

    def find_one(self, hi: int, lo: int) -> int:
        """Index of the prefix starting at (hi, lo), or -1."""
        los = self._lo
        if self.same_hi:
            if hi != self.hi0:
                return -1
            pos = bisect_right(los, lo) - 1
            if pos < 0 or los[pos] != lo:
                return -1
            return pos
        first = bisect_left(self._hi, hi)
        last = bisect_right(self._hi, hi, first)
        pos = bisect_right(los, lo, first, last) - 1
        if pos < first or los[pos] != lo:
            return -1
        return pos

    def interval_one(self, prefix: int, t_us: int) -> int:
        """Index of the interval of ``prefix`` holding at ``t_us``, or -1."""
        first: int = self._offsets[prefix]
        j = bisect_right(self._from, t_us, first, self._offsets[prefix + 1]) - 1
        if j < first or t_us >= self._to[j]:
            return -1
        return j

    def interval(self, prefix: int, j: int) -> tuple[int, int | None, AssignmentInterval]:
        """Customer, instance and the assignment interval of interval ``j``."""
        instance: int = self._instance[j]
        return (
            self._customer[j],
            instance if instance >= 0 else None,
            AssignmentInterval(
                self._assignment[j],
                (self._hi[prefix] << 64) | self._lo[prefix],
                self.length,
                self._from[j],
                self._to[j],
            ),
        )

    def find_many(self, hi: U64Array, lo: U64Array) -> I64Array:
        """Vectorised ``find_one``.

        Only the addresses between the level's first and last prefix are searched: in a
        batch of flow records about half of them are remote peers, far outside the
        provider's ranges, and comparing with two bounds costs a few nanoseconds an
        address where a search costs about seventy (bench/ingest.py)."""
        found = np.full(len(hi), -1, dtype=np.int64)
        if not len(self.lo):
            return found
        h0, l0, h1, l1 = self.hi[0], self.lo[0], self.hi[-1], self.lo[-1]
        if self.same_hi:
            inside = (hi == h0) & (lo >= l0) & (lo <= l1)
        else:
            inside = ((hi > h0) | ((hi == h0) & (lo >= l0))) & (
                (hi < h1) | ((hi == h1) & (lo <= l1))
            )
        rows = np.flatnonzero(inside)
        if not rows.size:
            return found
        if self._dense is not None:
            slots = (lo[rows] - l0) >> np.uint64(self._shift)
            found[rows] = self._dense[slots.astype(np.intp)]
        else:
            found[rows] = self._search(hi[rows], lo[rows])
        return found

    def _search(self, hi: U64Array, lo: U64Array) -> I64Array:
        if self.same_hi:
            pos = np.searchsorted(self.lo, lo, side="right").astype(np.int64) - 1
            ok = (pos >= 0) & (hi == self.hi[0])
        else:
            first = np.searchsorted(self.hi, hi, side="left").astype(np.int64)
            end = np.searchsorted(self.hi, hi, side="right").astype(np.int64)
            pos = _last_at_most(self.lo, first, end, lo, self.max_hi_run)
            ok = pos >= first
        safe = np.clip(pos, 0, None)
        ok &= (self.lo[safe] == lo) & (self.hi[safe] == hi)
        return np.where(ok, pos, -1)

    def interval_many(self, prefix: I64Array, t_us: I64Array) -> I64Array:
        first = self.offsets[prefix]
        end = self.offsets[prefix + 1]
        j = _last_at_most(self.from_us, first, end, t_us, self.max_intervals)
        safe = np.clip(j, 0, None)
        ok = (j >= first) & (t_us < self.to_us[safe])
        return np.where(ok, j, -1)


def _last_at_most(
    values: NDArray[Any], first: I64Array, end: I64Array, target: NDArray[Any], longest: int
) -> I64Array:
    """For each i: the last index k in [first[i], end[i]) with values[k] <= target[i]
    (first[i] - 1 if none); values sorted within each segment. A vectorised bisection:
    as many rounds as the longest segment needs, each over all queries at once."""
    low = first.copy()
    high = end.copy()
    top = max(len(values) - 1, 0)
    for _ in range(max(int(longest), 1).bit_length()):
        active = low < high
        if not active.any():
            break
        mid = (low + high) >> 1
        go = active & (values[np.minimum(mid, top)] <= target)
        low = np.where(go, mid + 1, low)
        high = np.where(active & ~go, mid, high)
    return low - 1


@dataclass(frozen=True)
class _Nat:
    id: int
    port_start: int
    port_end: int
    private_ip: str
    private_int: int
    from_us: int
    to_us: int


@dataclass(frozen=True)
class _DomainSpan:
    name: str
    instance_id: int | None
    from_us: int
    to_us: int


@dataclass
class AttributionIndex:
    """An immutable snapshot of the registry's time-ranged assignments."""

    generation: int
    levels: list[_Level]  # longest prefix first
    nat: dict[int, list[_Nat]] = field(default_factory=dict)  # by public address number
    domains: dict[int, list[_DomainSpan]] = field(default_factory=dict)  # by customer
    assignments: int = 0
    v4_levels: list[_Level] = field(init=False)
    v6_levels: list[_Level] = field(init=False)

    def __post_init__(self) -> None:
        self.v4_levels = [level for level in self.levels if level.v4]
        self.v6_levels = [level for level in self.levels if not level.v4]

    # single lookups -------------------------------------------------------------------

    def locate(self, address: int, t_us: int) -> tuple[_Level, int, int] | None:
        """The level, prefix index and interval index holding ``address`` at ``t_us``,
        longest prefix first."""
        for level in self.v4_levels if netaddr.is_v4_int(address) else self.v6_levels:
            dropped = 128 - level.length
            masked = (address >> dropped) << dropped
            prefix = level.find_one(masked >> 64, masked & 0xFFFFFFFFFFFFFFFF)
            if prefix < 0:
                continue
            j = level.interval_one(prefix, t_us)
            if j >= 0:
                return level, prefix, j
        return None

    def nat_block(self, public_ip: int, port: int, t_us: int) -> _Nat | None:
        for block in self.nat.get(public_ip, ()):
            if block.port_start <= port <= block.port_end and block.from_us <= t_us < block.to_us:
                return block
        return None

    def is_nat_address(self, public_ip: int, t_us: int) -> bool:
        return any(b.from_us <= t_us < b.to_us for b in self.nat.get(public_ip, ()))

    def domains_at(self, customer_id: int, instance_id: int | None, t_us: int) -> tuple[str, ...]:
        """Domains valid at the moment: the instance's, and the customer's bound to no
        instance (with no instance known, all of the customer's)."""
        names = {
            d.name
            for d in self.domains.get(customer_id, ())
            if d.from_us <= t_us < d.to_us
            and (instance_id is None or d.instance_id in (None, instance_id))
        }
        return tuple(sorted(names))

    # bulk -----------------------------------------------------------------------------

    def resolve_many(
        self, hi: U64Array, lo: U64Array, t_us: I64Array
    ) -> tuple[I64Array, I64Array, I64Array]:
        """Customer, instance and assignment id per (address, time); -1 where nobody."""
        n = len(hi)
        customer = np.full(n, -1, dtype=np.int64)
        instance = np.full(n, -1, dtype=np.int64)
        assignment = np.full(n, -1, dtype=np.int64)
        v4 = netaddr.is_v4_hilo(hi, lo)
        families = {True: np.flatnonzero(v4), False: np.flatnonzero(~v4)}
        for level in self.levels:
            todo = families[level.v4]
            if todo.size == 0:
                continue
            q_hi, q_lo = netaddr.mask_hilo(hi[todo], lo[todo], level.length)
            prefix = level.find_many(q_hi, q_lo)
            has = np.flatnonzero(prefix >= 0)
            if has.size == 0:
                continue
            j = level.interval_many(prefix[has], t_us[todo[has]])
            hit = j >= 0
            rows = todo[has[hit]]
            jj = j[hit]
            customer[rows] = level.customer_id[jj]
            instance[rows] = level.instance_id[jj]
            assignment[rows] = level.assignment_id[jj]
            keep = np.ones(todo.size, dtype=bool)
            keep[has[hit]] = False
            families[level.v4] = todo[keep]
        return customer, instance, assignment


def _epoch_us_sql(column: Any, dialect: str) -> ColumnElement[Any]:
    """Microseconds since the epoch computed by the database, exactly: reading a million
    datetimes through Python objects would dominate the rebuild."""
    if dialect == "postgresql":
        return cast(func.extract("epoch", column) * 1000000, BigInteger)
    # SQLite keeps "YYYY-MM-DD HH:MM:SS.ffffff" (naive UTC, see core.db.UtcDateTime).
    seconds = cast(func.strftime("%s", column), BigInteger)
    micros = cast(func.substr(column, 21, 6), BigInteger)
    return seconds * 1000000 + micros


def _plain_rows(session: Session, stmt: Select[Any]) -> list[tuple[Any, ...]]:
    """All rows of a statement of plain columns (no parameters) as the driver's tuples.

    A million rows through SQLAlchemy's result objects cost more than the query itself;
    the driver cursor of the session's own connection (same transaction) skips that."""
    conn = session.connection()
    sql = str(stmt.compile(dialect=conn.dialect, compile_kwargs={"literal_binds": True}))
    cursor = conn.connection.cursor()
    try:
        cursor.execute(sql)
        return list(cursor.fetchall())
    finally:
        cursor.close()


def build_index(session: Session) -> AttributionIndex:
    """Read the registry into a fresh index. The generation is read first, so the rows
    are at least as new as the generation the index claims."""
    generation = current_generation(session)
    dialect = session.get_bind().dialect.name
    rows = _plain_rows(
        session,
        select(
            IpAssignment.id,
            IpAssignment.start_key,
            IpAssignment.end_key,
            IpAssignment.customer_id,
            func.coalesce(IpAssignment.instance_id, -1),
            _epoch_us_sql(IpAssignment.valid_from, dialect),
            func.coalesce(_epoch_us_sql(IpAssignment.valid_to, dialect), _OPEN),
        ),
    )
    levels: list[_Level] = []
    if rows:
        ids, starts, ends, customers, instances, froms, tos = zip(*rows, strict=True)
        levels = _levels(
            np.asarray(ids, dtype=np.int64),
            *netaddr.keys_to_hilo(starts),
            *netaddr.keys_to_hilo(ends),
            np.asarray(customers, dtype=np.int64),
            np.asarray(instances, dtype=np.int64),
            np.asarray(froms, dtype=np.int64),
            np.asarray(tos, dtype=np.int64),
        )
    nat: dict[int, list[_Nat]] = {}
    for row in session.execute(
        select(
            NatMapping.id,
            NatMapping.public_ip,
            NatMapping.port_start,
            NatMapping.port_end,
            NatMapping.private_ip,
            _epoch_us_sql(NatMapping.valid_from, dialect),
            func.coalesce(_epoch_us_sql(NatMapping.valid_to, dialect), _OPEN),
        ).order_by(NatMapping.port_start)
    ):
        nat.setdefault(netaddr.text_to_int(row[1]), []).append(
            _Nat(
                row[0],
                row[2],
                row[3],
                row[4],
                netaddr.text_to_int(row[4]),
                int(row[5]),
                int(row[6]),
            )
        )
    domains: dict[int, list[_DomainSpan]] = {}
    for d in session.execute(
        select(
            Domain.name,
            Domain.customer_id,
            Domain.instance_id,
            _epoch_us_sql(Domain.valid_from, dialect),
            func.coalesce(_epoch_us_sql(Domain.valid_to, dialect), _OPEN),
        )
    ):
        domains.setdefault(d[1], []).append(_DomainSpan(d[0], d[2], int(d[3]), int(d[4])))
    return AttributionIndex(generation, levels, nat, domains, assignments=len(rows))


def _levels(
    ids: I64Array,
    start_hi: U64Array,
    start_lo: U64Array,
    end_hi: U64Array,
    end_lo: U64Array,
    customers: I64Array,
    instances: I64Array,
    froms: I64Array,
    tos: I64Array,
) -> list[_Level]:
    lengths = netaddr.prefix_lengths(start_hi, start_lo, end_hi, end_lo)
    v4 = netaddr.is_v4_hilo(start_hi, start_lo) & (lengths >= 96)
    kinds = np.unique(lengths.astype(np.int64) * 2 + v4)  # (length, family) pairs
    levels: list[_Level] = []
    for kind in kinds[::-1].tolist():
        length, family = kind >> 1, bool(kind & 1)
        pick = np.flatnonzero((lengths == length) & (v4 == family))
        hi, lo, t0 = start_hi[pick], start_lo[pick], froms[pick]
        order = np.lexsort((t0, lo, hi))
        pick, hi, lo = pick[order], hi[order], lo[order]
        new_prefix = np.ones(len(pick), dtype=bool)
        new_prefix[1:] = (hi[1:] != hi[:-1]) | (lo[1:] != lo[:-1])
        starts = np.flatnonzero(new_prefix)
        offsets = np.append(starts, len(pick)).astype(np.int64)
        prefix_hi, prefix_lo = hi[starts], lo[starts]
        _, hi_runs = np.unique(prefix_hi, return_counts=True)
        levels.append(
            _Level(
                length=length,
                v4=family,
                hi=np.ascontiguousarray(prefix_hi),
                lo=np.ascontiguousarray(prefix_lo),
                same_hi=len(hi_runs) == 1,
                hi0=int(prefix_hi[0]),
                max_hi_run=int(hi_runs.max()),
                offsets=offsets,
                max_intervals=int(np.diff(offsets).max()),
                from_us=froms[pick],
                to_us=tos[pick],
                assignment_id=ids[pick],
                customer_id=customers[pick],
                instance_id=instances[pick],
            )
        )
    return levels


# --- one index per runtime --------------------------------------------------------------


class _Holder:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.index: AttributionIndex | None = None
        self.checked_at = 0.0
        self.stale = True
        self.needed = 0  # newest generation this process committed

    def fresh(self) -> bool:
        return not self.stale and time.monotonic() - self.checked_at < REFRESH_SECONDS


# Keyed by runtime, not global: each Runtime (app, CLI call, test) has its own index.
_holders: weakref.WeakKeyDictionary[Runtime, _Holder] = weakref.WeakKeyDictionary()
_holders_lock = threading.Lock()


def _holder(runtime: Runtime) -> _Holder:
    with _holders_lock:
        holder = _holders.get(runtime)
        if holder is None:
            holder = _holders[runtime] = _Holder()
        return holder


def refresh_after_commit(op: Operation, generation: int) -> None:
    """Called by inventory writes with the generation they wrote: once the transaction
    commits, this process's index looks at the generation again on its next lookup
    instead of waiting for the timer, and no lookup here answers from an older index."""
    holder = _holder(op.runtime)

    def mark(_session: Session) -> None:
        holder.needed = max(holder.needed, generation)
        holder.stale = True

    event.listen(op.session, "after_commit", mark, once=True)


def current_index(runtime: Runtime, *, check: bool = False) -> AttributionIndex:
    """This runtime's index, rebuilt first if the registry generation moved. The
    generation is read at most every REFRESH_SECONDS, after a local commit, or with
    ``check=True``.

    While one thread rebuilds (seconds for a million assignments), the others keep
    answering from the previous index rather than queueing behind it, unless this
    process committed a change that index does not hold yet (read-your-writes) or the
    caller asked for ``check``."""
    holder = _holder(runtime)
    index = holder.index
    if index is None or check or index.generation < holder.needed:
        holder.lock.acquire()
    elif holder.fresh():
        return index
    elif not holder.lock.acquire(blocking=False):
        return index  # another thread is refreshing; this snapshot is good enough
    try:
        done = holder.index
        if not check and done is not None and holder.fresh() and done.generation >= holder.needed:
            return done  # refreshed by the thread this one waited for
        return _refresh(runtime, holder)
    finally:
        holder.lock.release()


def _refresh(runtime: Runtime, holder: _Holder) -> AttributionIndex:
    """Read the generation and rebuild if it moved; the caller holds ``holder.lock``."""
    # Cleared before reading, so a commit landing meanwhile marks it again.
    holder.stale = False
    with runtime.reading() as session:
        generation = current_generation(session)
        index = holder.index
        if index is None or index.generation != generation:
            index = build_index(session)
    holder.index = index
    holder.checked_at = time.monotonic()
    return index


def warm(runtime: Runtime) -> bool:
    """Build or refresh the index ahead of lookups. A failure is logged, not raised (this
    runs in a background thread): the next lookup then tries again and reports why."""
    began = time.perf_counter()
    holder = _holder(runtime)
    before = holder.index
    try:
        index = current_index(runtime)
    except Exception as exc:  # a background thread has nobody to raise to
        log.warning("attribution.warm_failed", error=type(exc).__name__, detail=str(exc)[:200])
        return False
    if index is not before:
        log.info(
            "attribution.warm",
            assignments=index.assignments,
            generation=index.generation,
            seconds=round(time.perf_counter() - began, 3),
        )
    return True


def keep_warm(runtime: Runtime, stop: threading.Event) -> None:
    """Build the index now and keep it current until ``stop`` is set: the server runs
    this in a thread, so the once-a-second generation check (and any rebuild after a
    change made elsewhere) happens here rather than inside somebody's request."""
    while not stop.is_set():
        warm(runtime)
        stop.wait(REFRESH_SECONDS / 2)


def index_is_current(runtime: Runtime) -> bool:
    """True when the next lookup will not touch the database (no generation check and
    no rebuild due): an async caller may then answer without leaving the event loop."""
    holder = _holder(runtime)
    return holder.index is not None and holder.fresh()


# --- the lookups ------------------------------------------------------------------------


def _check_port(port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise ValidationFailed(f"port {port} is out of range.", hint="Use 1–65535.")


def attribute(
    runtime: Runtime,
    ip: str | netaddr.IpAddress,
    at: datetime | str,
    port: int | None = None,
    *,
    index: AttributionIndex | None = None,
) -> Attribution | None:
    """Who held ``ip`` at ``at`` (zone required); with ``port``, a NAT public address is
    first resolved to the private address that used that port then. None: nobody."""
    value = (
        netaddr.text_to_int(ip.strip())
        if isinstance(ip, str)
        else netaddr.address_int(netaddr.parse_address(ip))
    )
    moment = aware_time(at, "at")
    _check_port(port)
    return _lookup(index or current_index(runtime), value, moment, port)


def lookup(
    index: AttributionIndex, address: netaddr.IpAddress, moment: datetime, port: int | None
) -> Attribution | None:
    """``attribute`` on a given index, with parsed inputs."""
    return _lookup(index, netaddr.address_int(netaddr.parse_address(address)), moment, port)


def _lookup(
    index: AttributionIndex, value: int, moment: datetime, port: int | None
) -> Attribution | None:
    t_us = to_epoch_us(moment)
    target = value
    nat_used: NatUsed | None = None
    if port is not None:
        block = index.nat_block(value, port, t_us)
        if block is not None:
            target = block.private_int
            nat_used = NatUsed(block, value)
    found = index.locate(target, t_us)
    if found is None:
        return None
    level, prefix, j = found
    customer, instance, interval = level.interval(prefix, j)
    return Attribution(index, value, moment, t_us, port, customer, instance, interval, nat_used)


def nobody_hint(
    runtime: Runtime, ip: str | netaddr.IpAddress, at: datetime | str, port: int | None
) -> str:
    """What to tell someone whose lookup found nobody."""
    address = netaddr.parse_address(ip)
    t_us = to_epoch_us(aware_time(at, "at"))
    index = current_index(runtime)
    if index.is_nat_address(netaddr.address_int(address), t_us):
        if port is None:
            return "It was a NAT public address then: give the port to find the customer."
        return f"No NAT block of {address} covered port {port} then, and nobody held it."
    return "Check the address, and the zone of the moment (+08:00 is Beijing time)."


def _as_hilo(ips: Any) -> tuple[U64Array, U64Array]:
    if isinstance(ips, tuple) and len(ips) == 2:
        hi, lo = (np.asarray(x) for x in ips)
        if hi.dtype != np.uint64 or lo.dtype != np.uint64 or hi.shape != lo.shape:
            raise ValidationFailed(
                "(hi, lo) address words must be two uint64 arrays of the same length.",
                hint="Build them with hostwarden.registry.netaddr helpers.",
            )
        return hi, lo
    array = np.asarray(ips)
    if array.dtype == np.uint32:
        return netaddr.ipv4_to_hilo(array)
    if array.dtype == np.uint64 and array.ndim == 2 and array.shape[1] == 2:
        return np.ascontiguousarray(array[:, 0]), np.ascontiguousarray(array[:, 1])
    raise ValidationFailed(
        f"addresses of dtype {array.dtype} and shape {array.shape} are not understood.",
        hint="Give IPv4 as uint32, or any family as (hi, lo) uint64 words "
        "(netaddr.ipv4_to_hilo, netaddr.texts_to_hilo).",
    )


def _as_epoch_us(times: Any, n: int) -> I64Array:
    array = np.asarray(times)
    if np.issubdtype(array.dtype, np.datetime64):
        raise ValidationFailed(
            "numpy datetime64 values carry no time zone.",
            hint="Pass UTC epoch milliseconds as int64, e.g. "
            "values.astype('datetime64[ms]').astype('int64') if they are known to be UTC.",
        )
    if not np.issubdtype(array.dtype, np.integer):
        raise ValidationFailed(
            f"times must be int64 epoch milliseconds (UTC), not {array.dtype}.",
            hint="Convert with numpy.asarray(values, dtype=numpy.int64).",
        )
    if array.shape != (n,):
        raise ValidationFailed(
            f"{array.shape[0] if array.ndim else 0} times for {n} addresses.",
            hint="Give one time per address.",
        )
    return array.astype(np.int64) * 1000


def attribute_many(index: AttributionIndex, ips: Any, times: Any) -> tuple[I64Array, I64Array]:
    """Customer and instance id (-1: none) for each (address, UTC epoch-ms time) pair.

    ``ips``: IPv4 as a ``uint32`` array, or either family as ``(hi, lo)`` ``uint64`` arrays
    or an (n, 2) ``uint64`` array. NAT ports are not resolved here: give private addresses.
    """
    hi, lo = _as_hilo(ips)
    t_us = _as_epoch_us(times, len(hi))
    customer, instance, _ = index.resolve_many(hi, lo, t_us)
    return customer, instance
