"""Captures as test inputs: the generated traffic capture and its frames, and tshark as the
reference decoder (its JSON reading of a capture; tests needing it skip on a workstation
without it but fail in CI)."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from collections.abc import Iterator, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "flows"
SCRIPTS = Path(__file__).resolve().parents[2] / "scripts"


def make_traffic(directory: Path, *options: str) -> Path:
    """The traffic capture of scripts/make-traffic-pcap.py (``--raw-ip``, ``--rounds N``)."""
    out = directory / ("traffic" + "".join(options).replace(" ", "") + ".pcap")
    script = SCRIPTS / "make-traffic-pcap.py"
    subprocess.run([sys.executable, str(script), *options, str(out)], check=True)
    return out


def pcap_frames(path: Path) -> tuple[int, list[bytes]]:
    """Link type and frames of a little-endian microsecond pcap (as tcpdump and
    make-traffic-pcap.py write them)."""
    data = path.read_bytes()
    linktype = struct.unpack_from("<I", data, 20)[0]
    frames, pos = [], 24
    while pos < len(data):
        caplen = struct.unpack_from("<I", data, pos + 8)[0]
        frames.append(data[pos + 16 : pos + 16 + caplen])
        pos += 16 + caplen
    return linktype, frames


def require_tshark() -> str:
    found = shutil.which("tshark")
    if found is None:
        if os.environ.get("CI") == "true":
            pytest.fail("tshark is missing in CI; scripts/system-deps.sh installs it.")
        pytest.skip("tshark is not installed (scripts/system-deps.sh installs it)")
    return found


class Node(list[tuple[str, Any]]):
    """A JSON object of tshark's output as its (key, value) pairs in order: tshark repeats
    keys (two ``vlan`` layers, ``ip.addr`` for source and destination)."""

    def get(self, key: str, default: Any = None) -> Any:
        for name, value in self:
            if name == key:
                return value
        return default

    def all(self, key: str) -> list[Any]:
        return [value for name, value in self if name == key]

    def children(self, prefix: str) -> Iterator[tuple[str, Node]]:
        for name, value in self:
            if name.startswith(prefix) and isinstance(value, Node):
                yield name, value

    def has(self, key: str) -> bool:
        return any(name == key for name, _ in self)

    def int(self, key: str) -> int:
        return int(self.get(key), 0)


def tshark_frames(
    path: Path, decode_as: Sequence[str] = (), options: Sequence[str] = ()
) -> list[Node]:
    """The ``layers`` of every frame of ``path``; ``decode_as`` like ``udp.port==16343,sflow``.
    IP reassembly is off so that each packet stands alone, as the decoders see it."""
    tshark = require_tshark()
    command = [tshark, "-n", "-r", str(path), "-o", "ip.defragment:FALSE", "-T", "json"]
    for rule in decode_as:
        command += ["-d", rule]
    for option in options:
        command += ["-o", option]
    done = subprocess.run(command, capture_output=True, check=True, timeout=120)
    frames = json.loads(done.stdout, object_pairs_hook=Node)
    return [frame.get("_source").get("layers") for frame in frames]


def frame_ms(layers: Node) -> int:
    """The frame time in epoch milliseconds, truncated as the pcap reader does."""
    seconds = Decimal(layers.get("frame").get("frame.time_epoch"))
    return int(seconds * 1000)


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text.replace(":", ""))


def packet_fields(layers: Node) -> tuple[str, str, int, int, int, int] | None:
    """(source, destination, source port, destination port, protocol, TCP flags) of the
    packet tshark dissected in ``layers``, as the flow schema counts them (ICMP type and
    code in the destination port); None when it has no IP layer."""
    ip, ip6 = layers.get("ip"), layers.get("ipv6")
    if ip is not None:
        src, dst, proto = ip.get("ip.src"), ip.get("ip.dst"), ip.int("ip.proto")
    elif ip6 is not None:
        src, dst, proto = ip6.get("ipv6.src"), ip6.get("ipv6.dst"), ip6.int("ipv6.nxt")
    else:
        return None
    sport = dport = flags = 0
    if (tcp := layers.get("tcp")) is not None:
        proto, sport, dport = 6, tcp.int("tcp.srcport"), tcp.int("tcp.dstport")
        flags = tcp.int("tcp.flags") & 0xFF
    elif (udp := layers.get("udp")) is not None:
        proto, sport, dport = 17, udp.int("udp.srcport"), udp.int("udp.dstport")
    elif (icmp := layers.get("icmp")) is not None:
        proto, dport = 1, icmp.int("icmp.type") << 8 | icmp.int("icmp.code")
    elif (icmp6 := layers.get("icmpv6")) is not None:
        proto, dport = 58, icmp6.int("icmpv6.type") << 8 | icmp6.int("icmpv6.code")
    return src, dst, sport, dport, proto, flags
