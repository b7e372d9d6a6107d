"""Query benchmark: one address over one day, 50,000,000 records over 7 days, against nfdump.

    .venv/bin/python bench/query.py [--rows 50000000] [--quick] [--runs 5] [--json] [--keep]
                                    [--replay-rate 300000] [--day 3] [--work DIR]
                                    [--reuse DIR] [--no-compact]

Input: one synthetic NetFlow v9 export stream (numpy, fixed seed) of --rows records spread
evenly over 7 UTC days of flow time (2026-05-01 to 2026-05-07), in the format of
``bench/ingest.py`` (its template, header, exporters, datagram layout, pcap writer and
registry): four exporters, 30 records of 18 fields a datagram, a template in every 20th
datagram of each exporter. 45 % of records go from a customer address to the Internet,
45 % the other way, 10 % are transit; customer addresses come from 100.64.0.0/20 (4,000
of them assigned to 1,000 customers), remote addresses from a pool of 200,000, both with
skewed popularity. ``ingest.generate_stream`` is not used as is: its clock runs at 1,000
datagrams a second from a fixed start and it draws a new address population per call,
so this module has its own ``day_chunk``, which keeps one population for the whole week
(the same busy and quiet addresses every day) and spreads each day's datagrams over
that day. Export times are whole seconds, every flow ends 0–30 s before its datagram
and lasts up to 120 s, and each day's datagrams are exported from 00:05 to 23:59:59, so
each flow lies inside its day for both tools.

Each day is generated in chunks of about 1,000,000 records, written as pcap files (one
per chunk; at most one day's pcaps are on disk at a time) and then given to both tools:

- hostwarden: ``imports.import_file(..., "pcap")`` on every chunk of the day through one
  ``Ingestor`` and a real ``ParquetStore`` (what ``hostwarden flows import`` runs), then
  ``store.flush()``; the store seals 1,000,000-record segments into the day's directory,
  as the collector does in production. The data directory is made by
  ``ingest.make_home`` (the registry with the range and its assignments, so attribution
  works and the rows are sorted by customer address).
- nfdump: the same datagrams, read back from the same pcaps, sent over UDP on 127.0.0.1
  (each exporter from its own address) at --replay-rate records/s to Debian's
  ``nfcapd -y`` (LZ4), started afresh for each day with its own ``-w`` directory, so each
  day's records are in that day's files. nfcapd is pinned to one core and the sender to
  the other. ``nfdump -I`` must count every record of the day; a day that lost records
  is replayed again at half the rate.

After the import, the nightly ``flows.compact`` job runs as the scheduler runs it
(``jobs.compact_days``, "now" two days after the week so that every day is due) and is
timed: each day becomes one segment plus its companion ordered by the remote address
(docs/flows.md, "Compaction"). ``--no-compact`` queries the segments as imported, to
compare.

Queries, over one day (--day, default the fourth), for the busiest and the quietest
assigned customer address, the busiest remote address, the remote address of popularity
rank 1,000 and the customer /24 holding the busy address:

- hostwarden: ``ParquetStore.query(start_ms, end_ms, ips=[...])`` for the UTC day, no
  limit (what ``hostwarden flows query`` and the API run), to an Arrow table;
- nfdump, listing: ``nfdump -R <day dir> -q -N 'host X'`` (``net X/24``) with its
  standard line output to /dev/null: every record of the address printed;
- nfdump, counting: the same with ``-o null``: no records printed, only the summary
  (the cheapest thing nfdump can do with a filter). No ``-t``: the day directory holds
  only that day's flows, so a time filter would only add work.

Each is run --runs times warm (after one unmeasured run) and --runs times cold (the page
cache dropped before each run with ``sync; echo 3 > /proc/sys/vm/drop_caches``, which
needs root, and for hostwarden a new ``ParquetStore`` so DuckDB starts without its
caches); the median is reported, with the median CPU seconds of the warm runs (every
thread, and nfdump's process), which a shared machine disturbs less than wall time. The
record counts of the tools must agree. For hostwarden also the bytes read (``rchar``) and
the row groups DuckDB scanned (EXPLAIN ANALYZE of ``plan_query``). The ratio is nfdump's
faster variant ÷ hostwarden.

Temporary files go to a directory under --work (default: the system's temporary
directory) and are removed at the end unless --keep is given; ``--reuse DIR`` runs only
the queries on what a run with --keep left there.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
from ingest import (  # bench/ingest.py
    CUSTOMER_ADDRESSES,
    CUSTOMER_BASE,
    EXPORTERS,
    RECORDS_PER_DATAGRAM,
    REMOTE_ADDRESSES,
    TEMPLATE_EVERY,
    Stream,
    cores,
    drain,
    free_port,
    loopback_address,
    make_home,
    nfdump_flows,
    pack_stream,
    pin,
    udp_sockets,
    write_pcap,
)
from rich.console import Console
from rich.table import Table
from store import rchar  # bench/store.py

console = Console(highlight=False, width=180, stderr=True)

DAYS = 7
DAY_S = 86_400
WEEK_START_S = int(datetime(2026, 5, 1, tzinfo=UTC).timestamp())
#: Each day's datagrams are exported from 00:05:00 to 23:59:59: a flow ends at most 30 s
#: before its datagram and lasts at most 120 s, so it never starts the day before.
FIRST_EXPORT_S = 300
#: Datagrams in a block: every exporter's template datagram and the 19 after it.
BLOCK_DATAGRAMS = EXPORTERS * TEMPLATE_EVERY
BLOCK_RECORDS = EXPORTERS * (
    (RECORDS_PER_DATAGRAM - 2) + (TEMPLATE_EVERY - 1) * RECORDS_PER_DATAGRAM
)
CHUNK_RECORDS = 1_000_000
ASSIGNED = 4000  # ingest.make_home assigns the first 4,000 addresses of the /20
DROP_CACHES = Path("/proc/sys/vm/drop_caches")


# --- the export stream ------------------------------------------------------------------------


def popularity(n: int) -> np.ndarray:
    """The draw probability of the k-th most popular of ``n`` members (as ``ingest.skewed``:
    the busiest gets about 1 % of the picks)."""
    weights: np.ndarray = 1.0 / (np.arange(n) + 20.0)
    shares: np.ndarray = weights / weights.sum()
    return shares


@dataclass
class Population:
    """Who exists all week: customer addresses and remote addresses, each in order of
    popularity (index 0 is the busiest)."""

    customers: np.ndarray  # uint32 addresses, busiest first
    remotes: np.ndarray  # uint32 addresses, busiest first
    customer_cdf: np.ndarray
    remote_cdf: np.ndarray
    boot_ms: np.ndarray  # each exporter's boot time

    @classmethod
    def make(cls, seed: int) -> Population:
        rng = np.random.default_rng(seed)
        customers = (CUSTOMER_BASE + rng.permutation(CUSTOMER_ADDRESSES)).astype(np.uint32)
        pool = rng.integers(0x01000000, 0xDF000000, REMOTE_ADDRESSES, dtype=np.uint64)
        pool[(pool >> 16) == 0x6440] ^= 0x20000000  # none inside the provider range
        return cls(
            customers=customers,
            remotes=pool.astype(np.uint32),
            customer_cdf=np.cumsum(popularity(CUSTOMER_ADDRESSES)),
            remote_cdf=np.cumsum(popularity(REMOTE_ADDRESSES)),
            boot_ms=WEEK_START_S * 1000 - (np.arange(EXPORTERS) + 1) * 3 * 86_400_000 - 12_345,
        )

    def pick(self, rng: np.random.Generator, which: str, n: int) -> np.ndarray:
        members, cdf = (
            (self.customers, self.customer_cdf)
            if which == "customer"
            else (self.remotes, self.remote_cdf)
        )
        index = np.minimum(np.searchsorted(cdf, rng.random(n)), len(members) - 1)
        return members[index]

    def draws(self, which: str, rank: int) -> float:
        """The share of picks that go to the member of popularity ``rank``."""
        cdf = self.customer_cdf if which == "customer" else self.remote_cdf
        return float(cdf[rank] - (cdf[rank - 1] if rank else 0.0))


def day_chunk(
    rng: np.random.Generator,
    population: Population,
    export_s: np.ndarray,
    sequence: np.ndarray,
    day_start_s: int,
) -> Stream:
    """NetFlow v9 datagrams for whole blocks of ``BLOCK_DATAGRAMS`` (so each chunk begins
    with every exporter's template): the records drawn as in ``ingest.generate_stream``
    but from the week's ``population``, exported at ``export_s`` (seconds of the day)."""
    index = np.arange(len(export_s))
    with_template = (index // EXPORTERS) % TEMPLATE_EVERY == 0
    per = np.where(with_template, RECORDS_PER_DATAGRAM - 2, RECORDS_PER_DATAGRAM)
    n = int(per.sum())
    which = rng.choice(3, n, p=[0.45, 0.45, 0.10])  # 0 outbound, 1 inbound, 2 transit
    customer = population.pick(rng, "customer", n)
    remote = population.pick(rng, "remote", n)
    other = population.remotes[rng.integers(0, REMOTE_ADDRESSES, n)]
    return pack_stream(
        rng,
        which=which,
        customer=customer,
        remote=remote,
        other=other,
        with_template=with_template,
        per=per,
        sequence=sequence,
        time_ms=(day_start_s + export_s) * 1000,
        boot_ms=population.boot_ms,
    )


@dataclass
class Plan:
    """How --rows records are laid out: whole blocks, the same number every day."""

    rows: int
    blocks_per_day: int = 0

    def __post_init__(self) -> None:
        self.blocks_per_day = max(1, -(-self.rows // (DAYS * BLOCK_RECORDS)))

    @property
    def records_per_day(self) -> int:
        return self.blocks_per_day * BLOCK_RECORDS

    @property
    def datagrams_per_day(self) -> int:
        return self.blocks_per_day * BLOCK_DATAGRAMS

    def chunks(self) -> list[tuple[int, int]]:
        """(first datagram, datagrams) of each chunk of a day."""
        per_chunk = max(1, CHUNK_RECORDS // BLOCK_RECORDS) * BLOCK_DATAGRAMS
        total = self.datagrams_per_day
        return [(i, min(per_chunk, total - i)) for i in range(0, total, per_chunk)]


def write_day(plan: Plan, population: Population, day: int, seed: int, out: Path) -> list[Path]:
    """The day's datagrams as pcap files of about CHUNK_RECORDS records each."""
    rng = np.random.default_rng([seed, day])
    total = plan.datagrams_per_day
    span = DAY_S - FIRST_EXPORT_S - 1
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (first, count) in enumerate(plan.chunks()):
        index = np.arange(first, first + count, dtype=np.int64)
        export_s = FIRST_EXPORT_S + index * span // total
        # Sequence numbers count each exporter's datagrams over the whole week.
        sequence = (day * total + index) // EXPORTERS
        stream = day_chunk(rng, population, export_s, sequence, WEEK_START_S + day * DAY_S)
        path = out / f"chunk-{number:03d}.pcap"
        write_pcap(path, stream)
        paths.append(path)
    return paths


def ip_text(value: int) -> str:
    return socket.inet_ntoa(int(value).to_bytes(4, "big"))


# --- hostwarden -------------------------------------------------------------------------------


class Hostwarden:
    """A data directory with the registry, and the pcap import into its store."""

    def __init__(self, home: Path, seed: int, *, existing: bool = False) -> None:
        from hostwarden.core.config import load_settings
        from hostwarden.core.runtime import Runtime
        from hostwarden.flows.store.parquet import ParquetStore

        if not existing:
            make_home(home, seed)
        self.runtime = Runtime.open(load_settings(home=home))
        self.store = ParquetStore(self.runtime)
        self.import_s = 0.0
        self.errors: dict[str, int] = {}

    def import_day(self, pcaps: list[Path]) -> int:
        from hostwarden.flows import imports
        from hostwarden.flows.ingest import Ingestor

        ingestor = Ingestor(self.runtime, self.store)
        began = time.perf_counter()
        records = 0
        for path in pcaps:
            report = imports.import_file(ingestor, path, "pcap")
            records += report.records
            for reason, count in report.errors.items():
                self.errors[reason] = self.errors.get(reason, 0) + count
        self.store.flush()
        self.import_s += time.perf_counter() - began
        return records

    def compact(self, now_ms: int) -> tuple[float, list[Any]]:
        """Run the nightly compaction job as the scheduler would (every due day, one
        transaction each); its wall time and its reports."""
        from hostwarden.flows import jobs

        began = time.perf_counter()
        reports = jobs.compact_days(self.runtime, now_ms)
        return time.perf_counter() - began, reports

    def segments(self) -> list[Any]:
        """The live segments (compaction retires the ones it replaced)."""
        return [s for s in self.store.segments() if s.live]

    def stored_bytes(self) -> int:
        """Bytes of the live segments and their companion files."""
        return sum(p.stat().st_size for p in self.store.root.rglob("*.parquet"))

    def fresh_store(self) -> Any:
        from hostwarden.flows.store.parquet import ParquetStore

        return ParquetStore(self.runtime)

    def close(self) -> None:
        self.store.close()
        self.runtime.close()


# --- nfcapd -----------------------------------------------------------------------------------


def replay(pcaps: list[Path], port: int, rate: float) -> tuple[int, float]:
    """Send every datagram of ``pcaps`` once to 127.0.0.1:port at ``rate`` records/s,
    each exporter from its own loopback address; (records sent, seconds)."""
    from hostwarden.flows.decode.netflow9 import HEADER
    from hostwarden.flows.pcap import PcapReader

    sockets = []
    for e in range(EXPORTERS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.bind((loopback_address(e), 0))
        sockets.append(sock)
    target = ("127.0.0.1", port)
    sent = 0
    began = time.perf_counter()
    try:
        for path in pcaps:
            for datagram in PcapReader(path):
                payload = datagram.payload
                # The header counts templates and records; a datagram with a template
                # set (set id 0 first) carries one template.
                count = HEADER.unpack_from(payload)[1]
                records = count - 1 if payload[20:22] == b"\x00\x00" else count
                e = int(datagram.src_ip.rsplit(".", 1)[1]) - 1
                while sent > (time.perf_counter() - began) * rate:
                    time.sleep(0.0005)
                sockets[e].sendto(payload, target)
                sent += records
    finally:
        for sock in sockets:
            sock.close()
    return sent, time.perf_counter() - began


@dataclass
class NfcapdDay:
    records: int
    files: int
    bytes: int
    seconds: float
    rate: float
    kernel_drops: int
    tries: int


def nfcapd_day(pcaps: list[Path], out: Path, rate: float, expected: int, log: Path) -> NfcapdDay:
    """Replay the day into a fresh ``nfcapd -y`` writing to ``out``; again at half the rate
    (into an emptied ``out``) until ``nfdump -I`` counts every record."""
    tool, sender = cores()
    tries = 0
    while True:
        tries += 1
        if out.exists():
            shutil.rmtree(out)
        out.mkdir(parents=True)
        port = free_port()
        command = ["nfcapd", "-w", str(out), "-p", str(port), "-b", "127.0.0.1", "-y"]
        command += ["-B", str(32 * 1024 * 1024)]
        with log.open("ab") as errors:
            process = subprocess.Popen(
                command, stdout=errors, stderr=errors, preexec_fn=lambda: pin(tool)
            )
        before = os.sched_getaffinity(0)
        try:
            deadline = time.monotonic() + 30
            while udp_sockets(port)[0] == 0:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"nfcapd did not start; see {log}")
                time.sleep(0.05)
            pin(sender)
            try:
                _, seconds = replay(pcaps, port, rate)
            finally:
                os.sched_setaffinity(0, before)
            drops = drain(port)
        finally:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        files = sorted(p for p in out.iterdir() if p.name.startswith("nfcapd.2"))
        received = sum(nfdump_flows(p) for p in files)
        if received == expected:
            return NfcapdDay(
                records=received,
                files=len(files),
                bytes=sum(p.stat().st_size for p in files),
                seconds=seconds,
                rate=rate,
                kernel_drops=drops,
                tries=tries,
            )
        console.print(
            f"  nfcapd stored {received:,} of {expected:,} records at {rate:,.0f}/s "
            f"(kernel drops {drops:,}); again at {rate / 2:,.0f}/s"
        )
        if tries >= 4:
            raise RuntimeError(f"nfcapd lost records at every rate down to {rate:,.0f}/s")
        rate /= 2


# --- the queries ------------------------------------------------------------------------------


@dataclass
class Query:
    label: str
    ip: str  # an address or a prefix
    expected: float  # records expected that day, from the popularity

    @property
    def nfdump_filter(self) -> str:
        return f"net {self.ip}" if "/" in self.ip else f"host {self.ip}"


@dataclass
class Timing:
    rows: int = -1
    warm: list[float] = field(default_factory=list)
    cold: list[float] = field(default_factory=list)
    #: CPU seconds (user + system, every thread, child processes included) of the warm
    #: runs: on a shared machine this moves less than the wall time.
    warm_cpu: list[float] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def warm_s(self) -> float:
        return statistics.median(self.warm) if self.warm else float("nan")

    @property
    def warm_cpu_s(self) -> float:
        return statistics.median(self.warm_cpu) if self.warm_cpu else float("nan")

    @property
    def cold_s(self) -> float:
        return statistics.median(self.cold) if self.cold else float("nan")


def drop_caches() -> bool:
    """Write back dirty pages and drop the page cache; False when not allowed (not root)."""
    os.sync()
    try:
        DROP_CACHES.write_text("3\n", encoding="ascii")
    except OSError:
        return False
    return True


def timed(run: Callable[[], int], runs: int, cold: bool, before: Callable[[], None]) -> Timing:
    """``runs`` measured calls of ``run`` (it returns the rows it found), warm after one
    unmeasured call, or cold with the page cache dropped before each."""
    timing = Timing()
    if not cold:
        timing.rows = run()
    for _ in range(runs):
        if cold:
            drop_caches()
        before()
        cpu = cpu_seconds()
        began = time.perf_counter()
        rows = run()
        elapsed = time.perf_counter() - began
        cpu = cpu_seconds() - cpu
        if timing.rows not in (-1, rows):
            raise RuntimeError(f"the same query found {timing.rows:,} rows, then {rows:,}")
        timing.rows = rows
        if cold:
            timing.cold.append(elapsed)
        else:
            timing.warm.append(elapsed)
            timing.warm_cpu.append(cpu)
    return timing


def cpu_seconds() -> float:
    """User + system time of this process's threads and of its reaped children (nfdump)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def hostwarden_query(hw: Hostwarden, query: Query, day: int, runs: int, cold: bool) -> Timing:
    start_ms = (WEEK_START_S + day * DAY_S) * 1000
    holder: dict[str, Any] = {"store": hw.fresh_store()}

    def before() -> None:
        if cold:  # a new store: DuckDB starts without its metadata and object caches
            holder["store"].close()
            holder["store"] = hw.fresh_store()

    def run() -> int:
        table = holder["store"].query(
            start_ms=start_ms, end_ms=start_ms + DAY_S * 1000, ips=[query.ip]
        )
        return int(table.num_rows)

    timing = timed(run, runs, cold, before)
    if not cold:
        store = holder["store"]
        reads = rchar()
        store.query(start_ms=start_ms, end_ms=start_ms + DAY_S * 1000, ips=[query.ip])
        timing.detail["bytes_read"] = rchar() - reads
        planned = store.plan_query(
            start_ms=start_ms, end_ms=start_ms + DAY_S * 1000, ips=[query.ip]
        )
        assert planned is not None
        sql, params, names = planned
        with duckdb.connect() as duck:
            duck.execute("SET TimeZone = 'UTC'")
            plan = duck.execute("EXPLAIN ANALYZE " + sql, params).fetchall()[0][1]
        scanned = [
            tuple(map(int, m)) for m in re.findall(r"Row Groups Scanned: (\d+) / (\d+)", plan)
        ]
        timing.detail["segments"] = len(names)
        timing.detail["row_groups_scanned"] = sum(s for s, _ in scanned)
        timing.detail["row_groups_offered"] = sum(t for _, t in scanned)
        timing.detail["sub_queries"] = len(scanned)
    holder["store"].close()
    return timing


def nfdump_query(directory: Path, query: Query, mode: str, runs: int, cold: bool) -> Timing:
    """``mode`` "list": every record printed (line format) to /dev/null; "count": ``-o
    null``, the summary only. Rows: from the summary line (count) or the lines printed."""
    base = ["nfdump", "-R", str(directory), "-N"]

    def run() -> int:
        if mode == "list":
            subprocess.run(
                [*base, "-q", query.nfdump_filter], stdout=subprocess.DEVNULL, check=True
            )
            return -1
        out = subprocess.run(
            [*base, "-o", "null", query.nfdump_filter], capture_output=True, text=True, check=True
        ).stdout
        found = re.search(r"total flows: (\d+)", out)
        if found is None:
            raise RuntimeError(f"nfdump printed no summary:\n{out}")
        return int(found.group(1))

    timing = timed(run, runs, cold, lambda: None)
    if mode == "list":
        listed = subprocess.run(
            [*base, "-q", query.nfdump_filter], capture_output=True, check=True
        ).stdout
        timing.rows = listed.count(b"\n")
    return timing


def choose_queries(population: Population, plan: Plan) -> list[Query]:
    """The busiest and quietest assigned customer addresses, the busiest remote address
    and the one of popularity rank 1,000, and the /24 of the busy customer address."""
    assigned = population.customers < CUSTOMER_BASE + ASSIGNED
    ranks = np.flatnonzero(assigned)
    busy, quiet = int(ranks[0]), int(ranks[-1])
    per_day = plan.records_per_day
    customer_side = 0.9 * per_day
    remote_side = per_day  # outbound dst, inbound src, transit dst: one pick a record
    busy_ip = ip_text(population.customers[busy])
    prefix = busy_ip.rsplit(".", 1)[0] + ".0/24"
    low = int(population.customers[busy]) & ~0xFF
    in_prefix = [
        r for r in range(CUSTOMER_ADDRESSES) if int(population.customers[r]) & ~0xFF == low
    ]
    prefix_share = sum(population.draws("customer", r) for r in in_prefix)
    quiet_remote = 1000
    return [
        Query(
            "busy customer address",
            busy_ip,
            customer_side * population.draws("customer", busy),
        ),
        Query(
            "quiet customer address",
            ip_text(population.customers[quiet]),
            customer_side * population.draws("customer", quiet),
        ),
        Query(
            "busiest remote address",
            ip_text(population.remotes[0]),
            remote_side * population.draws("remote", 0),
        ),
        Query(
            f"remote address, popularity rank {quiet_remote:,}",
            ip_text(population.remotes[quiet_remote]),
            remote_side * population.draws("remote", quiet_remote),
        ),
        Query("customer /24 of the busy address", prefix, customer_side * prefix_share),
    ]


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Result:
    query: Query
    hostwarden: Timing
    nfdump_list: Timing
    nfdump_count: Timing

    @property
    def nfdump_best(self) -> tuple[float, float]:
        """nfdump's faster variant, warm and cold."""
        return (
            min(self.nfdump_list.warm_s, self.nfdump_count.warm_s),
            min(self.nfdump_list.cold_s, self.nfdump_count.cold_s),
        )

    @property
    def rows_agree(self) -> bool:
        return (
            self.hostwarden.rows == self.nfdump_count.rows == self.nfdump_list.rows
            and self.hostwarden.rows >= 0
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000_000, help="records over the 7 days")
    parser.add_argument("--quick", action="store_true", help="5,000,000 records, 3 runs")
    parser.add_argument("--runs", type=int, default=5, help="measured runs, warm and cold")
    parser.add_argument("--day", type=int, default=3, help="the day queried, 0 to 6")
    parser.add_argument("--replay-rate", type=float, default=300_000, help="records/s to nfcapd")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the data and the pcaps")
    parser.add_argument("--work", type=Path, default=None, help="where the temporary data goes")
    parser.add_argument(
        "--no-compact",
        action="store_true",
        help="query the segments as imported, without the nightly compaction job",
    )
    parser.add_argument(
        "--reuse",
        type=Path,
        default=None,
        help="only query the data a run with --keep left in this directory (same --rows, --seed)",
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.runs = 5_000_000, 3
    if not 0 <= args.day < DAYS:
        sys.exit(f"--day {args.day} is not a day of the week: give 0 to {DAYS - 1}.")
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        sys.exit("nfcapd and nfdump are needed (Debian: apt-get install nfdump)")
    for key in [k for k in os.environ if k.startswith("HOSTWARDEN_")]:
        del os.environ[key]
    from hostwarden.core.logs import configure_logging

    configure_logging("WARNING", "console")
    cold_ok = drop_caches()
    if not cold_ok:
        console.print("The page cache cannot be dropped (not root): cold runs are skipped.")

    plan = Plan(args.rows)
    population = Population.make(args.seed)
    if args.reuse is not None:
        if not (args.reuse / "home").is_dir() or not (args.reuse / "nfcapd").is_dir():
            sys.exit(f"{args.reuse} holds no data of a run with --keep (home/ and nfcapd/).")
        work, args.keep = args.reuse, True
    else:
        work = Path(tempfile.mkdtemp(prefix="hw-bench-query-", dir=args.work))
    hw: Hostwarden | None = None
    try:
        hw = Hostwarden(work / "home", args.seed, existing=args.reuse is not None)
        log = work / "nfcapd.log"
        days: list[dict[str, Any]] = []
        began = time.perf_counter()
        for day in range(DAYS if args.reuse is None else 0):
            t0 = time.perf_counter()
            pcaps = write_day(plan, population, day, args.seed, work / "pcap" / f"day-{day}")
            t1 = time.perf_counter()
            nf = nfcapd_day(
                pcaps, work / "nfcapd" / f"day-{day}", args.replay_rate, plan.records_per_day, log
            )
            t2 = time.perf_counter()
            stored = hw.import_day(pcaps)
            t3 = time.perf_counter()
            if stored != plan.records_per_day:
                raise RuntimeError(
                    f"hostwarden stored {stored:,} of the day's {plan.records_per_day:,} records"
                )
            pcap_bytes = sum(p.stat().st_size for p in pcaps)
            if not args.keep:
                shutil.rmtree(pcaps[0].parent)
            days.append(
                {
                    "day": day,
                    "records": plan.records_per_day,
                    "pcap_bytes": pcap_bytes,
                    "generate_s": t1 - t0,
                    "nfcapd": asdict(nf),
                    "import_s": t3 - t2,
                }
            )
            console.print(
                f"day {day}: {plan.records_per_day:,} records, generated {t1 - t0:.0f} s, "
                f"nfcapd {nf.records:,} at {nf.records / nf.seconds:,.0f}/s ({nf.tries} "
                f"tr{'y' if nf.tries == 1 else 'ies'}), hostwarden import {t3 - t2:.0f} s "
                f"({stored / (t3 - t2):,.0f}/s)"
            )
        build_s = time.perf_counter() - began
        compact_s, compacted = 0.0, []
        if not args.no_compact:
            # "Now" is two days after the week, so that every day is due (and none is
            # past retention, whatever today's date).
            with console.status("compaction (the nightly flows.compact job)"):
                compact_s, compacted = hw.compact((WEEK_START_S + (DAYS + 2) * DAY_S) * 1000)
            done = [r for r in compacted if r.segment is not None]
            console.print(
                f"compaction: {len(done)} days, {sum(len(r.replaced) for r in done)} segments "
                f"into {len(done)} + companions, {sum(r.rows for r in done):,} records, "
                f"{compact_s:.1f} s ({sum(r.rows for r in done) / max(compact_s, 1e-9):,.0f}/s); "
                f"{sum(r.bytes_before for r in done) / 1e9:.2f} GB → "
                f"{sum(r.bytes_after for r in done) / 1e9:.2f} GB with companions"
            )
        load_before = os.getloadavg()[0]
        segments = hw.segments()
        nfcapd_files = list((work / "nfcapd").glob("day-*/nfcapd.2*"))
        queries = choose_queries(population, plan)
        day_dir = work / "nfcapd" / f"day-{args.day}"
        results = []
        for query in queries:
            with console.status(f"{query.label} ({query.ip})"):
                hw_timing = hostwarden_query(hw, query, args.day, args.runs, cold=False)
                if cold_ok:
                    hw_timing.cold = hostwarden_query(hw, query, args.day, args.runs, True).cold
                timings = []
                for mode in ("list", "count"):
                    t = nfdump_query(day_dir, query, mode, args.runs, cold=False)
                    if cold_ok:
                        t.cold = nfdump_query(day_dir, query, mode, args.runs, cold=True).cold
                    timings.append(t)
            result = Result(query, hw_timing, *timings)
            results.append(result)
            console.print(
                f"{query.label}: hostwarden {hw_timing.rows:,} rows {hw_timing.warm_s:.3f} s "
                f"warm / {hw_timing.cold_s:.3f} s cold; nfdump {timings[1].rows:,} rows "
                f"{result.nfdump_best[0]:.3f} s warm / {result.nfdump_best[1]:.3f} s cold"
            )
        summary = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "rows": plan.records_per_day * DAYS,
            "records_per_day": plan.records_per_day,
            "day": str(datetime.fromtimestamp(WEEK_START_S + args.day * DAY_S, UTC).date()),
            "runs": args.runs,
            "cold": cold_ok,
            "cores": os.cpu_count(),
            "build_s": build_s,
            "query_s": time.perf_counter() - began - build_s,
            # Other work on the machine shows here: the figures are only as quiet as it.
            "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)],
            "hostwarden": {
                "import_s": hw.import_s,
                "segments": len(segments),
                "segments_of_day": sum(1 for s in segments if s.day == day_name(args.day)),
                "bytes": hw.stored_bytes(),
                "compacted": not args.no_compact,
                "compact_s": compact_s,
                "compacted_days": sum(1 for r in compacted if r.segment is not None),
                "decode_errors": hw.errors,
            },
            "nfcapd": {
                "bytes": sum(p.stat().st_size for p in nfcapd_files),
                "files": len(nfcapd_files),
            },
            "days": days,
            "queries": [
                {
                    "label": r.query.label,
                    "ip": r.query.ip,
                    "expected_rows": round(r.query.expected),
                    "rows_agree": r.rows_agree,
                    "hostwarden": asdict(r.hostwarden) | timing_summary(r.hostwarden),
                    "nfdump_list": asdict(r.nfdump_list) | timing_summary(r.nfdump_list),
                    "nfdump_count": asdict(r.nfdump_count) | timing_summary(r.nfdump_count),
                }
                for r in results
            ],
        }
        report(summary, results)
        if args.json:
            sys.stdout.write(json.dumps(summary, indent=2, default=str) + "\n")
        mismatched = [r.query.label for r in results if not r.rows_agree]
        if mismatched:
            console.print(f"[bold red]row counts differ between the tools: {mismatched}[/]")
    finally:
        if hw is not None:
            hw.close()
        if args.keep:
            console.print(f"kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def day_name(day: int) -> str:
    return str(datetime.fromtimestamp(WEEK_START_S + day * DAY_S, UTC).date())


def timing_summary(timing: Timing) -> dict[str, float]:
    return {
        "warm_median_s": timing.warm_s,
        "cold_median_s": timing.cold_s,
        "warm_cpu_median_s": timing.warm_cpu_s,
    }


def iter_rows(results: list[Result]) -> Iterator[list[str]]:
    for r in results:
        nf_warm, nf_cold = r.nfdump_best
        rows = f"{r.hostwarden.rows:,}"
        if not r.rows_agree:
            rows += f" ≠ nfdump {r.nfdump_count.rows:,} / {r.nfdump_list.rows:,}"
        yield [
            f"{r.query.label}\n{r.query.ip}",
            rows,
            f"{r.hostwarden.warm_s:.3f} / {r.hostwarden.cold_s:.3f}",
            f"{r.nfdump_list.warm_s:.3f} / {r.nfdump_list.cold_s:.3f}",
            f"{r.nfdump_count.warm_s:.3f} / {r.nfdump_count.cold_s:.3f}",
            f"{nf_warm / r.hostwarden.warm_s:.1f}× / {nf_cold / r.hostwarden.cold_s:.1f}×",
            "yes"
            if max(r.hostwarden.warm_s, r.hostwarden.cold_s) < 1
            and min(nf_warm / r.hostwarden.warm_s, nf_cold / r.hostwarden.cold_s) >= 10
            else "NO",
            f"{r.hostwarden.warm_cpu_s:.2f} / {r.nfdump_list.warm_cpu_s:.2f} / "
            f"{r.nfdump_count.warm_cpu_s:.2f}",
            "{bytes_read:,} B, {row_groups_scanned} of {row_groups_offered}".format(
                **r.hostwarden.detail
            ),
        ]


def report(summary: dict[str, Any], results: list[Result]) -> None:
    out = Console(highlight=False, width=200, stderr=True)
    title = (
        f"One address over one day ({summary['day']}, {summary['records_per_day']:,} records) "
        f"of {summary['rows']:,} stored over 7 days; seconds, median of {summary['runs']}, "
        "warm / cold; "
        f"{summary['cores']} cores"
    )
    grid = Table(title=title, title_justify="left", show_lines=True)
    for column in (
        "query",
        "rows (both)",
        "hostwarden store.query",
        "nfdump list (-q -N, line)",
        "nfdump count (-o null)",
        "nfdump best ÷ hostwarden",
        "< 1 s and ≥ 10×",
        "CPU s warm: hostwarden / list / count",
        "hostwarden read, row groups",
    ):
        grid.add_column(column, justify="left" if column == "query" else "right")
    for row in iter_rows(results):
        grid.add_row(*row)
    out.print(grid)
    hw, nf = summary["hostwarden"], summary["nfcapd"]
    out.print(
        f"Stored: hostwarden {hw['segments']} segments ({hw['segments_of_day']} of the day), "
        + (
            f"compacted by the nightly job in {hw['compact_s']:.0f} s "
            f"({hw['compacted_days']} days; companions included in the size), "
            if hw["compacted"]
            else "not compacted (--no-compact), "
        )
        + f"{hw['bytes'] / 1e9:.2f} GB ({hw['bytes'] / summary['rows']:.1f} B/record), "
        + (
            f"pcap import {hw['import_s']:.0f} s ({summary['rows'] / hw['import_s']:,.0f}/s), "
            if hw["import_s"]
            else "imported by an earlier run, "
        )
        + f"decode errors {hw['decode_errors'] or 'none'}; nfcapd -y {nf['files']} files, "
        f"{nf['bytes'] / 1e9:.2f} GB ({nf['bytes'] / summary['rows']:.1f} B/record). "
        f"Cold = page cache dropped before each run"
        + ("" if summary["cold"] else " (not done: not root)")
        + f". Build {summary['build_s'] / 60:.1f} min, queries {summary['query_s'] / 60:.1f} min; "
        "load average (1 min) before / after the queries "
        + " / ".join(f"{x:.1f}" for x in summary["load_average"])
        + "."
    )


if __name__ == "__main__":
    main()
