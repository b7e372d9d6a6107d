"""NetFlow v9 (RFC 3954): templates, options templates and data flowsets."""

from __future__ import annotations

import struct

from hostwarden.flows.decode.records import RecordSink
from hostwarden.flows.decode.templated import TemplatedDecoder
from hostwarden.flows.decode.templates import FieldSpec
from hostwarden.flows.schema import FlowSource

HEADER = struct.Struct(">HHIIII")  # version, count, sysUptime, unix_secs, sequence, source id
_SET = struct.Struct(">HH")
_OPTIONS = struct.Struct(">HHH")


class Netflow9Decoder(TemplatedDecoder):
    version = 9
    source = FlowSource.NETFLOW9
    name = "NetFlow v9"

    def feed(self, payload: bytes, exporter: str, received_ms: int, sink: RecordSink) -> None:
        size = len(payload)
        if size < HEADER.size:
            sink.error(exporter, "truncated", f"NetFlow v9 datagram of {size} bytes")
            return
        version, _count, uptime, secs, _seq, source_id = HEADER.unpack_from(payload)
        if version != 9:
            sink.error(exporter, "bad-version", f"version {version} in a NetFlow v9 decoder")
            return
        # The header's count (templates + records) is not checked: exporters disagree on
        # what it counts, and the flowset lengths alone delimit the datagram.
        export_ms = secs * 1000
        pos = HEADER.size
        view = memoryview(payload)  # sets are sliced without copying
        while size - pos >= _SET.size:
            set_id, length = _SET.unpack_from(payload, pos)
            if length < _SET.size:
                if any(payload[pos:]):
                    sink.error(
                        exporter, "bad-length", f"flowset {set_id} at byte {pos}: length {length}"
                    )
                return  # all zeros: padding after the last flowset
            end = pos + length
            if end > size:
                sink.error(
                    exporter,
                    "truncated",
                    f"flowset {set_id} at byte {pos} claims {length} bytes, {size - pos} remain",
                )
                end = size
            body = view[pos + _SET.size : end]
            if set_id == 0:
                self._templates(sink, exporter, source_id, body)
            elif set_id == 1:
                self._options_templates(sink, exporter, source_id, body)
            elif set_id < 256:
                sink.error(exporter, "bad-set", f"reserved flowset id {set_id} at byte {pos}")
            else:
                key = (exporter, 9, source_id, set_id)
                self.data_set(sink, key, body, export_ms, uptime, received_ms)
            pos = end

    def _templates(self, sink: RecordSink, exporter: str, source_id: int, body: memoryview) -> None:
        pos = 0
        while len(body) - pos >= 4:
            tid, count = _SET.unpack_from(body, pos)
            if tid == 0 and count == 0:
                return  # padding
            need = 4 + 4 * count
            if need > len(body) - pos:
                sink.error(
                    exporter,
                    "bad-template",
                    f"NetFlow v9 template {tid} of source {source_id} has {count} fields, "
                    f"its flowset holds {(len(body) - pos - 4) // 4}",
                )
                return
            key = (exporter, 9, source_id, tid)
            raw = bytes(body[pos : pos + need])
            if self.unchanged(key, raw):
                pos += need
                continue
            pairs = struct.unpack_from(f">{2 * count}H", body, pos + 4)
            fields = tuple(FieldSpec(pairs[i], pairs[i + 1]) for i in range(0, 2 * count, 2))
            pos += need
            if self._variable(sink, exporter, source_id, tid, fields):
                continue
            self.learn(sink, key, fields, options=False, raw=raw)

    def _options_templates(
        self, sink: RecordSink, exporter: str, source_id: int, body: memoryview
    ) -> None:
        pos = 0
        while len(body) - pos >= _OPTIONS.size:
            tid, scope_length, options_length = _OPTIONS.unpack_from(body, pos)
            if tid == 0:
                return  # padding
            what = f"NetFlow v9 options template {tid} of source {source_id}"
            if scope_length % 4 or options_length % 4:
                sink.error(
                    exporter,
                    "bad-template",
                    f"{what}: scope and option lengths ({scope_length}, {options_length}) "
                    "must be multiples of 4",
                )
                return
            need = _OPTIONS.size + scope_length + options_length
            if need > len(body) - pos:
                sink.error(
                    exporter,
                    "bad-template",
                    f"{what} needs {need} bytes, its flowset holds {len(body) - pos}",
                )
                return
            words = struct.unpack_from(
                f">{(scope_length + options_length) // 2}H", body, pos + _OPTIONS.size
            )
            scopes = scope_length // 4
            fields = tuple(
                FieldSpec(words[i], words[i + 1], 0, i // 2 < scopes)
                for i in range(0, len(words), 2)
            )
            pos += need
            if self._variable(sink, exporter, source_id, tid, fields):
                continue
            self.learn(sink, (exporter, 9, source_id, tid), fields, options=True)

    @staticmethod
    def _variable(
        sink: RecordSink, exporter: str, source_id: int, tid: int, fields: tuple[FieldSpec, ...]
    ) -> bool:
        # v9 has no variable-length encoding: a 65535-byte field is a broken template.
        if any(f.length == 65535 for f in fields):
            sink.error(
                exporter,
                "bad-template",
                f"NetFlow v9 template {tid} of source {source_id} has a 65535-byte field",
            )
            return True
        return False
