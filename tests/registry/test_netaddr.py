"""Addresses, prefixes and the 32-hex registry key, and their numpy forms."""

from __future__ import annotations

import ipaddress

import numpy as np
import pytest

from hostwarden.errors import ValidationFailed
from hostwarden.registry import netaddr


def test_ipv4_is_keyed_in_the_ipv4_mapped_part_of_ipv6_space() -> None:
    assert netaddr.address_key("203.0.113.7") == "00000000000000000000ffffcb007107"
    assert netaddr.address_key("::ffff:203.0.113.7") == netaddr.address_key("203.0.113.7")
    assert str(netaddr.key_to_address("00000000000000000000ffffcb007107")) == "203.0.113.7"
    assert netaddr.address_key("2001:db8::1") == "20010db8000000000000000000000001"


def test_prefix_keys_are_the_first_and_last_address() -> None:
    assert netaddr.prefix_keys("203.0.113.0/28") == (
        "00000000000000000000ffffcb007100",
        "00000000000000000000ffffcb00710f",
    )
    first, last = netaddr.prefix_keys("2001:db8:1::/64")
    assert first == "20010db8000100000000000000000000"
    assert last == "20010db800010000ffffffffffffffff"
    assert netaddr.prefix_keys("198.51.100.9") == (
        netaddr.address_key("198.51.100.9"),
        netaddr.address_key("198.51.100.9"),
    )


def test_text_order_of_keys_is_numeric_order_of_addresses() -> None:
    rng = np.random.default_rng(7)
    values = [int(x) for x in rng.integers(0, 2**63, size=200, dtype=np.int64)]
    addresses = [ipaddress.ip_address(v * 3 % 2**128) for v in values]
    addresses += [ipaddress.ip_address(int(v) % 2**32) for v in values]
    keys = [netaddr.address_key(a) for a in addresses]
    numbers = [netaddr.address_int(netaddr.parse_address(a)) for a in addresses]
    assert sorted(keys) == [netaddr.key_of_int(n) for n in sorted(numbers)]


def test_a_prefix_with_host_bits_is_refused_with_the_network_suggested() -> None:
    with pytest.raises(ValidationFailed) as caught:
        netaddr.parse_prefix("203.0.113.5/28")
    assert "host bits" in caught.value.message
    assert "203.0.113.0/28" in str(caught.value)


def test_garbage_is_refused_clearly() -> None:
    with pytest.raises(ValidationFailed, match="not an IP address"):
        netaddr.parse_address("203.0.113.300")
    with pytest.raises(ValidationFailed, match="not an IP address or CIDR prefix"):
        netaddr.parse_prefix("example.com/24")


def test_a_text_read_again_gives_the_same_address_and_garbage_is_refused_every_time() -> None:
    """Texts are read through a cache: a repeat gives the same address, mapped and padded
    forms their own entries with the same result, and a refusal is not remembered."""
    first = netaddr.parse_address(" 203.0.113.7 ")
    assert netaddr.parse_address("203.0.113.7") == first == ipaddress.ip_address("203.0.113.7")
    assert netaddr.parse_address("::ffff:203.0.113.7") == first
    assert isinstance(netaddr.parse_address("::ffff:203.0.113.7"), ipaddress.IPv4Address)
    for _ in range(2):
        with pytest.raises(ValidationFailed, match=r"'203\.0\.113\.300' is not an IP address"):
            netaddr.parse_address("203.0.113.300")


def test_mapped_ipv6_prefix_is_read_as_ipv4() -> None:
    assert str(netaddr.parse_prefix("::ffff:203.0.113.0/120")) == "203.0.113.0/24"
    assert str(netaddr.parse_prefix("203.0.113.7")) == "203.0.113.7/32"


def test_keys_to_hilo_round_trips_through_two_words() -> None:
    texts = ["203.0.113.7", "2001:db8::1", "::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    hi, lo = netaddr.texts_to_hilo(texts)
    assert hi.dtype == np.uint64 and lo.dtype == np.uint64
    back = [str(netaddr.hilo_to_address(h, lo_)) for h, lo_ in zip(hi, lo, strict=True)]
    assert back == texts


def test_ipv4_uint32_and_packed_ipv6_give_the_same_words_as_text() -> None:
    v4 = np.array([int(ipaddress.IPv4Address("203.0.113.7")), 0, 2**32 - 1], dtype=np.uint32)
    hi, lo = netaddr.ipv4_to_hilo(v4)
    everything = "0.0.0.0"  # noqa: S104  (an address value here, not a bind)
    expected = netaddr.texts_to_hilo(["203.0.113.7", everything, "255.255.255.255"])
    assert np.array_equal(hi, expected[0]) and np.array_equal(lo, expected[1])
    packed = np.frombuffer(ipaddress.IPv6Address("2001:db8::7").packed, dtype=np.uint8)
    hi6, lo6 = netaddr.ipv6_bytes_to_hilo(packed.reshape(1, 16))
    exp6 = netaddr.texts_to_hilo(["2001:db8::7"])
    assert hi6[0] == exp6[0][0] and lo6[0] == exp6[1][0]
    with pytest.raises(ValidationFailed, match="uint32"):
        netaddr.ipv4_to_hilo(np.array([1, 2], dtype=np.int64))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("prefix", "length"),
    [
        ("203.0.113.7", 128),
        ("203.0.113.0/28", 124),
        ("10.0.0.0/8", 104),
        ("0.0.0.0/0", 96),
        ("2001:db8::/32", 32),
        ("2001:db8:1::/64", 64),
        ("2001:db8:1::/65", 65),
        ("2001:db8::1", 128),
        ("::/0", 0),
    ],
)
def test_prefix_lengths_are_computed_from_the_two_keys(prefix: str, length: int) -> None:
    first, last = netaddr.prefix_keys(prefix)
    s_hi, s_lo = netaddr.keys_to_hilo([first])
    e_hi, e_lo = netaddr.keys_to_hilo([last])
    assert int(netaddr.prefix_lengths(s_hi, s_lo, e_hi, e_lo)[0]) == length
    network = netaddr.parse_prefix(prefix)
    assert netaddr.prefix_length_128(network) == length
    assert netaddr.network_of(int(first, 16), length) == network


def test_mask_keeps_the_network_bits_at_every_length() -> None:
    hi, lo = netaddr.texts_to_hilo(["2001:db8:abcd:12::ff", "203.0.113.77"])
    for length in (0, 1, 32, 63, 64, 65, 96, 120, 124, 127, 128):
        m_hi, m_lo = netaddr.mask_hilo(hi, lo, length)
        for i in range(2):
            value = (int(hi[i]) << 64) | int(lo[i])
            masked = (value >> (128 - length)) << (128 - length) if length else 0
            assert (int(m_hi[i]) << 64) | int(m_lo[i]) == masked, length
