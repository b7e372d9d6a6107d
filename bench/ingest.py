"""Ingest benchmark: pcap import, and the live collector against nfcapd over loopback.

    .venv/bin/python bench/ingest.py [--quick] [--records 3000000] [--seconds 8]
                                     [--rates 25000,50000,...] [--import-runs 2]

Input: one synthetic NetFlow v9 export stream (numpy, fixed seed) from four exporters,
each with one 18-field template (IPv4 addresses, next hop, interfaces, packets, bytes,
first/last switched, ports, TCP flags, protocol, ToS, AS numbers, masks; 45 bytes a
record) re-sent in every 20th datagram of that exporter, 30 records in a 1,376-byte
datagram (28 with the template). 45 % of records go from a customer address to the
Internet, 45 % the other way, 10 % are transit; customer addresses come from a /20 inside
the registered provider range 100.64.0.0/16 (4,000 assigned to 1,000 customers, 400 of
them changing hands inside the stream's time span, so attribution does time checks),
with skewed popularity, as are the 200,000 remote addresses. The stream is written as a
classic pcap (Ethernet, IPv4, UDP to port 2055).

Measured:
- pcap import: ``imports.import_file`` + ``store.flush`` (what ``hostwarden flows
  import`` runs) with a real ``ParquetStore`` and ``Ingestor`` on a temporary data
  directory, pinned to one core; records/s decoded, attributed and sealed, best of
  --import-runs, with the split from ``IngestStats`` (decode includes reading the pcap);
- collector vs nfcapd: the datagrams replayed over UDP to 127.0.0.1 at fixed rates from
  a sender process pinned to the other core (a Python ``sendto`` loop, each exporter
  from its own 127.0.0.x address), against ``hostwarden flows collect`` (1 worker;
  live detection off, as nfcapd has none, unless --detect) and
  Debian's ``nfcapd -y`` (LZ4), each pinned to the first core and started afresh on a
  new port for every rate. Received = records stored (hostwarden: rows of the segments
  sealed by that run; nfcapd: ``nfdump -I`` flow count of its files). Each rate is
  replayed for --seconds or 1,000,000 / rate + 4 s, whichever is longer, so that
  hostwarden seals a full segment (its default ``segment_records``) while receiving
  and the traffic goes on through the seal; both tools get the same window. CPU =
  user + system time of the tool's processes (workers included) from the moment the
  sender starts until the tool has exited after its socket drained and SIGTERM, so the
  last flush and seal count. A tool's ladder stops at its first rate with >= 0.1 %
  loss (or that the sender missed);
- bytes per flow on disk: every segment / nfcapd file written by the replays, divided
  by the records they hold.

Both tools get the same socket buffer request (32 MiB, capped by net.core.rmem_max).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

console = Console(highlight=False, width=160)

# --- the export stream ----------------------------------------------------------------------

#: The template: (NetFlow v9 field type, length).
TEMPLATE_ID = 256
FIELDS = (
    ("src", 8, 4),  # IPV4_SRC_ADDR
    ("dst", 12, 4),  # IPV4_DST_ADDR
    ("nexthop", 15, 4),  # IPV4_NEXT_HOP
    ("in_if", 10, 2),  # INPUT_SNMP
    ("out_if", 14, 2),  # OUTPUT_SNMP
    ("packets", 2, 4),  # IN_PKTS
    ("bytes", 1, 4),  # IN_BYTES
    ("first", 22, 4),  # FIRST_SWITCHED
    ("last", 21, 4),  # LAST_SWITCHED
    ("src_port", 7, 2),  # L4_SRC_PORT
    ("dst_port", 11, 2),  # L4_DST_PORT
    ("tcp_flags", 6, 1),  # TCP_FLAGS
    ("proto", 4, 1),  # PROTOCOL
    ("tos", 5, 1),  # SRC_TOS
    ("src_as", 16, 2),  # SRC_AS
    ("dst_as", 17, 2),  # DST_AS
    ("src_mask", 9, 1),  # SRC_MASK
    ("dst_mask", 13, 1),  # DST_MASK
)
RECORD = np.dtype([(name, f">u{length}") for name, _, length in FIELDS])
RECORDS_PER_DATAGRAM = 30  # 20 + 4 + 30 × 45 = 1,374 bytes (+2 padding)
TEMPLATE_EVERY = 20  # datagrams of one exporter between templates
EXPORTERS = 4
V9_HEADER = struct.Struct(">HHIIII")
TEMPLATE_SET = struct.pack(">HHHH", 0, 8 + 4 * len(FIELDS), TEMPLATE_ID, len(FIELDS)) + b"".join(
    struct.pack(">HH", ftype, length) for _, ftype, length in FIELDS
)
T0 = datetime(2026, 5, 1, 8, 0, tzinfo=UTC)
T0_MS = int(T0.timestamp() * 1000)
DATAGRAMS_PER_SECOND = 1000  # the stream's own clock: 30,000 records/s of exports
#: hostwarden's default segment size ([flows] segment_records): a worker seals one
#: segment every SEGMENT_RECORDS / rate seconds.
SEGMENT_RECORDS = 1_000_000
SEAL_MARGIN = 4.0  # seconds; a seal of 1,000,000 records takes about 1 s of CPU

# Addresses: the provider range, its customer /20 and the registry.
PROVIDER_RANGE = "100.64.0.0/16"
CUSTOMER_BASE = 0x64400000  # 100.64.0.0
CUSTOMER_ADDRESSES = 4096  # 100.64.0.0/20; the first ASSIGNED are assigned
ASSIGNED = 4000
CUSTOMERS = 1000
CHANGED_HANDS = 400
REMOTE_ADDRESSES = 200_000
OWN_AS = 64500
SERVICE_PORTS = np.array([443, 80, 22, 53, 25, 3389, 8080, 123, 993, 3306])
SERVICE_WEIGHTS = np.array([0.45, 0.2, 0.1, 0.08, 0.04, 0.04, 0.03, 0.03, 0.02, 0.01])
TCP_FLAGS = np.array([0x1B, 0x18, 0x02, 0x12, 0x10, 0x19, 0x04, 0x1A, 0x1F])
TCP_WEIGHTS = np.array([0.4, 0.2, 0.12, 0.05, 0.08, 0.08, 0.03, 0.02, 0.02])


def exporter_address(i: int) -> str:
    return f"192.0.2.{i + 1}"


def loopback_address(i: int) -> str:
    return f"127.0.0.{11 + i}"


def skewed(rng: np.random.Generator, n: int, size: int) -> np.ndarray:
    """Indexes into a pool of ``n``: a few busy members (the busiest about 1 % of the
    picks), a long tail, in random order."""
    weights = 1.0 / (np.arange(n) + 20.0)
    return rng.permutation(n)[rng.choice(n, size, p=weights / weights.sum())]


@dataclass
class Stream:
    datagrams: list[bytes]
    exporter: np.ndarray  # exporter index of each datagram
    records: np.ndarray  # data records in each datagram
    time_ms: np.ndarray  # when each datagram was exported

    @property
    def total_records(self) -> int:
        return int(self.records.sum())


def generate_stream(records: int, seed: int) -> Stream:
    rng = np.random.default_rng(seed)
    # Which datagram carries what: exporters take turns, templates every 20th of each.
    count = records // RECORDS_PER_DATAGRAM + records // (RECORDS_PER_DATAGRAM * TEMPLATE_EVERY)
    index = np.arange(count)
    sequence = index // EXPORTERS
    with_template = sequence % TEMPLATE_EVERY == 0
    per = np.where(with_template, RECORDS_PER_DATAGRAM - 2, RECORDS_PER_DATAGRAM)
    n = int(per.sum())
    time_ms = T0_MS + index * 1000 // DATAGRAMS_PER_SECOND
    boot_ms = T0_MS - (np.arange(EXPORTERS) + 1) * 3 * 86_400_000 - 12_345  # days of uptime

    # Who talks to whom.
    which = rng.choice(3, n, p=[0.45, 0.45, 0.10])  # 0 outbound, 1 inbound, 2 transit
    customer = (CUSTOMER_BASE + skewed(rng, CUSTOMER_ADDRESSES, n)).astype(np.uint32)
    pool = rng.integers(0x01000000, 0xDF000000, REMOTE_ADDRESSES, dtype=np.uint64)
    pool[(pool >> 16) == 0x6440] ^= 0x20000000  # none inside the provider range
    remote = pool[skewed(rng, REMOTE_ADDRESSES, n)].astype(np.uint32)
    other = pool[rng.integers(0, REMOTE_ADDRESSES, n)].astype(np.uint32)
    return pack_stream(
        rng,
        which=which,
        customer=customer,
        remote=remote,
        other=other,
        with_template=with_template,
        per=per,
        sequence=sequence,
        time_ms=time_ms,
        boot_ms=boot_ms,
    )


def pack_stream(
    rng: np.random.Generator,
    *,
    which: np.ndarray,
    customer: np.ndarray,
    remote: np.ndarray,
    other: np.ndarray,
    with_template: np.ndarray,
    per: np.ndarray,
    sequence: np.ndarray,
    time_ms: np.ndarray,
    boot_ms: np.ndarray,
    fields: dict[str, np.ndarray] | None = None,
) -> Stream:
    """The records of datagrams whose layout (``per``, ``with_template``, export
    ``time_ms``, ``sequence``; exporters take turns) and parties (``which`` direction,
    the customer, remote and transit addresses of each record) are given: ports,
    flags, volumes, timing, interfaces and AS numbers drawn from ``rng``, packed as
    NetFlow v9 datagrams. ``boot_ms`` is each exporter's boot time (bench/query.py
    draws its own parties and layout for a week). ``fields`` replaces drawn columns
    of the record table by given ones (names of ``FIELDS``; ``first``/``last`` in the
    exporter's uptime milliseconds): bench/detect.py writes labelled attacks so."""
    count = len(per)
    n = len(which)
    index = np.arange(count)
    exporter = index % EXPORTERS
    src = np.where(which == 0, customer, np.where(which == 1, remote, other))
    dst = np.where(which == 0, remote, np.where(which == 1, customer, remote))
    # Ports: one side serves (a well-known port), the other a client's ephemeral port.
    proto = rng.choice(np.array([6, 17, 1]), n, p=[0.82, 0.16, 0.02])
    service = rng.choice(SERVICE_PORTS, n, p=SERVICE_WEIGHTS)
    ephemeral = rng.integers(1024, 65536, n)
    src_serves = rng.random(n) < 0.5
    src_port = np.where(src_serves, service, ephemeral)
    dst_port = np.where(src_serves, ephemeral, service)
    icmp = proto == 1
    src_port[icmp] = 0
    dst_port[icmp] = 0x0800  # echo request, as v9 exporters put type/code there
    flags = np.where(proto == 6, rng.choice(TCP_FLAGS, n, p=TCP_WEIGHTS), 0)
    packets = np.minimum(np.ceil(rng.lognormal(1.2, 1.6, n)), 4_000_000).astype(np.uint64)
    size = np.where(rng.random(n) < 0.5, rng.integers(40, 120, n), rng.integers(500, 1500, n))
    octets = np.minimum(packets * size.astype(np.uint64), 0xFFFFFFFF)

    datagram_of = np.repeat(index, per)
    own_exporter = exporter[datagram_of]
    uptime_ms = (time_ms - boot_ms[exporter]).astype(np.int64)
    last = uptime_ms[datagram_of] - rng.integers(0, 30_000, n)
    first = last - np.minimum(rng.exponential(8_000, n).astype(np.int64), 120_000)
    inbound_if = rng.integers(1, 5, n)  # uplinks
    access_if = rng.integers(5, 49, n)  # customer-facing ports

    table = np.zeros(n, dtype=RECORD)
    table["src"], table["dst"] = src, dst
    table["nexthop"] = 0x0A000001 + own_exporter * 256 + rng.integers(0, 4, n)
    table["in_if"] = np.where(which == 0, access_if, inbound_if)
    table["out_if"] = np.where(which == 1, access_if, inbound_if)
    table["packets"], table["bytes"] = packets, octets
    table["first"], table["last"] = first, last
    table["src_port"], table["dst_port"] = src_port, dst_port
    table["tcp_flags"], table["proto"] = flags, proto
    table["tos"] = np.where(rng.random(n) < 0.9, 0, rng.choice(np.array([0x28, 0xB8]), n))
    remote_as = rng.integers(1, 400, n) * 137 % 65000 + 1
    table["src_as"] = np.where(which == 0, OWN_AS, remote_as)
    table["dst_as"] = np.where(which == 1, OWN_AS, remote_as)
    table["src_mask"] = np.where(which == 0, 20, rng.integers(8, 25, n))
    table["dst_mask"] = np.where(which == 1, 20, rng.integers(8, 25, n))
    for name, column in (fields or {}).items():
        table[name] = column
    raw = table.tobytes()

    datagrams: list[bytes] = []
    offset = 0
    for i in range(count):
        k = int(per[i])
        body = raw[offset * RECORD.itemsize : (offset + k) * RECORD.itemsize]
        offset += k
        data = struct.pack(">HH", TEMPLATE_ID, 4 + len(body) + (-len(body) % 4)) + body
        data += bytes(-len(body) % 4)
        sets = TEMPLATE_SET + data if with_template[i] else data
        t = int(time_ms[i])
        head = V9_HEADER.pack(
            9, k + int(with_template[i]), int(uptime_ms[i]), t // 1000, int(sequence[i]), 0
        )
        datagrams.append(head + sets)
    return Stream(datagrams, exporter, per, time_ms)


def _checksum(header: bytes) -> int:
    total = sum(struct.unpack("!10H", header))
    total = (total & 0xFFFF) + (total >> 16)
    total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def write_pcap(path: Path, stream: Stream) -> None:
    """Classic pcap, Ethernet / IPv4 / UDP from exporter 192.0.2.n to 192.0.2.100:2055."""
    collector = socket.inet_aton("192.0.2.100")
    with path.open("wb") as out:
        out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        chunk: list[bytes] = []
        for i, payload in enumerate(stream.datagrams):
            e = int(stream.exporter[i])
            udp_length = 8 + len(payload)
            src = socket.inet_aton(exporter_address(e))
            fields = (0x45, 0, 20 + udp_length, i & 0xFFFF, 0, 64, 17, 0, src, collector)
            ip = struct.pack("!BBHHHBBH4s4s", *fields)
            ip = ip[:10] + struct.pack("!H", _checksum(ip)) + ip[12:]
            frame = (
                b"\x00\x1b\x21\x00\x00\x01"
                + bytes([0, 0x1B, 0x21, 0, 0x10, e])
                + b"\x08\x00"
                + ip
                + struct.pack("!HHHH", 50000 + e, 2055, udp_length, 0)
                + payload
            )
            t = int(stream.time_ms[i])
            chunk.append(struct.pack("<IIII", t // 1000, t % 1000 * 1000, len(frame), len(frame)))
            chunk.append(frame)
            if len(chunk) >= 20_000:
                out.write(b"".join(chunk))
                chunk = []
        out.write(b"".join(chunk))


# --- the data directory -----------------------------------------------------------------------


def cores() -> tuple[int, int]:
    """The core the measured tool runs on and the one the sender runs on."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[0], cpus[1 % len(cpus)]


def pin(cpu: int) -> None:
    os.sched_setaffinity(0, {cpu})


def make_home(
    home: Path, seed: int, *, assigned: int = ASSIGNED, customers: int = CUSTOMERS
) -> None:
    """Initialise a data directory with the provider range and its assignments.

    The assignments are bulk-inserted through SQLAlchemy core (benchmark setup, not the
    product path; as in bench/attribution.py): ``assigned`` (4,000) /32s from 100.64.0.0
    up held by ``customers`` (1,000) since 2026-01-01, of which 400 changed hands inside
    the stream's span (bench/detect.py asks for 12,000 addresses)."""
    from sqlalchemy import insert, update

    from hostwarden.core.config import load_settings
    from hostwarden.core.runtime import Runtime, system_actor
    from hostwarden.core.setup import init
    from hostwarden.registry import inventory, netaddr
    from hostwarden.registry.models import Customer, IpAssignment, RegistryGeneration

    settings = load_settings(home=home)
    init(settings)
    runtime = Runtime.open(settings)
    try:
        with runtime.operation(system_actor("bench")) as op:
            inventory.create_range(op, PROVIDER_RANGE, purpose="bench")
        rng = np.random.default_rng(seed + 1)
        holders = rng.integers(1, customers + 1, size=(assigned, 2))
        since = datetime(2026, 1, 1, tzinfo=UTC)
        changed = T0 + timedelta(seconds=30)
        now = datetime.now(UTC)
        rows = []
        for i in range(assigned):
            value = CUSTOMER_BASE + i
            text = f"100.64.{value >> 8 & 255}.{value & 255}/32"
            key = netaddr.key_of_int(0xFFFF00000000 | value)
            first = {
                "prefix": text,
                "start_key": key,
                "end_key": key,
                "customer_id": int(holders[i, 0]),
                "instance_id": None,
                "valid_from": since,
                "valid_to": None,
                "source": "import",
                "created_at": now,
            }
            if i < CHANGED_HANDS:
                second = {**first, "customer_id": int(holders[i, 1]), "valid_from": changed}
                first["valid_to"] = changed
                rows += [first, second]
            else:
                rows.append(first)
        with runtime.db.engine.begin() as conn:
            conn.execute(
                insert(Customer),
                [
                    {"kind": "organisation", "name": f"customer {i}", "status": "active"}
                    for i in range(1, customers + 1)
                ],
            )
            conn.execute(insert(IpAssignment), rows)
            conn.execute(
                update(RegistryGeneration)
                .where(RegistryGeneration.id == 1)
                .values(value=RegistryGeneration.value + 1)
            )
    finally:
        runtime.close()


# --- pcap import ------------------------------------------------------------------------------


@dataclass
class ImportRun:
    records: int
    attributed: int
    seconds: float
    cpu_s: float  # of the whole process (every thread), on its one core
    attribute_s: float
    seal_s: float
    errors: dict[str, int]


def run_import(home: Path, pcap: Path, runs: int) -> tuple[list[ImportRun], float, float]:
    """``runs`` imports of the capture on one core; also the bytes per record of the
    segments written, and the time to read the capture alone (``PcapReader``)."""
    from hostwarden.core.config import load_settings
    from hostwarden.core.runtime import Runtime
    from hostwarden.flows import imports
    from hostwarden.flows.ingest import Ingestor
    from hostwarden.flows.pcap import PcapReader
    from hostwarden.flows.store.parquet import ParquetStore

    before = os.sched_getaffinity(0)
    pin(cores()[0])
    results: list[ImportRun] = []
    try:
        began = time.perf_counter()
        for _ in PcapReader(pcap):
            pass
        read_s = time.perf_counter() - began
        runtime = Runtime.open(load_settings(home=home))
        store = ParquetStore(runtime)
        try:
            for _ in range(runs):
                ingestor = Ingestor(runtime, store)
                began = time.perf_counter()
                cpu_began = time.process_time()
                report = imports.import_file(ingestor, pcap, "pcap")
                flushed = time.perf_counter()
                store.flush()
                ended = time.perf_counter()
                results.append(
                    ImportRun(
                        records=report.records,
                        attributed=report.attributed,
                        seconds=ended - began,
                        cpu_s=time.process_time() - cpu_began,
                        attribute_s=ingestor.stats.seconds_attributing,
                        seal_s=ingestor.stats.seconds_writing + (ended - flushed),
                        errors=dict(report.errors),
                    )
                )
            segments = store.segments()
        finally:
            store.close()
            runtime.close()
    finally:
        os.sched_setaffinity(0, before)
    per_record = sum(s.size for s in segments) / max(1, sum(s.rows for s in segments))
    return results, per_record, read_s


# --- the sender -------------------------------------------------------------------------------


def sender_main(pcap: str, counts: str, port: int, rate: float, seconds: float, cpu: int) -> None:
    """Second process: replay the stream's datagrams to 127.0.0.1:port at ``rate``
    records/s (0: as fast as it can) for ``seconds``, looping over the stream, each
    exporter from its own loopback address."""
    from hostwarden.flows.pcap import PcapReader

    pin(cpu)
    payloads: list[bytes] = []
    origin: list[int] = []
    for datagram in PcapReader(pcap):
        payloads.append(datagram.payload)
        origin.append(int(datagram.src_ip.rsplit(".", 1)[1]) - 1)
    per = np.load(counts).tolist()
    sockets = []
    for e in range(EXPORTERS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 * 1024 * 1024)
        sock.bind((loopback_address(e), 0))
        sockets.append(sock.sendto)
    sends = [sockets[e] for e in origin]
    target = ("127.0.0.1", port)
    total = len(payloads)
    sent_records = sent = i = 0
    began = time.perf_counter()
    deadline = began + seconds
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        allowed = (now - began) * rate if rate else sent_records + 3000
        if sent_records >= allowed:
            time.sleep(min(0.0005, (sent_records - allowed) / rate))
            continue
        while sent_records < allowed:
            sends[i](payloads[i], target)
            sent_records += per[i]
            sent += 1
            i += 1
            if i == total:
                i = 0
    elapsed = time.perf_counter() - began
    sys.stdout.write(json.dumps({"datagrams": sent, "records": sent_records, "seconds": elapsed}))


# --- the collectors ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def udp_sockets(port: int) -> tuple[int, int, int]:
    """(sockets, bytes queued, datagrams dropped) of the UDP sockets bound to ``port``."""
    found = queued = drops = 0
    for name in ("/proc/net/udp", "/proc/net/udp6"):
        with open(name, encoding="ascii") as handle:
            for line in handle.readlines()[1:]:
                parts = line.split()
                if int(parts[1].split(":")[1], 16) == port:
                    found += 1
                    queued += int(parts[4].split(":")[1], 16)
                    drops += int(parts[12])
    return found, queued, drops


def _stat(pid: int) -> tuple[int, list[str]] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    if b"resource_tracker" in cmdline:
        return None  # exits unreaped by the tool, so it would not be in wait4's figure
    return int(fields[1]), fields


def tree_cpu(root: int) -> float:
    """User + system seconds of ``root`` and its descendants (and of children they have
    already reaped), from /proc."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, (ppid, _) in stats.items() if ppid in tree} - tree
        tree |= more
        grew = bool(more)
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in tree:
        if pid in stats:
            fields = stats[pid][1]
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return total / ticks


@dataclass
class Step:
    tool: str
    rate: float  # asked of the sender (0: unlimited)
    sent: int = 0
    sent_datagrams: int = 0
    send_s: float = 0.0
    received: int = 0
    cpu_s: float = 0.0
    kernel_drops: int = 0
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def achieved(self) -> float:
        return self.sent / self.send_s if self.send_s else 0.0

    @property
    def loss(self) -> float:
        return 1 - self.received / self.sent if self.sent else 0.0

    @property
    def cpu_per_million(self) -> float:
        return self.cpu_s / (self.received / 1e6) if self.received else float("inf")

    @property
    def sustained(self) -> bool:
        reached = not self.rate or self.achieved >= 0.97 * self.rate
        return reached and self.loss < 0.001


@dataclass
class Replay:
    """What the sender sends and where the tools write their stderr."""

    pcap: Path
    counts: Path
    seconds: float
    log: Path

    def window(self, rate: float) -> float:
        """Seconds to replay at ``rate``: at least ``seconds``, and long enough for
        hostwarden to fill a segment and go on receiving for SEAL_MARGIN seconds while
        and after it seals it (a collector that keeps up only between seals does not
        sustain the rate)."""
        if not rate:
            return self.seconds
        return max(self.seconds, SEGMENT_RECORDS / rate + SEAL_MARGIN)

    def send(self, port: int, rate: float) -> dict[str, Any]:
        seconds = self.window(rate)
        command = [sys.executable, __file__, "--sender", str(self.pcap), str(self.counts)]
        command += [str(port), str(rate), str(seconds), str(cores()[1])]
        result = subprocess.run(
            command, capture_output=True, text=True, check=True, timeout=seconds + 120
        )
        data: dict[str, Any] = json.loads(result.stdout)
        return data

    def start(
        self, command: list[str], env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        tool = cores()[0]
        with self.log.open("ab") as errors:
            return subprocess.Popen(
                command,
                env=env,
                stdout=errors,
                stderr=errors,
                preexec_fn=lambda: pin(tool),
            )

    def run(self, step: Step, process: subprocess.Popen[bytes], port: int) -> None:
        """Replay into a started tool, let it drain its socket, stop it; fills ``step``
        with what was sent, the kernel's drops and the tool's CPU time."""
        try:
            cpu_before = tree_cpu(process.pid)
            sent = self.send(port, step.rate)
            step.kernel_drops = drain(port)
            time.sleep(0.3)
        except BaseException:
            process.kill()
            process.wait()
            raise
        step.cpu_s = stop(process) - cpu_before
        step.sent, step.sent_datagrams = sent["records"], sent["datagrams"]
        step.send_s = sent["seconds"]


def wait_for(ready: Any, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 120
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"{what} did not start; see {log}")
        time.sleep(0.05)


def drain(port: int, limit: float = 30.0) -> int:
    """Wait until the tool has read everything queued on its socket; its drop count."""
    deadline = time.monotonic() + limit
    quiet = 0
    while time.monotonic() < deadline and quiet < 3:
        quiet = quiet + 1 if udp_sockets(port)[1] == 0 else 0
        time.sleep(0.1)
    return udp_sockets(port)[2]


def stop(process: subprocess.Popen[bytes], timeout: float = 60.0) -> float:
    """SIGTERM, wait, and the CPU seconds of the process and every child it reaped."""
    process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while True:
        pid, status, usage = os.wait4(process.pid, os.WNOHANG)
        if pid:
            process.returncode = os.waitstatus_to_exitcode(status)
            return float(usage.ru_utime + usage.ru_stime)
        if time.monotonic() > deadline:
            process.kill()
        time.sleep(0.05)


def collector_toml(port: int, detect: bool = False) -> str:
    # Detection is off unless --detect: nfcapd collects and stores only, and the
    # detectors' own throughput is bench/detect.py's.
    return (
        '[logging]\nlevel = "WARNING"\n\n[flows]\nworkers = 1\n\n'
        f'[[flows.listeners]]\nprotocol = "netflow"\nhost = "127.0.0.1"\nport = {port}\n\n'
        f"[detect]\nenabled = {'true' if detect else 'false'}\n"
    )


def segment_names(home: Path) -> dict[str, tuple[int, int]]:
    """Every sealed segment of the data directory: name → (rows, bytes)."""
    from hostwarden.core.config import load_settings
    from hostwarden.core.runtime import Runtime
    from hostwarden.flows.store.parquet import ParquetStore

    runtime = Runtime.open(load_settings(home=home))
    try:
        store = ParquetStore(runtime)
        return {s.name: (s.rows, s.size) for s in store.segments()}
    finally:
        runtime.close()


def run_hostwarden(replay: Replay, home: Path, rate: float, detect: bool = False) -> Step:
    """``hostwarden flows collect`` with one worker on a new port of 127.0.0.1."""
    port = free_port()
    (home / "hostwarden.toml").write_text(collector_toml(port, detect), encoding="utf-8")
    stats_file = home / "run" / "collector-0.json"
    stats_file.unlink(missing_ok=True)
    before = segment_names(home)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWARDEN_")}
    env["HOSTWARDEN_HOME"] = str(home)
    process = replay.start([sys.executable, "-m", "hostwarden", "flows", "collect"], env)
    # The worker writes its stats file once its sockets are bound and its loop runs.
    wait_for(stats_file.exists, process, "hostwarden flows collect", replay.log)
    if udp_sockets(port)[0] != 1:
        # With SO_REUSEPORT a stray socket on the port would silently take a share.
        process.kill()
        raise RuntimeError(f"expected one socket on port {port}, found {udp_sockets(port)[0]}")
    step = Step("hostwarden", rate)
    replay.run(step, process, port)
    after = segment_names(home)
    new = [after[name] for name in after.keys() - before.keys()]
    step.received = sum(rows for rows, _ in new)
    step.detail = {
        "segments": len(new),
        "bytes": sum(size for _, size in new),
        "stats": json.loads(stats_file.read_text(encoding="utf-8")),
    }
    return step


def nfdump_flows(path: Path) -> int:
    out = subprocess.run(
        ["nfdump", "-I", "-r", str(path)], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"^Flows:\s+(\d+)", out, re.MULTILINE)
    if found is None:
        raise RuntimeError(f"nfdump -I {path} printed no flow count:\n{out}")
    return int(found.group(1))


def run_nfcapd(replay: Replay, directory: Path, rate: float) -> Step:
    """``nfcapd -y`` (LZ4) on a new port of 127.0.0.1, writing to a new directory."""
    port = free_port()
    out = directory / f"run-{port}"
    out.mkdir(parents=True)
    command = ["nfcapd", "-w", str(out), "-p", str(port), "-b", "127.0.0.1", "-y"]
    command += ["-B", str(32 * 1024 * 1024)]  # what hostwarden asks for
    process = replay.start(command)
    wait_for(lambda: udp_sockets(port)[0] > 0, process, "nfcapd", replay.log)
    step = Step("nfcapd", rate)
    replay.run(step, process, port)
    files = [p for p in out.iterdir() if p.name.startswith("nfcapd.2")]
    step.received = sum(nfdump_flows(p) for p in files)
    header = subprocess.run(["nfdump", "-v", str(files[0])], capture_output=True, text=True)
    if "lz4 compressed" not in header.stdout:
        raise RuntimeError(f"nfcapd -y did not write LZ4 files:\n{header.stdout}")
    step.detail = {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}
    shutil.rmtree(out)  # the byte count is kept; the disk is not needed
    return step


# --- the report -------------------------------------------------------------------------------


def best_rate(steps: list[Step]) -> Step | None:
    ok = [s for s in steps if s.sustained]
    return max(ok, key=lambda s: s.achieved) if ok else None


def rate_text(value: float) -> str:
    return f"{value:,.0f}/s" if value else "as fast as it can"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3_000_000, help="records in the stream")
    parser.add_argument("--seconds", type=float, default=8.0, help="replay time per rate")
    parser.add_argument(
        "--rates",
        default="25000,50000,100000,200000,300000,400000,800000,1600000,0",
        help="records/s asked of the sender, ascending (0: as fast as it can)",
    )
    parser.add_argument("--import-runs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--quick", action="store_true", help="1M records, 3 rates of 3 s, 1 run")
    parser.add_argument(
        "--detect",
        action="store_true",
        help="run the collector with live detection on ([detect] enabled; default off)",
    )
    args = parser.parse_args()
    if args.quick:
        args.records, args.seconds, args.import_runs = 1_000_000, 3.0, 1
        args.rates = "100000,400000,0"
    rates = [float(x) for x in args.rates.split(",")]
    if shutil.which("nfcapd") is None or shutil.which("nfdump") is None:
        sys.exit("nfcapd and nfdump are needed (Debian: apt-get install nfdump)")
    for key in [k for k in os.environ if k.startswith("HOSTWARDEN_")]:
        del os.environ[key]
    from hostwarden.core.logs import configure_logging

    configure_logging("WARNING", "console")

    console.print("load average at the start: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="hw-bench-ingest-") as tmp:
        work = Path(tmp)
        began = time.perf_counter()
        stream = generate_stream(args.records, args.seed)
        pcap, counts = work / "stream.pcap", work / "records.npy"
        write_pcap(pcap, stream)
        np.save(counts, stream.records)
        console.print(
            f"stream: {stream.total_records:,} records in {len(stream.datagrams):,} datagrams "
            f"from {EXPORTERS} exporters, pcap {pcap.stat().st_size / 1e6:.0f} MB "
            f"({time.perf_counter() - began:.1f} s)"
        )
        stream.datagrams = []  # the sender reads the pcap
        import_home, collect_home = work / "home-import", work / "home-collect"
        make_home(import_home, args.seed)
        make_home(collect_home, args.seed)

        with console.status(f"pcap import × {args.import_runs} on one core"):
            imported, import_bytes, read_s = run_import(import_home, pcap, args.import_runs)
        for r in imported:
            if r.records != stream.total_records or r.errors:
                raise RuntimeError(f"import stored {r.records:,} records, errors {r.errors}")
        fastest = min(imported, key=lambda r: r.seconds)
        console.print(
            "import runs: "
            + ", ".join(f"{r.records / r.seconds:,.0f}/s" for r in imported)
            + f"; {fastest.attributed / fastest.records:.0%} attributed"
        )

        log = work / "tools.log"
        replay = Replay(pcap, counts, args.seconds, log)
        steps: dict[str, list[Step]] = {"hostwarden": [], "nfcapd": []}
        for name in steps:
            for rate in rates:
                with console.status(
                    f"{name}: replay at {rate_text(rate)} for {replay.window(rate):.0f} s"
                ):
                    if name == "hostwarden":
                        step = run_hostwarden(replay, collect_home, rate, args.detect)
                    else:
                        step = run_nfcapd(replay, work / "nfcapd", rate)
                steps[name].append(step)
                console.print(
                    f"{name:10} asked {rate_text(rate):>18}, sent {step.achieved:>11,.0f}/s "
                    f"({step.sent:,} records), received {step.received:,}, "
                    f"loss {step.loss:.3%}, kernel drops {step.kernel_drops:,} datagrams, "
                    f"CPU {step.cpu_s:.2f} s = {step.cpu_per_million:.2f} s per M records"
                )
                if not step.sustained:
                    break
        tool_log = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""

    report(args, stream, imported, fastest, import_bytes, read_s, steps)
    # The machine may be shared: other work on the two cores shows in every figure.
    console.print("load average at the end: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg()))
    # The tools' routine start and stop lines are left out; problems are shown.
    problems = [
        line
        for line in tool_log.splitlines()
        if re.search(r"error|warn|fail|traceback|exception", line, re.IGNORECASE)
        and not line.startswith("Ident:")  # nfcapd's summary ("Sequence Errors: 0")
    ]
    if problems:
        console.print("[bold]tool output:[/bold]\n" + "\n".join(problems[-40:]))


def report(
    args: argparse.Namespace,
    stream: Stream,
    imported: list[ImportRun],
    fastest: ImportRun,
    import_bytes: float,
    read_s: float,
    steps: dict[str, list[Step]],
) -> None:
    rates = Table(title="Replay over loopback, per rate", title_justify="left")
    for column in ("tool", "asked", "sent", "received", "loss", "kernel drops", "CPU s / M"):
        rates.add_column(column, justify="left" if column in ("tool", "asked") else "right")
    for name, runs in steps.items():
        for s in runs:
            rates.add_row(
                name,
                rate_text(s.rate),
                f"{s.achieved:,.0f}/s",
                f"{s.received:,} / {s.sent:,}",
                f"{s.loss:.3%}",
                f"{s.kernel_drops:,}",
                f"{s.cpu_per_million:.2f}",
            )
    console.print(rates)

    hw, nf = best_rate(steps["hostwarden"]), best_rate(steps["nfcapd"])
    grid = Table(
        title=f"Ingest: NetFlow v9, {stream.total_records:,}-record stream; "
        f"{os.cpu_count()} cores, one per tool",
        title_justify="left",
    )
    for column in ("measure", "hostwarden", "nfcapd 1.7.1", "hostwarden ÷ nfcapd", "target", "met"):
        grid.add_column(column)
    rate = fastest.records / fastest.seconds
    decode_s = fastest.seconds - fastest.attribute_s - fastest.seal_s
    grid.add_row(
        f"pcap import, one core (best of {len(imported)})",
        f"{rate:,.0f} records/s",
        "—",
        "—",
        "≥ 1,000,000/s",
        "yes" if rate >= 1_000_000 else "NO",
    )
    grid.add_row(
        "  records per CPU-second (unaffected by other work on the core)",
        f"{fastest.records / fastest.cpu_s:,.0f} records/s",
        "",
        "",
        "",
        "",
    )
    grid.add_row(
        "  split: decode (read pcap) / attribute / seal",
        f"{decode_s:.2f} ({read_s:.2f}) / {fastest.attribute_s:.2f} / {fastest.seal_s:.2f} s",
        "",
        "",
        "",
        "",
    )

    def sustained(step: Step | None, runs: list[Step]) -> str:
        if step is None:
            return "none (< first rate)"
        text = f"{step.achieved:,.0f} records/s"
        if runs and runs[-1] is step:
            text += " (ladder's top)"
        return text

    hw_rate, nf_rate = (hw.achieved if hw else 0.0), (nf.achieved if nf else 0.0)
    grid.add_row(
        "highest rate with < 0.1 % loss",
        sustained(hw, steps["hostwarden"]),
        sustained(nf, steps["nfcapd"]),
        f"{hw_rate / nf_rate:.2f}×" if hw_rate and nf_rate else "—",
        "≥ nfcapd",
        "yes" if hw_rate >= nf_rate else "NO",
    )
    # CPU per million records at one rate for both (the same work): the highest rate
    # both sustained, and the highest both were run at if that is another.
    pairs = list(zip(steps["hostwarden"], steps["nfcapd"], strict=False))
    common = [(a, b) for a, b in pairs if a.sustained and b.sustained]
    chosen = common[-1:] + (
        [pairs[-1]] if pairs and (not common or common[-1] != pairs[-1]) else []
    )
    for a, b in chosen:
        ratio = a.cpu_per_million / b.cpu_per_million
        note = "" if a.sustained and b.sustained else f" (loss: {a.loss:.2%} / {b.loss:.2%})"
        grid.add_row(
            f"CPU s per M records at {rate_text(a.rate)}{note}",
            f"{a.cpu_per_million:.2f} s",
            f"{b.cpu_per_million:.2f} s",
            f"{ratio:.2f}×",
            "≤ nfcapd",
            "yes" if ratio <= 1 else "NO",
        )
    hw_bytes = sum(s.detail["bytes"] for s in steps["hostwarden"])
    hw_rows = sum(s.received for s in steps["hostwarden"])
    nf_bytes = sum(s.detail["bytes"] for s in steps["nfcapd"])
    nf_rows = sum(s.received for s in steps["nfcapd"])
    hw_per, nf_per = hw_bytes / max(1, hw_rows), nf_bytes / max(1, nf_rows)
    grid.add_row(
        "bytes per flow on disk (replays; nfcapd -y LZ4)",
        f"{hw_per:.1f} B",
        f"{nf_per:.1f} B",
        f"{hw_per / nf_per:.2f}×",
        "≤ nfcapd",
        "yes" if hw_per <= nf_per else "NO",
    )
    console.print(grid)
    console.print(
        f"Import: {fastest.records:,} records, {fastest.attributed / fastest.records:.0%} "
        f"attributed, segments {import_bytes:.1f} B/record (1,000,000-record segments); "
        f"reading the pcap alone {read_s:.2f} s. Replays: at least {args.seconds:.0f} s per "
        f"rate, each tool started afresh on a new port, pinned to core {cores()[0]}, the sender "
        f"to core {cores()[1]}; net.core.rmem_max "
        f"{Path('/proc/sys/net/core/rmem_max').read_text().strip()} bytes. "
        f"hostwarden segments {hw_bytes / 1e6:.1f} MB for {hw_rows:,} records, nfcapd files "
        f"{nf_bytes / 1e6:.1f} MB for {nf_rows:,}."
    )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--sender":
        sender_main(
            sys.argv[2],
            sys.argv[3],
            int(sys.argv[4]),
            float(sys.argv[5]),
            float(sys.argv[6]),
            int(sys.argv[7]),
        )
    else:
        main()
