"""What NetFlow v9 and IPFIX share: data sets read through the template cache, options
records applied to their exporter's domain, data that came first held and decoded late."""

from __future__ import annotations

from collections import Counter

import numpy as np

from hostwarden.flows.decode.base import DecodeResult
from hostwarden.flows.decode.records import Context, RecordSink, get, record_rates
from hostwarden.flows.decode.templates import (
    VARIABLE_LENGTH,
    DomainKey,
    FieldSpec,
    Layout,
    Pending,
    Template,
    TemplateCache,
    TemplateKey,
    repack,
)
from hostwarden.flows.schema import FlowSource

#: Samplers remembered per exporter domain; more are not believed.
MAX_SAMPLERS = 1024


class TemplatedDecoder:
    """Base of the v9 and IPFIX decoders: everything after a set has been cut out."""

    version: int
    source: FlowSource
    name: str

    def __init__(self, cache: TemplateCache | None = None) -> None:
        self.cache = cache if cache is not None else TemplateCache()
        # The bytes each template came as, with what they compiled to. Exporters resend
        # templates every few seconds, unchanged; parsing one again took a quarter of
        # the decode time of the datagram carrying it.
        self._raw: dict[TemplateKey, tuple[bytes, Template]] = {}

    def unchanged(self, key: TemplateKey, raw: bytes) -> bool:
        """Whether ``raw`` is the template this key already has (then it counts as
        refreshed, with nothing to parse or check)."""
        seen = self._raw.get(key)
        if seen is None or seen[0] != raw or self.cache.templates.get(key) is not seen[1]:
            return False
        self.cache.stats["templates-refreshed"] += 1
        return True

    def decode(self, payload: bytes, exporter: str, received_ms: int) -> DecodeResult:
        """One datagram on its own (the front door's ``decode_many`` batches them)."""
        sink = RecordSink()
        self.feed(payload, exporter, received_ms, sink)
        return sink.result(self.cache.pending)

    def feed(self, payload: bytes, exporter: str, received_ms: int, sink: RecordSink) -> None:
        raise NotImplementedError

    def learn(
        self,
        sink: RecordSink,
        key: TemplateKey,
        fields: tuple[FieldSpec, ...],
        *,
        options: bool,
        raw: bytes | None = None,
    ) -> None:
        """Store a template after checking it, then decode the data that waited for it.
        ``raw``: the bytes it came as, so that ``unchanged`` recognises them next time."""
        exporter, _, domain, tid = key
        what = f"{self.name} {'options ' if options else ''}template {tid} of source {domain}"
        if tid < 256:
            sink.error(exporter, "bad-template", f"{what}: template ids start at 256")
            return
        if not fields:
            sink.error(exporter, "bad-template", f"{what} has no fields")
            return
        if sum(f.length for f in fields if f.length != VARIABLE_LENGTH) == 0 and not any(
            f.length == VARIABLE_LENGTH for f in fields
        ):
            sink.error(exporter, "bad-template", f"{what} describes records of 0 bytes")
            return
        template = self.cache.learn(key, fields, options=options)
        if template is None:
            sink.error(
                exporter,
                "template-limit",
                f"{what} refused: the cache holds {self.cache.max_templates} templates",
            )
            return
        if raw is not None:
            if len(self._raw) >= self.cache.max_templates:
                self._raw.clear()  # withdrawn templates' entries would pile up
            self._raw[key] = (raw, template)
        for item in self.cache.release(key):
            self.apply(sink, key, template, item.data, item.export_ms, item.uptime_ms)

    def data_set(
        self,
        sink: RecordSink,
        key: TemplateKey,
        data: bytes | memoryview,
        export_ms: int,
        uptime_ms: int,
        received_ms: int,
    ) -> None:
        if not data:
            return
        template = self.cache.templates.get(key)
        if template is not None:
            self.apply(sink, key, template, data, export_ms, uptime_ms)
            return
        pending = Pending(key, received_ms, bytes(data), export_ms, uptime_ms)
        held, expired, evicted = self.cache.hold(pending)
        report_expired(sink, expired, self.cache.wait_ms)
        report_evicted(sink, evicted, self.cache.total_wait_bytes)
        if not held:
            exporter, _, domain, tid = key
            sink.error(
                exporter,
                "no-template",
                f"{self.name} data set for template {tid} of source {domain} came before "
                f"its template and the exporter's waiting buffer "
                f"({self.cache.wait_bytes} bytes) is full: dropped",
            )

    def apply(
        self,
        sink: RecordSink,
        key: TemplateKey,
        template: Template,
        data: bytes | memoryview,
        export_ms: int,
        uptime_ms: int,
    ) -> None:
        """Decode a data set with its template: records to the sink, options to the cache."""
        layout = template.layout
        if layout.varlen:
            data, count, overrun = repack(layout, data)
            assert layout.packed is not None
            layout = layout.packed
            if overrun:
                sink.error(
                    key[0],
                    "bad-length",
                    f"{self.name} data set for template {key[3]} of source {key[2]}: a "
                    "variable-length field runs past the end of its set",
                )
        else:
            size = layout.dtype.itemsize
            count = len(data) // size
            if len(data) != count * size:
                data = data[: count * size]
        if not count:
            return
        domain: DomainKey = key[:3]
        if template.options:
            self.options_records(domain, layout, data, count)
            return
        if not layout.addressed:
            # Neither a source nor a destination address: nothing to attribute or search
            # by, so not stored (such templates carry application or interface tables).
            self.cache.stats["records-without-addresses"] += count
            return
        state = self.cache.domains.get(domain)
        if state is None:
            ctx = Context(key[0], export_ms, uptime_ms, -1, 1, None)
        else:
            rate = state.rate or (
                next(iter(state.samplers.values())) if len(state.samplers) == 1 else 1
            )
            # A copy: records are decoded at the end of the call, after options records of
            # later datagrams may have changed the samplers.
            samplers = dict(state.samplers) if state.samplers else None
            ctx = Context(key[0], export_ms, uptime_ms, state.init_ms, rate, samplers)
        sink.add(layout, self.source, data, count, ctx)

    def options_records(
        self, domain: DomainKey, layout: Layout, data: bytes | memoryview, count: int
    ) -> None:
        """Take sampling rates and the system start from options records.

        A rate with a sampler / selector id is that sampler's; one without is the domain's.
        Options records are few (one per sampler, resent now and then), so they are read one
        by one after the vectorised field extraction."""
        rec = np.frombuffer(data, dtype=layout.dtype, count=count)
        rates = record_rates(layout, rec)
        samplers = get(layout, rec, 48, 302)
        init = get(layout, rec, 160)
        if rates is None and init is None:
            return
        state = self.cache.domain(domain)
        for i in range(count):
            if rates is not None and rates[i] > 0:
                rate = int(min(rates[i], 2**32 - 1))
                if samplers is None:
                    state.rate = rate
                elif len(state.samplers) < MAX_SAMPLERS or int(samplers[i]) in state.samplers:
                    state.samplers[int(samplers[i])] = rate
            if init is not None and 0 < init[i] < 1 << 62:  # larger: corrupt, not a time
                state.init_ms = int(init[i])
        self.cache.stats["options-records"] += count


def report_expired(sink: RecordSink, expired: list[Pending], wait_ms: int) -> None:
    """One error per template whose data waited too long."""
    if not expired:
        return
    per_key = Counter(p.key for p in expired)
    for (exporter, version, domain, tid), n in per_key.items():
        name = "NetFlow v9" if version == 9 else "IPFIX"
        sink.error(
            exporter,
            "template-expired",
            f"{n} {name} data set(s) for template {tid} of source {domain} waited "
            f"{wait_ms / 1000:g} s for a template that never came: dropped",
        )


def report_evicted(sink: RecordSink, evicted: list[Pending], total_bytes: int) -> None:
    """One error per template whose waiting data made room for newer data."""
    per_key = Counter(p.key for p in evicted)
    for (exporter, version, domain, tid), n in per_key.items():
        name = "NetFlow v9" if version == 9 else "IPFIX"
        sink.error(
            exporter,
            "template-wait-full",
            f"{n} {name} data set(s) for template {tid} of source {domain} dropped while "
            f"waiting for their template: the waiting buffer of all exporters "
            f"({total_bytes} bytes) was full and they were the oldest",
        )
