"""Log lines into the log datasets' tables: HTTP access, NAT port blocks, sshd logins.

Formats (docs/flows.md, "Logs: HTTP access, NAT, SSH", has an example of each):

- ``nginx``: the combined format of nginx and Apache, optionally with the virtual host
  first (``$host`` / Apache ``%v`` or ``%v:%p``) and ``$request_time`` last.
- ``nginx-json``: one JSON object per line with nginx's variable names (``JSON_KEYS``).
- ``nat-syslog``: Junos port block allocation messages (``JSERVICES_NAT_PORT_BLOCK_ALLOC``,
  ``…_RELEASE``, ``…_ACTIVE``), or lines ``[flows] nat_regex`` matches.
- ``ssh-auth``: OpenSSH ``sshd`` (or ``sshd-session``) lines of a syslog file: classic
  RFC 3164 (``Mar  5 14:02:11 host sshd[123]: …``), ISO times (rsyslog, ``journalctl -o
  short-iso``) or RFC 5424.

Each reader yields tables of ``CHUNK`` lines. A line of the format that cannot be read
raises ``LogLineError`` naming file and line, so that the caller's first pass refuses
the whole file; lines that are not events of the kind (other sshd messages, other
syslog programs) are counted in ``ParseStats.skipped`` and never an error. The combined
format is matched chunk-wise (one ``findall`` over the joined lines, in C); only a chunk
with a line that does not match is looked at line by line, to name it.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, TypeVar
from zoneinfo import ZoneInfo

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.typing import NDArray

from hostwarden.errors import ValidationFailed
from hostwarden.flows.store.datasets import HTTP, NAT, PARSED_SCHEMAS, SSH, LogStore, attribute
from hostwarden.registry import attribution, netaddr

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime

CHUNK = 100_000
#: Longest path+query and longest header text (referer, user agent, host) kept; a
#: longer one is cut (its start is what identifies a request; scanners send megabytes).
MAX_PATH = 2048
MAX_TEXT = 1024

#: Import format → dataset.
LOG_FORMATS = {"nginx": HTTP, "nginx-json": HTTP, "nat-syslog": NAT, "ssh-auth": SSH}

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {m: i for i, m in enumerate(_MONTH_NAMES, 1)}


class LogLineError(ValidationFailed):
    """A line of the chosen format that cannot be read: names file, line and problem."""

    def __init__(self, fmt: str, where: str, line: int, problem: str, hint: str) -> None:
        super().__init__(f"{where}:{line}: {problem} (reading it as {fmt}).", hint=hint)
        self.line = line


@dataclass
class LogContext:
    """What a reader needs besides the lines."""

    #: The file's name, for messages.
    where: str
    #: The provider-side address when the log has none (HTTP, SSH).
    server_ip: str | None = None
    #: Zone of times written without one (classic syslog).
    zone: ZoneInfo | None = None
    #: Year of classic syslog times, which carry none; else the file's modification year.
    year: int | None = None
    #: The file's modification time (UTC epoch seconds), for the year of classic syslog.
    mtime: float | None = None
    #: ``[flows] nat_regex``, compiled.
    nat_regex: re.Pattern[str] | None = None


@dataclass
class ParseStats:
    lines: int = 0
    records: int = 0
    #: Lines skipped, by reason (never errors).
    skipped: Counter[str] = field(default_factory=Counter)


# --- shared pieces ----------------------------------------------------------------------


def _error(fmt: str, ctx: LogContext, line: int, problem: str, hint: str) -> LogLineError:
    return LogLineError(fmt, ctx.where, line, problem, hint)


def _hilo(
    texts: list[str], lines: list[int], fmt: str, ctx: LogContext, what: str
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Address texts → words, each distinct address converted once; the first text
    that is not an address is an error naming its line."""
    distinct = list(dict.fromkeys(texts))
    try:
        hi, lo = netaddr.texts_to_hilo(distinct)
    except (ValueError, ValidationFailed):
        for text, line in zip(texts, lines, strict=True):
            try:
                netaddr.parse_address(text)
            except (ValueError, ValidationFailed):
                hint = "The log must hold IP addresses, not host names."
                if what == "remote address" and fmt == "ssh-auth":
                    hint = "sshd logs host names with UseDNS yes; set UseDNS no (the default)."
                problem = f"the {what} '{text}' is not an IP address"
                raise _error(fmt, ctx, line, problem, hint) from None
        raise
    at = {t: i for i, t in enumerate(distinct)}
    where = np.fromiter((at[t] for t in texts), dtype=np.int64, count=len(texts))
    return hi[where], lo[where]


def _server(ctx: LogContext, fmt: str, n: int, lines: list[int]) -> tuple[Any, Any]:
    if not ctx.server_ip:
        raise ValidationFailed(
            f"{ctx.where}: {fmt} lines do not say which server wrote them.",
            hint="Name the server's address: --server-ip 203.0.113.10.",
        )
    hi, lo = _hilo([ctx.server_ip], lines[:1], fmt, ctx, "server address (--server-ip)")
    return np.full(n, hi[0], dtype=np.uint64), np.full(n, lo[0], dtype=np.uint64)


_HEX_RUN = re.compile(r"(?:\\x[0-9A-Fa-f]{2})+")
_BACKSLASHED = re.compile(r"\\([\\\"])")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def unescape(text: str) -> str:
    """nginx writes bytes outside printable ASCII as ``\\xHH`` (so UTF-8 user agents and
    paths arrive as runs of them) and Apache escapes ``"`` and ``\\`` with a backslash:
    back to text, with bytes that are not UTF-8 kept as ``\\xHH``."""
    if "\\" not in text:
        return text
    text = _HEX_RUN.sub(_decoded_run, text)
    return _BACKSLASHED.sub(r"\1", text)


def _decoded_run(match: re.Match[str]) -> str:
    decoded = bytes.fromhex(match.group().replace("\\x", "")).decode("utf-8", "backslashreplace")
    # Control bytes (a TLS handshake sent to a plain HTTP port) stay written out.
    return _CONTROL.sub(lambda c: f"\\x{ord(c.group()):02x}", decoded)


def _dash(text: str) -> str:
    """Access logs write ``-`` for "none"; stored as empty, as JSON logs leave it."""
    return "" if text == "-" else text


def _cut(text: str, most: int) -> str:
    return text if len(text) <= most else text[:most]


def _zone_text(ctx: LogContext) -> ZoneInfo:
    if ctx.zone is None:
        raise ValidationFailed(
            f"{ctx.where}: its times carry no zone (classic syslog).",
            hint="Say which zone the logging host used: --tz UTC, --tz Asia/Shanghai, …",
        )
    return ctx.zone


# Times: logs repeat each second many times over, so each distinct text is parsed once.


class _Times:
    def __init__(self, parse: Callable[[str], int]) -> None:
        self.parse = parse
        self.cache: dict[str, int] = {}

    def __call__(self, text: str) -> int:
        value = self.cache.get(text)
        if value is None:
            if len(self.cache) > 200_000:
                self.cache.clear()
            value = self.cache[text] = self.parse(text)
        return value


def _clf_time(text: str) -> int:
    """``10/Oct/2026:13:55:36 +0800`` (nginx ``$time_local``, Apache ``%t``)."""
    moment = datetime(
        int(text[7:11]),
        _MONTHS[text[3:6]],
        int(text[0:2]),
        int(text[12:14]),
        int(text[15:17]),
        int(text[18:20]),
        tzinfo=UTC,
    )
    if len(text) != 26 or text[20] != " " or text[21] not in "+-":
        raise ValueError(text)
    offset = (int(text[22:24]) * 60 + int(text[24:26])) * 60
    seconds = moment.timestamp() - (offset if text[21] == "+" else -offset)
    return int(seconds) * 1000


def _iso_time(text: str, ctx: LogContext) -> int:
    cleaned = text.strip()
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    moment = datetime.fromisoformat(cleaned)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_zone_text(ctx))
    return int(moment.timestamp() * 1000)


def _bsd_time(text: str, ctx: LogContext) -> int:
    """``Mar  5 14:02:11`` (RFC 3164: no year, no zone). The year is ``--year``, else the
    file's modification year, one less for a date after the modification (a file
    written across New Year)."""
    zone = _zone_text(ctx)
    month, day = _MONTHS[text[0:3]], int(text[4:6])
    hour, minute, second = int(text[7:9]), int(text[10:12]), int(text[13:15])
    if ctx.year is not None:
        return int(
            datetime(ctx.year, month, day, hour, minute, second, tzinfo=zone).timestamp() * 1000
        )
    modified = datetime.fromtimestamp(ctx.mtime or datetime.now(UTC).timestamp(), tz=zone)
    moment = datetime(modified.year, month, day, hour, minute, second, tzinfo=zone)
    if moment.timestamp() > modified.timestamp() + 86_400:
        moment = moment.replace(year=modified.year - 1)
    return int(moment.timestamp() * 1000)


def _ms_array(values: list[int]) -> pa.Array:
    return pa.array(np.array(values, dtype=np.int64), type=pa.int64()).cast(
        pa.timestamp("ms", tz="UTC")
    )


def _table(dataset: str, columns: dict[str, Any]) -> pa.Table:
    schema = PARSED_SCHEMAS[dataset]
    arrays = []
    for f in schema:
        value = columns[f.name]
        arrays.append(value if isinstance(value, pa.Array) else pa.array(value, type=f.type))
    return pa.Table.from_arrays(arrays, schema=schema)


def _request_parts(request: str) -> tuple[str, str, str]:
    """``GET /a?b HTTP/1.1`` → method, path+query, protocol; what is not a request line
    (TLS bytes on a plain port, an empty request) is kept whole as the path."""
    parts = request.split(" ")
    if len(parts) == 3 and parts[2].startswith("HTTP/"):
        return parts[0], _cut(parts[1], MAX_PATH), parts[2]
    if len(parts) == 2 and parts[0].isalpha():
        return parts[0], _cut(parts[1], MAX_PATH), ""
    return "", _cut(request, MAX_PATH), ""


# --- nginx / Apache combined ------------------------------------------------------------


def _quoted(name: str) -> str:
    """A quoted field of an access log line, backslash escapes allowed."""
    return rf'"(?P<{name}>[^"\\\n]*(?:\\.[^"\\\n]*)*)"'


#: [vhost] client ident user [time] "request" status bytes "referer" "agent"
#: [request_time], matched by Arrow's RE2 over a whole chunk at once (``extract_regex``):
#: RE2 runs in linear time, so a line that does not match costs no backtracking.
COMBINED_RE2 = (
    r"^(?:(?P<vhost>\S+) )?(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]\n]+)\] "
    + _quoted("request")
    + r" (?P<status>\d{3}) (?P<bytes>\d+|-) "
    + _quoted("referer")
    + " "
    + _quoted("agent")
    + r"(?: (?P<request_time>\d+(?:\.\d+)?|-))?[ \t\r]*$"
)
#: The same for lines without a backslash (nginx writes ``"`` as ``\x22``, so nearly
#: all): plain ``[^"]*`` fields, first without and then with the virtual host, match 2
#: to 3 times faster than the escape-aware form (bench: 0.38 and 0.61 against 1.15 s
#: per 100,000 lines). The fields and their order are the same in all three.
_COMBINED_FAST = (
    r"^(?P<vhost>)(?P<client>\S+) \S+ (?P<user>\S+) \[(?P<time>[^\]\n]+)\] "
    r'"(?P<request>[^"\n]*)" (?P<status>\d{3}) (?P<bytes>\d+|-) "(?P<referer>[^"\n]*)" '
    r'"(?P<agent>[^"\n]*)"(?: (?P<request_time>\d+(?:\.\d+)?|-))?[ \t\r]*$'
)
_COMBINED_FAST_VHOST = _COMBINED_FAST.replace("^(?P<vhost>)", "^(?P<vhost>\\S+) ")
#: A request line: method, path+query, protocol.
_REQUEST_RE2 = r"^(?P<method>[A-Za-z]+) (?P<path>\S*) (?P<protocol>HTTP/\S+)$"
_COMBINED_HINT = (
    'Lines look like 203.0.113.9 - - [01/May/2026:10:00:00 +0800] "GET / HTTP/1.1" 200 '
    '512 "-" "Mozilla/5.0", optionally with the virtual host first and $request_time '
    "last (docs/flows.md); choose another --format if this is not an access log."
)
#: Bytes of lines read at once (about 100,000 lines of a busy site).
CHUNK_BYTES = 16 << 20


def is_combined(line: str) -> bool:
    found = pc.extract_regex(pa.array([line.rstrip("\r\n")]), COMBINED_RE2)
    return bool(found.is_valid()[0].as_py())


_GROUP_NAME = re.compile(r"\?P<\w+>")
_FIELDS = (
    *("vhost", "client", "user", "time", "request", "status", "bytes", "referer", "agent"),
    "request_time",
)


def _by_split(texts: pa.Array, vhost: bool) -> tuple[pa.StructArray, NDArray[np.bool_]]:
    """The fields of lines a fast pattern matched, found by splitting them: with no
    ``"`` inside a field, the quotes cut a line into prefix, request, status and bytes,
    referer, a space, agent and the rest, and spaces cut the prefix into its tokens.
    Splitting costs a sixth of RE2's captures. Also says which lines had the expected
    tokens (the others, e.g. a time with two spaces, go to the regular expression)."""
    quoted = pc.split_pattern(texts, '"')
    tokens = pc.split_pattern(pc.utf8_rtrim(pc.list_element(quoted, 0), characters=" "), " ")
    shift = 1 if vhost else 0
    good = pc.equal(pc.list_value_length(tokens), 5 + shift).to_numpy(zero_copy_only=False)
    tokens = pc.list_slice(tokens, 0, 5 + shift)
    element = pc.list_element
    counts = pc.split_pattern(pc.utf8_trim(element(quoted, 2), characters=" "), " ")
    stamp = pc.binary_join_element_wise(
        pc.utf8_ltrim(element(tokens, 3 + shift), characters="["),
        pc.utf8_rtrim(element(tokens, 4 + shift), characters="]"),
        " ",
    )
    n = len(texts)
    arrays = [
        element(tokens, 0) if vhost else pa.array([""] * n, pa.string()),
        element(tokens, shift),
        element(tokens, 2 + shift),
        stamp,
        element(quoted, 1),
        element(counts, 0),
        element(counts, 1),
        element(quoted, 3),
        element(quoted, 5),
        pc.utf8_trim_whitespace(element(quoted, 6)),
    ]
    return pa.StructArray.from_arrays(arrays, names=list(_FIELDS)), good


def _combined_parts(texts: pa.Array) -> tuple[pa.StructArray, int | None]:
    """Every line's fields, through the fastest way that reads it; and the index of the
    first line none reads (None: all did)."""
    remaining = np.ones(len(texts), dtype=np.bool_)
    clean = ~pc.fill_null(pc.match_substring(texts, "\\"), False).to_numpy(zero_copy_only=False)
    pieces: list[pa.StructArray] = []
    order: list[NDArray[np.int64]] = []

    def take(rows: NDArray[np.int64], found: pa.StructArray, ok: NDArray[np.bool_]) -> None:
        pieces.append(found.filter(pa.array(ok)))
        order.append(rows[ok])
        remaining[rows[ok]] = False

    for pattern, vhost in ((_COMBINED_FAST, False), (_COMBINED_FAST_VHOST, True)):
        rows = np.flatnonzero(remaining & clean)
        if not len(rows):
            continue
        subset = texts.take(pa.array(rows))
        # No captures: RE2 decides with its DFA alone, which is cheap.
        matched = pc.match_substring_regex(subset, _GROUP_NAME.sub("?:", pattern))
        matched_np = matched.to_numpy(zero_copy_only=False)
        if not matched_np.any():
            continue
        rows = rows[matched_np]
        found, good = _by_split(subset.filter(matched), vhost)
        take(rows, found, good)
    rows = np.flatnonzero(remaining)
    if len(rows):
        found = pc.extract_regex(texts.take(pa.array(rows)), COMBINED_RE2)
        take(rows, found, found.is_valid().to_numpy(zero_copy_only=False))
    if remaining.any():
        return pa.array([], pieces[0].type if pieces else pa.struct([])), int(np.argmax(remaining))
    parts = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
    return parts.take(pa.array(np.argsort(np.concatenate(order), kind="stable"))), None


def read_combined(handle: IO[str], ctx: LogContext, stats: ParseStats) -> Iterator[pa.Table]:
    first = 1
    while lines := handle.readlines(CHUNK_BYTES):
        stats.lines += len(lines)
        table = _combined_table(lines, first, ctx)
        first += len(lines)
        if table.num_rows:
            stats.records += table.num_rows
            yield table


def _first(mask: pa.Array) -> int:
    return int(np.flatnonzero(mask.to_numpy(zero_copy_only=False))[0])


def _unescaped(texts: pa.Array) -> pa.Array:
    """``unescape`` on the few values that hold a backslash, the rest untouched."""
    marked = pc.fill_null(pc.match_substring(texts, "\\"), False)
    if not pc.any(marked).as_py():
        return texts
    fixed = [unescape(t) for t in texts.filter(marked).to_pylist()]
    return pc.replace_with_mask(texts, marked, pa.array(fixed, pa.string()))


def _column_hilo(
    texts: pa.Array, numbers: NDArray[np.int64], fmt: str, ctx: LogContext, what: str
) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """An Arrow column of address texts → words, each distinct address converted once;
    the first that is not an address is an error naming its first line."""
    encoded = pc.dictionary_encode(texts)
    distinct = encoded.dictionary.to_pylist()
    try:
        hi, lo = netaddr.texts_to_hilo(distinct)
    except (ValueError, ValidationFailed):
        for text in distinct:
            try:
                netaddr.parse_address(text)
            except (ValueError, ValidationFailed):
                line = int(numbers[_first(pc.equal(texts, text))])
                problem = f"the {what} '{text}' is not an IP address"
                hint = "The log must hold IP addresses, not host names."
                raise _error(fmt, ctx, line, problem, hint) from None
        raise
    where = encoded.indices.to_numpy(zero_copy_only=False)
    return hi[where], lo[where]


def _no_dash(texts: pa.Array) -> pa.Array:
    """Access logs write ``-`` for "none"; stored as empty, as JSON logs leave it."""
    return pc.if_else(pc.equal(texts, "-"), "", texts)


def _combined_table(lines: list[str], first: int, ctx: LogContext) -> pa.Table:
    fmt = "nginx"
    texts = pc.utf8_rtrim(pa.array(lines, pa.string()), characters="\r\n")
    filled = pc.invert(pc.equal(pc.utf8_trim_whitespace(texts), ""))
    texts = texts.filter(filled)
    numbers = np.flatnonzero(filled.to_numpy(zero_copy_only=False)) + first
    parts, unmatched = _combined_parts(texts)
    if unmatched is not None:
        line = int(numbers[unmatched])
        raise _error(fmt, ctx, line, "the line is not in the combined format", _COMBINED_HINT)
    n = len(parts)
    field = parts.field
    # Logs repeat each second and each client many times: every distinct time and
    # address text is converted once.
    stamps = pc.dictionary_encode(field("time"))
    try:
        distinct_ms = pc.strptime(stamps.dictionary, format="%d/%b/%Y:%H:%M:%S %z", unit="ms").cast(
            pa.int64()
        )
    except pa.ArrowInvalid:
        for k, value in enumerate(field("time").to_pylist()):
            try:
                _clf_time(value)
            except (ValueError, KeyError):
                problem = f"'{value}' is not a time like 01/May/2026:10:00:00 +0800"
                raise _error(fmt, ctx, int(numbers[k]), problem, _COMBINED_HINT) from None
        raise
    when = pc.take(distinct_ms, stamps.indices).cast(pa.timestamp("ms", tz="UTC"))
    remote_hi, remote_lo = _column_hilo(field("client"), numbers, fmt, ctx, "client address")
    local_hi, local_lo = _server(ctx, fmt, n, [int(numbers[0])])
    request = _unescaped(field("request"))
    split = pc.extract_regex(request, _REQUEST_RE2)
    is_request = split.is_valid()
    method = pc.if_else(is_request, split.field("method"), "")
    path = pc.if_else(is_request, split.field("path"), request)
    protocol = pc.if_else(is_request, split.field("protocol"), "")
    sent = field("bytes")
    took = field("request_time")
    no_time = pc.or_(pc.equal(took, ""), pc.equal(took, "-"))
    return _table(
        HTTP,
        {
            "time": when,
            "local_hi": local_hi,
            "local_lo": local_lo,
            "remote_hi": remote_hi,
            "remote_lo": remote_lo,
            "remote_port": pa.nulls(n, pa.int32()),
            "host": pc.utf8_slice_codeunits(_no_dash(field("vhost")), 0, MAX_TEXT),
            "method": method,
            "path": pc.utf8_slice_codeunits(path, 0, MAX_PATH),
            "protocol": protocol,
            "status": field("status").cast(pa.uint16()),
            "bytes": pc.if_else(pc.equal(sent, "-"), "0", sent).cast(pa.uint64()),
            "referer": pc.utf8_slice_codeunits(_unescaped(_no_dash(field("referer"))), 0, MAX_TEXT),
            "user_agent": pc.utf8_slice_codeunits(
                _unescaped(_no_dash(field("agent"))), 0, MAX_TEXT
            ),
            "request_time": pc.if_else(no_time, None, took).cast(pa.float64()),
        },
    )


# --- nginx / Apache JSON ----------------------------------------------------------------

#: Accepted keys of a JSON access log line, first found wins (docs/flows.md lists them).
JSON_KEYS: dict[str, tuple[str, ...]] = {
    "time": ("time_iso8601", "@timestamp", "timestamp", "time_local", "time", "msec"),
    "client": ("remote_addr", "client_ip", "client", "remote_ip"),
    "client_port": ("remote_port", "client_port"),
    "server": ("server_addr", "server_ip"),
    "host": ("host", "http_host", "server_name", "vhost"),
    "request": ("request",),
    "method": ("request_method", "method"),
    "uri": ("request_uri", "uri", "path"),
    "protocol": ("server_protocol", "protocol"),
    "status": ("status", "status_code"),
    "bytes": ("body_bytes_sent", "bytes_sent", "size", "bytes"),
    "referer": ("http_referer", "referer", "referrer"),
    "agent": ("http_user_agent", "user_agent", "agent"),
    "request_time": ("request_time", "duration"),
}
_JSON_HINT = (
    "One JSON object per line with at least a time (time_iso8601, @timestamp, time_local "
    "or msec), remote_addr, status and request (or request_method and request_uri); "
    "docs/flows.md lists the keys."
)


def _pick(item: dict[str, Any], key: str) -> Any:
    for name in JSON_KEYS[key]:
        value = item.get(name)
        if value is not None and value != "" and value != "-":
            return value
    return None


def is_access_json(item: dict[str, Any]) -> bool:
    return _pick(item, "client") is not None and _pick(item, "status") is not None


_Row = TypeVar("_Row")


def _in_chunks(
    found: Iterator[tuple[int, _Row]],
    build: Callable[[list[_Row], list[int]], pa.Table],
    stats: ParseStats,
) -> Iterator[pa.Table]:
    """Tables of up to ``CHUNK`` rows from (line number, row) pairs; the numbers go with
    the rows so that a value found wrong while building a table names its line."""
    rows: list[_Row] = []
    numbers: list[int] = []
    for number, row in found:
        rows.append(row)
        numbers.append(number)
        if len(rows) >= CHUNK:
            yield build(rows, numbers)
            stats.records += len(rows)
            rows, numbers = [], []
    if rows:
        yield build(rows, numbers)
        stats.records += len(rows)


def read_access_json(handle: IO[str], ctx: LogContext, stats: ParseStats) -> Iterator[pa.Table]:
    fmt = "nginx-json"
    clf = _Times(_clf_time)
    iso = _Times(lambda t: _iso_time(t, ctx))
    return _in_chunks(
        _json_items(handle, ctx, stats, fmt),
        lambda chunk, numbers: _json_table(chunk, numbers, ctx, clf, iso, fmt),
        stats,
    )


def _json_items(
    handle: IO[str], ctx: LogContext, stats: ParseStats, fmt: str
) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(handle, start=1):
        stats.lines += 1
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise _error(fmt, ctx, number, f"not JSON ({exc.msg})", _JSON_HINT) from None
        if not isinstance(item, dict):
            raise _error(fmt, ctx, number, "not a JSON object", _JSON_HINT)
        for key in ("time", "client", "status"):
            if _pick(item, key) is None:
                raise _error(
                    fmt, ctx, number, f"no {key} ({' / '.join(JSON_KEYS[key])})", _JSON_HINT
                )
        if _pick(item, "request") is None and _pick(item, "uri") is None:
            raise _error(fmt, ctx, number, "no request (or request_uri)", _JSON_HINT)
        yield number, item


def _json_time(value: Any, clf: _Times, iso: _Times) -> int:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(float(value) * 1000)  # nginx $msec: epoch seconds
    text = str(value)
    if re.fullmatch(r"\d+(\.\d+)?", text):
        return round(float(text) * 1000)
    if len(text) == 26 and text[2] == "/":
        return clf(text)
    return iso(text)


def _whole(value: Any, fmt: str, ctx: LogContext, number: int, what: str, most: int) -> int:
    try:
        result = int(str(value))
    except ValueError:
        raise _error(
            fmt, ctx, number, f"{what} '{value}' is not a whole number", _JSON_HINT
        ) from None
    if not 0 <= result <= most:
        raise _error(fmt, ctx, number, f"{what} {result} is out of range", _JSON_HINT)
    return result


def _json_table(
    items: list[dict[str, Any]],
    numbers: list[int],
    ctx: LogContext,
    clf: _Times,
    iso: _Times,
    fmt: str,
) -> pa.Table:
    when: list[int] = []
    ports: list[int | None] = []
    status: list[int] = []
    sent: list[int] = []
    request_times: list[float | None] = []
    methods, paths, protocols = [], [], []
    servers: list[str] = []
    for item, number in zip(items, numbers, strict=True):
        raw_time = _pick(item, "time")
        try:
            when.append(_json_time(raw_time, clf, iso))
        except ValidationFailed:
            raise
        except (ValueError, KeyError, TypeError):
            raise _error(fmt, ctx, number, f"'{raw_time}' is not a time", _JSON_HINT) from None
        port = _pick(item, "client_port")
        ports.append(None if port is None else _whole(port, fmt, ctx, number, "remote_port", 65535))
        status.append(_whole(_pick(item, "status"), fmt, ctx, number, "status", 999))
        size = _pick(item, "bytes")
        sent.append(0 if size is None else _whole(size, fmt, ctx, number, "body_bytes_sent", 2**63))
        duration = _pick(item, "request_time")
        try:
            request_times.append(None if duration is None else float(duration))
        except (TypeError, ValueError):
            raise _error(
                fmt, ctx, number, f"request_time '{duration}' is not a number", _JSON_HINT
            ) from None
        request = _pick(item, "request")
        if request is not None:
            method, path, protocol = _request_parts(unescape(str(request)))
        else:
            method = str(_pick(item, "method") or "")
            path = _cut(unescape(str(_pick(item, "uri"))), MAX_PATH)
            protocol = str(_pick(item, "protocol") or "")
        methods.append(method)
        paths.append(path)
        protocols.append(protocol)
        server = _pick(item, "server") or ctx.server_ip
        if not server:
            raise _error(
                fmt,
                ctx,
                number,
                "no server_addr, and no --server-ip was given",
                "Log $server_addr, or name the server's address: --server-ip 203.0.113.10.",
            )
        servers.append(str(server))
    remote_hi, remote_lo = _hilo(
        [str(_pick(i, "client")) for i in items], numbers, fmt, ctx, "client address"
    )
    local_hi, local_lo = _hilo(servers, numbers, fmt, ctx, "server address")

    def text(key: str, most: int) -> list[str]:
        return [_cut(unescape(str(_pick(i, key) or "")), most) for i in items]

    return _table(
        HTTP,
        {
            "time": _ms_array(when),
            "local_hi": local_hi,
            "local_lo": local_lo,
            "remote_hi": remote_hi,
            "remote_lo": remote_lo,
            "remote_port": ports,
            "host": text("host", MAX_TEXT),
            "method": methods,
            "path": paths,
            "protocol": protocols,
            "status": np.array(status, dtype=np.uint16),
            "bytes": np.array(sent, dtype=np.uint64),
            "referer": text("referer", MAX_TEXT),
            "user_agent": text("agent", MAX_TEXT),
            "request_time": request_times,
        },
    )


# --- syslog -----------------------------------------------------------------------------

#: RFC 5424 (``<PRI>1 TIME HOST APP PROCID MSGID SD MSG``), ISO-timed BSD-style lines
#: (rsyslog's high-precision template, ``journalctl -o short-iso``) and RFC 3164.
_SYSLOG = re.compile(
    r"^(?:<\d{1,3}>)?(?:"
    r"1 (?P<t5424>\S+) (?P<h5424>\S+) (?P<app>\S+) (?P<procid>\S+) \S+ "
    r"(?:-|(?:\[(?:[^\]\\]|\\.)*\])+)(?: (?P<m5424>.*))?"
    r"|(?P<tiso>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\S*) (?P<hiso>\S+) (?P<miso>.*)"
    r"|(?P<tbsd>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d) (?P<hbsd>\S+) (?P<mbsd>.*)"
    r")$"
)
_TAG = re.compile(r"^(?P<tag>[^\s\[:]+)(?:\[(?P<pid>\d+)\])?: ?(?P<rest>.*)$")
_SYSLOG_HINT = (
    "Give a syslog file: lines like 'Mar  5 14:02:11 web01 sshd[812]: …' (RFC 3164, "
    "with --tz), '2026-03-05T14:02:11+08:00 web01 sshd[812]: …' or RFC 5424; choose "
    "another --format if this is not one."
)


@dataclass(frozen=True)
class SyslogLine:
    time_ms: int
    host: str
    program: str
    pid: int | None
    message: str


def parse_syslog(
    line: str, ctx: LogContext, fmt: str, number: int, times: _Times, bsd: _Times
) -> SyslogLine:
    match = _SYSLOG.match(line)
    if match is None:
        raise _error(fmt, ctx, number, "the line is not a syslog line", _SYSLOG_HINT)
    groups = match.groupdict()
    try:
        if groups["t5424"] is not None:
            when = times(groups["t5424"])
            procid = groups["procid"]
            return SyslogLine(
                when,
                groups["h5424"],
                groups["app"],
                int(procid) if procid.isdigit() else None,
                groups["m5424"] or "",
            )
        if groups["tiso"] is not None:
            when, host, rest = times(groups["tiso"]), groups["hiso"], groups["miso"]
        else:
            when, host, rest = bsd(groups["tbsd"]), groups["hbsd"], groups["mbsd"]
    except ValidationFailed:
        raise
    except (ValueError, KeyError):
        raise _error(fmt, ctx, number, "its time cannot be read", _SYSLOG_HINT) from None
    tag = _TAG.match(rest)
    if tag is None:
        return SyslogLine(when, host, "", None, rest)
    pid = tag["pid"]
    return SyslogLine(when, host, tag["tag"], int(pid) if pid else None, tag["rest"])


def _syslog_times(ctx: LogContext) -> tuple[_Times, _Times]:
    return _Times(lambda t: _iso_time(t, ctx)), _Times(lambda t: _bsd_time(t, ctx))


# --- sshd -------------------------------------------------------------------------------

SSH_PROGRAMS = ("sshd", "sshd-session", "sshd-auth")
_ADDR = r"(?P<addr>[0-9A-Za-z.:%_-]+)"
#: "[authenticating |invalid ]user NAME ADDRESS port N [preauth]" of the disconnect lines.
_WHO_AT = (
    rf"(?:(?:authenticating |invalid )?user (?P<user>.*?) )?{_ADDR} port (?P<port>\d+)"
    r"(?: \[preauth\])?"
)
_SSH_EVENTS: tuple[tuple[str, str, re.Pattern[str]], ...] = (
    (
        "Accepted ",
        "accepted",
        re.compile(
            rf"^Accepted (?P<method>\S+) for (?P<user>.*?) from {_ADDR} port (?P<port>\d+)"
            r"(?: \S+)?(?:: .*)?$"
        ),
    ),
    (
        "Failed ",
        "failed",
        re.compile(
            rf"^Failed (?P<method>\S+) for (?:invalid user )?(?P<user>.*?) from {_ADDR} "
            r"port (?P<port>\d+)(?: \S+)?$"
        ),
    ),
    (
        "Invalid user ",
        "invalid-user",
        re.compile(rf"^Invalid user (?P<user>.*?) from {_ADDR}(?: port (?P<port>\d+))?$"),
    ),
    (
        "Disconnected from ",
        "disconnect",
        re.compile(rf"^Disconnected from {_WHO_AT}$"),
    ),
    (
        "Connection closed by ",
        "disconnect",
        re.compile(rf"^Connection closed by {_WHO_AT}$"),
    ),
    (
        "Received disconnect from ",
        "disconnect",
        re.compile(rf"^Received disconnect from {_ADDR} port (?P<port>\d+):\d+:.*$"),
    ),
)
#: A "Failed …" message that is not a login attempt (e.g. "Failed to …").
_NOT_LOGIN = re.compile(r"^Failed (?:to|with) ")
_SSH_HINT = (
    "OpenSSH writes e.g. 'Failed password for root from 198.51.100.23 port 52144 ssh2'; "
    "a line of another shape is not one hostwarden knows: report it with the line."
)


def read_ssh(handle: IO[str], ctx: LogContext, stats: ParseStats) -> Iterator[pa.Table]:
    fmt = "ssh-auth"
    return _in_chunks(
        _ssh_rows(handle, ctx, stats, fmt),
        lambda rows, numbers: _ssh_table(rows, numbers, ctx, fmt),
        stats,
    )


def _ssh_rows(
    handle: IO[str], ctx: LogContext, stats: ParseStats, fmt: str
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    iso, bsd = _syslog_times(ctx)
    for number, line in enumerate(handle, start=1):
        stats.lines += 1
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        entry = parse_syslog(text, ctx, fmt, number, iso, bsd)
        if entry.program not in SSH_PROGRAMS:
            stats.skipped["not sshd"] += 1
            continue
        message = entry.message
        kind = next((e for e in _SSH_EVENTS if message.startswith(e[0])), None)
        if kind is None or _NOT_LOGIN.match(message):
            stats.skipped["other sshd messages"] += 1
            continue
        match = kind[2].match(message)
        if match is None:
            raise _error(
                fmt, ctx, number, f"sshd's '{kind[0].strip()}' message cannot be read", _SSH_HINT
            )
        groups = match.groupdict()
        port = groups.get("port")
        yield (
            number,
            (
                entry.time_ms,
                entry.host,
                groups["addr"],
                int(port) if port else None,
                groups.get("user") or "",
                kind[1],
                groups.get("method"),
                entry.pid,
            ),
        )


def _ssh_table(
    rows: list[tuple[Any, ...]], numbers: list[int], ctx: LogContext, fmt: str
) -> pa.Table:
    when, hosts, addrs, ports, users, results, methods, pids = zip(*rows, strict=True)
    remote_hi, remote_lo = _hilo(list(addrs), numbers, fmt, ctx, "remote address")
    local_hi, local_lo = _server(ctx, fmt, len(rows), numbers)
    return _table(
        SSH,
        {
            "time": _ms_array(list(when)),
            "local_hi": local_hi,
            "local_lo": local_lo,
            "remote_hi": remote_hi,
            "remote_lo": remote_lo,
            "host": list(hosts),
            "remote_port": list(ports),
            "user": [_cut(u, MAX_TEXT) for u in users],
            "result": list(results),
            "method": list(methods),
            "pid": list(pids),
        },
    )


# --- NAT port blocks --------------------------------------------------------------------

#: Junos (MS-MPC / MX-SPC3 services) port block allocation, e.g.
#: ``JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.10 -> 203.0.113.5:2048-2303 0x6a5c3f2e``;
#: the trailing number is not needed (the syslog header has the time).
_JUNOS_NAT = re.compile(
    r"JSERVICES_NAT_PORT_BLOCK_(?P<event>ALLOC|RELEASE|ACTIVE): (?P<inside>\S+) -> "
    r"(?P<outside>\[[0-9A-Fa-f:.]+\]|[0-9.]+):(?P<port_first>\d+)-(?P<port_last>\d+)(?:\s|$)"
)
_JUNOS_MARK = "JSERVICES_NAT_PORT_BLOCK_"
_NAT_HINT = (
    "Junos writes e.g. 'JSERVICES_NAT_PORT_BLOCK_ALLOC: 100.64.0.10 -> 203.0.113.5:2048-2303 "
    "0x6a5c3f2e'; for another device set [flows] nat_regex (docs/flows.md)."
)
_RELEASE_WORDS = (
    "release",
    "free",
    "dealloc",
    "delete",
    "del",
    "withdraw",
    "remove",
    "close",
    "end",
)
_ACTIVE_WORDS = ("active", "interim", "update")


def nat_event(text: str | None) -> str:
    """``alloc``, ``release`` or ``active`` (an interim log of a block still held)."""
    word = (text or "").lower()
    if any(w in word for w in _RELEASE_WORDS):
        return "release"
    if any(w in word for w in _ACTIVE_WORDS):
        return "active"
    return "alloc"


def read_nat(handle: IO[str], ctx: LogContext, stats: ParseStats) -> Iterator[pa.Table]:
    fmt = "nat-syslog"
    return _in_chunks(
        _nat_rows(handle, ctx, stats, fmt),
        lambda rows, numbers: _nat_table(rows, numbers, ctx, fmt),
        stats,
    )


def _nat_rows(
    handle: IO[str], ctx: LogContext, stats: ParseStats, fmt: str
) -> Iterator[tuple[int, tuple[Any, ...]]]:
    iso, bsd = _syslog_times(ctx)
    for number, line in enumerate(handle, start=1):
        stats.lines += 1
        text = line.rstrip("\r\n")
        if not text.strip():
            continue
        match = ctx.nat_regex.search(text) if ctx.nat_regex is not None else None
        custom = match is not None
        if match is None:
            match = _JUNOS_NAT.search(text)
        if match is None:
            if _JUNOS_MARK in text:
                raise _error(fmt, ctx, number, "the port block message cannot be read", _NAT_HINT)
            stats.skipped["not a port block message"] += 1
            continue
        groups = match.groupdict()
        stamp = groups.get("time") if custom else None
        try:
            if stamp:
                when = (
                    bsd(stamp)
                    if stamp[:3] in _MONTHS
                    else _json_time(stamp, _Times(_clf_time), iso)
                )
            else:
                when = parse_syslog(text, ctx, fmt, number, iso, bsd).time_ms
        except ValidationFailed:
            raise
        except (ValueError, KeyError):
            raise _error(fmt, ctx, number, f"'{stamp}' is not a time", _NAT_HINT) from None
        first = int(groups["port_first"])
        last = int(groups.get("port_last") or first)
        if not 0 <= first <= last <= 65535:
            raise _error(
                fmt, ctx, number, f"ports {first}-{last} are not a range in 0–65535", _NAT_HINT
            )
        yield (
            number,
            (
                when,
                nat_event(groups.get("event")),
                groups["inside"],
                groups["outside"].strip("[]"),
                first,
                last,
                groups.get("proto") or None,
            ),
        )


def _nat_table(
    rows: list[tuple[Any, ...]], numbers: list[int], ctx: LogContext, fmt: str
) -> pa.Table:
    when, events, inside, outside, first, last, protos = zip(*rows, strict=True)
    remote_hi, remote_lo = _hilo(list(inside), numbers, fmt, ctx, "inside address")
    local_hi, local_lo = _hilo(list(outside), numbers, fmt, ctx, "public address")
    return _table(
        NAT,
        {
            "time": _ms_array(list(when)),
            "local_hi": local_hi,
            "local_lo": local_lo,
            "remote_hi": remote_hi,
            "remote_lo": remote_lo,
            "event": list(events),
            "port_first": np.array(first, dtype=np.uint16),
            "port_last": np.array(last, dtype=np.uint16),
            "proto": list(protos),
        },
    )


# --- choosing a reader ------------------------------------------------------------------

READERS: dict[str, Callable[[IO[str], LogContext, ParseStats], Iterator[pa.Table]]] = {
    "nginx": read_combined,
    "nginx-json": read_access_json,
    "nat-syslog": read_nat,
    "ssh-auth": read_ssh,
}


def sniff(lines: list[str], nat_regex: re.Pattern[str] | None = None) -> str | None:
    """Which log format the first lines of a file are in, if any."""
    for line in lines:
        text = line.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                item = json.loads(text)
            except ValueError:
                return None
            return "nginx-json" if isinstance(item, dict) and is_access_json(item) else None
        if is_combined(text):
            return "nginx"
        if _JUNOS_MARK in text or (nat_regex is not None and nat_regex.search(text)):
            return "nat-syslog"
        if any(f" {p}[" in text or f" {p}: " in text for p in SSH_PROGRAMS):
            return "ssh-auth"
    return None


# --- importing a file -------------------------------------------------------------------


def import_log(
    runtime: Runtime,
    store: LogStore,
    handle_of: Callable[[bool], IO[str]],
    fmt: str,
    ctx: LogContext,
    *,
    checking: Callable[[bool], None] | None = None,
) -> tuple[ParseStats, int]:
    """Read a log file twice: the first pass checks every line and stores nothing (a
    bad line refuses the whole file), the second attributes each chunk and hands it to
    ``store``. ``handle_of(report_progress)`` opens the file afresh. Returns the second
    pass's counts and how many records were attributed to a customer."""
    read = READERS[fmt]
    dataset = LOG_FORMATS[fmt]
    if checking is not None:
        checking(True)
    with handle_of(False) as handle:
        for _ in read(handle, ctx, ParseStats()):
            pass
    if checking is not None:
        checking(False)
    stats = ParseStats()
    attributed = 0
    with handle_of(True) as handle:
        for table in read(handle, ctx, stats):
            index = attribution.current_index(runtime)
            stored = attribute(index, dataset, table)
            store.write(dataset, stored)
            customers = stored.column("customer_id").to_numpy()
            attributed += int(np.count_nonzero(customers >= 0))
    return stats, attributed
