"""Flow store layout benchmark: one address over one day, and how fast segments seal.

    .venv/bin/python bench/store.py [--rows 4000000] [--row-groups 16384,32768,65536,131072]

One UTC day of synthetic flows (5,000 customer addresses; the other side a random IPv4
address; 45 % outbound, 45 % inbound, 10 % unattributed) is sealed through the product
path, ``ParquetStore.write`` + ``flush`` (sort, Parquet encoding, SHA-256, fsync, rename,
chain entry and signed checkpoint on SQLite), once per row-group size given, each time
as one segment. The peer, in the same run, is the same records written the plain way:
one zstd Parquet file in time order with pyarrow's defaults (1,048,576-row groups, no
Bloom filters), asked the plain question ``src = ip OR dst = ip``.

For each layout: file size, bytes per record, seal throughput (records/s), and for a
query of one customer address and one remote address over the day: wall time (median
of 5 runs, each on a fresh DuckDB connection), bytes read (``rchar`` of
/proc/self/io: every byte through read(2)/pread(2), from the page cache or not), and
row groups scanned (DuckDB's EXPLAIN ANALYZE, summed over the sub-queries).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

from hostwarden.core.config import load_settings
from hostwarden.core.logs import configure_logging
from hostwarden.core.runtime import Runtime
from hostwarden.core.setup import init
from hostwarden.flows.schema import FlowBatch
from hostwarden.flows.store import parquet
from hostwarden.registry import netaddr

console = Console(highlight=False, width=200)
DAY0 = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp() * 1000)
DAY_MS = 86_400_000
V4 = np.uint64(0xFFFF << 32)
CUSTOMER_BASE = 0xCB007100  # 203.0.113.0, and on into the next /24s
REPEATS = 5
DEFAULT_SEGMENT = 1_000_000


def generate(rows: int, seed: int = 7) -> FlowBatch:
    rng = np.random.default_rng(seed)
    which = rng.integers(0, 5_000, rows)
    local = (np.uint64(CUSTOMER_BASE) + which.astype(np.uint64)) | V4
    remote = rng.integers(0x01000000, 0xC0000000, rows).astype(np.uint64) | V4
    side = rng.choice([0, 1, 2], rows, p=[0.1, 0.45, 0.45]).astype(np.uint8)
    start = DAY0 + np.sort(rng.integers(0, DAY_MS, rows))
    return FlowBatch(
        {
            "start": start,
            "end": start + rng.integers(0, 30_000, rows),
            "source": np.full(rows, 2),
            "exporter_lo": np.full(rows, 0xC0000201, dtype=np.uint64) | V4,
            "src_lo": np.where(side == 2, remote, local),
            "dst_lo": np.where(side == 2, local, remote),
            "src_port": rng.integers(1024, 65535, rows),
            "dst_port": rng.choice([22, 25, 53, 80, 443, 3389], rows),
            "proto": rng.choice([6, 17], rows, p=[0.8, 0.2]),
            "tcp_flags": rng.integers(0, 64, rows),
            "packets": rng.integers(1, 200, rows),
            "bytes": rng.integers(40, 200_000, rows),
            "in_if": rng.integers(1, 8, rows),
            "out_if": rng.integers(1, 8, rows),
            "local_side": side,
            "customer_id": np.where(side == 0, -1, which + 1),
            "instance_id": np.where(side == 0, -1, which + 10_001),
        }
    )


def text_of(low: int) -> str:
    v = int(low) & 0xFFFFFFFF
    return f"{v >> 24}.{v >> 16 & 255}.{v >> 8 & 255}.{v & 255}"


def rchar() -> int:
    with open("/proc/self/io", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise RuntimeError("/proc/self/io has no rchar")


def measure(sql: str, params: dict[str, Any]) -> tuple[int, float, int, int, int]:
    """(rows, median ms, bytes read, row groups scanned, row groups in all)."""
    times, reads, rows = [], [], 0
    for _ in range(REPEATS):
        con = duckdb.connect()
        con.execute("SET TimeZone = 'UTC'")
        before, t0 = rchar(), time.perf_counter()
        relation = con.sql(sql, params=params)
        assert relation is not None
        rows = relation.to_arrow_table().num_rows
        times.append((time.perf_counter() - t0) * 1000)
        reads.append(rchar() - before)
        con.close()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    plan = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()[0][1]
    scanned = [tuple(map(int, m)) for m in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", plan)]
    return (
        rows,
        statistics.median(times),
        int(statistics.median(reads)),
        sum(s for s, _ in scanned),
        sum(t for _, t in scanned),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=4_000_000)
    parser.add_argument("--row-groups", default="16384,32768,65536,131072")
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    sizes = [int(x) for x in args.row_groups.split(",")]
    console.print(f"generating {args.rows:,} records of one day …")
    batch = generate(args.rows)
    customer = int(batch["src_lo"][batch["local_side"] == 1][0])
    remote = int(batch["dst_lo"][batch["local_side"] == 1][1])
    questions = {"customer": text_of(customer), "remote": text_of(remote)}
    results: list[list[str]] = []

    with tempfile.TemporaryDirectory(prefix="hw-bench-store-") as tmp:
        # The peer: plain time-ordered Parquet, plain OR query.
        plain = Path(tmp) / "plain.parquet"
        t0 = time.perf_counter()
        pq.write_table(batch.to_arrow(), plain, compression="zstd")
        plain_seconds = time.perf_counter() - t0
        row = ["plain (time order, pyarrow defaults)", f"{plain.stat().st_size / 1e6:.1f}"]
        row += [f"{plain.stat().st_size / args.rows:.1f}", f"{args.rows / plain_seconds:,.0f}"]
        for ip in questions.values():
            low = netaddr.text_to_int(ip) & 0xFFFFFFFFFFFFFFFF
            where = f"(src_hi = 0 AND src_lo = {low}) OR (dst_hi = 0 AND dst_lo = {low})"
            sql = f"SELECT * FROM read_parquet($files) WHERE {where}"  # noqa: S608
            n, ms, read, scanned, total = measure(sql, {"files": [str(plain)]})
            row += [f"{n}", f"{ms:.0f}", f"{read / 1e6:.2f}", f"{scanned}/{total}"]
        results.append(row)
        plain.unlink()

        # Each layout as one segment; then the product's defaults, where a day of this
        # size arrives in segments of segment_records (1,000,000), each sealed on arrival.
        runs = [(size, args.rows) for size in sizes]
        if args.rows > DEFAULT_SEGMENT:
            runs.append((parquet.ROW_GROUP_ROWS, DEFAULT_SEGMENT))
        for size, per_segment in runs:
            # A data directory of its own per layout, so each query reads only its own.
            settings = load_settings(
                home=Path(tmp) / f"home-{size}-{per_segment}",
                flows={"segment_records": per_segment, "segment_seconds": 3600},
            )
            init(settings)
            runtime = Runtime.open(settings)
            parquet.ROW_GROUP_ROWS = size
            store = parquet.ParquetStore(runtime)
            t0 = time.perf_counter()
            for first in range(0, args.rows, per_segment):
                # Each write that fills segment_records seals at once.
                store.write(batch.take(np.arange(first, min(first + per_segment, args.rows))))
            store.flush()
            seconds = time.perf_counter() - t0
            segments = store.segments()
            size_bytes = sum(s.size for s in segments)
            label = f"hostwarden, {size:,}-row groups"
            if len(segments) > 1:
                label += f", {len(segments)} segments"
            row = [label, f"{size_bytes / 1e6:.1f}"]
            row += [f"{size_bytes / args.rows:.1f}", f"{args.rows / seconds:,.0f}"]
            for ip in questions.values():
                planned = store.plan_query(start_ms=DAY0, end_ms=DAY0 + DAY_MS, ips=[ip])
                assert planned is not None
                sql, params, _ = planned
                n, ms, read, scanned, total = measure(sql, params)
                row += [f"{n}", f"{ms:.0f}", f"{read / 1e6:.2f}", f"{scanned}/{total}"]
            results.append(row)
            store.close()
            runtime.close()

    grid = Table(
        title=f"One address over one day of {args.rows:,} records "
        f"(customer {questions['customer']}, remote {questions['remote']}); "
        f"{os.cpu_count()} cores",
        title_justify="left",
    )
    for column in (
        "layout",
        "MB",
        "B/record",
        "seal rec/s",
        "cust rows",
        "cust ms",
        "cust MB read",
        "cust row groups",
        "remote rows",
        "remote ms",
        "remote MB read",
        "remote row groups",
    ):
        grid.add_column(column)
    for row in results:
        grid.add_row(*row)
    console.print(grid)


if __name__ == "__main__":
    main()
