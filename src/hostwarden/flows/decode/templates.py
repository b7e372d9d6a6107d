"""NetFlow v9 / IPFIX templates: the field registry, compiled record layouts and the cache.

A template compiles once into a ``Layout``: a numpy structured dtype holding, at their
offsets, only the fields the decoders read, so that a data set's records decode with one
``np.frombuffer``. Layouts are shared by every template with the same fields (a thousand
exporters of one model compile once). The ``TemplateCache`` keeps templates per
(exporter, protocol version, source id / observation domain, template id), what options
records said about sampling and system start, and a bounded buffer of data sets that
arrived before their template.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections import Counter, OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from hostwarden.errors import ValidationFailed

#: Field length of an IPFIX variable-length field in a template (RFC 7011 §7).
VARIABLE_LENGTH = 65535

# How a field's bytes are read.
UINT = "uint"  # unsigned big-endian integer of 1..8 bytes (RFC 7011 §6.2 reduced size)
IPV4 = "ipv4"  # exactly 4 bytes
IPV6 = "ipv6"  # exactly 16 bytes
NTP = "ntp"  # dateTimeMicro/Nanoseconds: NTP seconds and fraction, 8 bytes (RFC 7011 §6.1.9)
FLOAT = "float"  # IEEE 754, 4 or 8 bytes

#: Information elements the decoders read (IANA IPFIX numbers; 1-127 are NetFlow v9's
#: too), with how their bytes are read. Everything else is skipped.
ELEMENTS: dict[int, str] = {
    1: UINT,  # octetDeltaCount / IN_BYTES
    2: UINT,  # packetDeltaCount / IN_PKTS
    4: UINT,  # protocolIdentifier
    6: UINT,  # tcpControlBits (1 or 2 bytes)
    7: UINT,  # sourceTransportPort
    8: IPV4,  # sourceIPv4Address
    10: UINT,  # ingressInterface
    11: UINT,  # destinationTransportPort
    12: IPV4,  # destinationIPv4Address
    14: UINT,  # egressInterface
    21: UINT,  # flowEndSysUpTime / LAST_SWITCHED
    22: UINT,  # flowStartSysUpTime / FIRST_SWITCHED
    23: UINT,  # postOctetDeltaCount / OUT_BYTES
    24: UINT,  # postPacketDeltaCount / OUT_PKTS
    27: IPV6,  # sourceIPv6Address
    28: IPV6,  # destinationIPv6Address
    32: UINT,  # icmpTypeCodeIPv4 (type << 8 | code)
    34: UINT,  # samplingInterval
    48: UINT,  # samplerId / FLOW_SAMPLER_ID
    50: UINT,  # samplerRandomInterval / FLOW_SAMPLER_RANDOM_INTERVAL
    61: UINT,  # flowDirection
    85: UINT,  # octetTotalCount
    86: UINT,  # packetTotalCount
    139: UINT,  # icmpTypeCodeIPv6
    150: UINT,  # flowStartSeconds
    151: UINT,  # flowEndSeconds
    152: UINT,  # flowStartMilliseconds
    153: UINT,  # flowEndMilliseconds
    154: NTP,  # flowStartMicroseconds
    155: NTP,  # flowEndMicroseconds
    156: NTP,  # flowStartNanoseconds
    157: NTP,  # flowEndNanoseconds
    158: UINT,  # flowStartDeltaMicroseconds
    159: UINT,  # flowEndDeltaMicroseconds
    160: UINT,  # systemInitTimeMilliseconds
    176: UINT,  # icmpTypeIPv4
    177: UINT,  # icmpCodeIPv4
    178: UINT,  # icmpTypeIPv6
    179: UINT,  # icmpCodeIPv6
    180: UINT,  # udpSourcePort
    181: UINT,  # udpDestinationPort
    182: UINT,  # tcpSourcePort
    183: UINT,  # tcpDestinationPort
    225: IPV4,  # postNATSourceIPv4Address
    226: IPV4,  # postNATDestinationIPv4Address
    227: UINT,  # postNAPTSourceTransportPort
    228: UINT,  # postNAPTDestinationTransportPort
    231: UINT,  # initiatorOctets (Cisco NSEL forward bytes)
    252: UINT,  # ingressPhysicalInterface
    253: UINT,  # egressPhysicalInterface
    281: IPV6,  # postNATSourceIPv6Address
    282: IPV6,  # postNATDestinationIPv6Address
    298: UINT,  # initiatorPackets
    302: UINT,  # selectorId
    305: UINT,  # samplingPacketInterval
    306: UINT,  # samplingPacketSpace
    309: UINT,  # samplingSize
    310: UINT,  # samplingPopulation
    311: FLOAT,  # samplingProbability
}

#: RFC 5103 biflows: the reverse direction's values are the same elements under this
#: enterprise number. Layouts key them as ``REVERSE | element``.
REVERSE_PEN = 29305
REVERSE = 1 << 16
#: Elements read in their reverse form too: counters, flags, ICMP type and times.
REVERSIBLE = frozenset({1, 2, 6, 23, 24, 32, 85, 86, 139, *range(150, 160), 21, 22})

_ELEMENT_LENGTHS = {IPV4: (4,), IPV6: (16,), NTP: (8,), FLOAT: (4, 8), UINT: range(1, 9)}
_UINT_FORMATS = {1: "u1", 2: ">u2", 4: ">u4", 8: ">u8"}


class FieldSpec(NamedTuple):
    """One field of a template as sent: element id, length, enterprise number (0: IANA).

    ``scope`` marks the scope fields of an options template; NetFlow v9 numbers those in a
    namespace of their own (1 system, 2 interface …), so they are never read as elements."""

    element: int
    length: int
    enterprise: int = 0
    scope: bool = False


class Slot(NamedTuple):
    name: str  # field of the layout's dtype
    length: int
    kind: str


@dataclass(eq=False, frozen=True)
class Layout:
    """A compiled record layout: what to read, where, and how.

    ``dtype`` spans a whole record (``itemsize`` = record length) but names only the
    fields in ``slots``. Templates with variable-length fields have ``varlen`` set: their
    records are first repacked into ``packed`` (a fixed layout of the same slots), see
    ``repack``."""

    fields: tuple[FieldSpec, ...]
    dtype: np.dtype[Any]
    slots: dict[int, Slot]
    #: Per field of ``fields``: is it one of the slots?
    kept: tuple[bool, ...]
    varlen: bool
    min_length: int
    packed: Layout | None = None
    #: Records carry a reverse direction (RFC 5103) with counters of its own.
    biflow: bool = False
    #: Records hold a source or destination address.
    addressed: bool = False
    #: For ``repack``: (length, or -1 if variable; kept?) with runs of fixed fields merged.
    steps: tuple[tuple[int, bool], ...] = ()

    @property
    def record_length(self) -> int:
        return self.dtype.itemsize

    def has(self, element: int) -> bool:
        return element in self.slots


def _slot_format(kind: str, length: int) -> Any:
    if kind == IPV6:
        return (">u8", (2,))
    if kind == IPV4:
        return ">u4"
    if kind == NTP:
        return ">u8"
    if kind == FLOAT:
        return ">f8" if length == 8 else ">f4"
    # 3-, 5-, 6- and 7-byte integers stay raw bytes; records.uint assembles them.
    return _UINT_FORMATS.get(length, ("u1", (length,)))


def compile_layout(fields: tuple[FieldSpec, ...], *, scope_is_element: bool = True) -> Layout:
    """Compile a template's fields (``scope_is_element``: False for NetFlow v9, whose
    scope fields are not information elements)."""
    slots: dict[int, Slot] = {}
    kept: list[bool] = []
    names: list[str] = []
    formats: list[Any] = []
    offsets: list[int] = []
    offset = 0
    for spec in fields:
        element = spec.element
        if spec.enterprise == REVERSE_PEN and element in REVERSIBLE:
            element |= REVERSE
            kind = ELEMENTS.get(spec.element)
        else:
            kind = ELEMENTS.get(element) if spec.enterprise == 0 else None
        if spec.scope and not scope_is_element:
            kind = None
        usable = kind is not None and element not in slots and spec.length in _ELEMENT_LENGTHS[kind]
        kept.append(usable)
        if usable and kind is not None:
            name = f"e{element}"
            slots[element] = Slot(name, spec.length, kind)
            names.append(name)
            formats.append(_slot_format(kind, spec.length))
            offsets.append(offset)
        if spec.length != VARIABLE_LENGTH:
            offset += spec.length
    varlen = any(f.length == VARIABLE_LENGTH for f in fields)
    min_length = offset + sum(1 for f in fields if f.length == VARIABLE_LENGTH)
    packed: Layout | None = None
    if varlen:
        # Offsets after a variable-length field differ per record: such records are
        # repacked to just the slots, in order, and read with this fixed layout.
        packed = compile_layout(tuple(f for f, k in zip(fields, kept, strict=True) if k))
        dtype = packed.dtype
    else:
        dtype = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": offset}
        )
    biflow = any(e & REVERSE and e & 0xFFFF in (1, 2, 23, 24, 85, 86) for e in slots)
    addressed = any(e in slots for e in (8, 12, 27, 28))
    # Runs of fixed-length fields are merged, so that repacking a record costs one slice
    # per run of kept fields and one length read per variable-length field.
    steps: list[tuple[int, bool]] = []
    for spec, keep in zip(fields, kept, strict=True):
        length = -1 if spec.length == VARIABLE_LENGTH else spec.length
        if steps and length >= 0 and steps[-1][0] >= 0 and steps[-1][1] == keep:
            steps[-1] = (steps[-1][0] + length, keep)
        else:
            steps.append((length, keep))
    return Layout(
        fields,
        dtype,
        slots,
        tuple(kept),
        varlen,
        min_length,
        packed,
        biflow,
        addressed,
        tuple(steps) if varlen else (),
    )


def repack(layout: Layout, data: bytes | memoryview) -> tuple[bytes, int, bool]:
    """Records of a variable-length template → bytes in ``layout.packed``, their count, and
    whether the set ended inside a record.

    This is the one per-record Python loop of the decoders, and it runs only for templates
    that really hold variable-length fields (RFC 7011 §7): their record boundaries are only
    known by reading each record's length prefixes, so no fixed dtype can cover them."""
    steps = layout.steps
    out = bytearray()
    count = 0
    pos = 0
    end = len(data)
    view = memoryview(data)
    while end - pos >= layout.min_length:
        start_out = len(out)
        for length, keep in steps:
            if length < 0:
                if pos >= end:
                    pos = end + 1
                    break
                length = view[pos]
                pos += 1
                if length == 255:
                    if pos + 2 > end:
                        pos = end + 1
                        break
                    length = (view[pos] << 8) | view[pos + 1]
                    pos += 2
            if pos + length > end:
                pos = end + 1
                break
            if keep:
                out += view[pos : pos + length]
            pos += length
        if pos > end:
            del out[start_out:]
            return bytes(out), count, True
        count += 1
    return bytes(out), count, False


@dataclass(frozen=True)
class Template:
    template_id: int
    fields: tuple[FieldSpec, ...]
    options: bool
    layout: Layout


TemplateKey = tuple[str, int, int, int]  # exporter, version (9 / 10), source id, template id
DomainKey = tuple[str, int, int]  # exporter, version, source id


@dataclass
class DomainState:
    """What options records said about one exporter's source id / observation domain."""

    #: Sampling rate for records that name no sampler (0: none announced).
    rate: int = 0
    #: Sampler / selector id → sampling rate.
    samplers: dict[int, int] = field(default_factory=dict)
    #: systemInitTimeMilliseconds (-1: not announced).
    init_ms: int = -1


class Pending(NamedTuple):
    """A data set held until its template arrives."""

    key: TemplateKey
    received_ms: int
    data: bytes
    export_ms: int
    uptime_ms: int


_SAVE_FORMAT = 1
#: Data waiting for its template that ``save`` writes, at most (the newest sets first
#: fit): enough for a restart in the middle of a template storm, small enough to rewrite
#: every ten seconds.
SAVE_PENDING_BYTES = 8 * 1024 * 1024


class TemplateCache:
    """Templates and options state per exporter, and data waiting for its template.

    ``stats`` counts what happened (templates learned, refreshed, changed, withdrawn, data
    sets buffered, decoded late, dropped) for the collector's metrics."""

    def __init__(
        self,
        *,
        wait_seconds: float = 60.0,
        wait_bytes: int = 4 * 1024 * 1024,
        max_templates: int = 65536,
        total_wait_bytes: int = 64 * 1024 * 1024,
    ) -> None:
        # Defaults are those of settings.flows.template_wait_seconds / _bytes.
        self.wait_ms = int(wait_seconds * 1000)
        self.wait_bytes = wait_bytes
        #: All exporters together: many exporters each within their own share could
        #: otherwise hold wait_bytes each.
        self.total_wait_bytes = total_wait_bytes
        self._pending_total = 0
        self.max_templates = max_templates
        self.stats: Counter[str] = Counter()
        self.templates: dict[TemplateKey, Template] = {}
        self.domains: dict[DomainKey, DomainState] = {}
        self._layouts: dict[tuple[tuple[FieldSpec, ...], bool], Layout] = {}
        self._pending: OrderedDict[int, Pending] = OrderedDict()
        self._pending_seq = 0
        self._pending_bytes: Counter[str] = Counter()
        self._pending_keys: Counter[TemplateKey] = Counter()

    # --- templates ----------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self.templates)

    def get(self, key: TemplateKey) -> Template | None:
        return self.templates.get(key)

    def layout(self, fields: tuple[FieldSpec, ...], *, scope_is_element: bool) -> Layout:
        """The compiled layout of these fields, compiled on first use only."""
        cache_key = (fields, scope_is_element)
        layout = self._layouts.get(cache_key)
        if layout is None:
            layout = compile_layout(fields, scope_is_element=scope_is_element)
            self._layouts[cache_key] = layout
            self.stats["layouts-compiled"] += 1
        return layout

    def learn(
        self, key: TemplateKey, fields: tuple[FieldSpec, ...], *, options: bool
    ) -> Template | None:
        """Store a template (new, refreshed or changed); None when the cache is full."""
        current = self.templates.get(key)
        if current is not None and current.fields == fields and current.options == options:
            self.stats["templates-refreshed"] += 1
            return current
        if current is None and len(self.templates) >= self.max_templates:
            self.stats["templates-refused"] += 1
            return None
        layout = self.layout(fields, scope_is_element=key[1] != 9)
        template = Template(key[3], fields, options, layout)
        self.templates[key] = template
        self.stats["templates-changed" if current is not None else "templates-learned"] += 1
        return template

    def withdraw(self, key: TemplateKey) -> bool:
        if self.templates.pop(key, None) is None:
            return False
        self.stats["templates-withdrawn"] += 1
        return True

    def withdraw_all(self, domain: DomainKey, *, options: bool) -> int:
        """Withdraw every data (or options) template of one exporter's domain."""
        doomed = [k for k, t in self.templates.items() if k[:3] == domain and t.options == options]
        for k in doomed:
            del self.templates[k]
        self.stats["templates-withdrawn"] += len(doomed)
        return len(doomed)

    def domain(self, key: DomainKey) -> DomainState:
        state = self.domains.get(key)
        if state is None:
            state = self.domains[key] = DomainState()
        return state

    def peek_domain(self, key: DomainKey) -> DomainState | None:
        return self.domains.get(key)

    # --- data waiting for its template --------------------------------------------------

    @property
    def pending(self) -> int:
        return len(self._pending)

    def hold(self, item: Pending) -> tuple[bool, list[Pending], list[Pending]]:
        """Keep a data set until its template comes. Returns whether it was kept (not when
        the exporter's share of the buffer is full, or waiting is off), the sets that
        meanwhile waited too long, and the oldest sets of any exporter pushed out to keep
        all exporters together within ``total_wait_bytes`` (both removed)."""
        expired = self._expire_oldest(item.received_ms)
        exporter = item.key[0]
        size = len(item.data)
        if (
            self.wait_ms <= 0
            or self._pending_bytes[exporter] + size > self.wait_bytes
            or size > self.total_wait_bytes
        ):
            self.stats["data-sets-dropped"] += 1
            return False, expired, []
        evicted: list[Pending] = []
        while self._pending_total + size > self.total_wait_bytes:
            evicted.append(self._forget(next(iter(self._pending))))
        self.stats["data-sets-evicted"] += len(evicted)
        self._pending_seq += 1
        self._pending[self._pending_seq] = item
        self._pending_bytes[exporter] += size
        self._pending_total += size
        self._pending_keys[item.key] += 1
        self.stats["data-sets-buffered"] += 1
        return True, expired, evicted

    def release(self, key: TemplateKey) -> list[Pending]:
        """The data sets that waited for this template, oldest first (and forget them)."""
        if key not in self._pending_keys:
            return []
        seqs = [s for s, p in self._pending.items() if p.key == key]
        out = [self._forget(s) for s in seqs]
        self.stats["data-sets-released"] += len(out)
        return out

    def expire(self, now_ms: int) -> list[Pending]:
        """Data sets that waited longer than ``wait_seconds`` (removed)."""
        limit = now_ms - self.wait_ms
        seqs = [s for s, p in self._pending.items() if p.received_ms < limit]
        out = [self._forget(s) for s in seqs]
        self.stats["data-sets-expired"] += len(out)
        return out

    def _expire_oldest(self, now_ms: int) -> list[Pending]:
        # Arrival order is (nearly) age order, so looking at the front is enough here;
        # expire() does the full pass.
        limit = now_ms - self.wait_ms
        out: list[Pending] = []
        while self._pending:
            seq, oldest = next(iter(self._pending.items()))
            if oldest.received_ms >= limit:
                break
            out.append(self._forget(seq))
        self.stats["data-sets-expired"] += len(out)
        return out

    def _forget(self, seq: int) -> Pending:
        item = self._pending.pop(seq)
        exporter = item.key[0]
        self._pending_bytes[exporter] -= len(item.data)
        self._pending_total -= len(item.data)
        if self._pending_bytes[exporter] <= 0:
            del self._pending_bytes[exporter]
        self._pending_keys[item.key] -= 1
        if self._pending_keys[item.key] <= 0:
            del self._pending_keys[item.key]
        return item

    # --- persistence --------------------------------------------------------------------

    def save(self, path: str | Path, *, pending_bytes: int = SAVE_PENDING_BYTES) -> None:
        """Write templates, options state and the data waiting for templates (the newest,
        up to ``pending_bytes``) so that a restarted collector decodes at once and
        loses none of that data.

        Atomic: a temporary file in the same directory, fsync, rename, fsync of the
        directory; a crash leaves the previous file or the new one, never half of one."""
        target = Path(path)
        document = {
            "format": _SAVE_FORMAT,
            "templates": [
                {
                    "key": list(key),
                    "options": t.options,
                    "fields": [list(f) for f in t.fields],
                }
                for key, t in self.templates.items()
            ],
            "domains": [
                {
                    "key": list(key),
                    "rate": s.rate,
                    "samplers": [[k, v] for k, v in s.samplers.items()],
                    "init_ms": s.init_ms,
                }
                for key, s in self.domains.items()
            ],
            "pending": self._pending_to_json(pending_bytes),
        }
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, temp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(document, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(temp, target)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        dir_fd = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    @classmethod
    def load(
        cls,
        path: str | Path,
        *,
        wait_seconds: float = 60.0,
        wait_bytes: int = 4 * 1024 * 1024,
        max_templates: int = 65536,
    ) -> TemplateCache:
        """A cache with the templates and options state ``save`` wrote."""
        cache = cls(wait_seconds=wait_seconds, wait_bytes=wait_bytes, max_templates=max_templates)
        source = Path(path)
        try:
            document = json.loads(source.read_text(encoding="utf-8"))
            if document.get("format") != _SAVE_FORMAT:
                raise ValueError(f"format {document.get('format')!r}")
            for entry in document["templates"]:
                exporter, version, domain, tid = entry["key"]
                key: TemplateKey = (str(exporter), int(version), int(domain), int(tid))
                fields = tuple(_field_from_json(f) for f in entry["fields"])
                cache.learn(key, fields, options=bool(entry["options"]))
            for entry in document["domains"]:
                exporter, version, domain = entry["key"]
                state = cache.domain((str(exporter), int(version), int(domain)))
                state.rate = int(entry["rate"])
                state.samplers = {int(k): int(v) for k, v in entry["samplers"]}
                state.init_ms = int(entry["init_ms"])
            for entry in document.get("pending", []):
                exporter, version, domain, tid = entry["key"]
                key = (str(exporter), int(version), int(domain), int(tid))
                data = base64.b64decode(entry["data"], validate=True)
                item = Pending(key, int(entry["received_ms"]), data, *map(int, entry["times"]))
                cache.hold(item)
        except FileNotFoundError:
            raise ValidationFailed(
                f"template cache file {source} does not exist.",
                hint="Start without it; the collector writes it once templates arrive.",
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ValidationFailed(
                f"template cache file {source} cannot be read ({exc}).",
                hint="Delete it: exporters resend their templates within minutes.",
            ) from exc
        cache.stats.clear()
        cache.stats["templates-loaded"] = len(cache)
        cache.stats["data-sets-loaded"] = cache.pending
        return cache

    def _pending_to_json(self, room: int) -> list[dict[str, Any]]:
        """The newest waiting data sets that fit in ``room`` bytes, oldest first.
        Loading holds them again with their own arrival time, so the wait limit still
        counts from when they came."""
        chosen: list[Pending] = []
        for item in reversed(self._pending.values()):
            if len(item.data) > room:
                break
            room -= len(item.data)
            chosen.append(item)
        return [
            {
                "key": list(p.key),
                "received_ms": p.received_ms,
                "times": [p.export_ms, p.uptime_ms],
                "data": base64.b64encode(p.data).decode("ascii"),
            }
            for p in reversed(chosen)
        ]


def _field_from_json(raw: Iterable[Any]) -> FieldSpec:
    element, length, enterprise, scope = raw
    return FieldSpec(int(element), int(length), int(enterprise), bool(scope))
