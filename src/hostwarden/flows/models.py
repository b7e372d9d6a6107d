"""Tables of the flow store: sealed segments, their hash chain, and legal holds."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hostwarden.core.db import Base, UtcDateTime
from hostwarden.core.timeutil import utcnow

#: Kinds of entry in the segment chain.
CHAIN_SEAL = "seal"
CHAIN_EXPIRE = "expire"

#: The dataset of flow records; the log datasets (``http``, ``nat``, ``ssh``) are listed in
#: ``flows.store.datasets``.
FLOWS_DATASET = "flows"


class FlowSegment(Base):
    """One sealed segment (a Parquet file): where it is and what it holds.

    This table is the store's index, used to find the files a query or an expiry run
    needs. It is not the proof: ``FlowChainEntry`` is, and ``logs verify`` checks that
    the two agree.
    """

    __tablename__ = "flow_segments"
    __table_args__ = (Index("ix_flow_segments_live_last", "expired_at", "last_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: Path relative to the store directory: ``YYYY-MM-DD/<sealed>-<token>.parquet`` for
    #: flows, ``<dataset>/YYYY-MM-DD/<sealed>-<token>.parquet`` for a log dataset.
    name: Mapped[str] = mapped_column(String(200), unique=True)
    #: ``flows`` or a log dataset (``http``, ``nat``, ``ssh``): which schema its rows have.
    dataset: Mapped[str] = mapped_column(
        String(16), default=FLOWS_DATASET, server_default=FLOWS_DATASET, index=True
    )
    #: UTC day of the records' start times, ``YYYY-MM-DD``.
    day: Mapped[str] = mapped_column(String(10), index=True)
    rows: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[str] = mapped_column(String(64))
    #: Earliest start and latest start-or-end of its records, UTC epoch milliseconds.
    first_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    last_ms: Mapped[int] = mapped_column(BigInteger)
    #: Lowest and highest provider-side address (32-hex registry keys), for legal holds.
    min_local: Mapped[str] = mapped_column(String(32))
    max_local: Mapped[str] = mapped_column(String(32))
    #: Lowest and highest customer id attributed (-1 when none was).
    min_customer: Mapped[int] = mapped_column(BigInteger)
    max_customer: Mapped[int] = mapped_column(BigInteger)
    sealed_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    seal_seq: Mapped[int] = mapped_column(Integer)
    expired_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    expire_seq: Mapped[int | None] = mapped_column(Integer, nullable=True)


class FlowChainEntry(Base):
    """One link of the segment hash chain; rows are only ever inserted.

    ``body`` is the canonical JSON the hash covers; ``kind`` and ``segment`` repeat two
    of its fields so that they can be searched.
    """

    __tablename__ = "flow_chain"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    kind: Mapped[str] = mapped_column(String(16))
    segment: Mapped[str] = mapped_column(String(200), index=True)
    body: Mapped[str] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    entry_hash: Mapped[str] = mapped_column(String(64), unique=True)


class LegalHold(Base):
    """Records that must outlive the retention policy until released (a case, a request
    of the authorities). Scope: a time range, optionally narrowed to addresses or
    prefixes and/or customers; with neither, every record in the range is held."""

    __tablename__ = "legal_holds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The case, ticket or authority's reference number.
    case_ref: Mapped[str] = mapped_column(String(200), default="")
    reason: Mapped[str] = mapped_column(Text)
    start_at: Mapped[datetime] = mapped_column(UtcDateTime)
    #: None: open-ended (everything from ``start_at`` on).
    end_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: Comma-separated CIDR prefixes (a single address is a /32 or /128).
    prefixes: Mapped[str] = mapped_column(Text, default="")
    #: Comma-separated customer ids.
    customer_ids: Mapped[str] = mapped_column(Text, default="")
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    released_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True, index=True)
    released_by: Mapped[str] = mapped_column(String(200), default="")
    release_reason: Mapped[str] = mapped_column(Text, default="")

    @property
    def prefix_list(self) -> list[str]:
        return [p for p in self.prefixes.split(",") if p]

    @property
    def customer_list(self) -> list[int]:
        return [int(c) for c in self.customer_ids.split(",") if c]
