"""Nothing in a datagram makes the decoder raise: truncation at every byte, corrupted bytes,
garbage and wrong versions all become counted errors; and the protocol front door."""

from __future__ import annotations

import random
import struct
from collections.abc import Iterator

import pytest

from hostwarden.flows.decode import Decoder
from hostwarden.flows.pcap import read_udp_datagrams
from tests.flows.capture_support import FIXTURES
from tests.flows.decode_support import (
    EXPORTER,
    data_set,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    v5_datagram,
    v9_datagram,
    v9_options_template_set,
    v9_template_set,
)

KNOWN_REASONS = {
    "truncated",
    "bad-version",
    "bad-length",
    "bad-template",
    "bad-set",
    "no-template",
    "template-expired",
    "template-limit",
    "no-init-time",
}


def _hand_built() -> list[bytes]:
    fields = [(8, 4), (12, 4), (2, 4), (1, 3), (82, 65535), (27, 16), (22, 4), (21, 4)]
    v9_fields = [f for f in fields if f[1] != 65535]
    return [
        v5_datagram([{}, {"proto": 1}], sampling=0x4000 | 10),
        v9_datagram(
            v9_template_set((256, v9_fields)),
            v9_options_template_set(257, [(1, 4)], [(34, 4), (48, 1)]),
            data_set(257, [(1, 4), (34, 4), (48, 1)], [{34: 10, 48: 1}]),
            data_set(256, v9_fields, [{2: 1}, {2: 2}]),
        ),
        ipfix_message(
            ipfix_template_set((256, [*fields, (5, 2, 29305), (2, 4, 29305)])),
            ipfix_options_template_set(258, [(149, 4)], [(160, 8), (305, 4), (306, 4)]),
            data_set(258, [(149, 4), (160, 8), (305, 4), (306, 4)], [{160: 1, 305: 1, 306: 1}]),
            data_set(256, [*fields, (5, 2, 29305), (2, 4, 29305)], [{82: b"x" * 300}, {}]),
        ),
    ]


def _fixture_datagrams(first: int = 1000) -> Iterator[tuple[str, list[bytes]]]:
    paths = [*FIXTURES.glob("softflowd-*.pcap"), *FIXTURES.glob("pmacct-nfprobe-*.pcap")]
    for path in sorted(paths):
        datagrams, _ = read_udp_datagrams(path)
        yield path.name, [d.payload for d in datagrams[:first]]


def _assert_handled(decoder: Decoder, payload: bytes) -> None:
    result = decoder.decode(payload, EXPORTER, 0)
    unexpected = [e for e in result.errors if e.reason not in KNOWN_REASONS]
    assert unexpected == [], (payload.hex(), unexpected)


def test_truncation_at_every_byte_offset_never_raises() -> None:
    # The first datagrams of each capture hold its templates, options and first records.
    corpora = [("hand-built", _hand_built()), *_fixture_datagrams(first=2)]
    for name, payloads in corpora:
        for payload in payloads:
            # A decoder that knows the templates (so cut data sets are decoded too) and one
            # that does not (so cut ones wait).
            primed = Decoder()
            for whole in payloads:
                primed.decode(whole, EXPORTER, 0)
            fresh = Decoder()
            for decoder in (primed, fresh):
                # All cuts in one call: each is still a datagram of its own, and the data
                # sets they hold are decoded together (a bug would show as "decoder-bug").
                cuts = [(payload[:cut], EXPORTER, 0) for cut in range(len(payload))]
                errors = decoder.decode_many(cuts).errors
                assert {e.reason for e in errors} <= KNOWN_REASONS, (name, errors)


def test_corrupted_bytes_never_raise() -> None:
    rng = random.Random(5)
    payloads = _hand_built() + [p for _, ps in _fixture_datagrams() for p in ps]
    decoder = Decoder()
    for _ in range(4000):
        data = bytearray(rng.choice(payloads))
        for _ in range(rng.randint(1, 6)):
            at = rng.randrange(len(data))
            data[at] = rng.choice((0, 1, 2, 3, 0xFF, rng.randrange(256)))
        if rng.random() < 0.3:  # also lie about lengths and counts
            at = rng.randrange(max(1, len(data) - 1))
            data[at : at + 2] = struct.pack(">H", rng.choice((0, 1, 3, 4, 255, 65535)))
        _assert_handled(decoder, bytes(data))


def test_garbage_and_wrong_versions_are_named() -> None:
    decoder = Decoder()
    cases = {
        b"": "truncated",
        b"\x00": "truncated",
        b"\x00\x09": "truncated",
        b"\x00\x0a\x00\x10": "truncated",
        b"\x00\x05" + bytes(10): "truncated",
        b"\x00\x07" + bytes(40): "bad-version",
        b"GET / HTTP/1.1\r\n\r\n": "bad-version",
        bytes(range(256)): "bad-version",
    }
    for payload, reason in cases.items():
        result = decoder.decode(payload, EXPORTER, 0)
        assert [e.reason for e in result.errors] == [reason], payload
        assert result.errors[0].exporter == EXPORTER
        assert len(result.batch) == 0


def test_absurd_counts_and_lengths() -> None:
    # A v9 template claiming 65535 fields, an IPFIX set claiming 65535 bytes.
    huge = struct.pack(">HHHH", 0, 8, 256, 65535)
    result = Decoder().decode(v9_datagram(huge), EXPORTER, 0)
    assert [e.reason for e in result.errors] == ["bad-template"]
    result = Decoder().decode(ipfix_message(struct.pack(">HH", 256, 65535) + bytes(8)), EXPORTER, 0)
    assert [e.reason for e in result.errors] == ["truncated"]
    assert result.buffered == 1  # what there was waits for its template


def test_sflow_goes_to_the_sflow_decoder(monkeypatch: pytest.MonkeyPatch) -> None:
    path = FIXTURES / "pmacct-sflow.pcap"
    if not path.exists():
        pytest.skip("pmacct-sflow.pcap is not generated yet")
    datagrams, _ = read_udp_datagrams(path)
    sflow = [d for d in datagrams if d.payload[:4] == b"\x00\x00\x00\x05"]
    try:
        import hostwarden.flows.decode.sflow  # noqa: F401
    except ImportError:
        pass
    else:
        result = Decoder().decode(sflow[0].payload, sflow[0].src_ip, sflow[0].timestamp_ms)
        assert "unsupported" not in {e.reason for e in result.errors}

    import hostwarden.flows.decode as front

    def missing(name: str) -> object:
        raise ImportError(name)

    monkeypatch.setattr(front.importlib, "import_module", missing)
    result = Decoder().decode(sflow[0].payload, sflow[0].src_ip, 0)
    assert [e.reason for e in result.errors] == ["unsupported"]
