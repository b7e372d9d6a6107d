"""IPFIX: variable-length and enterprise fields, withdrawal, options with scope, observation
domains, every time encoding, biflows, and malformed messages."""

from __future__ import annotations

import struct

import pytest

from hostwarden.flows.decode import Decoder
from hostwarden.flows.decode.templates import VARIABLE_LENGTH
from hostwarden.flows.schema import FlowSource
from tests.flows.decode_support import (
    EXPORT_SECS,
    EXPORTER,
    data_set,
    flowset,
    ipfix_message,
    ipfix_options_template_set,
    ipfix_template_set,
    ipfix_withdrawal,
    record,
    rows,
)

T = 400
EXPORT_MS = EXPORT_SECS * 1000
V = VARIABLE_LENGTH
BASIC = [(8, 4), (12, 4), (2, 8), (1, 8), (152, 8), (153, 8)]


def _decode(decoder: Decoder, *sets: bytes, **header: int) -> list[dict]:
    result = decoder.decode(ipfix_message(*sets, **header), EXPORTER, 0)
    assert result.errors == [], result.errors
    return rows(result.batch)


def test_variable_length_fields_short_and_long_form() -> None:
    # interfaceName (82) and a 300-byte applicationName-like octet array (96) around the
    # fields that matter: record boundaries move with every record.
    fields = [(8, 4), (82, V), (12, 4), (96, V), (2, 4), (7, 2)]
    records = [
        {8: "192.0.2.1", 82: b"eth0", 12: "198.51.100.1", 96: b"x" * 300, 2: 5, 7: 1000},
        {8: "192.0.2.2", 82: b"", 12: "198.51.100.2", 96: b"y" * 254, 2: 6, 7: 1001},
        {8: "192.0.2.3", 82: b"z" * 255, 12: "198.51.100.3", 96: b"", 2: 7, 7: 1002},
    ]
    got = _decode(Decoder(), ipfix_template_set((T, fields)), data_set(T, fields, records))
    assert [(r["src"], r["dst"], r["packets"], r["src_port"]) for r in got] == [
        ("192.0.2.1", "198.51.100.1", 5, 1000),
        ("192.0.2.2", "198.51.100.2", 6, 1001),
        ("192.0.2.3", "198.51.100.3", 7, 1002),
    ]


def test_a_variable_length_field_running_past_its_set_is_reported() -> None:
    fields = [(8, 4), (82, V), (2, 4)]
    good = record(fields, {8: "192.0.2.1", 82: b"ab", 2: 1})
    bad = bytes([192, 0, 2, 2, 200]) + b"short"  # says 200 bytes follow
    result = Decoder().decode(
        ipfix_message(ipfix_template_set((T, fields)), flowset(T, good + bad, pad=False)),
        EXPORTER,
        0,
    )
    assert [e.reason for e in result.errors] == ["bad-length"]
    assert [r["src"] for r in rows(result.batch)] == ["192.0.2.1"]


def test_enterprise_fields_are_skipped_whatever_their_length() -> None:
    fields = [(8, 4), (1, 4, 9), (12, 4), (100, V, 2636), (2, 4), (8, 4, 3076)]
    record = {8: "192.0.2.1", (1, 9): 99999, 12: "192.0.2.2", (100, 2636): b"vendor", 2: 3,
              (8, 3076): "10.9.9.9"}  # fmt: skip
    (row,) = _decode(Decoder(), ipfix_template_set((T, fields)), data_set(T, fields, [record]))
    assert (row["src"], row["dst"], row["packets"], row["bytes"]) == (
        "192.0.2.1",
        "192.0.2.2",
        3,
        0,
    )


def test_withdrawing_one_template_and_all_of_them() -> None:
    decoder = Decoder()
    other = T + 1
    _decode(decoder, ipfix_template_set((T, BASIC), (other, BASIC)))
    _decode(decoder, ipfix_withdrawal(2, T))
    result = decoder.decode(ipfix_message(data_set(T, BASIC, [{}])), EXPORTER, 0)
    assert (len(result.batch), result.buffered) == (0, 1)  # waits for a new template
    assert len(_decode(decoder, data_set(other, BASIC, [{}]))) == 1
    _decode(decoder, ipfix_withdrawal(2, 2))  # template id 2 in a template set: all of them
    result = decoder.decode(ipfix_message(data_set(other, BASIC, [{}])), EXPORTER, 0)
    assert (len(result.batch), result.buffered) == (0, 2)
    assert decoder.templates.stats["templates-withdrawn"] == 2


def test_withdrawing_all_options_templates_keeps_data_templates() -> None:
    decoder = Decoder()
    _decode(
        decoder,
        ipfix_template_set((T, BASIC)),
        ipfix_options_template_set(500, [(149, 4)], [(305, 4), (306, 4)]),
    )
    _decode(decoder, ipfix_withdrawal(3, 3))
    assert len(decoder.templates) == 1
    assert len(_decode(decoder, data_set(T, BASIC, [{}]))) == 1
    bad = decoder.decode(ipfix_message(ipfix_withdrawal(2, 17)), EXPORTER, 0)
    assert [e.reason for e in bad.errors] == ["bad-template"]


def test_options_with_scope_set_sampling_and_system_start_of_their_domain() -> None:
    decoder = Decoder()
    scope = [(149, 4)]  # observationDomainId
    options = [(160, 8), (305, 4), (306, 4), (304, 2)]
    fields = [(8, 4), (12, 4), (2, 4), (1, 4), (22, 4), (21, 4)]
    got = _decode(
        decoder,
        ipfix_options_template_set(500, scope, options),
        data_set(500, [*scope, *options], [{149: 5, 160: EXPORT_MS - 60_000, 305: 1, 306: 99}]),
        ipfix_template_set((T, fields)),
        data_set(T, fields, [{2: 2, 1: 80, 22: 10_000, 21: 12_500}]),
        domain=5,
    )
    assert [(r["packets"], r["bytes"], r["sampling"]) for r in got] == [(200, 8000, 100)]
    assert (got[0]["start"], got[0]["end"]) == (EXPORT_MS - 50_000, EXPORT_MS - 47_500)
    # Another observation domain of the same exporter has neither templates nor options.
    other = decoder.decode(ipfix_message(data_set(T, fields, [{}]), domain=6), EXPORTER, 0)
    assert other.buffered == 1


def test_uptime_times_without_a_system_start_fall_back_to_the_export_time() -> None:
    fields = [(8, 4), (22, 4), (21, 4)]
    result = Decoder().decode(
        ipfix_message(ipfix_template_set((T, fields)), data_set(T, fields, [{22: 5, 21: 9}])),
        EXPORTER,
        0,
    )
    assert [e.reason for e in result.errors] == ["no-init-time"]
    (row,) = rows(result.batch)
    assert row["start"] == row["end"] == EXPORT_MS


def _ntp(ms: int, *, nano: bool = False) -> int:
    seconds, rest = divmod(ms, 1000)
    fraction = (rest << 32) // 1000 + (1 if nano else 0)
    return ((seconds + 2_208_988_800) << 32) | fraction


@pytest.mark.parametrize(
    ("fields", "values"),
    [
        ([(150, 4), (151, 4)], {150: EXPORT_SECS - 9, 151: EXPORT_SECS - 2}),
        ([(152, 8), (153, 8)], {152: EXPORT_MS - 8_750, 153: EXPORT_MS - 1_250}),
        ([(154, 8), (155, 8)], {154: _ntp(EXPORT_MS - 8_750), 155: _ntp(EXPORT_MS - 1_250)}),
        (
            [(156, 8), (157, 8)],
            {156: _ntp(EXPORT_MS - 8_750, nano=True), 157: _ntp(EXPORT_MS - 1_250, nano=True)},
        ),
        ([(158, 4), (159, 4)], {158: 8_750_000, 159: 1_250_400}),
        ([(160, 8), (22, 4), (21, 4)], {160: EXPORT_MS - 100_000, 22: 91_250, 21: 98_750}),
    ],
    ids=["seconds", "milliseconds", "microseconds", "nanoseconds", "delta", "sysuptime"],
)
def test_every_time_encoding_gives_utc_milliseconds(fields: list, values: dict) -> None:
    fields = [(8, 4), *fields]
    (row,) = _decode(Decoder(), ipfix_template_set((T, fields)), data_set(T, fields, [values]))
    if fields[1][0] == 150:
        assert (row["start"], row["end"]) == (EXPORT_MS - 9_000, EXPORT_MS - 2_000)
    elif fields[1][0] == 158:
        assert (row["start"], row["end"]) == (EXPORT_MS - 8_750, EXPORT_MS - 1_251)
    else:
        assert (row["start"], row["end"]) == (EXPORT_MS - 8_750, EXPORT_MS - 1_250)


def test_sampling_probability_population_and_selector_ids() -> None:
    decoder = Decoder()
    probability = [(8, 4), (2, 4), (311, 8)]
    records = [{2: 1, 311: struct.unpack(">Q", struct.pack(">d", 0.001))[0]}]
    (row,) = _decode(
        decoder, ipfix_template_set((T, probability)), data_set(T, probability, records)
    )
    assert row["sampling"] == 1000
    population = [(8, 4), (2, 4), (309, 4), (310, 4)]
    (row,) = _decode(
        decoder,
        ipfix_template_set((T + 1, population)),
        data_set(T + 1, population, [{2: 1, 309: 1, 310: 64}]),
    )
    assert row["sampling"] == 64
    # Selectors announced per selectorId (a scope field), named by the data records.
    scope = [(302, 4)]
    options = [(305, 4), (306, 4)]
    data = [(8, 4), (2, 4), (302, 4)]
    got = _decode(
        decoder,
        ipfix_options_template_set(600, scope, options),
        data_set(600, [*scope, *options], [{302: 1, 305: 1, 306: 9}, {302: 2, 305: 1, 306: 0}]),
        ipfix_template_set((T + 2, data)),
        data_set(T + 2, data, [{2: 1, 302: 1}, {2: 1, 302: 2}]),
    )
    assert [r["sampling"] for r in got] == [10, 1]


def test_a_biflow_becomes_a_record_per_direction_that_saw_traffic() -> None:
    reverse = 29305
    fields = [(8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (10, 4), (14, 4), (61, 1),
              (2, 4), (1, 4), (6, 1), (2, 4, reverse), (1, 4, reverse), (6, 1, reverse),
              (152, 8), (153, 8)]  # fmt: skip
    both = {8: "192.0.2.1", 12: "198.51.100.2", 7: 5000, 11: 80, 4: 6, 10: 1, 14: 2, 61: 0,
            2: 3, 1: 180, 6: 0x02, (2, reverse): 2, (1, reverse): 900, (6, reverse): 0x12,
            152: EXPORT_MS - 10, 153: EXPORT_MS}  # fmt: skip
    only_back = {**both, 2: 0, 1: 0}
    got = _decode(
        Decoder(), ipfix_template_set((T, fields)), data_set(T, fields, [both, only_back])
    )
    keys = ("src", "dst", "src_port", "dst_port", "in_if", "out_if", "direction", "packets",
            "bytes", "tcp_flags")  # fmt: skip
    assert sorted(tuple(r[k] for k in keys) for r in got) == sorted(
        [
            ("192.0.2.1", "198.51.100.2", 5000, 80, 1, 2, 0, 3, 180, 0x02),
            ("198.51.100.2", "192.0.2.1", 80, 5000, 2, 1, 1, 2, 900, 0x12),
            ("198.51.100.2", "192.0.2.1", 80, 5000, 2, 1, 1, 2, 900, 0x12),
        ]
    )


def test_padding_after_templates_and_records_is_ignored() -> None:
    template = ipfix_template_set((T, BASIC))
    padded_template = flowset(2, template[4:] + bytes(3), pad=False)
    data = data_set(T, BASIC, [{2: 1}])
    padded_data = flowset(T, data[4:] + bytes(7), pad=False)  # shorter than a record
    got = _decode(Decoder(), padded_template, padded_data)
    assert [r["packets"] for r in got] == [1]
    assert got[0]["source"] == FlowSource.IPFIX


def test_message_length_and_set_framing() -> None:
    message = ipfix_message(ipfix_template_set((T, BASIC)), data_set(T, BASIC, [{2: 1}, {2: 2}]))
    longer = Decoder().decode(message + b"junk", EXPORTER, 0)  # after the message: ignored
    assert longer.errors == [] and len(longer.batch) == 2
    cut = Decoder().decode(message[:-10], EXPORTER, 0)
    assert [e.reason for e in cut.errors] == ["truncated", "truncated"]
    assert len(cut.batch) == 1
    wrong = bytearray(message)
    wrong[2:4] = struct.pack(">H", 12)
    assert [e.reason for e in Decoder().decode(bytes(wrong), EXPORTER, 0).errors] == ["bad-length"]
    reserved = Decoder().decode(ipfix_message(flowset(1, b"abcd")), EXPORTER, 0)
    assert [e.reason for e in reserved.errors] == ["bad-set"]


def test_broken_ipfix_templates() -> None:
    cases = {
        "template ids start at 256": ipfix_template_set((17, BASIC)),
        "scope fields": ipfix_options_template_set(500, [], [(305, 4)]),
        "its set holds": flowset(2, struct.pack(">HHHH", T, 40, 8, 4), pad=False),
    }
    for expected, broken in cases.items():
        result = Decoder().decode(ipfix_message(broken), EXPORTER, 0)
        assert [e.reason for e in result.errors] == ["bad-template"], expected
        assert expected in result.errors[0].detail, result.errors


def test_records_without_addresses_are_counted_not_stored() -> None:
    # An application table: names (variable length) and counters, no addresses.
    fields = [(95, 4), (96, V), (2, 4), (1, 8)]
    decoder = Decoder()
    got = _decode(decoder, ipfix_template_set((T, fields)), data_set(T, fields, [{96: b"dns"}, {}]))
    assert got == []
    assert decoder.templates.stats["records-without-addresses"] == 2
