"""NetFlow v9: templates per exporter and source id, options sampling, refresh, waiting data,
and broken templates and flowsets."""

from __future__ import annotations

from hostwarden.flows.decode import Decoder, TemplateCache
from hostwarden.flows.schema import FlowSource
from tests.flows.decode_support import (
    EXPORT_SECS,
    EXPORTER,
    data_set,
    flowset,
    rows,
    v9_datagram,
    v9_options_template_set,
    v9_template_set,
)

T = 256
EXPORT_MS = EXPORT_SECS * 1000
#: A typical router template: addresses, ports, counters, interfaces, times, NAT.
FIELDS = [
    (8, 4), (12, 4), (7, 2), (11, 2), (4, 1), (6, 1), (1, 4), (2, 4), (10, 4), (14, 4),
    (22, 4), (21, 4), (61, 1), (225, 4), (226, 4), (227, 2), (228, 2), (5, 1), (15, 4),
]  # fmt: skip
ROW = {
    8: "10.0.0.5", 12: "203.0.113.80", 7: 51000, 11: 443, 4: 6, 6: 0x12, 1: 5000, 2: 7,
    10: 3, 14: 9, 22: 97_000, 21: 99_000, 61: 1, 225: "198.51.100.7", 226: "203.0.113.80",
    227: 61000, 228: 443,
}  # fmt: skip


def _one(decoder: Decoder, *sets: bytes, exporter: str = EXPORTER, **header: int) -> dict:
    result = decoder.decode(v9_datagram(*sets, **header), exporter, 0)
    assert result.errors == []
    (row,) = rows(result.batch)
    return row


def test_template_and_data_in_one_datagram_decode_every_mapped_field() -> None:
    row = _one(Decoder(), v9_template_set((T, FIELDS)), data_set(T, FIELDS, [ROW]))
    assert row == {
        "start": EXPORT_MS - 3_000,
        "end": EXPORT_MS - 1_000,
        "source": FlowSource.NETFLOW9,
        "exporter": EXPORTER,
        "src": "10.0.0.5",
        "dst": "203.0.113.80",
        "src_port": 51000,
        "dst_port": 443,
        "proto": 6,
        "tcp_flags": 0x12,
        "packets": 7,
        "bytes": 5000,
        "sampling": 1,
        "in_if": 3,
        "out_if": 9,
        "direction": 1,
        "nat_src": "198.51.100.7",
        "nat_dst": "203.0.113.80",
        "nat_src_port": 61000,
        "nat_dst_port": 443,
        "local_side": 0,
        "customer_id": -1,
        "instance_id": -1,
    }


def test_ipv6_icmp_and_64_bit_counters() -> None:
    fields = [(27, 16), (28, 16), (4, 1), (139, 2), (85, 8), (86, 8), (281, 16), (61, 1)]
    values = {27: "2001:db8::1", 28: "2001:db8:2::9", 4: 58, 139: 0x8000, 85: 2**40 + 5,
              86: 2**33, 281: "2001:db8:ffff::1", 61: 7}  # fmt: skip
    row = _one(Decoder(), v9_template_set((T, fields)), data_set(T, fields, [values]))
    assert (row["src"], row["dst"], row["nat_src"]) == (
        "2001:db8::1",
        "2001:db8:2::9",
        "2001:db8:ffff::1",
    )
    assert (row["src_port"], row["dst_port"]) == (0, 0x8000)  # echo request: type 128
    assert (row["bytes"], row["packets"]) == (2**40 + 5, 2**33)
    assert row["direction"] == 255  # neither ingress (0) nor egress (1)
    assert row["start"] == row["end"] == EXPORT_MS  # no times sent: the export time


def test_odd_sized_integers_are_read_whole() -> None:
    # Reduced-size encoding: a 3-byte byte count, a 6-byte packet count, a 2-byte flags.
    fields = [(8, 4), (12, 4), (1, 3), (2, 6), (6, 2), (10, 2)]
    values = {1: 0xABCDEF, 2: 0x0102_0304_0506, 6: 0x0118, 10: 65000}
    row = _one(Decoder(), v9_template_set((T, fields)), data_set(T, fields, [values]))
    assert (row["bytes"], row["packets"]) == (0xABCDEF, 0x0102_0304_0506)
    assert row["tcp_flags"] == 0x18  # the classic flags are the low byte
    assert row["in_if"] == 65000


def test_templates_survive_across_datagrams_and_refresh_does_not_recompile() -> None:
    decoder = Decoder()
    decoder.decode(v9_datagram(v9_template_set((T, FIELDS))), EXPORTER, 0)
    for _ in range(3):
        _one(decoder, data_set(T, FIELDS, [ROW]))
        decoder.decode(v9_datagram(v9_template_set((T, FIELDS))), EXPORTER, 0)
    stats = decoder.templates.stats
    assert stats["layouts-compiled"] == 1
    assert stats["templates-learned"] == 1
    assert stats["templates-refreshed"] == 3


def test_a_changed_template_replaces_the_old_one() -> None:
    decoder = Decoder()
    old = [(8, 4), (12, 4), (2, 4)]
    new = [(12, 4), (8, 4), (2, 2), (1, 2)]
    _one(decoder, v9_template_set((T, old)), data_set(T, old, [{8: "192.0.2.1", 2: 1}]))
    row = _one(
        decoder,
        v9_template_set((T, new)),
        data_set(T, new, [{8: "192.0.2.1", 12: "192.0.2.2", 2: 9, 1: 900}]),
    )
    assert (row["src"], row["dst"], row["packets"], row["bytes"]) == (
        "192.0.2.1",
        "192.0.2.2",
        9,
        900,
    )
    assert decoder.templates.stats["templates-changed"] == 1


def test_templates_of_two_exporters_with_the_same_id_do_not_mix() -> None:
    decoder = Decoder()
    a_fields = [(8, 4), (12, 4), (2, 4)]
    b_fields = [(27, 16), (28, 16), (1, 8)]
    decoder.decode(v9_datagram(v9_template_set((T, a_fields))), "192.0.2.1", 0)
    decoder.decode(v9_datagram(v9_template_set((T, b_fields))), "192.0.2.2", 0)
    a = _one(decoder, data_set(T, a_fields, [{8: "10.0.0.1", 2: 5}]), exporter="192.0.2.1")
    b = _one(decoder, data_set(T, b_fields, [{27: "2001:db8::1", 1: 77}]), exporter="192.0.2.2")
    assert (a["src"], a["packets"], a["exporter"]) == ("10.0.0.1", 5, "192.0.2.1")
    assert (b["src"], b["bytes"], b["exporter"]) == ("2001:db8::1", 77, "192.0.2.2")
    # …nor do those of two source ids of one exporter.
    result = decoder.decode(v9_datagram(data_set(T, a_fields, [{}]), source_id=7), EXPORTER, 0)
    assert len(result.batch) == 0 and result.buffered == 1


def test_options_sampling_interval_scales_later_data_of_that_source_only() -> None:
    decoder = Decoder()
    options = v9_options_template_set(300, [(1, 4)], [(34, 4), (35, 1)])
    fields = [(8, 4), (12, 4), (1, 4), (2, 4)]
    decoder.decode(
        v9_datagram(options, data_set(300, [(1, 4), (34, 4), (35, 1)], [{34: 512, 35: 2}])),
        EXPORTER,
        0,
    )
    row = _one(decoder, v9_template_set((T, fields)), data_set(T, fields, [{1: 100, 2: 2}]))
    assert (row["packets"], row["bytes"], row["sampling"]) == (1024, 51200, 512)
    other_source = _one(
        decoder, v9_template_set((T, fields)), data_set(T, fields, [{2: 2}]), source_id=1
    )
    assert (other_source["packets"], other_source["sampling"]) == (2, 1)
    other_exporter = _one(
        decoder, v9_template_set((T, fields)), data_set(T, fields, [{2: 2}]), exporter="192.0.2.9"
    )
    assert other_exporter["sampling"] == 1


def test_sampler_ids_pick_their_own_rate() -> None:
    # Cisco style: an options record per sampler (FLOW_SAMPLER_ID 48, RANDOM_INTERVAL 50),
    # data records naming their sampler.
    decoder = Decoder()
    option_fields = [(48, 1), (49, 1), (50, 4)]
    decoder.decode(
        v9_datagram(
            v9_options_template_set(260, [(1, 4)], option_fields),
            data_set(260, [(1, 4), *option_fields], [{48: 1, 50: 100}, {48: 2, 50: 1000}]),
        ),
        EXPORTER,
        0,
    )
    fields = [(8, 4), (2, 4), (48, 1)]
    result = decoder.decode(
        v9_datagram(
            v9_template_set((T, fields)),
            data_set(T, fields, [{2: 1, 48: 1}, {2: 1, 48: 2}, {2: 1, 48: 3}]),
        ),
        EXPORTER,
        0,
    )
    # An unknown sampler: unsampled, as no default rate was announced.
    assert [r["packets"] for r in rows(result.batch)] == [100, 1000, 1]


def test_a_rate_in_the_data_record_wins() -> None:
    fields = [(8, 4), (2, 4), (34, 4)]
    row = _one(Decoder(), v9_template_set((T, fields)), data_set(T, fields, [{2: 3, 34: 20}]))
    assert (row["packets"], row["sampling"]) == (60, 20)


def test_data_before_its_template_waits_and_is_decoded_when_it_comes() -> None:
    decoder = Decoder()
    early = decoder.decode(v9_datagram(data_set(T, FIELDS, [ROW, ROW])), EXPORTER, 1_000)
    assert (len(early.batch), early.buffered, early.errors) == (0, 1, [])
    late = decoder.decode(v9_datagram(v9_template_set((T, FIELDS))), EXPORTER, 2_000)
    assert late.errors == [] and late.buffered == 0
    assert [r["src"] for r in rows(late.batch)] == ["10.0.0.5", "10.0.0.5"]
    # The header times of the datagram that carried the data are kept.
    assert rows(late.batch)[0]["start"] == EXPORT_MS - 3_000


def test_waiting_data_expires() -> None:
    decoder = Decoder(TemplateCache(wait_seconds=10))
    decoder.decode(v9_datagram(data_set(T, FIELDS, [ROW])), EXPORTER, 1_000)
    decoder.decode(v9_datagram(data_set(T, FIELDS, [ROW])), EXPORTER, 2_000)
    assert decoder.expire(5_000).errors == []
    expired = decoder.expire(11_500)
    assert [e.reason for e in expired.errors] == ["template-expired"]
    assert expired.errors[0].detail.startswith("1 NetFlow v9 data set(s) for template 256")
    assert expired.buffered == 1
    # Expiry also happens on the way, when more data must wait.
    later = decoder.decode(v9_datagram(data_set(T + 1, FIELDS, [ROW])), EXPORTER, 30_000)
    assert [e.reason for e in later.errors] == ["template-expired"]
    assert later.buffered == 1


def test_the_waiting_buffer_is_bounded_per_exporter() -> None:
    payload = v9_datagram(data_set(T, FIELDS, [ROW] * 10))
    decoder = Decoder(TemplateCache(wait_bytes=len(payload) * 2))
    reasons = [[e.reason for e in decoder.decode(payload, EXPORTER, 0).errors] for _ in range(3)]
    assert reasons == [[], [], ["no-template"]]
    assert decoder.decode(payload, "192.0.2.99", 0).errors == []  # another exporter's share
    off = Decoder(TemplateCache(wait_seconds=0)).decode(payload, EXPORTER, 0)
    assert [e.reason for e in off.errors] == ["no-template"] and off.buffered == 0


def test_broken_templates_are_reported_and_the_rest_goes_on() -> None:
    good = [(8, 4), (2, 4)]
    cases = {
        "ids start at 256": v9_template_set((255, good)),
        "has no fields": v9_template_set((300, [])),
        "records of 0 bytes": v9_template_set((301, [(8, 0), (2, 0)])),
        "65535-byte field": v9_template_set((302, [(8, 65535)])),
        "its flowset holds": flowset(0, bytes.fromhex("0130 00ff 0008 0004")),
        "multiples of 4": flowset(1, bytes.fromhex("0131 0003 0004 0001 0004 0002 0004")),
    }
    for expected, broken in cases.items():
        result = Decoder().decode(
            v9_datagram(broken, v9_template_set((T, good)), data_set(T, good, [{2: 4}])),
            EXPORTER,
            0,
        )
        assert [e.reason for e in result.errors] == ["bad-template"], expected
        assert expected in result.errors[0].detail
        assert [r["packets"] for r in rows(result.batch)] == [4], expected


def test_broken_flowsets() -> None:
    good = [(8, 4), (2, 4)]
    template = v9_template_set((T, good))
    data = data_set(T, good, [{2: 1}, {2: 2}])
    reserved = Decoder().decode(v9_datagram(template, flowset(7, b"abcd"), data), EXPORTER, 0)
    assert [e.reason for e in reserved.errors] == ["bad-set"]
    assert len(reserved.batch) == 2
    # A flowset longer than what is left: what it holds whole is still decoded.
    cut = Decoder().decode(v9_datagram(template, data)[:-3], EXPORTER, 0)
    assert [e.reason for e in cut.errors] == ["truncated"]
    assert [r["packets"] for r in rows(cut.batch)] == [1]
    # A length below 4 cannot be skipped: the datagram ends there.
    zero = Decoder().decode(v9_datagram(template, data, b"\x01\x00\x00\x02"), EXPORTER, 0)
    assert [e.reason for e in zero.errors] == ["bad-length"]
    assert len(zero.batch) == 2
    padded = Decoder().decode(v9_datagram(template, data, bytes(3)), EXPORTER, 0)
    assert padded.errors == [] and len(padded.batch) == 2


def test_a_rate_applies_from_its_options_record_on_also_in_bulk() -> None:
    option_fields = [(48, 1), (50, 4)]
    options = v9_options_template_set(260, [(1, 4)], option_fields)
    fields = [(8, 4), (2, 4), (48, 1)]
    template = v9_template_set((T, fields))

    def rate(value: int) -> bytes:
        return v9_datagram(options, data_set(260, [(1, 4), *option_fields], [{48: 1, 50: value}]))

    data = v9_datagram(template, data_set(T, fields, [{2: 1, 48: 1}]))
    result = Decoder().decode_many(
        (payload, EXPORTER, 0) for payload in (rate(10), data, rate(1000), data)
    )
    assert sorted(r["packets"] for r in rows(result.batch)) == [10, 1000]


def test_the_waiting_buffer_is_bounded_across_exporters_oldest_dropped_first() -> None:
    payload = v9_datagram(data_set(T, FIELDS, [ROW] * 10))
    body = len(payload) - 20  # the data set, as it waits
    decoder = Decoder(TemplateCache(total_wait_bytes=body * 3))
    for i in range(3):
        assert decoder.decode(payload, f"192.0.2.{i + 1}", i).errors == []
    fourth = decoder.decode(payload, "192.0.2.4", 3)
    assert [e.reason for e in fourth.errors] == ["template-wait-full"]
    assert fourth.errors[0].exporter == "192.0.2.1", "the oldest waiting set made room"
    assert fourth.buffered == 3
    # The evicted exporter's template finds nothing waiting; the newest one's data decodes.
    template = v9_datagram(v9_template_set((T, FIELDS)))
    assert len(decoder.decode(template, "192.0.2.1", 10).batch) == 0
    assert len(decoder.decode(template, "192.0.2.4", 10).batch) == 10
