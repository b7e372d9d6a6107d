"""Flow export decoders: the protocol is detected from each datagram and dispatched.

    decoder = Decoder(TemplateCache.load(path) if path.exists() else None)
    result = decoder.decode(payload, exporter="192.0.2.1", received_ms=now_ms)
    result.batch, result.errors, result.counters

One ``Decoder`` per collector worker: it keeps template state across datagrams. Nothing in
a datagram makes it raise; every problem becomes a ``DecodeError`` and the rest of the
datagram is still decoded where its framing allows.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from typing import Protocol

from hostwarden.flows.decode.base import DecodeError, DecodeResult, InterfaceCounters
from hostwarden.flows.decode.detect import detect_protocol
from hostwarden.flows.decode.ipfix import IpfixDecoder
from hostwarden.flows.decode.netflow5 import Netflow5Decoder
from hostwarden.flows.decode.netflow9 import Netflow9Decoder
from hostwarden.flows.decode.records import RecordSink
from hostwarden.flows.decode.templated import report_expired
from hostwarden.flows.decode.templates import TemplateCache

__all__ = [
    "DecodeError",
    "DecodeResult",
    "Decoder",
    "InterfaceCounters",
    "TemplateCache",
    "detect_protocol",
]

log = logging.getLogger(__name__)


class _Sflow(Protocol):
    def decode(self, payload: bytes, exporter: str, received_ms: int) -> DecodeResult: ...


class Decoder:
    """Decodes NetFlow v5, v9, IPFIX and sFlow v5 datagrams into flow batches."""

    def __init__(
        self,
        templates: TemplateCache | None = None,
        *,
        wait_seconds: float | None = None,
        wait_bytes: int | None = None,
    ) -> None:
        """``wait_seconds`` / ``wait_bytes`` (settings.flows.template_wait_*), if given,
        bound how long and how much data may wait for its template, also in a loaded
        ``templates``; otherwise the cache's own limits (the settings' defaults) hold."""
        self.templates = templates if templates is not None else TemplateCache()
        if wait_seconds is not None:
            self.templates.wait_ms = int(wait_seconds * 1000)
        if wait_bytes is not None:
            self.templates.wait_bytes = wait_bytes
        self._v5 = Netflow5Decoder()
        self._v9 = Netflow9Decoder(self.templates)
        self._ipfix = IpfixDecoder(self.templates)
        self._sflow: _Sflow | None = None
        self._sflow_missing = False
        # The first two bytes name NetFlow and IPFIX (sFlow's are zero): one dict lookup
        # instead of detect_protocol's checks, a tenth of the cost of a datagram.
        self._by_head: dict[bytes, Callable[[bytes, str, int, RecordSink], None]] = {
            b"\x00\x05": self._v5.feed,
            b"\x00\x09": self._v9.feed,
            b"\x00\x0a": self._ipfix.feed,
        }

    def decode(self, payload: bytes, exporter: str, received_ms: int) -> DecodeResult:
        """One datagram from ``exporter`` (its address) received at ``received_ms``."""
        return self.decode_many(((payload, exporter, received_ms),))

    def decode_many(self, datagrams: Iterable[tuple[bytes, str, int]]) -> DecodeResult:
        """Several datagrams (payload, exporter, received_ms) in arrival order, as one batch.

        The same as decoding them one by one, but data sets of one template are decoded
        together across datagrams: much faster for imports and busy collectors."""
        sink = RecordSink()
        by_head = self._by_head
        for payload, exporter, received_ms in datagrams:
            try:
                data = bytes(payload)  # the same object when it is bytes already
                feed = by_head.get(data[:2])
                if feed is None:
                    self._feed(data, exporter, received_ms, sink)
                else:
                    feed(data, exporter, received_ms, sink)
            except Exception as exc:  # a decoder bug must not stop a collector
                log.exception("flow decoder failed on a datagram from %s", exporter)
                sink.error(exporter, "decoder-bug", f"{type(exc).__name__}: {exc}")
        return sink.result(self.templates.pending)

    def expire(self, now_ms: int) -> DecodeResult:
        """Drop data that waited longer than the cache allows for its template."""
        sink = RecordSink()
        report_expired(sink, self.templates.expire(now_ms), self.templates.wait_ms)
        return sink.result(self.templates.pending)

    def _feed(self, payload: bytes, exporter: str, received_ms: int, sink: RecordSink) -> None:
        protocol = detect_protocol(payload)
        if protocol == "netflow5":
            self._v5.feed(payload, exporter, received_ms, sink)
        elif protocol == "netflow9":
            self._v9.feed(payload, exporter, received_ms, sink)
        elif protocol == "ipfix":
            self._ipfix.feed(payload, exporter, received_ms, sink)
        elif protocol == "sflow5":
            sflow = self._sflow_decoder()
            if sflow is None:
                sink.error(exporter, "unsupported", "sFlow datagram; no sFlow decoder installed")
            else:
                sink.merge(sflow.decode(payload, exporter, received_ms))
        elif len(payload) < 4:
            sink.error(exporter, "truncated", f"datagram of {len(payload)} bytes")
        else:
            sink.error(
                exporter,
                "bad-version",
                f"not NetFlow v5/v9, IPFIX or sFlow v5 (starts {payload[:4].hex()})",
            )

    def _sflow_decoder(self) -> _Sflow | None:
        # Imported on first use, by name: the sFlow decoder lives in its own module.
        if self._sflow is None and not self._sflow_missing:
            try:
                module = importlib.import_module("hostwarden.flows.decode.sflow")
                self._sflow = module.SflowDecoder()
            except (ImportError, AttributeError):
                self._sflow_missing = True
        return self._sflow
