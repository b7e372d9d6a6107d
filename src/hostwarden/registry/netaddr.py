"""IP addresses and prefixes: parsing, the 32-hex key of the registry, numpy forms for bulk.

Every address lives in one 128-bit space: IPv6 as it is, IPv4 mapped into ::ffff:0:0/96
(RFC 4291 §2.5.5.2). The registry stores the first and last address of a prefix as 32
lower-case hex digits (``start_key``/``end_key``), so that plain text comparison orders
addresses on every database; in memory the same number is two ``uint64`` words, ``hi`` and
``lo``, which numpy can sort and search without Python objects.
"""

from __future__ import annotations

import functools
import ipaddress
import socket
from collections.abc import Iterable
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network

import numpy as np
from numpy.typing import NDArray

from hostwarden.errors import ValidationFailed

IpAddress = IPv4Address | IPv6Address
IpNetwork = IPv4Network | IPv6Network

#: ::ffff:0:0/96, where IPv4 addresses live in the 128-bit space.
V4_MAPPED_BASE = 0xFFFF << 32
_V4_MAPPED_LO = np.uint64(V4_MAPPED_BASE)
_WORD = (1 << 64) - 1
KEY_WIDTH = 32


def _unmapped(address: IpAddress) -> IpAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@functools.lru_cache(maxsize=1 << 16)
def _address_of_text(text: str) -> IpAddress:
    # Cached: the same addresses recur (a feed names its hosts report after report; the
    # registry's own addresses in every import), and ipaddress parses a text in Python
    # (about 15 µs) where a cached one costs a dictionary lookup. The objects are
    # immutable, so handing out the same one is safe; a text that is no address raises
    # and is not cached.
    return _unmapped(ipaddress.ip_address(text.strip()))


def parse_address(text: str | IpAddress) -> IpAddress:
    """One address; ``::ffff:a.b.c.d`` is read as the IPv4 address it carries."""
    if isinstance(text, IPv4Address | IPv6Address):
        return _unmapped(text)
    try:
        return _address_of_text(text)
    except ValueError:
        raise ValidationFailed(
            f"'{text}' is not an IP address.",
            hint="Give one IPv4 or IPv6 address, e.g. 203.0.113.7 or 2001:db8::7.",
        ) from None


def parse_prefix(text: str | IpNetwork | IpAddress) -> IpNetwork:
    """A CIDR prefix (``203.0.113.0/28``) or a single address (taken as /32 or /128).

    Host bits must be zero: ``203.0.113.5/28`` is refused rather than silently widened,
    because the operator may have meant the address or the network."""
    if isinstance(text, IPv4Network | IPv6Network):
        return text
    if isinstance(text, IPv4Address | IPv6Address):
        address = _unmapped(text)
        return ipaddress.ip_network(address)
    raw = text.strip()
    try:
        network = ipaddress.ip_network(raw, strict=True)
    except ValueError as exc:
        try:
            loose = ipaddress.ip_network(raw, strict=False)
        except ValueError:
            raise ValidationFailed(
                f"'{text}' is not an IP address or CIDR prefix.",
                hint="Use for example 203.0.113.7, 203.0.113.0/28 or 2001:db8:1::/64.",
            ) from exc
        raise ValidationFailed(
            f"'{text}' has host bits set.",
            hint=f"Give the network {loose} or the single address {raw.split('/')[0]}.",
        ) from exc
    mapped = network.network_address.ipv4_mapped if isinstance(network, IPv6Network) else None
    if mapped is not None and network.prefixlen >= 96:
        return IPv4Network(f"{mapped}/{network.prefixlen - 96}")
    return network


def text_to_int(text: str) -> int:
    """An address text straight to its number in the 128-bit space: the hot path of single
    lookups (``inet_pton`` is ten times faster than ``ipaddress``); anything it does not
    take goes through ``parse_address`` for the full rules and error message."""
    try:
        return V4_MAPPED_BASE | int.from_bytes(socket.inet_pton(socket.AF_INET, text), "big")
    except OSError:
        pass
    try:
        return int.from_bytes(socket.inet_pton(socket.AF_INET6, text), "big")
    except OSError:
        return address_int(parse_address(text))


def is_v4_int(value: int) -> bool:
    return value >> 32 == 0xFFFF


def address_int(address: IpAddress) -> int:
    """The address as a number in the 128-bit space (IPv4 mapped)."""
    if isinstance(address, IPv4Address):
        return V4_MAPPED_BASE | int(address)
    return int(address)


def int_to_address(value: int) -> IpAddress:
    if is_v4_int(value):
        return IPv4Address(value & 0xFFFFFFFF)
    return IPv6Address(value)


def key_of_int(value: int) -> str:
    return f"{value:0{KEY_WIDTH}x}"


def address_key(address: str | IpAddress) -> str:
    """The 32-hex key of one address."""
    return key_of_int(address_int(parse_address(address)))


def prefix_keys(prefix: str | IpNetwork | IpAddress) -> tuple[str, str]:
    """Keys of the first and last address of a prefix."""
    network = parse_prefix(prefix)
    first = address_int(network.network_address)
    return key_of_int(first), key_of_int(first + network.num_addresses - 1)


def key_to_address(key: str) -> IpAddress:
    if len(key) != KEY_WIDTH:
        raise ValidationFailed(
            f"'{key}' is not a {KEY_WIDTH}-digit address key.", hint="Keys come from the registry."
        )
    return int_to_address(int(key, 16))


def prefix_length_128(network: IpNetwork) -> int:
    """Length of the prefix in the 128-bit space (an IPv4 /24 is a /120 there)."""
    return network.prefixlen + (96 if isinstance(network, IPv4Network) else 0)


def network_of(start: int, length_128: int) -> IpNetwork:
    """The prefix with first address ``start`` and length in the 128-bit space."""
    if is_v4_int(start) and length_128 >= 96:
        return IPv4Network((start & 0xFFFFFFFF, length_128 - 96))
    return IPv6Network((start, length_128))


def prefix_text(start: int, length_128: int) -> str:
    """``str(network_of(...))`` without building objects for IPv4 (the common case)."""
    if is_v4_int(start) and length_128 >= 96:
        v4 = start & 0xFFFFFFFF
        return f"{v4 >> 24}.{(v4 >> 16) & 255}.{(v4 >> 8) & 255}.{v4 & 255}/{length_128 - 96}"
    return str(network_of(start, length_128))


def is_v4_hilo(hi: U64Array, lo: U64Array) -> NDArray[np.bool_]:
    """Which addresses are IPv4 (in ::ffff:0:0/96)."""
    mapped: NDArray[np.bool_] = (hi == 0) & ((lo >> np.uint64(32)) == np.uint64(0xFFFF))
    return mapped


# --- numpy forms ------------------------------------------------------------------------

U64Array = NDArray[np.uint64]


def ipv4_to_hilo(addresses: NDArray[np.uint32]) -> tuple[U64Array, U64Array]:
    """IPv4 addresses as ``uint32`` (host order numbers) → the two words of the mapped form."""
    values = np.asarray(addresses)
    if values.dtype != np.uint32:
        raise ValidationFailed(
            f"IPv4 addresses must be a uint32 array, not {values.dtype}.",
            hint="Convert with numpy.asarray(values, dtype=numpy.uint32).",
        )
    lo = values.astype(np.uint64) | _V4_MAPPED_LO
    return np.zeros(lo.shape, dtype=np.uint64), lo


def ipv6_bytes_to_hilo(packed: NDArray[np.uint8]) -> tuple[U64Array, U64Array]:
    """IPv6 addresses as an (n, 16) array of network-order bytes → two words."""
    raw = np.ascontiguousarray(packed, dtype=np.uint8)
    if raw.ndim != 2 or raw.shape[1] != 16:
        raise ValidationFailed(
            f"packed IPv6 addresses must have shape (n, 16), not {raw.shape}.",
            hint="One row of 16 network-order bytes per address.",
        )
    words = raw.view(">u8").reshape(-1, 2).astype(np.uint64)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])


def keys_to_hilo(keys: Iterable[str]) -> tuple[U64Array, U64Array]:
    """Registry keys (32 hex digits each) → two words, without a per-key Python int."""
    joined = "".join(keys)
    if len(joined) % KEY_WIDTH:
        raise ValidationFailed("address keys must be 32 hex digits each.", hint="Check the data.")
    words = np.frombuffer(bytes.fromhex(joined), dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])


_V4_MAPPED_PREFIX = bytes(10) + b"\xff\xff"


def _packed16(address: str | IpAddress) -> bytes:
    if isinstance(address, str):
        text = address.strip()
        try:
            return _V4_MAPPED_PREFIX + socket.inet_pton(socket.AF_INET, text)
        except OSError:
            pass
        try:
            return socket.inet_pton(socket.AF_INET6, text)
        except OSError:
            pass
    return address_int(parse_address(address)).to_bytes(16, "big")


def texts_to_hilo(addresses: Iterable[str | IpAddress]) -> tuple[U64Array, U64Array]:
    """Address texts of either family → two words. ``inet_pton`` per address (about ten
    times faster than ``ipaddress``); anything it refuses gets ``parse_address``'s rules
    and error message."""
    packed = b"".join(_packed16(a) for a in addresses)
    words = np.frombuffer(packed, dtype=">u8").reshape(-1, 2).astype(np.uint64)
    return np.ascontiguousarray(words[:, 0]), np.ascontiguousarray(words[:, 1])


def hilo_to_address(hi: int, lo: int) -> IpAddress:
    return int_to_address((int(hi) << 64) | int(lo))


def bit_length_u64(values: U64Array) -> NDArray[np.int64]:
    """``int.bit_length`` for every element; halves keep the float conversion exact."""
    upper = (values >> np.uint64(32)).astype(np.float64)
    lower = (values & np.uint64(0xFFFFFFFF)).astype(np.float64)
    upper_bits = np.frexp(upper)[1].astype(np.int64)
    lower_bits = np.frexp(lower)[1].astype(np.int64)
    return np.where(upper_bits > 0, upper_bits + 32, lower_bits)


def prefix_lengths(
    start_hi: U64Array, start_lo: U64Array, end_hi: U64Array, end_lo: U64Array
) -> NDArray[np.int64]:
    """Lengths in the 128-bit space of aligned prefixes given by first and last address."""
    host_hi = bit_length_u64(start_hi ^ end_hi)
    host_lo = bit_length_u64(start_lo ^ end_lo)
    host = np.where(host_hi > 0, host_hi + 64, host_lo)
    return 128 - host


def mask_hilo(hi: U64Array, lo: U64Array, length: int) -> tuple[U64Array, U64Array]:
    """Keep the first ``length`` bits (of 128) of every address: its /length network."""
    if length >= 64:
        dropped = 128 - length
        lo_mask = np.uint64((_WORD >> dropped) << dropped) if dropped < 64 else np.uint64(0)
        return hi, lo & lo_mask
    hi_mask = np.uint64((_WORD >> (64 - length)) << (64 - length)) if length else np.uint64(0)
    return hi & hi_mask, np.zeros_like(lo)
