"""Flow query benchmark: filters, top talkers and time series over one day, against the peer.

    .venv/bin/python bench/store_queries.py [--rows 2000000]

The day of ``bench/store.py`` (same generator) is sealed through the product path in
segments of 1,000,000 records. Each question is asked through the store's API
(``query``, ``top_talkers``, ``time_series``, ``query_batches``), median of 5 runs;
row groups scanned come from DuckDB's EXPLAIN ANALYZE of the same SQL. The peer, in the
same run, is the plain form of the same question on the same records in one
time-ordered Parquet file with pyarrow's defaults (``src = ip OR dst = ip``, one
GROUP BY), so the figures show what the layout and the per-address branches buy.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from store import DAY0, DAY_MS, generate, text_of

from hostwarden.core.config import load_settings
from hostwarden.core.logs import configure_logging
from hostwarden.core.runtime import Runtime
from hostwarden.core.setup import init
from hostwarden.flows.store import common, parquet
from hostwarden.registry import netaddr

console = Console(highlight=False, width=200)
REPEATS = 5
DAY = {"start_ms": DAY0, "end_ms": DAY0 + DAY_MS}


def timed(run: Callable[[], Any]) -> tuple[Any, float]:
    times, result = [], None
    for _ in range(REPEATS):
        t0 = time.perf_counter()
        result = run()
        times.append((time.perf_counter() - t0) * 1000)
    return result, statistics.median(times)


def row_groups(sql: str, params: dict[str, Any]) -> str:
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    plan = con.execute("EXPLAIN ANALYZE " + sql, params).fetchall()[0][1]
    con.close()
    scanned = [tuple(map(int, m)) for m in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", plan)]
    return f"{sum(s for s, _ in scanned)}/{sum(t for _, t in scanned)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    batch = generate(args.rows)
    customer = text_of(int(batch["src_lo"][batch["local_side"] == 1][0]))
    low = netaddr.text_to_int(customer) & 0xFFFFFFFFFFFFFFFF
    rows: list[list[str]] = []
    with tempfile.TemporaryDirectory(prefix="hw-bench-queries-") as tmp:
        plain = Path(tmp) / "plain.parquet"
        pq.write_table(batch.to_arrow(), plain, compression="zstd")
        settings = load_settings(
            home=Path(tmp) / "home", flows={"segment_records": 1_000_000, "segment_seconds": 3600}
        )
        init(settings)
        runtime = Runtime.open(settings)
        store = parquet.ParquetStore(runtime)
        for first in range(0, args.rows, 1_000_000):
            store.write(batch.take(slice(first, min(first + 1_000_000, args.rows))))
        store.flush()

        def peer(sql: str) -> float:
            def run() -> int:
                con = duckdb.connect()
                found = con.sql(sql.format(file=plain)).to_arrow_table().num_rows
                con.close()
                return found

            return timed(run)[1]

        either = f"((src_hi = 0 AND src_lo = {low}) OR (dst_hi = 0 AND dst_lo = {low}))"
        local = "CASE WHEN local_side = 2 THEN {0} ELSE {1} END"
        group_ip = f"{local.format('dst_hi', 'src_hi')}, {local.format('dst_lo', 'src_lo')}"
        sums = "count(*), sum(packets), sum(bytes)"
        questions: list[tuple[str, Callable[[], Any], str | None, str]] = [
            (
                f"records of {customer}",
                lambda: store.query(**DAY, ips=[customer]),
                row_groups(*store.plan_query(**DAY, ips=[customer])[:2]),  # type: ignore[misc]
                f"SELECT * FROM '{{file}}' WHERE {either}",  # noqa: S608
            ),
            (
                f"records of {customer}, port 443, tcp",
                lambda: store.query(**DAY, ips=[customer], ports=[443], protos=[6]),
                row_groups(*store.plan_query(**DAY, ips=[customer], ports=[443], protos=[6])[:2]),  # type: ignore[misc]
                f"SELECT * FROM '{{file}}' WHERE {either} AND (src_port = 443 OR dst_port = 443) "  # noqa: S608
                "AND proto = 6",
            ),
            (
                "top 20 addresses by bytes, whole day",
                lambda: store.top_talkers(**DAY),
                None,
                f"SELECT {group_ip}, customer_id, {sums} FROM '{{file}}' GROUP BY ALL "  # noqa: S608
                "ORDER BY 5 DESC LIMIT 20",
            ),
            (
                "top 20 customers by flows, whole day",
                lambda: store.top_talkers(**DAY, group="customer", by="flows"),
                None,
                f"SELECT customer_id, {sums} FROM '{{file}}' GROUP BY ALL ORDER BY 2 DESC LIMIT 20",  # noqa: S608
            ),
            (
                f"top talkers with {customer}",
                lambda: store.top_talkers(**DAY, ips=[customer]),
                None,
                f"SELECT {group_ip}, customer_id, {sums} FROM '{{file}}' WHERE {either} "  # noqa: S608
                "GROUP BY ALL ORDER BY 5 DESC LIMIT 20",
            ),
            (
                "series, 5 min steps, whole day",
                lambda: store.time_series(**DAY, step_ms=300_000),
                None,
                f"SELECT (epoch_ms(start) - {DAY0}) // 300000 AS b, {sums} FROM '{{file}}' "  # noqa: S608
                "GROUP BY b",
            ),
            (
                f"series of {customer}, 5 min steps",
                lambda: store.time_series(**DAY, step_ms=300_000, ips=[customer]),
                None,
                f"SELECT (epoch_ms(start) - {DAY0}) // 300000 AS b, {sums} FROM '{{file}}' "  # noqa: S608
                f"WHERE {either} GROUP BY b",
            ),
            (
                "every record as JSON lines (what GET /records sends)",
                lambda: sum(
                    len(common.ndjson_bytes(common.readable(p))) > 0 and p.num_rows
                    for p in store.query_batches(**DAY)
                ),
                None,
                "SELECT * FROM '{file}' ORDER BY start",  # the peer: Arrow, no text
            ),
        ]
        for label, ask, scanned, peer_sql in questions:
            found, ms = timed(ask)
            n = found if isinstance(found, int) else found.num_rows
            rows.append([label, f"{n:,}", f"{ms:.0f}", scanned or "", f"{peer(peer_sql):.0f}"])
        store.close()
        runtime.close()
    grid = Table(
        title=f"Queries over one day of {args.rows:,} records in "
        f"{-(-args.rows // 1_000_000)} segments; {os.cpu_count()} cores",
        title_justify="left",
    )
    for column in ("question", "rows", "ms", "row groups", "peer ms (plain file)"):
        grid.add_column(column)
    for row in rows:
        grid.add_row(*row)
    console.print(grid)


if __name__ == "__main__":
    main()
