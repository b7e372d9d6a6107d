"""Compiled layouts and the template cache: compile once, persist across restarts."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hostwarden.errors import ValidationFailed
from hostwarden.flows.decode import Decoder, TemplateCache
from hostwarden.flows.decode.templates import FieldSpec, compile_layout
from tests.flows.decode_support import (
    EXPORTER,
    data_set,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    rows,
    v9_datagram,
    v9_template_set,
)

FIELDS = [(8, 4), (12, 4), (1, 3), (2, 6), (7, 2), (11, 2), (4, 1), (80, 6), (27, 16)]


def test_a_template_compiles_to_one_big_endian_dtype_over_the_whole_record() -> None:
    layout = compile_layout(tuple(FieldSpec(e, n) for e, n in FIELDS))
    assert layout.record_length == sum(n for _, n in FIELDS)
    dtype = layout.dtype
    assert dtype.names == ("e8", "e12", "e1", "e2", "e7", "e11", "e4", "e27")  # 80: unknown
    assert dtype.fields is not None
    assert dtype.fields["e8"][0] == np.dtype(">u4")
    assert dtype.fields["e7"][1] == 17  # byte offset in the record
    assert dtype.fields["e1"][0] == np.dtype(("u1", (3,)))  # assembled by array ops
    assert dtype.fields["e27"][0] == np.dtype((">u8", (2,)))


def test_a_thousand_exporters_with_one_template_compile_it_once() -> None:
    decoder = Decoder()
    template = v9_template_set((256, FIELDS))
    for i in range(1000):
        result = decoder.decode(v9_datagram(template), f"10.0.{i // 256}.{i % 256}", 0)
        assert result.errors == []
    assert len(decoder.templates) == 1000
    assert decoder.templates.stats["layouts-compiled"] == 1


def test_templates_and_options_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "state" / "templates.json"
    decoder = Decoder()
    options = [(305, 4), (306, 4), (160, 8)]
    fields = [(8, 4), (2, 4), (82, 65535), (22, 4), (1, 4, 29305)]
    message = ipfix_message(
        ipfix_options_template_set(300, [(149, 4)], options),
        data_set(300, [(149, 4), *options], [{305: 1, 306: 4, 160: 1_699_999_000_000}]),
        ipfix_template_set((256, fields)),
        domain=3,
    )
    assert decoder.decode(message, EXPORTER, 0).errors == []
    decoder.templates.save(path)
    assert [p.name for p in path.parent.iterdir()] == ["templates.json"]  # no temp left

    restarted = Decoder(TemplateCache.load(path))
    data = data_set(256, fields, [{8: "192.0.2.5", 2: 3, 82: b"eth1", 22: 1_000}])
    result = restarted.decode(ipfix_message(data, domain=3), EXPORTER, 0)
    assert result.errors == []
    (row,) = rows(result.batch)
    assert (row["src"], row["packets"], row["sampling"]) == ("192.0.2.5", 15, 5)
    assert row["start"] == 1_699_999_001_000
    assert restarted.templates.stats["templates-loaded"] == 2


def test_saving_replaces_the_file_atomically(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "templates.json"
    cache = TemplateCache()
    Decoder(cache).decode(v9_datagram(v9_template_set((256, FIELDS))), EXPORTER, 0)
    cache.save(path)
    before = path.read_bytes()

    def crash(*args: object) -> None:
        raise OSError("disk full")

    Decoder(cache).decode(v9_datagram(v9_template_set((257, FIELDS))), EXPORTER, 0)
    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        cache.save(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["templates.json"]


def test_an_unreadable_cache_file_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    path.write_text("{not json")
    with pytest.raises(ValidationFailed, match="cannot be read") as caught:
        TemplateCache.load(path)
    assert caught.value.hint is not None and "Delete it" in caught.value.hint
    path.write_text(json.dumps({"format": 99}))
    with pytest.raises(ValidationFailed, match="format 99"):
        TemplateCache.load(path)
    with pytest.raises(ValidationFailed, match="does not exist"):
        TemplateCache.load(tmp_path / "missing.json")


def test_the_cache_refuses_templates_beyond_its_limit() -> None:
    decoder = Decoder(TemplateCache(max_templates=2))
    result = decoder.decode(
        v9_datagram(v9_template_set((256, FIELDS), (257, FIELDS), (258, FIELDS))), EXPORTER, 0
    )
    assert [e.reason for e in result.errors] == ["template-limit"]
    assert len(decoder.templates) == 2
    # Refreshing a known one still works at the limit.
    assert decoder.decode(v9_datagram(v9_template_set((256, FIELDS))), EXPORTER, 0).errors == []


def test_the_decoder_applies_the_waiting_limits_to_a_loaded_cache(tmp_path: Path) -> None:
    path = tmp_path / "templates.json"
    TemplateCache().save(path)
    decoder = Decoder(TemplateCache.load(path), wait_seconds=0.5, wait_bytes=1000)
    assert (decoder.templates.wait_ms, decoder.templates.wait_bytes) == (500, 1000)
    early = decoder.decode(v9_datagram(data_set(256, FIELDS, [{}])), EXPORTER, 1_000)
    assert early.buffered == 1
    assert [e.reason for e in decoder.expire(1_501).errors] == ["template-expired"]
    assert Decoder().templates.wait_ms == 60_000  # settings.flows.template_wait_seconds


def test_data_waiting_for_its_template_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "worker-0.bin"
    fields = [(8, 4), (12, 4), (2, 4)]
    data = v9_datagram(data_set(256, fields, [{8: "10.0.0.1", 12: "10.0.0.2", 2: 3}] * 4))
    before = Decoder(TemplateCache(wait_seconds=60))
    assert before.decode(data, EXPORTER, 1_000).buffered == 1
    before.templates.save(path)

    after = Decoder(TemplateCache.load(path), wait_seconds=60)
    assert after.templates.pending == 1
    late = after.decode(v9_datagram(v9_template_set((256, fields))), EXPORTER, 5_000)
    assert [r["packets"] for r in rows(late.batch)] == [3] * 4
    # It still expires counted from when it first came, not from the restart.
    again = Decoder(TemplateCache.load(path), wait_seconds=60)
    assert [e.reason for e in again.expire(61_001).errors] == ["template-expired"]


def test_only_the_newest_waiting_data_is_saved_within_the_bound(tmp_path: Path) -> None:
    path = tmp_path / "worker-0.bin"
    data = v9_datagram(data_set(256, [(8, 4), (2, 4)], [{8: "10.0.0.1", 2: 1}] * 10))
    decoder = Decoder(TemplateCache(wait_seconds=60))
    for i in range(5):
        decoder.decode(data, EXPORTER, 1_000 + i)
    decoder.templates.save(path, pending_bytes=2 * (len(data) - 20))
    saved = json.loads(path.read_text())["pending"]
    assert [p["received_ms"] for p in saved] == [1_003, 1_004]
