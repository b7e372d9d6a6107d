"""VPN tunnels and proxies: a policy category (many providers' terms limit them), not
abuse by itself, reported at a configurable severity.

Kinds, by protocol number or by the well-known port of each protocol (IANA's
assignments, which the implementations use by default):

- openvpn: UDP or TCP 1194; wireguard: UDP 51820;
- ipsec: UDP 500 (IKE) and 4500 (NAT traversal), ESP (protocol 50) and AH (51);
- gre: protocol 47 (PPTP's data channel is GRE too, and is reported as gre);
- l2tp: UDP 1701, and L2TPv3 straight over IP (protocol 115); pptp: TCP 1723;
- proxy: one conversation (5-tuple) of at least ``proxy_min_seconds`` and
  ``proxy_min_bytes``, on ports neither of which is in ``common_ports`` (a long
  download from port 443 is not a proxy; a SOCKS or HTTP proxy on 1080 or 3128 is).

Both directions: a customer connecting to a VPN server (its remote port is the
protocol's port) is reported ``outbound``, a customer running one (its own port is)
``inbound``; for the protocol-number kinds, which have no client side, ``outbound``
when the customer's address sent any of the traffic. A finding needs at least
``min_bytes`` of the kind in the window, so a handshake or a probe is not a tunnel.

Proxy conversations are followed across windows (``detect.conversations``) only for
addresses with ``min_bytes`` of candidate traffic in the window: a proxy moving
``proxy_min_bytes`` in ``proxy_min_seconds`` moves far more than that every window,
and it keeps the tracking cost to the heavy talkers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import DetectSettings, TunnelSettings
from hostwarden.detect.conversations import Conversations
from hostwarden.detect.detectors.common import (
    about_local,
    local_ip,
    megabytes,
    port_codes,
    port_set,
    ranked,
)
from hostwarden.detect.findings import Finding, address_text, number
from hostwarden.detect.frame import ESP, GRE, TCP, UDP, Frame, group_by, top_per_group

KINDS = ("openvpn", "wireguard", "ipsec", "gre", "l2tp", "pptp", "proxy")
AH, L2TPV3 = 51, 115
#: Kind of a protocol number, and of a UDP and a TCP port.
BY_PROTOCOL = {GRE: "gre", ESP: "ipsec", AH: "ipsec", L2TPV3: "l2tp"}
BY_UDP_PORT = {1194: "openvpn", 51820: "wireguard", 500: "ipsec", 4500: "ipsec", 1701: "l2tp"}
BY_TCP_PORT = {1194: "openvpn", 1723: "pptp"}
#: A proxy conversation may pause this long between records and still be one.
PROXY_GAP_MS = 300_000


class TunnelDetector:
    name = "tunnels"

    def __init__(self, settings: TunnelSettings) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        code = {kind: KINDS.index(kind) for kind in settings.kinds if kind != "proxy"}
        self.by_protocol = np.full(256, -1, dtype=np.int16)
        for proto, kind in BY_PROTOCOL.items():
            self.by_protocol[proto] = code.get(kind, -1)
        self.by_udp = port_codes({p: code[k] for p, k in BY_UDP_PORT.items() if k in code})
        self.by_tcp = port_codes({p: code[k] for p, k in BY_TCP_PORT.items() if k in code})
        self.any_port = (self.by_udp >= 0) | (self.by_tcp >= 0)
        self.proxy = "proxy" in settings.kinds
        self.common = port_set(settings.common_ports)
        self.conversations = Conversations(PROXY_GAP_MS)

    def evaluate(self, frame: Frame) -> list[Finding]:
        if frame.empty():
            return []
        rows, kind, role = self._kinds(frame)
        findings = self._tunnels(frame, rows, kind, role) if len(rows) else []
        if self.proxy:
            tunnel = np.zeros(len(frame), dtype=bool)
            tunnel[rows] = True
            findings += self._proxies(frame, tunnel)
        return findings

    def _kinds(self, frame: Frame) -> tuple[NDArray[np.intp], NDArray[np.int16], NDArray[np.int8]]:
        """The rows of a tunnel kind, their kind codes and the customer's role: 0 client
        (the remote port is the protocol's), 1 server (its own port is), -1 neither (a
        protocol-number kind). Three table lookups over the frame pick the rows; the
        rest is done on those few."""
        proto = frame["proto"]
        by_protocol = self.by_protocol[proto]
        rows = np.flatnonzero(
            (by_protocol >= 0)
            | self.any_port[frame["remote_port"]]
            | self.any_port[frame["local_port"]]
        )
        proto, by_protocol = proto[rows], by_protocol[rows]
        local_port, remote_port = frame["local_port"][rows], frame["remote_port"][rows]
        udp, tcp = proto == UDP, proto == TCP
        as_client = np.where(udp, self.by_udp[remote_port], -1)
        as_client = np.where(tcp, self.by_tcp[remote_port], as_client)
        as_server = np.where(udp, self.by_udp[local_port], -1)
        as_server = np.where(tcp, self.by_tcp[local_port], as_server)
        kind = np.where(as_client >= 0, as_client, as_server)
        role = np.where(as_client >= 0, 0, 1).astype(np.int8)
        kind = np.where(by_protocol >= 0, by_protocol, kind).astype(np.int16)
        role = np.where((by_protocol >= 0) | (kind < 0), np.int8(-1), role)
        keep = kind >= 0  # e.g. TCP on WireGuard's UDP port
        return rows[keep], kind[keep], role[keep]

    def _tunnels(
        self,
        frame: Frame,
        rows: NDArray[np.intp],
        kind: NDArray[np.int16],
        role: NDArray[np.int8],
    ) -> list[Finding]:
        local = frame.by_local()
        # One finding per (address, kind): IKE on UDP 500 and the ESP it sets up are one
        # IPsec tunnel, and a VPN's two directions are one VPN.
        groups = group_by(local.inverse[rows], kind)
        size = groups.sum(frame["bytes"][rows])
        hits = np.flatnonzero(size >= self.settings.min_bytes)
        if not len(hits):
            return []
        served = groups.sum(frame["bytes"][rows], role == 1)
        used = groups.sum(frame["bytes"][rows], role == 0)
        sent = groups.count(frame["outbound"][rows])
        flows = groups.sum(frame["flows"][rows])
        peers_n = groups.distinct(frame["remote_hi"][rows], frame["remote_lo"][rows])
        remote = [frame["remote_hi"][rows], frame["remote_lo"][rows]]
        peers = top_per_group(groups, hits, remote, frame["bytes"][rows], 10)
        service_port = np.where(
            role == 1, frame["local_port"][rows], np.where(role == 0, frame["remote_port"][rows], 0)
        )
        ports = top_per_group(groups, hits, [service_port], frame["bytes"][rows], 10, role >= 0)
        findings: list[Finding] = []
        for h in hits.tolist():
            first = int(rows[groups.first[h]])
            name = KINDS[int(kind[groups.first[h]])]
            if served[h] or used[h]:
                server = served[h] > used[h]
                direction = "inbound" if server else "outbound"
                role_text = "serving" if server else "connecting to"
            else:
                direction = "outbound" if sent[h] else "inbound"
                role_text = "exchanging"
            ip = local_ip(frame, first)
            findings.append(
                about_local(
                    frame,
                    first,
                    category="tunnel",
                    severity=self.settings.severity,
                    direction=direction,
                    kind=name,
                    summary=(
                        f"{ip} {role_text} {name} with {peers_n[h]} peer(s): "
                        f"{megabytes(size[h])} in {frame.seconds} s"
                    ),
                    counts={
                        "bytes": float(size[h]),
                        "flows": float(flows[h]),
                        "peers": int(peers_n[h]),
                    },
                    top_peers=[
                        {"ip": address_text(*key), "bytes": number(w)} for key, w in peers[h]
                    ],
                    top_ports=[{"port": key[0], "bytes": number(w)} for key, w in ports[h]],
                )
            )
        return findings

    def _proxies(self, frame: Frame, tunnel: NDArray[np.bool_]) -> list[Finding]:
        proto = frame["proto"]
        candidate = (
            ((proto == TCP) | (proto == UDP))
            & ~self.common[frame["local_port"]]
            & ~self.common[frame["remote_port"]]
            & ~tunnel
        )
        rows = np.flatnonzero(candidate)
        local = frame.by_local()
        # Only addresses with min_bytes of such traffic in the window are followed.
        heavy = np.bincount(
            local.inverse[rows],
            weights=frame["bytes"][rows].astype(np.float64),
            minlength=len(local),
        ) >= max(self.settings.min_bytes, 1)
        rows = rows[heavy[local.inverse[rows]]]
        if not len(rows):
            self.conversations.expire(frame)
            return []
        seen = self.conversations.update(frame, rows)
        proxies = np.flatnonzero(
            (seen.seconds >= self.settings.proxy_min_seconds)
            & (seen.bytes >= self.settings.proxy_min_bytes)
        )
        if not len(proxies):
            return []
        owners = group_by(local.inverse[seen.row[proxies]])
        order, bounds = ranked(owners.inverse, seen.bytes[proxies], len(owners))
        findings: list[Finding] = []
        for o in range(len(owners)):
            members = proxies[order[bounds[o] : bounds[o + 1]]]
            row = int(seen.row[members[0]])
            local_port = int(frame["local_port"][row])
            remote_port = int(frame["remote_port"][row])
            # The lower port is the service's; the other end's is ephemeral.
            direction = "inbound" if local_port < remote_port else "outbound"
            ip = local_ip(frame, row)
            total = float(seen.bytes[members].sum())
            longest = float(seen.seconds[members].max())
            peers = [
                {
                    "ip": address_text(
                        frame["remote_hi"][seen.row[m]], frame["remote_lo"][seen.row[m]]
                    ),
                    "local_port": int(frame["local_port"][seen.row[m]]),
                    "remote_port": int(frame["remote_port"][seen.row[m]]),
                    "bytes": float(seen.bytes[m]),
                    "seconds": round(float(seen.seconds[m]), 1),
                }
                for m in members[:10].tolist()
            ]
            service = min(local_port, remote_port)
            findings.append(
                about_local(
                    frame,
                    row,
                    category="tunnel",
                    severity=self.settings.severity,
                    direction=direction,
                    kind="proxy",
                    summary=(
                        f"{ip} kept {len(members)} long single-peer flow(s) on uncommon "
                        f"ports, the biggest {megabytes(float(seen.bytes[members[0]]))} "
                        f"over {float(seen.seconds[members[0]]) / 60:.0f} min on port {service}"
                    ),
                    counts={"conversations": len(members), "bytes": total, "seconds": longest},
                    top_peers=peers,
                    top_ports=[{"port": service}],
                )
            )
        return findings


def make(settings: DetectSettings, home: Path) -> TunnelDetector | None:
    return TunnelDetector(settings.tunnels) if settings.tunnels.enabled else None
