"""Hand-built NetFlow v5 / v9 and IPFIX datagrams for the decoder's edge cases.

Fields are (element, length) or (element, length, enterprise); a record is a mapping from
element (or (element, enterprise)) to its value: an int (big-endian, the field's length),
an address text, or bytes (for a variable-length field: sent with its length prefix)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Mapping, Sequence
from typing import Any

from hostwarden.flows.decode.templates import VARIABLE_LENGTH
from hostwarden.flows.schema import FlowBatch
from hostwarden.registry.netaddr import hilo_to_address

Field = tuple[int, int] | tuple[int, int, int]
Value = int | str | bytes

EXPORTER = "192.0.2.1"
EXPORT_SECS = 1_700_000_000


def _value(field: Field, value: Value) -> bytes:
    length = field[1]
    if isinstance(value, str):
        packed = ipaddress.ip_address(value).packed
        assert len(packed) == length, (field, value)
        return packed
    if isinstance(value, bytes):
        if length != VARIABLE_LENGTH:
            assert len(value) == length, (field, value)
            return value
        if len(value) < 255:
            return bytes([len(value)]) + value
        return b"\xff" + struct.pack(">H", len(value)) + value
    return value.to_bytes(length, "big")


def record(fields: Sequence[Field], values: Mapping[Any, Value]) -> bytes:
    out = b""
    for f in fields:
        key: Any = (f[0], f[2]) if len(f) == 3 else f[0]
        out += _value(f, values.get(key, 0 if f[1] != VARIABLE_LENGTH else b""))
    return out


def pad4(body: bytes) -> bytes:
    return body + bytes(-len(body) % 4)


def flowset(set_id: int, body: bytes, *, pad: bool = True) -> bytes:
    body = pad4(body) if pad else body
    return struct.pack(">HH", set_id, 4 + len(body)) + body


def data_set(
    template_id: int, fields: Sequence[Field], rows: Sequence[Mapping[Any, Value]]
) -> bytes:
    return flowset(template_id, b"".join(record(fields, r) for r in rows))


# --- NetFlow v5 ----------------------------------------------------------------------------


def v5_datagram(
    rows: Sequence[Mapping[str, Any]],
    *,
    uptime: int = 100_000,
    secs: int = EXPORT_SECS,
    nsecs: int = 0,
    sampling: int = 0,
    count: int | None = None,
) -> bytes:
    head = struct.pack(
        ">HHIIIIBBH",
        5,
        len(rows) if count is None else count,
        uptime,
        secs,
        nsecs,
        1,
        0,
        0,
        sampling,
    )
    body = b""
    for r in rows:
        body += struct.pack(
            ">4s4s4sHHIIIIHHBBBBHHBBH",
            ipaddress.IPv4Address(r.get("src", "192.0.2.10")).packed,
            ipaddress.IPv4Address(r.get("dst", "198.51.100.20")).packed,
            bytes(4),
            r.get("in_if", 0),
            r.get("out_if", 0),
            r.get("packets", 1),
            r.get("bytes", 100),
            r.get("first", uptime - 1000),
            r.get("last", uptime - 500),
            r.get("src_port", 40000),
            r.get("dst_port", 443),
            0,
            r.get("tcp_flags", 0),
            r.get("proto", 6),
            0,
            0,
            0,
            0,
            0,
            0,
        )
    return head + body


# --- NetFlow v9 ----------------------------------------------------------------------------


def v9_datagram(
    *sets: bytes, uptime: int = 100_000, secs: int = EXPORT_SECS, source_id: int = 0
) -> bytes:
    return struct.pack(">HHIIII", 9, len(sets), uptime, secs, 1, source_id) + b"".join(sets)


def v9_template_set(*templates: tuple[int, Sequence[Field]]) -> bytes:
    body = b""
    for tid, fields in templates:
        body += struct.pack(">HH", tid, len(fields))
        body += b"".join(struct.pack(">HH", f[0], f[1]) for f in fields)
    return flowset(0, body)


def v9_options_template_set(
    tid: int, scopes: Sequence[tuple[int, int]], fields: Sequence[tuple[int, int]]
) -> bytes:
    body = struct.pack(">HHH", tid, 4 * len(scopes), 4 * len(fields))
    body += b"".join(struct.pack(">HH", *f) for f in (*scopes, *fields))
    return flowset(1, body)


# --- IPFIX ---------------------------------------------------------------------------------


def ipfix_message(*sets: bytes, export_secs: int = EXPORT_SECS, domain: int = 0) -> bytes:
    body = b"".join(sets)
    return struct.pack(">HHIII", 10, 16 + len(body), export_secs, 1, domain) + body


def _ipfix_fields(fields: Sequence[Field]) -> bytes:
    out = b""
    for f in fields:
        if len(f) == 3:
            out += struct.pack(">HHI", f[0] | 0x8000, f[1], f[2])
        else:
            out += struct.pack(">HH", f[0], f[1])
    return out


def ipfix_template_set(*templates: tuple[int, Sequence[Field]]) -> bytes:
    body = b""
    for tid, fields in templates:
        body += struct.pack(">HH", tid, len(fields)) + _ipfix_fields(fields)
    return flowset(2, body, pad=False)


def ipfix_options_template_set(tid: int, scopes: Sequence[Field], fields: Sequence[Field]) -> bytes:
    body = struct.pack(">HHH", tid, len(scopes) + len(fields), len(scopes))
    body += _ipfix_fields([*scopes, *fields])
    return flowset(3, body, pad=False)


def ipfix_withdrawal(set_id: int, *template_ids: int) -> bytes:
    return flowset(set_id, b"".join(struct.pack(">HH", t, 0) for t in template_ids))


# --- reading batches back ------------------------------------------------------------------


def rows(batch: FlowBatch) -> list[dict[str, Any]]:
    """The batch as one dict per record, addresses as text (for readable assertions)."""
    out = []
    for i in range(len(batch)):
        row: dict[str, Any] = {name: int(values[i]) for name, values in batch.columns.items()}
        for prefix in ("exporter", "src", "dst", "nat_src", "nat_dst"):
            hi, lo = row.pop(f"{prefix}_hi"), row.pop(f"{prefix}_lo")
            row[prefix] = "" if hi == lo == 0 else str(hilo_to_address(hi, lo))
        out.append(row)
    return out
