"""Address feeds for the detectors: mining pool lists and threat-intelligence blocklists,
read from files or URLs and compiled into sorted ranges for a vectorised lookup.

Formats:

- mining pool feeds: one ``IP``, ``CIDR``, ``IP:port`` or ``[IPv6]:port`` a line;
  ``#`` starts a comment.
- ``plain`` blocklists: one IP or CIDR a line; ``#`` or ``;`` starts a comment (the
  second is Spamhaus DROP's ``1.10.16.0/20 ; SBL256894``).
- ``netset``: FireHOL's netsets, ``#`` comment lines and one IP or CIDR a line.
- ``csv``: a header row naming the address column (``ip_column``) and, optionally, a
  per-row category (``category_column``); ``#`` lines are comments, and a header
  written as the last comment line (abuse.ch's ``# "first_seen_utc","dst_ip",…``) is
  taken as the header.

Every entry is a range of the registry's 128-bit space (IPv4 mapped into
``::ffff:0:0/96``). Prefixes nest or are disjoint, never overlap partially, so the
entries of all feeds flatten into disjoint segments, each owned by the most specific
entry that covers it: a lookup is one ``np.searchsorted`` per address plus a
comparison, with no Python per address. A line that cannot be read is an error naming
``file:line`` and what is wrong; a feed that fails to refresh keeps its previous
version and logs why.
"""

from __future__ import annotations

import csv
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.logs import get_logger
from hostwarden.errors import ConfigError, ValidationFailed
from hostwarden.registry import netaddr

log = get_logger("hostwarden.detect.feeds")

U64 = NDArray[np.uint64]
I64 = NDArray[np.int64]
_WORD = (1 << 64) - 1
#: A feed larger than this is refused (the biggest public lists are a few MB; this
#: stops a wrong URL from filling memory).
MAX_FEED_BYTES = 256 * 1024 * 1024
#: How long a URL may take to answer.
FETCH_TIMEOUT_S = 30.0
#: How soon a feed that has never loaded is tried again.
RETRY_SECONDS = 300
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


class FeedError(ValidationFailed):
    """A feed that cannot be read: names the source (and line) and what is wrong."""


class FeedUnavailable(FeedError):
    """An http(s) source that did not answer (the network, not the list, is at fault)."""


@dataclass(frozen=True)
class FeedEntry:
    """One line of a feed: a range of addresses, optionally one port, and its label."""

    first: int
    last: int
    #: The remote port the entry is about (mining pools: ``IP:port``); None: any port.
    port: int | None
    #: The category (threat lists) or "" (mining pools).
    label: str
    #: ``source:line``, to say where a match came from.
    where: str


# --- parsing ----------------------------------------------------------------------------


def _range(token: str, where: str) -> tuple[int, int]:
    """First and last address of an address or CIDR prefix."""
    try:
        if "/" in token:
            network = netaddr.parse_prefix(token)
            first = netaddr.address_int(network.network_address)
            return first, first + network.num_addresses - 1
        value = netaddr.text_to_int(token)
        return value, value
    except ValidationFailed as exc:
        problem = exc.message.rstrip(".")
        if re.fullmatch(r"[A-Za-z0-9.-]+\.[A-Za-z]{2,}", token.split("/")[0]):
            raise FeedError(
                f"{where}: '{token}' is a host name, not an address.",
                hint="Feeds must hold IP addresses or CIDR prefixes; resolve names first.",
            ) from None
        raise FeedError(f"{where}: {problem}.", hint=exc.hint) from None


def _port(text: str, where: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise FeedError(
            f"{where}: '{text}' is not a port number.",
            hint="A port is a number from 1 to 65535, e.g. 203.0.113.7:3333.",
        )
    return int(text)


def _lines(text: str, name: str) -> list[tuple[str, str]]:
    """(``name:line``, line) of each line, numbered from 1."""
    return [(f"{name}:{i}", line) for i, line in enumerate(text.splitlines(), start=1)]


def parse_mining(text: str, name: str, label: str = "") -> list[FeedEntry]:
    """A mining pool feed: ``IP``, ``CIDR``, ``IP:port`` or ``[IPv6]:port`` a line."""
    entries: list[FeedEntry] = []
    for where, line in _lines(text, name):
        token = line.split("#", 1)[0].strip()
        if not token:
            continue
        if any(c.isspace() for c in token):
            raise FeedError(
                f"{where}: '{token}' holds more than one entry.",
                hint="Write one address a line; put remarks after '#'.",
            )
        port: int | None = None
        if token.startswith("["):
            match = re.fullmatch(r"\[([^\]]+)\](?::(.*))?", token)
            if match is None:
                raise FeedError(
                    f"{where}: '{token}' has no closing ']'.",
                    hint="Write IPv6 with a port as [2001:db8::7]:3333.",
                )
            token, port_text = match.group(1), match.group(2)
            if port_text is not None:
                port = _port(port_text, where)
        elif token.count(":") == 1:
            token, port_text = token.split(":")
            port = _port(port_text, where)
        first, last = _range(token, where)
        entries.append(FeedEntry(first, last, port, label, where))
    return entries


def parse_plain(text: str, name: str, label: str) -> list[FeedEntry]:
    """One IP or CIDR a line; ``#`` and ``;`` start comments."""
    entries: list[FeedEntry] = []
    for where, line in _lines(text, name):
        token = re.split(r"[#;]", line, maxsplit=1)[0].strip()
        if not token:
            continue
        if any(c.isspace() for c in token):
            raise FeedError(
                f"{where}: '{token}' holds more than one field.",
                hint="A plain list has one IP or CIDR a line (remarks after '#' or ';'); "
                'for columns use format = "csv".',
            )
        first, last = _range(token, where)
        entries.append(FeedEntry(first, last, None, label, where))
    return entries


def parse_netset(text: str, name: str, label: str) -> list[FeedEntry]:
    """FireHOL netset: ``#`` comment lines, one IP or CIDR a line."""
    entries: list[FeedEntry] = []
    for where, line in _lines(text, name):
        token = line.strip()
        if not token or token.startswith("#"):
            continue
        if any(c.isspace() for c in token):
            raise FeedError(
                f"{where}: '{token}' is not one IP or CIDR.",
                hint="A netset has one IP or CIDR a line and '#' comment lines.",
            )
        first, last = _range(token, where)
        entries.append(FeedEntry(first, last, None, label, where))
    return entries


def parse_csv(
    text: str, name: str, label: str, ip_column: str = "ip", category_column: str = ""
) -> list[FeedEntry]:
    """A CSV list with a header; the row's category (when the column is named and the
    cell not empty) or ``label``."""
    numbered = _lines(text, name)
    comment: tuple[str, str] | None = None
    body: list[tuple[str, str]] = []
    for where, line in numbered:
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#"):
            if not body:
                comment = (where, stripped.lstrip("#").strip())
            continue
        body.append((where, line))
    wanted = [c for c in (ip_column, category_column) if c]

    def _header(line: str) -> list[str]:
        return [cell.strip() for cell in next(csv.reader([line]), [])]

    header: list[str] | None = None
    header_where = f"{name}:1"
    if body and ip_column in _header(body[0][1]):
        header_where, first_line = body.pop(0)
        header = _header(first_line)
    elif comment is not None and ip_column in _header(comment[1]):
        header_where, header = comment[0], _header(comment[1])
    if header is None:
        raise FeedError(
            f"{header_where}: no header row with the address column '{ip_column}'.",
            hint="Give the column's name in the list's ip_column (and category_column).",
        )
    missing = [c for c in wanted if c not in header]
    if missing:
        raise FeedError(
            f"{header_where}: the header has no column '{missing[0]}' "
            f"(it has {', '.join(header)}).",
            hint="Set ip_column and category_column of the list to names in the header.",
        )
    ip_at = header.index(ip_column)
    category_at = header.index(category_column) if category_column else -1
    entries: list[FeedEntry] = []
    rows = csv.reader([line for _, line in body])
    for (where, _), row in zip(body, rows, strict=True):
        if len(row) <= max(ip_at, category_at):
            raise FeedError(
                f"{where}: the row has {len(row)} field(s); '{header[ip_at]}' is field "
                f"{ip_at + 1}.",
                hint="Every row needs as many fields as the header.",
            )
        token = row[ip_at].strip()
        if not token:
            raise FeedError(f"{where}: the '{ip_column}' field is empty.", hint="Fix the row.")
        category = row[category_at].strip() if category_at >= 0 else ""
        first, last = _range(token, where)
        entries.append(FeedEntry(first, last, None, category or label, where))
    return entries


# --- sources ----------------------------------------------------------------------------


def is_url(source: str) -> bool:
    return bool(_URL.match(source))


def display_source(source: str) -> str:
    """The source for messages: a URL without user and password."""
    if not is_url(source):
        return source
    parts = urllib.parse.urlsplit(source)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))


def resolve_path(source: str, home: Path) -> Path:
    path = Path(source).expanduser()
    return path if path.is_absolute() else home / path


def _decode(raw: bytes, name: str) -> str:
    if len(raw) > MAX_FEED_BYTES:
        raise FeedError(
            f"{name} is larger than {MAX_FEED_BYTES // (1024 * 1024)} MB.",
            hint="Check that the source is an address list.",
        )
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FeedError(
            f"{name} is not UTF-8 text (byte {exc.start}).",
            hint="Feeds are text files; a compressed list must be unpacked first.",
        ) from None


def fetch_text(source: str, home: Path, timeout: float = FETCH_TIMEOUT_S) -> str:
    """The text of a file path (relative paths under ``home``) or an http(s)/file URL."""
    name = display_source(source)
    if is_url(source):
        scheme = urllib.parse.urlsplit(source).scheme.lower()
        if scheme not in ("http", "https", "file"):
            raise FeedError(
                f"{name}: '{scheme}' URLs are not read.",
                hint="Use a file path or an http, https or file URL.",
            )
        try:
            with urllib.request.urlopen(source, timeout=timeout) as answer:  # noqa: S310
                raw = answer.read(MAX_FEED_BYTES + 1)
        except urllib.error.HTTPError as exc:
            # A server error is the source being down; 4xx is a wrong URL or access.
            failure = FeedUnavailable if exc.code >= 500 else FeedError
            raise failure(
                f"{name} answered HTTP {exc.code} {exc.reason}.",
                hint="Check the URL; the previous version of the list stays in use.",
            ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            unavailable = FeedUnavailable if scheme != "file" else FeedError
            raise unavailable(
                f"{name} could not be fetched: {reason}.",
                hint="Check the URL and the network; the previous version stays in use.",
            ) from None
        return _decode(raw, name)
    path = resolve_path(source, home)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise FeedError(
            f"{path} cannot be read: {exc.strerror or exc}.",
            hint="Check the path in the configuration (relative paths are under the home "
            "directory).",
        ) from None
    return _decode(raw, str(path))


# --- compiled lookup --------------------------------------------------------------------


def _words(values: Sequence[int]) -> tuple[U64, U64]:
    hi = np.fromiter((v >> 64 for v in values), dtype=np.uint64, count=len(values))
    lo = np.fromiter((v & _WORD for v in values), dtype=np.uint64, count=len(values))
    return hi, lo


class AddressTable:
    """Entries compiled for lookup: distinct ranges, each with a label, the ports it is
    limited to (or any), and the disjoint segments the ranges flatten into."""

    def __init__(self, entries: Sequence[FeedEntry]) -> None:
        # Distinct ranges; the first entry of a range gives its label and origin (so a
        # list earlier in the configuration wins), ports of all its entries are merged.
        index: dict[tuple[int, int], int] = {}
        firsts: list[int] = []
        lasts: list[int] = []
        labels: list[str] = []
        self.origins: list[str] = []
        any_port: list[bool] = []
        ports: list[set[int]] = []
        for entry in entries:
            key = (entry.first, entry.last)
            at = index.get(key)
            if at is None:
                at = index[key] = len(firsts)
                firsts.append(entry.first)
                lasts.append(entry.last)
                labels.append(entry.label)
                self.origins.append(entry.where)
                any_port.append(False)
                ports.append(set())
            if entry.port is None:
                any_port[at] = True
            else:
                ports[at].add(entry.port)
        n = len(firsts)
        self.labels: tuple[str, ...] = tuple(dict.fromkeys(labels))
        code = {label: i for i, label in enumerate(self.labels)}
        self.label_code = np.array([code[label] for label in labels], dtype=np.int64)
        self._firsts, self._lasts = firsts, lasts
        # Outer ranges before the ranges they hold (first ascending, last descending).
        order = sorted(range(n), key=lambda i: (firsts[i], -lasts[i]))
        # A range inside an any-port range matches any port too, and inherits the
        # ports of the ranges around it: a pool's /24 with no port and one of its
        # addresses listed with :3333 still match the whole /24 on any port.
        stack: list[int] = []
        for i in order:
            while stack and lasts[stack[-1]] < firsts[i]:
                stack.pop()
            if stack:
                parent = stack[-1]
                any_port[i] = any_port[i] or any_port[parent]
                ports[i] |= ports[parent]
            stack.append(i)
        self.any_port = np.array(any_port, dtype=bool)
        keys = sorted(i * 65536 + p for i in range(n) for p in ports[i])
        self._port_keys = np.array(keys, dtype=np.int64)
        seg_first, seg_last, seg_range = _flatten(order, firsts, lasts)
        self._first_hi, self._first_lo = _words(seg_first)
        self._last_hi, self._last_lo = _words(seg_last)
        self._range = np.array(seg_range, dtype=np.int64)
        # Blocks of segments sharing a high word (all IPv4 segments are one block):
        # a lookup searches the low words inside its block.
        self._blocks_hi, starts, sizes = np.unique(
            self._first_hi, return_index=True, return_counts=True
        )
        self._multi = [
            (self._blocks_hi[b], int(starts[b]), int(starts[b] + sizes[b]))
            for b in np.flatnonzero(sizes > 1).tolist()
        ]
        self._v4_buckets = _v4_buckets(seg_first, seg_last)

    def __len__(self) -> int:
        """Distinct ranges."""
        return len(self._firsts)

    @property
    def segments(self) -> int:
        return len(self._range)

    def range_text(self, r: int) -> str:
        first, last = self._firsts[r], self._lasts[r]
        if first == last:
            return str(netaddr.int_to_address(first))
        length = 128 - (first ^ last).bit_length()
        return netaddr.prefix_text(first, length)

    def label(self, r: int) -> str:
        return self.labels[int(self.label_code[r])]

    def _rank(self, hi: U64, lo: U64) -> I64:
        """How many segments start at or before each address (128-bit comparison)."""
        left = np.searchsorted(self._first_hi, hi, "left")
        right = np.searchsorted(self._first_hi, hi, "right")
        rank = left.astype(np.int64)
        shared = right - left
        # A block of one segment: compare its low word directly.
        one = shared == 1
        if one.any():
            at = left[one]
            rank[one] += lo[one] >= self._first_lo[at]
        if not self._multi or not (shared > 1).any():
            return rank
        many = np.flatnonzero(shared > 1)
        for block_hi, start, stop in self._multi:
            mine = many[hi[many] == block_hi] if len(self._multi) > 1 else many
            if len(mine):
                rank[mine] = start + np.searchsorted(self._first_lo[start:stop], lo[mine], "right")
        return rank

    def lookup(self, hi: U64, lo: U64) -> I64:
        """For each address, the most specific range holding it, or -1.

        Most addresses of a stream are IPv4 and on no list; a bitmap of the /20s that
        hold any listed IPv4 address (128 KB) answers those with one gather, and only
        the rest (IPv6, and IPv4 in a listed /20) go through the binary search."""
        result = np.full(len(hi), -1, dtype=np.int64)
        if not len(self._range) or not len(hi):
            return result
        v4 = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
        bucket = (lo >> np.uint64(_V4_BUCKET_BITS)) & np.uint64(_V4_BUCKET_MASK)
        maybe = np.flatnonzero(~v4 | _bit(self._v4_buckets, bucket))
        if len(maybe):
            result[maybe] = self._search(hi[maybe], lo[maybe])
        return result

    def _search(self, hi: U64, lo: U64) -> I64:
        at = self._rank(hi, lo) - 1
        found = at >= 0
        seg = np.maximum(at, 0)
        last_hi, last_lo = self._last_hi[seg], self._last_lo[seg]
        inside = found & ((hi < last_hi) | ((hi == last_hi) & (lo <= last_lo)))
        result: I64 = np.where(inside, self._range[seg], -1)
        return result

    def port_matches(self, ranges: I64, ports: NDArray[Any]) -> NDArray[np.bool_]:
        """Whether each (range, port) matches: the range has any port, or lists this one."""
        valid = ranges >= 0
        safe = np.maximum(ranges, 0)
        ok: NDArray[np.bool_] = valid & self.any_port[safe]
        if len(self._port_keys):
            keys = safe * 65536 + ports.astype(np.int64)
            at = np.minimum(np.searchsorted(self._port_keys, keys), len(self._port_keys) - 1)
            ok |= valid & (self._port_keys[at] == keys)
        return ok


#: IPv4 addresses are bucketed by /20: 2²⁰ buckets, one bit each.
_V4_BUCKET_BITS = 12
_V4_BUCKET_MASK = (1 << 20) - 1


def _v4_buckets(seg_first: Sequence[int], seg_last: Sequence[int]) -> NDArray[np.uint8]:
    """A bitmap of the IPv4 /20s that any segment touches."""
    marks = np.zeros(1 << 20, dtype=bool)
    base, top = netaddr.V4_MAPPED_BASE, netaddr.V4_MAPPED_BASE | 0xFFFFFFFF
    for first, last in zip(seg_first, seg_last, strict=True):
        if last < base or first > top:
            continue
        a = (max(first, base) & 0xFFFFFFFF) >> _V4_BUCKET_BITS
        b = (min(last, top) & 0xFFFFFFFF) >> _V4_BUCKET_BITS
        marks[a : b + 1] = True
    bits: NDArray[np.uint8] = np.packbits(marks, bitorder="little")
    return bits


def _bit(bits: NDArray[np.uint8], index: U64) -> NDArray[np.bool_]:
    at = index.astype(np.intp)
    found: NDArray[np.bool_] = ((bits[at >> 3] >> (at & 7).astype(np.uint8)) & 1).astype(bool)
    return found


def _flatten(
    order: Sequence[int], firsts: Sequence[int], lasts: Sequence[int]
) -> tuple[list[int], list[int], list[int]]:
    """Disjoint segments ``(first, last, range)`` in address order, each owned by the
    innermost range covering it (a loop over entries at load, not over traffic)."""
    seg_first: list[int] = []
    seg_last: list[int] = []
    seg_range: list[int] = []
    cursor: dict[int, int] = {}
    stack: list[int] = []

    def emit(first: int, last: int, owner: int) -> None:
        if first <= last:
            seg_first.append(first)
            seg_last.append(last)
            seg_range.append(owner)

    def close_until(limit: int | None) -> None:
        while stack and (limit is None or lasts[stack[-1]] < limit):
            top = stack.pop()
            emit(cursor[top], lasts[top], top)
            if stack:
                cursor[stack[-1]] = lasts[top] + 1

    for i in order:
        close_until(firsts[i])
        if stack:
            emit(cursor[stack[-1]], firsts[i] - 1, stack[-1])
        cursor[i] = firsts[i]
        stack.append(i)
    close_until(None)
    return seg_first, seg_last, seg_range


# --- feeds that refresh -----------------------------------------------------------------

Parser = Callable[[str, str], list[FeedEntry]]


class Feed:
    """One source and its parsed entries; ``load`` reads it again (files only when
    their size or modification time changed)."""

    def __init__(self, source: str, parse: Parser, home: Path) -> None:
        self.source = source
        self.name = display_source(source) if is_url(source) else str(resolve_path(source, home))
        self.parse = parse
        self.home = home
        self.entries: list[FeedEntry] | None = None
        self.loaded_at: float | None = None
        self._stamp: tuple[int, int] | None = None

    def _file_stamp(self) -> tuple[int, int] | None:
        if is_url(self.source):
            return None
        try:
            stat = resolve_path(self.source, self.home).stat()
        except OSError:
            return None
        return (stat.st_mtime_ns, stat.st_size)

    def load(self) -> bool:
        """Read and parse the source; True when the entries changed. Raises FeedError."""
        stamp = self._file_stamp()
        if stamp is not None and stamp == self._stamp and self.entries is not None:
            return False
        entries = self.parse(fetch_text(self.source, self.home), self.name)
        changed = entries != self.entries
        self.entries, self._stamp = entries, stamp
        self.loaded_at = time.time()
        return changed


class FeedSet:
    """Feeds compiled into one ``AddressTable``, reloaded every ``every_seconds`` of wall
    time (``clock``: monotonic seconds) when ``maybe_refresh`` is called."""

    def __init__(
        self,
        feeds: Sequence[Feed],
        every_seconds: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.feeds = list(feeds)
        self.every_seconds = every_seconds
        self.clock = clock
        self.table = AddressTable([])
        self._checked: float | None = None

    def start(self) -> None:
        """The first load. A list that cannot be parsed or a file that is missing is a
        configuration error; a URL that does not answer is logged and tried again at
        the next refresh (the detector runs without it meanwhile)."""
        for feed in self.feeds:
            try:
                feed.load()
            except FeedError as exc:
                if isinstance(exc, FeedUnavailable):
                    log.warning("feed not loaded; retried at the next refresh", **_why(feed, exc))
                    continue
                raise ConfigError(exc.message, hint=exc.hint) from None
        self._compile()
        self._checked = self.clock()

    def maybe_refresh(self) -> bool:
        """Reload the feeds when due; True when the table changed. A feed that fails
        keeps its previous entries, and the failure is logged."""
        now = self.clock()
        # A feed never loaded (its URL was down at start) is tried again sooner.
        every = self.every_seconds
        if any(feed.entries is None for feed in self.feeds):
            every = min(every, RETRY_SECONDS)
        if self._checked is not None and now - self._checked < every:
            return False
        self._checked = now
        changed = False
        for feed in self.feeds:
            try:
                changed |= feed.load()
            except FeedError as exc:
                log.warning("feed refresh failed; keeping the previous version", **_why(feed, exc))
        if changed:
            self._compile()
        return changed

    def _compile(self) -> None:
        entries = [e for feed in self.feeds for e in (feed.entries or [])]
        self.table = AddressTable(entries)
        if not self.feeds:
            return
        log.info(
            "feeds compiled",
            feeds=len(self.feeds),
            entries=len(entries),
            ranges=len(self.table),
            segments=self.table.segments,
        )


def _why(feed: Feed, exc: FeedError) -> dict[str, Any]:
    loaded = feed.loaded_at
    return {
        "source": feed.name,
        "error": str(exc),
        "previous_loaded_at": None if loaded is None else round(loaded, 3),
        "previous_entries": len(feed.entries or []),
    }


def mining_feed(source: str, home: Path) -> Feed:
    return Feed(source, parse_mining, home)


def threat_feed(
    source: str,
    home: Path,
    *,
    format: str,
    category: str,
    ip_column: str = "ip",
    category_column: str = "",
) -> Feed:
    """A blocklist feed of one of the formats ``plain``, ``netset``, ``csv``."""

    def parse(text: str, name: str) -> list[FeedEntry]:
        if format == "csv":
            return parse_csv(text, name, category, ip_column, category_column)
        if format == "netset":
            return parse_netset(text, name, category)
        if format == "plain":
            return parse_plain(text, name, category)
        raise ConfigError(
            f"'{format}' is not a blocklist format.", hint="Use plain, netset or csv."
        )

    return Feed(source, parse, home)
