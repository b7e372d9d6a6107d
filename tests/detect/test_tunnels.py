"""Tunnel detector: VPN protocols in both directions, long single-peer proxy flows, and
traffic that looks like them but is not."""

from __future__ import annotations

from pathlib import Path

from hostwarden.core.config_detect import DetectSettings, TunnelSettings
from hostwarden.detect.detectors.tunnels import TunnelDetector, make
from tests.detect.support import T0, Trace, of, run

CLIENT = "100.64.6.6"
SERVER = "100.64.6.7"
MB = 1_000_000


def detector(**overrides: object) -> TunnelDetector:
    return TunnelDetector(TunnelSettings(**overrides))


def session(
    trace: Trace,
    *,
    local: str = CLIENT,
    remote: str = "198.51.100.40",
    proto: int = 17,
    local_port: int = 50000,
    remote_port: int = 1194,
    megabytes_each_way: float = 8,
    records: int = 4,
    sampling: int = 1,
) -> Trace:
    """A tunnel's two directions inside one 5-minute window, in ``records`` records each."""
    packets = int(megabytes_each_way * MB / 1000 / records / sampling)
    for outbound in (True, False):
        trace.flows(
            local=local,
            remote=remote,
            n=records,
            outbound=outbound,
            proto=proto,
            local_port=local_port,
            remote_port=remote_port,
            packets=packets,
            bytes_per_packet=1000,
            spread_ms=200_000,
            duration_ms=60_000,
            sampling=sampling,
        )
    return trace


def test_a_customer_connecting_to_an_openvpn_server_is_an_outbound_tunnel() -> None:
    trace = session(Trace().background(records=5000), megabytes_each_way=8)
    findings = of(run(detector(), trace), "tunnel")
    assert len(findings) == 1
    found = findings[0]
    assert (found.ip, found.kind, found.direction, found.severity) == (
        CLIENT,
        "openvpn",
        "outbound",
        "low",
    )
    assert found.counts == {"bytes": 16 * MB, "flows": 8, "peers": 1}
    assert found.top_peers == [{"ip": "198.51.100.40", "bytes": 16 * MB}]
    assert found.top_ports == [{"port": 1194, "bytes": 16 * MB}]
    assert "connecting to openvpn with 1 peer(s): 16.0 MB in 300 s" in found.summary


def test_a_customer_running_a_wireguard_server_is_an_inbound_tunnel() -> None:
    trace = Trace()
    for i, peer in enumerate(["198.51.100.41", "198.51.100.42", "203.0.113.9"]):
        session(
            trace,
            local=SERVER,
            remote=peer,
            local_port=51820,
            remote_port=40000 + i,
            megabytes_each_way=2,
        )
    found = run(detector(), trace)
    assert [(f.ip, f.kind, f.direction) for f in found] == [(SERVER, "wireguard", "inbound")]
    assert found[0].counts["peers"] == 3 and found[0].counts["bytes"] == 12 * MB
    assert found[0].top_ports == [{"port": 51820, "bytes": 12 * MB}]


def test_ike_and_esp_are_one_ipsec_finding_and_gre_l2tp_pptp_are_named() -> None:
    trace = Trace()
    session(trace, remote_port=500, local_port=500, megabytes_each_way=0.01)
    session(trace, proto=50, local_port=0, remote_port=0, megabytes_each_way=10)
    session(trace, local="100.64.6.8", proto=47, local_port=0, remote_port=0)
    session(trace, local="100.64.6.9", remote_port=1701)
    session(trace, local="100.64.6.10", proto=115, local_port=0, remote_port=0)
    session(trace, local="100.64.6.11", proto=6, remote_port=1723)
    found = {f.ip: (f.kind, f.direction) for f in run(detector(), trace)}
    assert found == {
        CLIENT: ("ipsec", "outbound"),
        "100.64.6.8": ("gre", "outbound"),
        "100.64.6.9": ("l2tp", "outbound"),
        "100.64.6.10": ("l2tp", "outbound"),
        "100.64.6.11": ("pptp", "outbound"),
    }


def test_below_min_bytes_and_unlisted_kinds_are_not_reported() -> None:
    trace = Trace()
    # 9.9 MB in the window: below the default 10 MB (a handshake, a short check).
    session(trace, megabytes_each_way=4.95)
    # A protocol-number tunnel seen only arriving (no packet back): inbound.
    trace.flows(
        local="100.64.6.8", remote="198.51.100.50", n=4, outbound=False, proto=47, packets=5000
    )
    session(trace, local="100.64.6.9", remote_port=51820)
    assert [(f.kind, f.direction) for f in run(detector(), trace)] == [
        ("gre", "inbound"),
        ("wireguard", "outbound"),
    ]
    assert [f.kind for f in run(detector(kinds=["gre"]), trace)] == ["gre"]
    assert run(detector(kinds=["openvpn", "pptp"]), trace) == []


def test_background_and_tcp_on_a_udp_vpn_port_are_not_tunnels() -> None:
    trace = Trace().background(records=20_000)
    # 51820 over TCP is not WireGuard (which is UDP only).
    session(trace, proto=6, remote_port=51820, megabytes_each_way=20)
    assert run(detector(), trace) == []


def test_sampled_and_mixed_rate_records_add_up_to_the_bytes_they_stand_for() -> None:
    trace = Trace()
    # 1:1000: each record saw one 1,000-byte packet and stands for 1 MB.
    session(trace, megabytes_each_way=4, sampling=1000)
    session(trace, megabytes_each_way=2.5)
    found = run(detector(), trace)
    assert [(f.kind, f.counts["bytes"]) for f in found] == [("openvpn", 13 * MB)]
    assert found[0].counts["flows"] == 4 * 1000 + 4 * 1000 + 8


def proxy_flow(
    trace: Trace,
    *,
    local: str = SERVER,
    minutes: int = 15,
    local_port: int = 1080,
    remote_port: int = 51000,
    megabytes_a_minute: float = 14,
    sampling: int = 1,
) -> Trace:
    """One long conversation exported as one record a minute."""
    return trace.flows(
        local=local,
        remote="203.0.113.44",
        n=minutes,
        local_port=local_port,
        remote_port=remote_port,
        packets=int(megabytes_a_minute * MB / 1400 / sampling),
        bytes_per_packet=1400,
        spread_ms=minutes * 60_000,
        duration_ms=60_000,
        sampling=sampling,
    )


def test_a_long_heavy_single_peer_flow_on_an_uncommon_port_is_a_proxy() -> None:
    trace = proxy_flow(Trace().background(records=5000))
    findings = of(run(detector(), trace), "tunnel", SERVER)
    # Records end a minute apart from T0 + 60 s; ten minutes are first reached in the
    # window [T0 + 600 s, T0 + 900 s), then again in the next.
    assert [(f.window_start_ms - T0, f.kind, f.direction) for f in findings] == [
        (600_000, "proxy", "inbound"),
        (900_000, "proxy", "inbound"),
    ]
    assert findings[0].counts["seconds"] == 840
    assert findings[0].counts["conversations"] == 1
    assert findings[1].counts["seconds"] == 900
    assert findings[0].top_peers[0]["ip"] == "203.0.113.44"
    assert findings[0].top_peers[0]["local_port"] == 1080
    assert findings[0].top_ports == [{"port": 1080}]


def test_a_customer_using_a_remote_proxy_is_outbound_and_sampling_is_scaled() -> None:
    trace = proxy_flow(Trace(), local=CLIENT, local_port=52000, remote_port=3128, sampling=100)
    found = run(detector(), trace)
    assert [(f.kind, f.direction) for f in found] == [("proxy", "outbound")] * 2
    assert found[0].top_ports == [{"port": 3128}]


def test_long_flows_on_common_ports_short_ones_and_slow_ones_are_not_proxies() -> None:
    trace = Trace()
    proxy_flow(trace, local="100.64.6.20", local_port=443)  # a long HTTPS download
    proxy_flow(trace, local="100.64.6.21", minutes=9)  # nine minutes: too short
    proxy_flow(trace, local="100.64.6.22", megabytes_a_minute=5)  # 75 MB: too little
    # Backups: rsync and NFS streams to one peer for hours (bench/detect.py's look-alike).
    proxy_flow(trace, local="100.64.6.23", local_port=52000, remote_port=873)
    proxy_flow(trace, local="100.64.6.24", local_port=52001, remote_port=2049)
    assert run(detector(), trace) == []
    assert run(detector(kinds=["openvpn"]), proxy_flow(Trace())) == []


def test_the_detector_can_be_disabled() -> None:
    settings = DetectSettings()
    assert make(settings, Path(".")) is not None
    settings.tunnels.enabled = False
    assert make(settings, Path(".")) is None
