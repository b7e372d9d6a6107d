"""Abuse-report intake benchmark: reports parsed, attributed and grouped a second on one core.

    .venv/bin/python bench/reports.py [--reports 20000] [--batch 200] [--customers 2000]
                                      [--database-url URL] [--profile] [--seed N]

Input: a mixed-format corpus made at run time from the real-format samples in
tests/data/reports/ (nothing is written to the repository). Each report is one of the
samples with its subject addresses, subject domains, sender serials (SpamCop, Netcraft,
Spamhaus, X-ARF ids), dates and Message-ID varied; base64 bodies, RFC 2047 words and the
Shadowserver ZIP are decoded, varied and encoded again, the Chinese free text as
GB18030, and a Shadowserver CSV carries 1 to 5 rows (now and then also the sample's
malformed and IPv6 rows). The mix (``SAMPLES``) is an estimate of a hosting provider's
abuse inbox, dominated by automated feeds: X-ARF 0.2 (fail2ban, blocklist.de) 25 %,
ARF 22 %, SpamCop 14 %, Shadowserver 11 %, free text (English, Chinese) 13 %, XARF v4
5 %, Netcraft 4 %, Spamhaus 2 %, Safe Browsing 2 %, broken MIME and mislabelled charsets
2 %. Subject addresses: 95 % held by a customer (skewed: a few customers draw many
reports), 4 % outside the provider's ranges and 1 % inside them but held by nobody, so
the unresolvable path runs; about 10 % of reports are exact resends of a recent one
(duplicate counting). Dates fall between 2026-01-02 and 2026-04-30.

Registry (the product's path, ``registry.inventory`` in one unit of work): --customers
customers (2,000) in 198.18.0.0/16 and 198.19.0.0/16, two /32s each, one in ten of them
handed to another customer on 2026-03-01, and a domain each (shopN.example.net), in a
fresh data directory (SQLite, or a fresh schema of --database-url) in a temporary
directory on the disk.

Measured, on one pinned core (the PostgreSQL server, when used, runs where it likes):

1. **peer** (not an abuse desk): ``email.message_from_bytes`` and an IPv4 regex over every
   text part, the stdlib approach with no attribution, no storage, no deduplication;
2. **parse only**: ``cases.service.read_report`` over the corpus (MIME reading, format
   detection, events), with the time of each format;
3. **intake**: ``cases.service.receive_many(runtime, [Incoming(raw, "import"), ...])`` in
   batches of --batch reports (read, raw bytes stored, attribution, deduplication,
   grouping into cases, audit, one transaction a batch): reports/s wall-clock and per
   CPU-second of the process, events/s, and the time inside ``read_report`` and the raw
   store (``rawstore.put_many``) measured by timers around them in the same run.

Target (issue 7): ≥ 2,000 reports/s wall-clock. ``--profile`` runs the intake again under
cProfile on a fresh data directory and prints the top 25 functions by cumulative time
and the top 15 by own time.
"""

from __future__ import annotations

import argparse
import base64
import cProfile
import email
import gc
import io
import os
import platform
import pstats
import random
import re
import statistics
import tempfile
import time
import uuid
import zipfile
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from email.parser import BytesParser
from email.policy import compat32
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

console = Console(highlight=False, width=150)

ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DIR = ROOT / "tests" / "data" / "reports"
TARGET = 2_000  # reports/s, issue 7

#: RFC 2544's benchmarking space, not RFC 1918 or 100.64.0.0/10: the parsers take those
#: for hops inside a mail system (parsers/common.py INTERNAL_NETWORKS), so an ARF report
#: naming its source only in a Received header would find none. The documentation
#: ranges are too small for the registry; they serve as the addresses that are not ours.
PROVIDER_RANGES = ("198.18.0.0/16", "198.19.0.0/16")
OUTSIDE = ("192.0.2.", "198.51.100.", "203.0.113.")
ADDRESSES_PER_CUSTOMER = 2
#: Held since; one address in HANDOVER_EVERY changes hands at HANDOVER.
SINCE = datetime(2025, 6, 1, tzinfo=UTC)
HANDOVER = datetime(2026, 3, 1, tzinfo=UTC)
HANDOVER_EVERY = 10
#: Report dates: the samples' 2026-05-01 becomes a day in this span.
FIRST_DAY = date(2026, 1, 2)
DAYS = 119
OUTSIDE_SHARE = 0.04  # subject addresses outside the provider's ranges (OUTSIDE)
UNHELD_SHARE = 0.01  # inside a range, held by nobody (198.19.255.0/24)
UNKNOWN_DOMAIN_SHARE = 0.10
RESEND_SHARE = 0.10
RESEND_WINDOW = 500  # a resend repeats one of the last this many reports
CUSTOMER_SKEW = 0.7  # Zipf exponent of reports per customer


# --- the samples ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One file of tests/data/reports and how its copies vary."""

    file: str
    label: str
    share: float
    #: The addresses a report is about (read from the sample), drawn anew for each copy;
    #: a prefix (``198.51.100.0/24``) becomes the drawn address as a /32.
    addresses: tuple[str, ...] = ()
    #: Domains it is about (URLs, hosts), drawn from the registry's domains.
    domains: tuple[str, ...] = ()
    #: The sender's report ids, replaced by random ids of the same shape.
    serials: tuple[str, ...] = ()
    #: The lines holding ``addresses`` form a CSV whose data rows are repeated 1-5 times.
    rows: bool = False
    #: Re-encode the text in this charset (and name it so in the headers).
    charset: str | None = None


SAMPLES = (
    Sample(
        "xarf02_login_attack.eml",
        "X-ARF 0.2 (fail2ban)",
        0.25,
        ("192.0.2.45",),
        serials=("88123457",),
    ),
    Sample("arf_rfc5965.eml", "ARF, RFC 5965", 0.12, ("192.0.2.25",)),
    Sample("arf_jmrp_legacy.eml", "ARF, JMRP style", 0.07, ("203.0.113.61",)),
    Sample("arf_textplain_feedback.eml", "ARF, text/plain parts", 0.03, ("198.51.100.77",)),
    Sample(
        "spamcop_source.eml", "SpamCop, source", 0.11, ("203.0.113.23",), serials=("7012345679",)
    ),
    Sample(
        "spamcop_spamvertised.eml",
        "SpamCop, spamvertised",
        0.03,
        ("198.51.100.44",),
        ("account-verify.example.com",),
        ("7012345680",),
    ),
    Sample("xarf4_attachment.eml", "XARF v4 JSON", 0.05, ("203.0.113.77",), serials=("5512",)),
    Sample(
        "shadowserver_scan_ssh_csv.eml",
        "Shadowserver CSV",
        0.09,
        ("192.0.2.10", "192.0.2.11"),
        rows=True,
    ),
    Sample(
        "shadowserver_sinkhole_drone_zip.eml",
        "Shadowserver ZIP",
        0.02,
        ("203.0.113.99", "203.0.113.100"),
    ),
    Sample(
        "netcraft_phishing.eml",
        "Netcraft",
        0.04,
        ("203.0.113.50",),
        ("secure-login.example.net",),
        ("6F2A91C4",),
    ),
    Sample("spamhaus_sbl.eml", "Spamhaus SBL", 0.02, ("198.51.100.0/24",), serials=("612345",)),
    Sample(
        "safebrowsing_notice.eml",
        "Google Safe Browsing",
        0.02,
        ("203.0.113.15", "203.0.113.16", "198.51.100.44"),
        ("downloads.example.net", "account-check.example.com", "free-toolbar.example.net"),
    ),
    Sample(
        "generic_english_ddos.eml",
        "free text, English",
        0.07,
        ("203.0.113.5",),
        ("files.example.net",),
    ),
    Sample(
        "generic_chinese_gbk.eml",
        "free text, Chinese (GB18030)",
        0.06,
        ("203.0.113.9",),
        charset="gb18030",
    ),
    Sample("malformed_mime.eml", "broken MIME", 0.01, ("192.0.2.99",)),
    Sample("wrong_charset.eml", "mislabelled charset", 0.01, ("192.0.2.66",)),
)

WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def date_forms(day: date) -> dict[str, str]:
    """Every way the samples write their day (2026-05-01), written for ``day``."""
    wd, mon, d, y = WEEKDAYS[day.weekday()], MONTHS[day.month - 1], day.day, day.year
    return {
        "Fri, 01 May 2026": f"{wd}, {d:02d} {mon} {y}",
        "Fri, 1 May 2026": f"{wd}, {d} {mon} {y}",
        "01 May 2026": f"{d:02d} {mon} {y}",
        "1 May 2026": f"{d} {mon} {y}",
        "2026-05-01": day.isoformat(),
        "20260501": f"{day:%Y%m%d}",
        "01/May/2026": f"{d:02d}/{mon}/{y}",
        "01-May-2026": f"{d:02d}-{mon}-{y}",
        "May 1, 2026": f"{mon} {d}, {y}",
        "May  1 ": f"{mon} {d:>2} ",
        "2026年5月1日": f"{y}年{day.month}月{d}日",
    }


DATE_KEYS = tuple(date_forms(FIRST_DAY))


def _pattern(key: str, kind: str) -> str:
    """``key`` as a regex that does not match inside a longer address, name or number."""
    text = re.escape(key)
    if kind == "address":
        return rf"(?<![\d.]){text}(?!\d|\.\d)"
    if kind == "domain":
        return rf"(?<![A-Za-z0-9.-]){text}(?![A-Za-z0-9-]|\.[A-Za-z0-9])"
    if kind == "date":  # "2026-05-01T10:00:00", "20260501100509" in message ids
        return rf"(?<!\d){text}" if key == "20260501" else rf"(?<!\d){text}(?!\d)"
    return rf"(?<![A-Za-z0-9]){text}(?![A-Za-z0-9])"


@dataclass
class Literal:
    text: str  # the message's bytes as latin-1, so 8-bit bytes pass through unchanged


@dataclass
class Base64Body:
    text: str  # decoded with ``charset``
    charset: str
    trailing_newline: bool


@dataclass
class ZipBody:
    members: list[tuple[str, str]]  # name, UTF-8 text
    trailing_newline: bool


@dataclass
class EncodedWord:
    text: str
    charset: str


@dataclass
class CsvRows:
    varied: list[str]  # rows holding a subject address: repeated with new addresses
    other: list[str]  # the sample's other rows (invalid address, IPv6), sometimes kept


Chunk = Literal | Base64Body | ZipBody | EncodedWord | CsvRows

_ENCODED_WORD = re.compile(r"=\?([^?\s]+)\?[Bb]\?([^?\s]*)\?=")
_MESSAGE_ID = re.compile(r"^(Message-ID:[ \t]*<)([^@>]+)", re.IGNORECASE | re.MULTILINE)


@dataclass
class Template:
    sample: Sample
    chunks: list[Chunk]
    keys: re.Pattern[str]
    kinds: dict[str, str]  # group name → key

    @classmethod
    def load(cls, sample: Sample) -> Template:
        raw = (SAMPLE_DIR / sample.file).read_bytes()
        text = raw.decode("latin-1")
        chunks: list[Chunk] = []
        cursor = 0
        for part in BytesParser(policy=compat32).parsebytes(raw).walk():
            if part.is_multipart():
                continue
            encoding = str(part.get("content-transfer-encoding", "")).strip().lower()
            kind = part.get_content_type()
            textual = part.get_content_maintype() == "text" or kind == "application/json"
            if encoding != "base64" or not (textual or kind == "application/zip"):
                continue
            payload = part.get_payload()
            assert isinstance(payload, str)
            at = text.find(payload, cursor)
            if at < 0:
                raise SystemExit(f"{sample.file}: cannot find a base64 body in the raw bytes")
            chunks.append(Literal(text[cursor:at]))
            data = base64.b64decode(payload)
            newline = payload.endswith("\n")
            if kind == "application/zip":
                with zipfile.ZipFile(io.BytesIO(data)) as archive:
                    members = [(n, archive.read(n).decode("utf-8")) for n in archive.namelist()]
                chunks.append(ZipBody(members, newline))
            else:
                charset = part.get_content_charset() or "utf-8"
                chunks.append(Base64Body(data.decode(_codec(charset)), charset, newline))
            cursor = at + len(payload)
        chunks.append(Literal(text[cursor:]))
        chunks = [piece for chunk in chunks for piece in _split_literal(chunk, sample)]
        kinds: dict[str, str] = {}
        patterns: list[str] = []
        keyed = (
            [(k, "address") for k in sample.addresses]
            + [(k, "domain") for k in sample.domains]
            + [(k, "serial") for k in sample.serials]
            + [(k, "date") for k in DATE_KEYS]
        )
        # Longest first, so "Fri, 01 May 2026" wins over "01 May 2026".
        for i, (key, kind) in enumerate(sorted(keyed, key=lambda kv: -len(kv[0]))):
            kinds[f"k{i}"] = key
            patterns.append(f"(?P<k{i}>{_pattern(key, kind)})")
        # A first character no key starts with rules a position out before any alternative.
        starts = re.escape("".join(sorted({key[0] for key in kinds.values()})))
        return cls(sample, chunks, re.compile(f"(?=[{starts}])(?:{'|'.join(patterns)})"), kinds)

    def render(
        self, values: dict[str, str], draw_address: Callable[[], str], rng: random.Random
    ) -> bytes:
        """A copy with ``values`` for the keys; CSV rows get an address each."""

        def fill(text: str, mapping: dict[str, str]) -> str:
            return self.keys.sub(lambda m: mapping[self.kinds[str(m.lastgroup)]], text)

        charset = self.sample.charset
        out: list[bytes] = []
        for chunk in self.chunks:
            if isinstance(chunk, Literal):
                text = fill(chunk.text, values)
                text = _MESSAGE_ID.sub(lambda m: f"{m[1]}{m[2]}.{values['#id']}", text, count=1)
                out.append(text.encode("latin-1"))
            elif isinstance(chunk, Base64Body):
                data = fill(chunk.text, values).encode(_codec(charset or chunk.charset))
                out.append(_base64(data, chunk.trailing_newline))
            elif isinstance(chunk, EncodedWord):
                used = charset or chunk.charset
                word = base64.b64encode(fill(chunk.text, values).encode(_codec(used)))
                out.append(b"=?%s?B?%s?=" % (used.upper().encode("ascii"), word))
            elif isinstance(chunk, ZipBody):
                buffer = io.BytesIO()
                with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
                    for name, member in chunk.members:
                        # A fixed date: the same seed gives the same corpus, byte for byte.
                        entry = zipfile.ZipInfo(fill(name, values), date_time=(2026, 5, 1, 0, 0, 0))
                        entry.compress_type = zipfile.ZIP_DEFLATED
                        archive.writestr(entry, fill(member, values))
                out.append(_base64(buffer.getvalue(), chunk.trailing_newline))
            else:
                lines = []
                for i in range(rng.randint(1, 5)):
                    own = dict(values) | {k: draw_address() for k in self.sample.addresses}
                    lines.append(fill(chunk.varied[i % len(chunk.varied)], own))
                lines += [fill(row, values) for row in chunk.other if rng.random() < 0.2]
                out.append("".join(lines).encode("latin-1"))
        return b"".join(out)


def _codec(charset: str) -> str:
    """Mail labelled gb2312 or GBK often holds GBK bytes; GB18030 reads them all."""
    return "gb18030" if charset.lower() in ("gb2312", "gbk", "x-gbk") else charset


def _base64(data: bytes, trailing_newline: bool) -> bytes:
    encoded = base64.encodebytes(data)
    return encoded if trailing_newline else encoded.rstrip(b"\n")


def _split_literal(chunk: Chunk, sample: Sample) -> Iterator[Chunk]:
    """RFC 2047 words and (for ``rows``) the CSV rows as chunks of their own; the charset
    named anew where the sample is re-encoded."""
    if not isinstance(chunk, Literal):
        yield chunk
        return
    text = chunk.text
    if sample.charset is not None:
        text = re.sub(r'(charset=)"?(gb2312|gbk)"?', rf'\1"{sample.charset}"', text, flags=re.I)
    if sample.rows:
        lines = text.splitlines(keepends=True)
        held = [i for i, line in enumerate(lines) if any(a in line for a in sample.addresses)]
        if held:
            end = held[0]
            while end < len(lines) and lines[end].strip():
                end += 1
            block = lines[held[0] : end]
            yield Literal("".join(lines[: held[0]]))
            yield CsvRows(
                [r for r in block if any(a in r for a in sample.addresses)],
                [r for r in block if not any(a in r for a in sample.addresses)],
            )
            text = "".join(lines[end:])
    cursor = 0
    for match in _ENCODED_WORD.finditer(text):
        yield Literal(text[cursor : match.start()])
        charset = match[1]
        yield EncodedWord(base64.b64decode(match[2]).decode(_codec(charset)), charset)
        cursor = match.end()
    yield Literal(text[cursor:])


# --- the registry and the corpus -------------------------------------------------------------


def address_text(value: int) -> str:
    return f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


@dataclass
class Registry:
    """What the corpus draws from: held addresses (weighted by customer), the rest."""

    held: list[str]
    held_weights: list[float]
    domains: list[str]
    domain_weights: list[float]
    unheld: list[str]
    assignments: int = 0

    @classmethod
    def plan(cls, customers: int) -> Registry:
        held: list[str] = []
        weights: list[float] = []
        base = 198 << 24 | 18 << 16  # 198.18.0.0
        for i in range(customers * ADDRESSES_PER_CUSTOMER):
            # The first half in 198.18/16, the second in 198.19/16, skipping .0 and .255.
            half, j = divmod(i, customers * ADDRESSES_PER_CUSTOMER // 2 or 1)
            value = base + (half << 16) + (j // 254 << 8) + j % 254 + 1
            held.append(address_text(value))
            weights.append((i % customers + 1) ** -CUSTOMER_SKEW)
        unheld = [f"198.19.255.{i}" for i in range(1, 255)]
        domains = [f"shop{i + 1}.example.net" for i in range(customers)]
        domain_weights = [(i + 1) ** -CUSTOMER_SKEW for i in range(customers)]
        return cls(held, weights, domains, domain_weights, unheld)

    def holder(self, i: int, customers: int) -> int:
        """0-based customer of held address ``i``."""
        return i % customers


@dataclass
class Corpus:
    raws: list[bytes]
    labels: list[str]
    resends: int
    by_label: Counter[str] = field(default_factory=Counter)

    @property
    def size(self) -> int:
        return sum(len(r) for r in self.raws)


def build_corpus(n: int, seed: int, registry: Registry) -> Corpus:
    rng = random.Random(seed)
    templates = [Template.load(s) for s in SAMPLES]
    shares = [s.share for s in SAMPLES]
    held_cum = _cumulative(registry.held_weights)
    domain_cum = _cumulative(registry.domain_weights)

    def draw_address() -> str:
        roll = rng.random()
        if roll < OUTSIDE_SHARE:
            return rng.choice(OUTSIDE) + str(rng.randrange(1, 255))
        if roll < OUTSIDE_SHARE + UNHELD_SHARE:
            return rng.choice(registry.unheld)
        return rng.choices(registry.held, cum_weights=held_cum)[0]

    def draw_domain() -> str:
        if rng.random() < UNKNOWN_DOMAIN_SHARE:
            return f"site{rng.randrange(10**6)}.example.org"
        return rng.choices(registry.domains, cum_weights=domain_cum)[0]

    raws: list[bytes] = []
    labels: list[str] = []
    resends = 0
    for i in range(n):
        if i and rng.random() < RESEND_SHARE:
            j = rng.randrange(max(0, i - RESEND_WINDOW), i)
            raws.append(raws[j])
            labels.append(labels[j])
            resends += 1
            continue
        template = rng.choices(templates, weights=shares)[0]
        sample = template.sample
        day = FIRST_DAY + timedelta(days=rng.randrange(DAYS))
        values = dict(date_forms(day))
        for key in sample.addresses:
            drawn = draw_address()
            values[key] = f"{drawn}/32" if "/" in key else drawn
        for key in sample.domains:
            values[key] = draw_domain()
        for key in sample.serials:
            digits = key.isdigit()
            alphabet = "0123456789" if digits else "0123456789ABCDEF"
            values[key] = rng.choice(alphabet[1:]) + "".join(
                rng.choice(alphabet) for _ in range(len(key) - 1)
            )
        values["#id"] = f"{i:06d}{rng.getrandbits(32):08x}"
        raws.append(template.render(values, draw_address, rng))
        labels.append(sample.label)
    return Corpus(raws, labels, resends, Counter(labels))


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


# --- the data directory ----------------------------------------------------------------------


@dataclass
class Home:
    runtime: Any
    path: Path
    close: Callable[[], None]
    setup_s: float


def open_home(path: Path, database_url: str, customers: int, registry: Registry) -> Home:
    """A fresh data directory with the bench registry (SQLite, or a schema of its own in
    ``database_url``)."""
    from sqlalchemy import create_engine, text

    from hostwarden.core.config import load_settings
    from hostwarden.core.runtime import Runtime
    from hostwarden.core.setup import init

    began = time.perf_counter()
    url, schema, admin = "", "", None
    if database_url:
        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = create_engine(database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        sep = "&" if "?" in database_url else "?"
        url = f"{database_url}{sep}options=-csearch_path%3D{schema}"
    settings = load_settings(home=path, database={"url": url})
    init(settings)
    runtime = Runtime.open(settings)
    populate(runtime, customers, registry)

    def close() -> None:
        runtime.close()
        if admin is not None:
            with admin.connect() as conn:
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
            admin.dispose()

    return Home(runtime, path, close, time.perf_counter() - began)


def populate(runtime: Any, customers: int, registry: Registry) -> None:
    """Customers, ranges, /32 assignments (some changing hands) and domains, through the
    registry's own operations in one unit of work."""
    from hostwarden.core.runtime import system_actor
    from hostwarden.registry import inventory
    from hostwarden.registry.models import Customer

    with runtime.operation(system_actor("bench")) as op:
        rows = [
            Customer(
                kind="organisation",
                name=f"Customer {i + 1}",
                status="active",
                email=f"noc@shop{i + 1}.example.net",
                email_norm=f"noc@shop{i + 1}.example.net",
            )
            for i in range(customers)
        ]
        op.session.add_all(rows)
        op.session.flush()
        ids = [c.id for c in rows]
        for cidr in PROVIDER_RANGES:
            inventory.create_range(op, cidr, purpose="bench")
        count = 0
        for i, address in enumerate(registry.held):
            owner = ids[registry.holder(i, customers)]
            if i % HANDOVER_EVERY == 0:
                inventory.assign(
                    op, f"{address}/32", owner, valid_from=SINCE, valid_to=HANDOVER, source="import"
                )
                successor = ids[(registry.holder(i, customers) + 7) % customers]
                inventory.assign(
                    op, f"{address}/32", successor, valid_from=HANDOVER, source="import"
                )
                count += 2
            else:
                inventory.assign(op, f"{address}/32", owner, valid_from=SINCE, source="import")
                count += 1
        for owner, name in zip(ids, registry.domains, strict=True):
            inventory.create_domain(op, name, owner, valid_from=SINCE)
    registry.assignments = count


def filesystem_of(path: Path) -> str:
    best, kind = "", "?"
    resolved = str(path.resolve())
    for line in Path("/proc/mounts").read_text().splitlines():
        fields = line.split()
        if len(fields) > 2 and resolved.startswith(fields[1]) and len(fields[1]) > len(best):
            best, kind = fields[1], fields[2]
    return f"{kind} ({best})"


# --- the measures ----------------------------------------------------------------------------


_IPV4 = re.compile(
    r"(?<![\d.])(?:25[0-5]|2[0-4]\d|1?\d?\d)(?:\.(?:25[0-5]|2[0-4]\d|1?\d?\d)){3}(?![\d.])"
)


def naive_addresses(raw: bytes) -> list[str]:
    """The peer: stdlib e-mail parsing and an IPv4 regex over every text part."""
    found: list[str] = []
    for part in email.message_from_bytes(raw).walk():
        if part.get_content_maintype() != "text":
            continue
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            continue
        try:
            text = payload.decode(part.get_content_charset() or "utf-8", "replace")
        except LookupError:
            text = payload.decode("latin-1")
        found += _IPV4.findall(text)
    return found


@contextmanager
def one_core() -> Iterator[int | None]:
    """Pin this process to its first allowed core while measuring, where possible."""
    if not hasattr(os, "sched_setaffinity"):
        yield None
        return
    before = os.sched_getaffinity(0)
    cpu = min(before)
    os.sched_setaffinity(0, {cpu})
    try:
        yield cpu
    finally:
        os.sched_setaffinity(0, before)


@dataclass
class Timed:
    seconds: float
    cpu_s: float
    reports: int

    @property
    def rate(self) -> float:
        return self.reports / self.seconds

    @property
    def cpu_rate(self) -> float:
        return self.reports / self.cpu_s if self.cpu_s else float("nan")


def measure_peer(corpus: Corpus) -> tuple[Timed, int]:
    found = 0
    began, cpu = time.perf_counter(), time.process_time()
    for raw in corpus.raws:
        found += len(naive_addresses(raw))
    return Timed(time.perf_counter() - began, time.process_time() - cpu, len(corpus.raws)), found


@dataclass
class ParseRun:
    timed: Timed
    events: int
    seconds_by_label: dict[str, float]
    events_by_label: Counter[str]
    parsers: Counter[str]


def measure_parse(runtime: Any, corpus: Corpus) -> ParseRun:
    from hostwarden.cases import service

    seconds: dict[str, float] = defaultdict(float)
    events: Counter[str] = Counter()
    parsers: Counter[str] = Counter()
    clock = time.perf_counter
    began, cpu = clock(), time.process_time()
    for raw, label in zip(corpus.raws, corpus.labels, strict=True):
        t = clock()
        _, parsed = service.read_report(runtime, raw)
        seconds[label] += clock() - t
        events[label] += len(parsed.events)
        parsers[parsed.parser] += 1
    timed = Timed(clock() - began, time.process_time() - cpu, len(corpus.raws))
    return ParseRun(timed, sum(events.values()), dict(seconds), events, parsers)


@dataclass
class IntakeRun:
    timed: Timed
    batch_s: list[float]
    parse_s: float
    store_s: float
    outcome: Counter[str]
    cases: int
    statuses: Counter[str]


@contextmanager
def stopwatches(seconds: dict[str, float]) -> Iterator[None]:
    """Timers around the reading and the raw store, inside ``receive_many``."""
    from hostwarden.cases import rawstore, service

    originals: dict[tuple[Any, str, str], Callable[..., Any]] = {
        (service, "read_report", "parse"): service.read_report,
        (rawstore, "put_many", "store"): rawstore.put_many,
    }

    def timed(function: Callable[..., Any], name: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            t = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - t

        return wrapper

    for (module, attribute, name), function in originals.items():
        setattr(module, attribute, timed(function, name))
    try:
        yield
    finally:
        for (module, attribute, _), function in originals.items():
            setattr(module, attribute, function)


def batches_of(corpus: Corpus, batch: int) -> list[list[Any]]:
    """The corpus as ``receive_many`` takes it, as an import would hand it over."""
    from hostwarden.cases import service

    return [
        [service.Incoming(raw, "import") for raw in corpus.raws[start : start + batch]]
        for start in range(0, len(corpus.raws), batch)
    ]


def measure_intake(runtime: Any, corpus: Corpus, batch: int) -> IntakeRun:
    from sqlalchemy import func, select

    from hostwarden.cases import service
    from hostwarden.cases.models import AbuseCase, AbuseReport

    batches = batches_of(corpus, batch)
    outcome: Counter[str] = Counter()
    batch_s: list[float] = []
    split: dict[str, float] = defaultdict(float)
    with stopwatches(split):
        began, cpu = time.perf_counter(), time.process_time()
        for items in batches:
            t = time.perf_counter()
            results = service.receive_many(runtime, items)
            batch_s.append(time.perf_counter() - t)
            for r in results:
                outcome["events"] += r.events
                outcome["duplicates"] += r.duplicates
                outcome["unresolved"] += r.unresolved
                outcome["allowlisted"] += r.allowlisted
                outcome["opened"] += len(r.cases_opened)
        timed = Timed(time.perf_counter() - began, time.process_time() - cpu, len(corpus.raws))
    with runtime.reading() as session:
        cases = session.scalar(select(func.count()).select_from(AbuseCase)) or 0
        rows = session.execute(
            select(AbuseReport.status, func.count()).group_by(AbuseReport.status)
        )
        statuses = Counter({str(status): int(count) for status, count in rows})
    return IntakeRun(timed, batch_s, split["parse"], split["store"], outcome, cases, statuses)


def profile_intake(runtime: Any, corpus: Corpus, batch: int) -> None:
    from hostwarden.cases import service

    batches = batches_of(corpus, batch)
    profiler = cProfile.Profile()
    began = time.perf_counter()
    profiler.enable()
    for items in batches:
        service.receive_many(runtime, items)
    profiler.disable()
    seconds = time.perf_counter() - began
    console.print(
        f"\n[bold]cProfile of receive_many[/bold] over the same {len(corpus.raws):,} reports "
        f"on a fresh data directory: {seconds:.1f} s under the profiler "
        f"({len(corpus.raws) / seconds:,.0f} reports/s with its overhead)"
    )
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out).strip_dirs()
    stats.sort_stats("cumulative").print_stats(25)
    stats.sort_stats("tottime").print_stats(15)
    text = re.sub(r"\n{3,}", "\n\n", out.getvalue())
    console.out(text, highlight=False)


# --- the report ------------------------------------------------------------------------------


def report(
    args: argparse.Namespace,
    corpus: Corpus,
    registry: Registry,
    peer: tuple[Timed, int],
    parse: ParseRun,
    intake: IntakeRun,
    backend: str,
) -> None:
    mix = Table(title="Corpus and parse only (read_report), one core", title_justify="left")
    for column in ("format (sample)", "reports", "share", "events", "parse µs/report"):
        mix.add_column(column, justify="left" if column.startswith("format") else "right")
    for sample in SAMPLES:
        n = corpus.by_label[sample.label]
        if not n:
            continue
        mix.add_row(
            sample.label,
            f"{n:,}",
            f"{n / len(corpus.raws):.1%}",
            f"{parse.events_by_label[sample.label]:,}",
            f"{parse.seconds_by_label.get(sample.label, 0.0) / n * 1e6:,.0f}",
        )
    console.print(mix)
    console.print(
        "parsers chosen: "
        + ", ".join(f"{name} {count:,}" for name, count in parse.parsers.most_common())
    )

    peer_timed, found = peer
    run = intake.timed
    rest = run.seconds - intake.parse_s - intake.store_s
    ratio = run.rate / peer_timed.rate
    table = Table(
        title=f"Intake on one core: {len(corpus.raws):,} reports ({corpus.size / 1e6:.1f} MB, "
        f"{corpus.resends:,} exact resends), batches of {args.batch}, {backend}",
        title_justify="left",
    )
    for column in ("measure", "hostwarden", "peer: stdlib email + IPv4 regex", "target", "met"):
        table.add_column(column)
    met = run.rate >= TARGET
    table.add_row(
        "reports/s, wall-clock (receive_many)",
        f"[bold]{run.rate:,.0f}[/bold]",
        f"{peer_timed.rate:,.0f}",
        f"≥ {TARGET:,}",
        "yes" if met else "NO",
    )
    table.add_row(
        "reports per CPU-second", f"{run.cpu_rate:,.0f}", f"{peer_timed.cpu_rate:,.0f}", "", ""
    )
    table.add_row("hostwarden ÷ peer (wall)", f"{ratio:.3f}×", "1", "", "")
    table.add_row(
        "events/s (new events stored)",
        f"{intake.outcome['events'] / run.seconds:,.0f}",
        f"{found / peer_timed.seconds:,.0f} addresses/s",
        "",
        "",
    )
    table.add_row(
        "parse only (read_report), reports/s",
        f"{parse.timed.rate:,.0f} ({parse.timed.cpu_rate:,.0f} per CPU-s)",
        "",
        "",
        "",
    )
    table.add_row(
        "  seconds: whole / CPU",
        f"{run.seconds:.2f} / {run.cpu_s:.2f}",
        f"{peer_timed.seconds:.2f} / {peer_timed.cpu_s:.2f}",
        "",
        "",
    )
    table.add_row(
        "  in receive_many: read + parse / raw store / the rest",
        f"{intake.parse_s:.2f} / {intake.store_s:.2f} / {rest:.2f} s "
        f"({intake.parse_s / run.seconds:.0%} / {intake.store_s / run.seconds:.0%} / "
        f"{rest / run.seconds:.0%})",
        "",
        "",
        "",
    )
    median = statistics.median(intake.batch_s)
    table.add_row(
        f"  one receive_many of {args.batch}: median / max",
        f"{median * 1e3:,.0f} / {max(intake.batch_s) * 1e3:,.0f} ms",
        "",
        "",
        "",
    )
    console.print(table)
    o = intake.outcome
    console.print(
        f"outcome: {parse.events:,} events parsed; {o['events']:,} new events stored, "
        f"{o['duplicates']:,} duplicates counted, {o['unresolved']:,} unresolved, "
        f"{o['allowlisted']:,} allowlisted; {intake.cases:,} cases; reports "
        + ", ".join(f"{k} {v:,}" for k, v in sorted(intake.statuses.items()))
        + f". Peer: {found:,} IPv4 strings found (any address in any text part, the "
        "reporters' own included)."
    )
    console.print(
        f"registry: {args.customers:,} customers, {registry.assignments:,} /32 assignments "
        f"in {', '.join(PROVIDER_RANGES)}, {len(registry.domains):,} domains. "
        "The peer is not an abuse desk: it finds address strings in text parts and "
        "nothing else (no format, time, category, attribution, deduplication, storage, "
        "cases or audit); the ratio says what that full pipeline costs next to plain "
        "stdlib MIME reading, not a contest between equals."
    )
    if backend == "PostgreSQL":
        console.print(
            "CPU-seconds are this process's only: the PostgreSQL server's work is not in them."
        )
    verdict = "meets" if met else "misses"
    console.print(
        f"[bold]verdict: {run.rate:,.0f} reports/s parsed, attributed and grouped on one core "
        f"({backend}) {verdict} the ≥ {TARGET:,}/s target of issue 7[/bold] "
        f"({run.rate / TARGET:.2f}× the target; {ratio:.3f}× the stdlib peer)."
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reports", type=int, default=20_000, help="reports in the corpus")
    parser.add_argument("--batch", type=int, default=200, help="reports per receive_many call")
    parser.add_argument("--customers", type=int, default=2_000, help="customers in the registry")
    parser.add_argument(
        "--database-url",
        default="",
        help="a PostgreSQL URL (a fresh schema is made in it and dropped); default SQLite",
    )
    parser.add_argument("--profile", action="store_true", help="cProfile the intake as well")
    parser.add_argument("--seed", type=int, default=20261206)
    parser.add_argument(
        "--tmp", type=Path, default=None, help="where the data directories go (default: $TMPDIR)"
    )
    args = parser.parse_args()
    if args.reports < 1 or args.batch < 1 or args.customers < 2:
        parser.error("--reports and --batch must be positive, --customers at least 2")
    for key in [k for k in os.environ if k.startswith("HOSTWARDEN_")]:
        del os.environ[key]
    from hostwarden.core.logs import configure_logging

    configure_logging("WARNING", "console")
    backend = "PostgreSQL" if args.database_url else "SQLite"
    console.print(
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} ({os.cpu_count()} cores), "
        f"Python {platform.python_version()}; load average at the start: "
        "{:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg())
    )
    with tempfile.TemporaryDirectory(prefix="hw-bench-reports-", dir=args.tmp) as tmp:
        work = Path(tmp)
        registry = Registry.plan(args.customers)
        began = time.perf_counter()
        corpus = build_corpus(args.reports, args.seed, registry)
        built = time.perf_counter() - began
        home = open_home(work / "home", args.database_url, args.customers, registry)
        console.print(
            f"setup: corpus of {len(corpus.raws):,} reports in {built:.1f} s; data directory "
            f"({backend}, raw store on {filesystem_of(work)}) and registry in "
            f"{home.setup_s:.1f} s"
        )
        try:
            from hostwarden.cases import service
            from hostwarden.registry.attribution import current_index

            # Warm-up, not measured: parser plugins load, the attribution index builds.
            for raw in corpus.raws[: len(SAMPLES) * 4]:
                service.read_report(home.runtime, raw)
                naive_addresses(raw)
            current_index(home.runtime)
            # As `hostwarden serve` does once it has started: what lives as long as the
            # process leaves the collector's generations, so full collections scan only
            # what the intake makes. (Here it also takes the corpus and the registry plan
            # out of them, which a server does not hold.)
            gc.collect()
            gc.freeze()
            with one_core() as cpu:
                pinned = f"core {cpu}" if cpu is not None else "no pinning available"
                with console.status("peer: stdlib email + regex"):
                    peer = measure_peer(corpus)
                with console.status("parse only"):
                    parse = measure_parse(home.runtime, corpus)
                with console.status("intake: receive_many"):
                    intake = measure_intake(home.runtime, corpus, args.batch)
        finally:
            home.close()
        console.print(f"measured on {pinned}")
        report(args, corpus, registry, peer, parse, intake, backend)
        if args.profile:
            second = open_home(work / "profiled", args.database_url, args.customers, registry)
            try:
                current_index(second.runtime)
                with one_core():
                    profile_intake(second.runtime, corpus, args.batch)
            finally:
                second.close()
    console.print("load average at the end: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg()))


if __name__ == "__main__":
    main()
