"""sFlow decoding, packet-header parsing and capture reading: how fast, on one core.

    .venv/bin/python bench/sflow.py [--megabytes 100] [--repeat 3]

Inputs are the real pmacct captures of tests/fixtures/flows, repeated: pmacct's sFlow
datagrams carry about six samples each, like a switch's. Measured (best of --repeat):

- sFlow decode one datagram at a time (``SflowDecoder.decode``, the collector's form) and
  many at once (``decode_many``, the import form), in records/s;
- packet headers, one at a time (``parse_header``) and in one numpy pass
  (``parse_headers``), for the common layout (Ethernet, IPv4, TCP) and for a mix;
- reading a pcap and a pcapng of about --megabytes to UDP datagrams (``PcapReader``).

Peers in the same run, where installed: tshark dissecting the same sFlow capture (fields
of every sample), and dpkt reading the same files to UDP payloads (dpkt is not a
dependency: ``pip install dpkt`` into the venv to include it).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from hostwarden.flows.decode.packet import parse_header, parse_headers  # noqa: E402
from hostwarden.flows.decode.sflow import SflowDecoder  # noqa: E402
from hostwarden.flows.pcap import PcapReader, read_udp_datagrams  # noqa: E402

FIXTURES = ROOT / "tests" / "fixtures" / "flows"


def best(repeat: int, run: Callable[[], int]) -> tuple[float, int]:
    """Fastest wall time of ``repeat`` runs, and what the run counted."""
    times, count = [], 0
    for _ in range(repeat):
        began = time.perf_counter()
        count = run()
        times.append(time.perf_counter() - began)
    return min(times), count


def big_capture(directory: Path, megabytes: int) -> tuple[Path, Path | None]:
    data = (FIXTURES / "pmacct-sflow.pcap").read_bytes()
    body = data[24:]
    path = directory / "big.pcap"
    with path.open("wb") as out:
        out.write(data[:24])
        for _ in range(max(1, megabytes * 1_000_000 // len(body))):
            out.write(body)
    pcapng = directory / "big.pcapng"
    editcap = shutil.which("editcap")
    if editcap is None:
        return path, None
    subprocess.run([editcap, "-F", "pcapng", str(path), str(pcapng)], check=True)
    return path, pcapng


def headers_of(kind: str, count: int) -> tuple[bytes, np.ndarray, np.ndarray, int]:
    datagrams, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcap")
    frames: list[bytes] = []
    for d in datagrams:
        pos = 0
        payload = d.payload
        # Raw header records of pmacct's samples: the bytes after "00000001 <len> 00000001".
        while (pos := payload.find(b"\x00\x00\x00\x01\x00\x00\x00", pos)) != -1:
            protocol, _, _, header = struct.unpack_from("!IIII", payload, pos + 8)
            if protocol == 1 and 14 <= header <= 128 and pos + 24 + header <= len(payload):
                frames.append(payload[pos + 24 : pos + 24 + header])
            pos += 4
    if kind == "common":
        frames = [f for f in frames if f[12:14] == b"\x08\x00" and f[14] == 0x45 and f[23] == 6]
    frames = (frames * (count // len(frames) + 1))[:count]
    starts = np.cumsum([0] + [len(f) for f in frames[:-1]]).astype(np.int64)
    ends = starts + np.array([len(f) for f in frames], dtype=np.int64)
    return b"".join(frames), starts, ends, len(frames)


def header_rates(
    kind: str, buf: bytes, starts: np.ndarray, ends: np.ndarray, n: int, repeat: int
) -> list[tuple[str, str, str]]:
    pairs = list(zip(starts.tolist(), ends.tolist(), strict=True))
    seconds, _ = best(repeat, lambda: sum(1 for s, e in pairs if parse_header(buf, s, e, 1)))
    scalar = (f"headers ({kind}), parse_header", f"{n / seconds:,.0f} headers/s", "")
    seconds, _ = best(repeat, lambda: int(parse_headers(buf, starts, ends, 1).ok.sum()))
    vector = (f"headers ({kind}), parse_headers numpy", f"{n / seconds:,.0f} headers/s", "")
    return [scalar, vector]


def dpkt_reader(path: Path) -> Callable[[], int] | None:
    try:
        import dpkt  # type: ignore[import-not-found]
    except ImportError:
        return None

    def run() -> int:
        count = 0
        with path.open("rb") as handle:
            reader = (
                dpkt.pcapng.Reader(handle) if path.suffix == ".pcapng" else dpkt.pcap.Reader(handle)
            )
            for ts, frame in reader:
                ip = dpkt.ethernet.Ethernet(frame).data
                if isinstance(ip, dpkt.ip.IP) and isinstance(ip.data, dpkt.udp.UDP):
                    udp = ip.data
                    _ = (int(ts * 1000), socket.inet_ntop(socket.AF_INET, ip.src), udp.sport)
                    _ = (socket.inet_ntop(socket.AF_INET, ip.dst), udp.dport, bytes(udp.data))
                    count += 1
        return count

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rows: list[tuple[str, str, str]] = []

    datagrams, _ = read_udp_datagrams(FIXTURES / "pmacct-sflow.pcap")
    items = [(d.payload, d.src_ip, d.timestamp_ms) for d in datagrams] * 500
    decoder = SflowDecoder()

    def one_at_a_time() -> int:
        return sum(len(decoder.decode(p, e, r).batch) for p, e, r in items)

    seconds, records = best(args.repeat, one_at_a_time)
    rows.append(
        (
            "sFlow decode, one datagram at a time",
            f"{records / seconds:,.0f} records/s",
            f"{len(items) / seconds:,.0f} datagrams/s",
        )
    )
    seconds, records = best(args.repeat, lambda: len(decoder.decode_many(items).batch))
    rows.append(("sFlow decode_many", f"{records / seconds:,.0f} records/s", ""))

    for kind in ("common", "mixed"):
        buf, starts, ends, n = headers_of(kind, 200_000)
        rows += header_rates(kind, buf, starts, ends, n, args.repeat)

    with tempfile.TemporaryDirectory() as tmp:
        pcap, pcapng = big_capture(Path(tmp), args.megabytes)
        tshark = shutil.which("tshark")
        for path in (pcap, pcapng):
            if path is None:
                continue
            size = path.stat().st_size

            def ours(path: Path = path) -> int:
                return sum(1 for _ in PcapReader(path))

            seconds, count = best(args.repeat, ours)
            rows.append(
                (
                    f"read {path.suffix[1:]}, PcapReader",
                    f"{size / seconds / 1e6:,.0f} MB/s",
                    f"{count / seconds:,.0f} datagrams/s",
                )
            )
            peer = dpkt_reader(path)
            if peer is not None:
                seconds, count = best(args.repeat, peer)
                rows.append(
                    (
                        f"read {path.suffix[1:]}, dpkt (peer)",
                        f"{size / seconds / 1e6:,.0f} MB/s",
                        f"{count / seconds:,.0f} datagrams/s",
                    )
                )
        if tshark is not None:
            command = [tshark, "-n", "-r", str(pcap), "-d", "udp.port==16343,sflow"]
            command += ["-T", "fields", "-e", "sflow.flow_sample.sampling_rate"]

            def dissect() -> int:
                done = subprocess.run(command, capture_output=True, check=True)
                return sum(len(line.split(b",")) for line in done.stdout.splitlines() if line)

            seconds, samples = best(1, dissect)
            rows.append(
                ("sFlow, tshark -T fields (peer)", f"{samples / seconds:,.0f} samples/s", "")
            )

    width = max(len(r[0]) for r in rows)
    print(f"{'measure':<{width}}  {'rate':>22}  {'also':>22}")
    for name, rate, also in rows:
        print(f"{name:<{width}}  {rate:>22}  {also:>22}")


if __name__ == "__main__":
    main()
