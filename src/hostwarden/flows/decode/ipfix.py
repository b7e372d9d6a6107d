"""IPFIX (RFC 7011): templates with enterprise and variable-length fields, options
templates with scope fields, template withdrawal, data sets per observation domain."""

from __future__ import annotations

import struct

from hostwarden.flows.decode.records import RecordSink
from hostwarden.flows.decode.templated import TemplatedDecoder
from hostwarden.flows.decode.templates import FieldSpec
from hostwarden.flows.schema import FlowSource

HEADER = struct.Struct(">HHIII")  # version, length, export time, sequence, domain id
_SET = struct.Struct(">HH")
_FIELD = struct.Struct(">HH")
_ENTERPRISE = struct.Struct(">I")
TEMPLATE_SET = 2
OPTIONS_TEMPLATE_SET = 3


class IpfixDecoder(TemplatedDecoder):
    version = 10
    source = FlowSource.IPFIX
    name = "IPFIX"

    def feed(self, payload: bytes, exporter: str, received_ms: int, sink: RecordSink) -> None:
        size = len(payload)
        if size < HEADER.size:
            sink.error(exporter, "truncated", f"IPFIX message of {size} bytes")
            return
        version, length, export_secs, _seq, domain = HEADER.unpack_from(payload)
        if version != 10:
            sink.error(exporter, "bad-version", f"version {version} in an IPFIX decoder")
            return
        if length < HEADER.size:
            sink.error(exporter, "bad-length", f"IPFIX message length {length} < 16")
            return
        if length > size:
            sink.error(
                exporter, "truncated", f"IPFIX message length {length}, datagram {size} bytes"
            )
        else:
            size = length  # bytes after the message are not part of it
        export_ms = export_secs * 1000
        pos = HEADER.size
        view = memoryview(payload)  # sets are sliced without copying
        while size - pos >= _SET.size:
            set_id, set_length = _SET.unpack_from(payload, pos)
            if set_length < _SET.size:
                sink.error(
                    exporter, "bad-length", f"set {set_id} at byte {pos}: length {set_length}"
                )
                return
            end = pos + set_length
            if end > size:
                sink.error(
                    exporter,
                    "truncated",
                    f"set {set_id} at byte {pos} claims {set_length} bytes, {size - pos} remain",
                )
                end = size
            body = view[pos + _SET.size : end]
            if set_id in (TEMPLATE_SET, OPTIONS_TEMPLATE_SET):
                self._templates(sink, exporter, domain, body, options=set_id == 3)
            elif set_id < 256:
                sink.error(exporter, "bad-set", f"reserved set id {set_id} at byte {pos}")
            else:
                self.data_set(
                    sink, (exporter, 10, domain, set_id), body, export_ms, -1, received_ms
                )
            pos = end
        if size - pos:
            sink.error(exporter, "bad-length", f"{size - pos} bytes after the last set")

    def _templates(
        self, sink: RecordSink, exporter: str, domain: int, body: memoryview, *, options: bool
    ) -> None:
        kind = "options template" if options else "template"
        head = 6 if options else 4
        pos = 0
        while len(body) - pos >= 4:
            tid, count = _SET.unpack_from(body, pos)
            what = f"IPFIX {kind} {tid} of domain {domain}"
            if count == 0:
                pos += 4
                self._withdraw(sink, exporter, domain, tid, options=options)
                continue
            if len(body) - pos < head:
                sink.error(exporter, "bad-template", f"{what}: header cut off")
                return
            scopes = struct.unpack_from(">H", body, pos + 4)[0] if options else 0
            at = pos + head
            fields: list[FieldSpec] = []
            for i in range(count):
                if len(body) - at < _FIELD.size:
                    break
                element, length = _FIELD.unpack_from(body, at)
                at += _FIELD.size
                enterprise = 0
                if element & 0x8000:
                    if len(body) - at < _ENTERPRISE.size:
                        break
                    enterprise = _ENTERPRISE.unpack_from(body, at)[0]
                    at += _ENTERPRISE.size
                fields.append(FieldSpec(element & 0x7FFF, length, enterprise, i < scopes))
            if len(fields) < count:
                sink.error(
                    exporter,
                    "bad-template",
                    f"{what} has {count} fields, its set holds {len(fields)}",
                )
                return
            pos = at
            if options and not 0 < scopes <= count:
                sink.error(exporter, "bad-template", f"{what}: {scopes} scope fields of {count}")
                continue
            self.learn(sink, (exporter, 10, domain, tid), tuple(fields), options=options)

    def _withdraw(
        self, sink: RecordSink, exporter: str, domain: int, tid: int, *, options: bool
    ) -> None:
        """Field count 0 withdraws a template; the set's own id withdraws all of its kind
        (RFC 7011 §8.1)."""
        if tid == (OPTIONS_TEMPLATE_SET if options else TEMPLATE_SET):
            self.cache.withdraw_all((exporter, 10, domain), options=options)
        elif tid >= 256:
            self.cache.withdraw((exporter, 10, domain, tid))
        elif tid != 0:  # 0: padding
            sink.error(exporter, "bad-template", f"IPFIX withdrawal of template id {tid}")
