"""ClickHouse flow store benchmark: seal, one-address query and verify, beside Parquet.

    .venv/bin/python bench/clickhouse_store.py [--days 3] [--rows-per-day 1000000]

Synthetic flows (5,000 customer addresses; the other side a random IPv4 address; 45 %
outbound, 45 % inbound, 10 % unattributed; ``bench/store.py``'s generator) over
``--days`` UTC days are written through ``open_store`` + ``flush``, one segment per day,
into each backend in turn, in one process: the Parquet store (the peer), the ClickHouse
store on embedded ClickHouse through its chdb adapter, and through its server adapter
(clickhouse-connect, here on clickhouse-connect's chdb backend: no server runs here, so
HTTP itself is not measured). Everything sealed goes through the product path: insert,
read back in canonical order, SHA-256, chain entry and signed checkpoint on SQLite.

For each: seal throughput (records/s over all days), stored bytes per record (Parquet
files; ClickHouse ``system.parts`` bytes on disk after the inserts), the wall time of a
query for one customer address and one remote address over one day (median of 5), and
``verify`` throughput (records re-read and re-hashed per second).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.table import Table
from store import CUSTOMER_BASE, DAY0, DAY_MS, generate  # bench/store.py

from hostwarden.core.config import load_settings
from hostwarden.core.logs import configure_logging
from hostwarden.core.runtime import Runtime
from hostwarden.core.setup import init
from hostwarden.flows.schema import FlowBatch
from hostwarden.flows.store import FlowStore, clickhouse, open_store
from hostwarden.flows.store.parquet import ParquetStore
from hostwarden.registry import netaddr

console = Console(highlight=False, width=160)
REPEATS = 5


def median_ms(run: Callable[[], object]) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        run()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000


def stored_bytes(store: FlowStore) -> int:
    if isinstance(store, ParquetStore):
        return sum(p.stat().st_size for p in store.root.rglob("*.parquet"))
    assert isinstance(store, clickhouse.ClickHouseStore)
    found = store.connection.arrow(
        "SELECT sum(bytes_on_disk) AS n FROM system.parts WHERE active "
        "AND database = {db:String} AND table = {table:String}",
        {"db": store.database, "table": clickhouse.TABLE},
    )
    return int(found.column("n")[0].as_py())


def run_backend(label: str, runtime: Runtime, days: list[FlowBatch]) -> list[str]:
    store = open_store(runtime)
    try:
        rows = sum(len(d) for d in days)
        began = time.perf_counter()
        for batch in days:
            store.write(batch)
            store.flush()
        seal_rate = rows / (time.perf_counter() - began)
        size = stored_bytes(store)
        middle = DAY0 + (len(days) // 2) * DAY_MS
        day = {"start_ms": middle, "end_ms": middle + DAY_MS}
        customer = str(netaddr.hilo_to_address(0, (0xFFFF << 32) | (CUSTOMER_BASE + 77)))
        one_day = days[len(days) // 2]
        outbound = one_day["dst_lo"][one_day["local_side"] == 1]
        remote = str(netaddr.hilo_to_address(0, int(outbound[42])))
        found_customer = store.query(**day, ips=[customer]).num_rows
        customer_ms = median_ms(lambda: store.query(**day, ips=[customer]))
        found_remote = store.query(**day, ips=[remote]).num_rows
        remote_ms = median_ms(lambda: store.query(**day, ips=[remote]))
        began = time.perf_counter()
        report = store.verify()
        verify_rate = rows / (time.perf_counter() - began)
        assert report.ok, report.problems
    finally:
        store.close()
    return [
        label,
        f"{seal_rate:,.0f}",
        f"{size / rows:.1f}",
        f"{customer_ms:.0f} ({found_customer} rows)",
        f"{remote_ms:.0f} ({found_remote} rows)",
        f"{verify_rate:,.0f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--rows-per-day", type=int, default=1_000_000)
    args = parser.parse_args()
    configure_logging("WARNING", "console")
    days = []
    for d in range(args.days):
        batch = generate(args.rows_per_day, seed=7 + d)
        batch.columns["start"] += d * DAY_MS
        batch.columns["end"] += d * DAY_MS
        days.append(batch)
    table = Table(
        title=f"{args.days} days × {args.rows_per_day:,} records, one segment per day; "
        "queries over one day, median of 5"
    )
    for column in (
        "backend",
        "seal records/s",
        "stored B/record",
        "customer address ms",
        "remote address ms",
        "verify records/s",
    ):
        table.add_column(column, justify="left" if column == "backend" else "right")
    backends: list[tuple[str, dict[str, str]]] = [
        ("parquet (peer)", {"store": "parquet"}),
        ("clickhouse, chdb adapter", {"store": "clickhouse", "clickhouse_url": "chdb:"}),
        ("clickhouse, clickhouse-connect adapter", {"store": "clickhouse"}),
    ]
    for label, update in backends:
        with tempfile.TemporaryDirectory() as tmp:
            settings = load_settings(Path(tmp) / "home")
            settings.flows = settings.flows.model_copy(
                update={**update, "segment_records": max(args.rows_per_day, 1_000)}
            )
            init(settings)
            runtime = Runtime.open(settings)
            original = clickhouse.connect
            if "clickhouse_url" not in update and update["store"] == "clickhouse":
                path = settings.home / settings.flows.store_dir / clickhouse.CHDB_DIR
                clickhouse.connect = lambda _rt, path=path: (  # type: ignore[assignment]
                    clickhouse.ServerConnection(f"chdb://{path}"),
                    clickhouse.CHDB_DATABASE,
                )
            try:
                table.add_row(*run_backend(label, runtime, days))
            finally:
                clickhouse.connect = original
                runtime.close()
    console.print(table)


if __name__ == "__main__":
    main()
