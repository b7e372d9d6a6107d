"""Flow records from text files: ``nfdump -o csv`` output and hostwarden's JSON lines.

Both read in chunks of ``CHUNK`` records and turn each chunk into a ``FlowBatch`` with
array operations; the per-line work is only splitting text, which the csv and json
modules do in C.

Times without a zone are refused unless the caller names the zone: ``nfdump -o csv``
prints first/last seen in the local time of the machine that ran it, without saying
which, and a wrong guess moves every record by hours (and to another customer when an
address changed hands in between).
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import IO, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
from numpy.typing import NDArray

from hostwarden.errors import ValidationFailed
from hostwarden.flows.schema import (
    DIRECTION_EGRESS,
    DIRECTION_INGRESS,
    DIRECTION_UNKNOWN,
    FlowBatch,
    FlowSource,
)
from hostwarden.registry import netaddr

CHUNK = 100_000
#: Stands for "the file does not say" in the exporter column (all-zero address words).
NO_EXPORTER = "::"

PROTOCOLS = {
    "icmp": 1,
    "igmp": 2,
    "ipip": 4,
    "tcp": 6,
    "udp": 17,
    "ipv6": 41,
    "rsvp": 46,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "icmp6": 58,
    "ipv6-icmp": 58,
    "eigrp": 88,
    "ospf": 89,
    "pim": 103,
    "l2tp": 115,
    "sctp": 132,
}
#: nfdump prints TCP flags as eight characters, one place per flag, "." when unset.
_FLAG_BITS = (0x80, 0x40, 0x20, 0x10, 0x08, 0x04, 0x02, 0x01)  # C E U A P R S F


@dataclass(frozen=True)
class RowError:
    line: int
    column: str
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}, column {self.column}: {self.problem}"


class TextFormatError(ValidationFailed):
    """A file whose rows cannot be read as the format says; names the first bad rows."""

    def __init__(self, fmt: str, errors: list[RowError], hint: str) -> None:
        shown = "; ".join(str(e) for e in errors[:5])
        more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
        super().__init__(f"the {fmt} file has rows that cannot be read: {shown}{more}.", hint=hint)
        self.errors = errors


def zone_of(name: str | None, fmt: str) -> ZoneInfo | None:
    if name is None:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"'{name}' is not a time zone name.",
            hint=f"Give the zone the {fmt} times are in, e.g. --tz UTC or --tz Asia/Shanghai.",
        ) from None


def _local_to_utc_ms(texts: list[str], zone: ZoneInfo, column: str, first_line: int) -> Any:
    """Naive local date-times (``YYYY-MM-DD HH:MM:SS[.fff]``) in ``zone`` to UTC epoch
    ms. Parsed by numpy; the zone's offset is looked up once per distinct hour."""
    try:
        local = np.array([t.strip().replace(" ", "T", 1) for t in texts], dtype="datetime64[ms]")
    except ValueError:
        for k, text in enumerate(texts):
            try:
                np.datetime64(text.strip().replace(" ", "T", 1), "ms")
            except ValueError:
                raise TextFormatError(
                    "nfdump CSV",
                    [RowError(first_line + k, column, f"'{text}' is not a date-time")],
                    hint="Export with `nfdump -o csv`; times look like 2026-05-01 10:00:00.",
                ) from None
        raise
    local_ms = local.astype(np.int64)
    hours = local_ms // 3_600_000
    offsets = {}
    for hour in np.unique(hours).tolist():
        naive = datetime.fromtimestamp(hour * 3600, tz=UTC).replace(tzinfo=None)
        offset = naive.replace(tzinfo=zone).utcoffset()
        offsets[hour] = int(offset.total_seconds() * 1000) if offset is not None else 0
    keys = np.array(list(offsets.keys()), dtype=np.int64)
    values = np.array(list(offsets.values()), dtype=np.int64)
    order = np.argsort(keys)
    where = np.searchsorted(keys[order], hours)
    return local_ms - values[order][where]


def _addresses(texts: list[str], column: str, first_line: int, fmt: str) -> Any:
    try:
        return netaddr.texts_to_hilo([t.strip() for t in texts])
    except ValueError:
        pass
    except ValidationFailed:
        pass
    errors = []
    for k, text in enumerate(texts):
        try:
            netaddr.parse_address(text.strip())
        except (ValueError, ValidationFailed):
            errors.append(RowError(first_line + k, column, f"'{text}' is not an IP address"))
    raise TextFormatError(fmt, errors, hint="Addresses must be IPv4 or IPv6 in text form.")


def _integers(
    texts: list[str], column: str, first_line: int, fmt: str, dtype: str, *, scale: float = 1.0
) -> NDArray[Any]:
    """Whole numbers; nfdump prints large counters as "1.2 M" with -N off, so plain
    numbers with an optional M/G suffix are taken."""
    try:
        return np.array([int(t) for t in texts], dtype=dtype)
    except (ValueError, OverflowError):
        pass
    values = []
    errors = []
    for k, text in enumerate(texts):
        cleaned = text.strip()
        factor = 1.0
        if cleaned[-1:] in ("M", "G") and cleaned[:-1].strip():
            factor = 1e6 if cleaned[-1] == "M" else 1e9
            cleaned = cleaned[:-1].strip()
        try:
            value = float(cleaned) * factor * scale
            if value < 0:
                raise ValueError
            values.append(round(value))
        except ValueError:
            errors.append(RowError(first_line + k, column, f"'{text}' is not a whole number"))
            values.append(0)
    if errors:
        raise TextFormatError(fmt, errors, hint="Counters and ports must be whole numbers.")
    try:
        return np.array(values, dtype=dtype)
    except OverflowError:
        raise TextFormatError(
            fmt, [RowError(first_line, column, "a value is out of range")], hint="Check the file."
        ) from None


def _protocols(texts: list[str], first_line: int, fmt: str) -> NDArray[np.uint8]:
    out = np.zeros(len(texts), dtype=np.uint8)
    errors = []
    for k, text in enumerate(texts):
        t = text.strip().lower()
        if t.isdigit() and int(t) < 256:
            out[k] = int(t)
        elif t in PROTOCOLS:
            out[k] = PROTOCOLS[t]
        else:
            errors.append(RowError(first_line + k, "pr", f"'{text}' is not an IP protocol"))
    if errors:
        raise TextFormatError(fmt, errors, hint="Protocols are names (TCP, UDP…) or numbers.")
    return out


def _flags(texts: list[str]) -> NDArray[np.uint8]:
    out = np.zeros(len(texts), dtype=np.uint8)
    for k, text in enumerate(texts):
        t = text.strip()
        if t.startswith("0x"):
            out[k] = int(t, 16) & 0xFF
        elif t.isdigit():
            out[k] = int(t) & 0xFF
        else:
            value = 0
            for place, char in enumerate(t[:8].rjust(8, ".")):
                if char != ".":
                    value |= _FLAG_BITS[place]
            out[k] = value
    return out


# --- nfdump -o csv --------------------------------------------------------------------

NFDUMP_REQUIRED = ("ts", "te", "sa", "da", "sp", "dp", "pr", "ipkt", "ibyt")


def is_nfdump_csv(head: bytes) -> bool:
    return head.lstrip().startswith(b"ts,te,td,sa,da")


def read_nfdump_csv(
    handle: IO[str], zone_name: str | None, exporter: str = ""
) -> Iterator[FlowBatch]:
    """Batches from ``nfdump -o csv`` output. ``zone_name``: the zone of its times."""
    zone = zone_of(zone_name, "nfdump CSV")
    reader = csv.reader(handle)
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        return
    missing = [c for c in NFDUMP_REQUIRED if c not in header]
    if missing:
        raise ValidationFailed(
            f"the CSV header lacks the nfdump column(s) {', '.join(missing)}.",
            hint="Give the output of `nfdump -r FILE -o csv` unchanged (header line included).",
        )
    if zone is None:
        raise ValidationFailed(
            "nfdump prints times in the local time of the machine that ran it, without a zone.",
            hint="Say which zone that was: --tz UTC, --tz Asia/Shanghai, …",
        )
    at = {name: i for i, name in enumerate(header)}
    chunk: list[list[str]] = []
    first = 2
    for line, row in enumerate(reader, start=2):
        if not row or (len(row) == 1 and not row[0].strip()):
            continue
        if row[0].startswith("Summary") or not row[0][:1].isdigit():
            break  # nfdump appends a summary block after the records
        if len(row) < len(NFDUMP_REQUIRED):
            raise TextFormatError(
                "nfdump CSV",
                [RowError(line, "*", f"{len(row)} fields, the header has {len(header)}")],
                hint="Give the output of `nfdump -o csv` unchanged.",
            )
        if not chunk:
            first = line
        chunk.append(row)
        if len(chunk) >= CHUNK:
            yield _nfdump_batch(chunk, at, zone, first, exporter)
            chunk = []
    if chunk:
        yield _nfdump_batch(chunk, at, zone, first, exporter)


def _nfdump_batch(
    rows: list[list[str]], at: dict[str, int], zone: ZoneInfo, first_line: int, exporter: str
) -> FlowBatch:
    fmt = "nfdump CSV"

    def col(name: str) -> list[str]:
        i = at[name]
        return [r[i] if i < len(r) else "" for r in rows]

    src_hi, src_lo = _addresses(col("sa"), "sa", first_line, fmt)
    dst_hi, dst_lo = _addresses(col("da"), "da", first_line, fmt)
    columns: dict[str, Any] = {
        "start": _local_to_utc_ms(col("ts"), zone, "ts", first_line),
        "end": _local_to_utc_ms(col("te"), zone, "te", first_line),
        "source": np.full(len(rows), FlowSource.NFDUMP_CSV, dtype=np.uint8),
        "src_hi": src_hi,
        "src_lo": src_lo,
        "dst_hi": dst_hi,
        "dst_lo": dst_lo,
        "src_port": _integers(col("sp"), "sp", first_line, fmt, "uint16"),
        "dst_port": _integers(col("dp"), "dp", first_line, fmt, "uint16"),
        "proto": _protocols(col("pr"), first_line, fmt),
        "packets": _integers(col("ipkt"), "ipkt", first_line, fmt, "uint64"),
        "bytes": _integers(col("ibyt"), "ibyt", first_line, fmt, "uint64"),
    }
    if "flg" in at:
        columns["tcp_flags"] = _flags(col("flg"))
    for name, target in (("in", "in_if"), ("out", "out_if")):
        if name in at:
            columns[target] = _integers(col(name), name, first_line, fmt, "uint32")
    if "dir" in at:
        raw = _integers(col("dir"), "dir", first_line, fmt, "uint8")
        columns["direction"] = np.where(
            raw == 0, DIRECTION_INGRESS, np.where(raw == 1, DIRECTION_EGRESS, DIRECTION_UNKNOWN)
        ).astype(np.uint8)
    routers = col("ra") if "ra" in at else [exporter] * len(rows)
    if exporter:
        routers = [exporter] * len(rows)
    if any(r.strip() for r in routers):
        cleaned = [r.strip() or NO_EXPORTER for r in routers]
        columns["exporter_hi"], columns["exporter_lo"] = _addresses(cleaned, "ra", first_line, fmt)
    return FlowBatch(columns)


# --- JSON lines -----------------------------------------------------------------------

JSONL_REQUIRED = ("start", "src", "dst")


def _epoch_ms(value: Any, line: int, name: str) -> int:
    if isinstance(value, bool):
        raise ValueError
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        moment = datetime.fromisoformat(text)
        if moment.tzinfo is None:
            raise TextFormatError(
                "JSON lines",
                [RowError(line, name, f"'{value}' has no time zone")],
                hint="Write times like 2026-05-01T10:00:00+08:00, or as UTC epoch milliseconds.",
            )
        return int(moment.timestamp() * 1000)
    raise ValueError


def read_jsonl(handle: IO[str]) -> Iterator[FlowBatch]:
    """Batches from JSON lines, one flow per line (see docs/flows.md for the keys)."""
    chunk: list[dict[str, Any]] = []
    first = 1
    for line_no, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TextFormatError(
                "JSON lines",
                [RowError(line_no, "*", f"not JSON ({exc.msg})")],
                hint="One JSON object per line.",
            ) from None
        if not isinstance(item, dict):
            raise TextFormatError(
                "JSON lines",
                [RowError(line_no, "*", "not a JSON object")],
                hint="One JSON object per line.",
            )
        missing = [k for k in JSONL_REQUIRED if k not in item]
        if missing:
            raise TextFormatError(
                "JSON lines",
                [RowError(line_no, missing[0], "missing")],
                hint=f"Every line needs {', '.join(JSONL_REQUIRED)}.",
            )
        if not chunk:
            first = line_no
        item["_line"] = line_no
        chunk.append(item)
        if len(chunk) >= CHUNK:
            yield _jsonl_batch(chunk, first)
            chunk = []
    if chunk:
        yield _jsonl_batch(chunk, first)


def _jsonl_batch(items: list[dict[str, Any]], first_line: int) -> FlowBatch:
    fmt = "JSON lines"
    starts = []
    ends = []
    for item in items:
        try:
            start = _epoch_ms(item["start"], item["_line"], "start")
            end = _epoch_ms(item.get("end", item["start"]), item["_line"], "end")
        except (ValueError, TypeError):
            raise TextFormatError(
                fmt,
                [RowError(item["_line"], "start", f"'{item.get('start')}' is not a time")],
                hint="Times are ISO 8601 with a zone, or UTC epoch milliseconds.",
            ) from None
        starts.append(start)
        ends.append(end)

    def texts(key: str, default: str = "0") -> list[str]:
        return [str(item.get(key, default)) for item in items]

    src_hi, src_lo = _addresses(texts("src"), "src", first_line, fmt)
    dst_hi, dst_lo = _addresses(texts("dst"), "dst", first_line, fmt)
    sampling = _integers(texts("sampling", "1"), "sampling", first_line, fmt, "uint32")
    columns: dict[str, Any] = {
        "start": np.array(starts, dtype=np.int64),
        "end": np.array(ends, dtype=np.int64),
        "source": np.full(len(items), FlowSource.JSONL, dtype=np.uint8),
        "src_hi": src_hi,
        "src_lo": src_lo,
        "dst_hi": dst_hi,
        "dst_lo": dst_lo,
        "src_port": _integers(texts("src_port"), "src_port", first_line, fmt, "uint16"),
        "dst_port": _integers(texts("dst_port"), "dst_port", first_line, fmt, "uint16"),
        "proto": _protocols(texts("proto"), first_line, fmt),
        "tcp_flags": _flags(texts("tcp_flags")),
        "packets": _integers(texts("packets"), "packets", first_line, fmt, "uint64"),
        "bytes": _integers(texts("bytes"), "bytes", first_line, fmt, "uint64"),
        "sampling": np.maximum(sampling, 1),
        "in_if": _integers(texts("in_if"), "in_if", first_line, fmt, "uint32"),
        "out_if": _integers(texts("out_if"), "out_if", first_line, fmt, "uint32"),
    }
    exporters = [str(item.get("exporter") or NO_EXPORTER) for item in items]
    columns["exporter_hi"], columns["exporter_lo"] = _addresses(
        exporters, "exporter", first_line, fmt
    )
    return FlowBatch(columns)


def open_text(data: bytes) -> IO[str]:
    return io.StringIO(data.decode("utf-8-sig", errors="strict"))
