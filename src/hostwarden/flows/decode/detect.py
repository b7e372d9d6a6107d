"""Which flow export protocol a UDP payload carries, from its first bytes alone."""

from __future__ import annotations

import struct
from typing import Literal

Protocol = Literal["netflow5", "netflow9", "ipfix", "sflow5"]

_U16 = struct.Struct("!H")
_U32X2 = struct.Struct("!II")
#: sFlow agent address types: unknown (no address), IPv4, IPv6.
_SFLOW_ADDRESS_TYPES = (0, 1, 2)
_BY_VERSION: dict[int, Protocol] = {5: "netflow5", 9: "netflow9", 10: "ipfix"}


def detect_protocol(payload: bytes) -> Protocol | None:
    """The protocol of an export datagram, or None if it is none of them.

    NetFlow and IPFIX start with a 16-bit version (5, 9, 10); sFlow with a 32-bit one (5),
    whose first two bytes are zero, followed by the agent address type. The two cannot be
    mistaken for each other: no NetFlow version is 0. Only the header is looked at, so a
    truncated datagram is still sent to its decoder, which says what is missing."""
    if len(payload) >= 8:
        version, address_type = _U32X2.unpack_from(payload, 0)
        if version == 5 and address_type in _SFLOW_ADDRESS_TYPES:
            return "sflow5"
    if len(payload) >= 2:
        return _BY_VERSION.get(_U16.unpack_from(payload, 0)[0])
    return None
