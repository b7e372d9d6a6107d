"""Labelled traces for bench/detect.py: a hosting network's ordinary traffic plus
attacks from known customer addresses, as records, NetFlow v9 datagrams and batches.

The network: ``HOSTS`` customer addresses from 100.64.0.0 up (``ingest.make_home``
assigns them), each with one role. Rates are connections a second per host, drawn
lognormally around the role's mean so that a few hosts are busy and most are quiet:

- clients (80 %): outbound HTTPS/HTTP to a skewed pool of 200,000 remote servers, DNS
  to a few public resolvers, some IMAP, NTP (to four time servers each) and interactive
  SSH; 2 % of their TCP
  connections fail (a SYN, then a reset);
- web servers (12 %): inbound HTTPS/HTTP from remote clients;
- DNS servers (2 %): inbound queries from 2,000 remote resolvers, each from a random
  source port (one record per query and per answer, as exporters see them);
- mail servers (4 %): inbound SMTP from remote MTAs, and 1 to 8 outbound messages
  per 5 minutes each to remote mail exchangers;
- look-alikes (2 %): CI machines cloning over SSH from one forge 2 to 8 times a minute
  (the brute-force threshold is 20), and backup or streaming hosts sending 50 to 300
  Mbit/s to one peer (below the volumetric thresholds).

TCP connections that completed have at least 4 packets each way.

Every connection is two records (one a direction) as NetFlow sees it; flows are cut
into records of at most 10 s (the exporter's active timeout) and exported 0.5 to 5 s
after their last packet (its inactive timeout and cache scan), so records reach a
collector in export order, not start order.

Attacks, each from its own client address (one that also keeps its background
traffic), with a known start and end: outbound SYN flood and UDP flood (packets of a
flood spread over many source ports, so many records a second each carrying the
packets of its last 10 s), horizontal scan (one SYN to one port on random addresses),
SSH brute force (many short sessions to one server's port 22) and spam (SMTP sessions
to many distinct mail exchangers). Intensities are multiples of hostwarden's default
thresholds (``config_detect``), drawn log-uniformly so that recall is measured across
strengths rather than on attacks a hundred times over the line.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from ingest import (  # bench/ingest.py
    CUSTOMER_BASE,
    EXPORTERS,
    RECORDS_PER_DATAGRAM,
    REMOTE_ADDRESSES,
    TEMPLATE_EVERY,
    Stream,
    pack_stream,
    skewed,
)

HOSTS = 12_000
CUSTOMERS = 3_000  # four addresses a customer on average
ACTIVE_MS = 10_000  # the exporter's active timeout: no record spans longer
EXPORT_DELAY_MS = (500, 5_000)
#: Role → (share of hosts, mean connections a second per host).
ROLES: dict[str, tuple[float, float]] = {
    "client": (0.80, 0.08),
    "web": (0.12, 0.30),
    "dns": (0.02, 2.0),
    "mail": (0.04, 0.06),
    "ci": (0.01, 10 / 60),
    "backup": (0.01, 0.0),  # continuous streams, not connections
}

#: Attack kind → (category, detector that should report it).
ATTACK_KINDS: dict[str, tuple[str, str]] = {
    "syn-flood": ("ddos-out", "volumetric"),
    "udp-flood": ("ddos-out", "volumetric"),
    "scan": ("scan", "scan"),
    "ssh-bruteforce": ("bruteforce", "bruteforce"),
    "spam": ("spam", "spam"),
}


def address_text(value: int) -> str:
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


@dataclass
class Attack:
    kind: str
    source: int  # the customer address (uint32)
    start_ms: int  # trace time, milliseconds from the trace's start
    end_ms: int
    #: pps for floods, probes a second for scans, attempts a minute for brute force,
    #: distinct mail exchangers per 5 minutes for spam.
    intensity: float
    target: int = 0
    port: int = 0

    @property
    def category(self) -> str:
        return ATTACK_KINDS[self.kind][0]

    @property
    def detector(self) -> str:
        return ATTACK_KINDS[self.kind][1]

    @property
    def ip(self) -> str:
        return address_text(self.source)

    def describe(self) -> str:
        unit = {
            "syn-flood": "pps",
            "udp-flood": "pps",
            "scan": "probes/s",
            "ssh-bruteforce": "attempts/min",
            "spam": "hosts/5 min",
        }[self.kind]
        return f"{self.kind} from {self.ip}, {self.intensity:,.1f} {unit}"


@dataclass
class Records:
    """Columns of records in trace time (ms from the trace's start), any order."""

    parts: list[dict[str, np.ndarray]] = field(default_factory=list)

    def add(
        self,
        *,
        start: np.ndarray,
        duration: np.ndarray,
        customer: np.ndarray,
        remote: np.ndarray,
        outbound: np.ndarray | bool,
        local_port: np.ndarray | int,
        remote_port: np.ndarray | int,
        proto: np.ndarray | int,
        flags: np.ndarray | int,
        packets: np.ndarray,
        size: np.ndarray | int,
        attack: int = -1,
    ) -> None:
        n = len(start)
        if not n:
            return

        def full(value: Any, dtype: Any) -> np.ndarray:
            return np.broadcast_to(np.asarray(value, dtype), (n,)).astype(dtype)

        packets = np.maximum(np.asarray(packets, np.int64), 1)
        self.parts.append(
            {
                "start": full(start, np.int64),
                "duration": full(duration, np.int64),
                "customer": full(customer, np.uint32),
                "remote": full(remote, np.uint32),
                "outbound": full(outbound, np.bool_),
                "local_port": full(local_port, np.uint16),
                "remote_port": full(remote_port, np.uint16),
                "proto": full(proto, np.uint8),
                "flags": full(flags, np.uint8),
                "packets": packets,
                "bytes": packets * full(size, np.int64),
                "attack": full(attack, np.int32),
            }
        )

    def conversation(
        self,
        rng: np.random.Generator,
        *,
        start: np.ndarray,
        duration: np.ndarray,
        customer: np.ndarray,
        remote: np.ndarray,
        customer_opens: bool,
        service_port: np.ndarray | int,
        proto: np.ndarray | int,
        ask_packets: np.ndarray,
        answer_packets: np.ndarray,
        ask_size: np.ndarray | int,
        answer_size: np.ndarray | int,
        ask_flags: np.ndarray | int = 0x1B,
        answer_flags: np.ndarray | int = 0x1B,
        attack: int = -1,
    ) -> None:
        """Both records of connections: the opener's (from an ephemeral port to the
        service port) and the answer."""
        n = len(start)
        ephemeral = rng.integers(32768, 61000, n)
        opener_port = ephemeral
        local_ask, remote_ask = (
            (opener_port, service_port) if customer_opens else (service_port, opener_port)
        )
        self.add(
            start=start,
            duration=duration,
            customer=customer,
            remote=remote,
            outbound=customer_opens,
            local_port=local_ask,
            remote_port=remote_ask,
            proto=proto,
            flags=ask_flags,
            packets=ask_packets,
            size=ask_size,
            attack=attack,
        )
        self.add(
            start=start + rng.integers(0, 40, n),
            duration=duration,
            customer=customer,
            remote=remote,
            outbound=not customer_opens,
            local_port=local_ask,
            remote_port=remote_ask,
            proto=proto,
            flags=answer_flags,
            packets=answer_packets,
            size=answer_size,
            attack=attack,
        )

    def joined(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """One table sorted by export time (``export`` added), as an exporter sends."""
        table = {k: np.concatenate([p[k] for p in self.parts]) for k in self.parts[0]}
        end = table["start"] + table["duration"]
        table["export"] = end + rng.integers(*EXPORT_DELAY_MS, len(end))
        order = np.argsort(table["export"], kind="stable")
        return {k: v[order] for k, v in table.items()}


@dataclass
class Trace:
    seconds: int
    hosts: np.ndarray  # uint32 customer addresses
    roles: np.ndarray  # role name of each host
    attacks: list[Attack]
    table: dict[str, np.ndarray]  # records sorted by export time

    def __len__(self) -> int:
        return len(self.table["start"])

    @property
    def host_hours(self) -> float:
        return len(self.hosts) * self.seconds / 3600


class Remotes:
    """The Internet side: a skewed pool of servers, public resolvers, remote resolvers
    asking the customers' DNS servers, mail exchangers, and forges."""

    def __init__(self, rng: np.random.Generator) -> None:
        pool = rng.integers(0x01000000, 0xDF000000, REMOTE_ADDRESSES, dtype=np.uint64)
        pool[(pool >> 16) == 0x6440] ^= 0x20000000  # none inside the provider range
        self.pool = pool.astype(np.uint32)
        self.resolvers = self.pool[:4]
        self.asking = self.pool[100:2100]
        self.exchangers = self.pool[3000:13000]
        self.forges = self.pool[20:23]
        self.time_servers = self.pool[30:130]

    def servers(self, rng: np.random.Generator, n: int) -> np.ndarray:
        picked: np.ndarray = self.pool[skewed(rng, REMOTE_ADDRESSES, n)]
        return picked

    @staticmethod
    def anywhere(rng: np.random.Generator, n: int) -> np.ndarray:
        """Random IPv4 addresses outside the provider range (scan targets)."""
        out = rng.integers(0x01000000, 0xDF000000, n, dtype=np.uint64)
        out[(out >> 16) == 0x6440] ^= 0x20000000
        return out.astype(np.uint32)


def _times(rng: np.random.Generator, n: int, begin_ms: int, end_ms: int) -> np.ndarray:
    return np.sort(rng.integers(begin_ms, max(end_ms, begin_ms + 1), n)).astype(np.int64)


def _durations(rng: np.random.Generator, n: int, median_ms: float) -> np.ndarray:
    return np.minimum(rng.lognormal(math.log(median_ms), 1.0, n), ACTIVE_MS).astype(np.int64)


def _lognormal_packets(
    rng: np.random.Generator, n: int, median: float, least: int = 1
) -> np.ndarray:
    """Packets of one direction; a TCP connection that completed has ``least`` = 4 (the
    handshake's last ACK, a request, a FIN and its ACK)."""
    packets = np.ceil(rng.lognormal(math.log(median), 0.9, n)).astype(np.int64)
    return np.maximum(packets, least)


def background(
    rng: np.random.Generator,
    records: Records,
    remotes: Remotes,
    hosts: np.ndarray,
    roles: np.ndarray,
    seconds: int,
) -> None:
    span = seconds * 1000
    for role, (_, mean) in ROLES.items():
        mine = hosts[roles == role]
        if not len(mine) or not mean:
            continue
        # Per-host rates, lognormal around the role's mean (sigma 1: a busy few); CI
        # machines 2 to 8 clones a minute, below the brute-force threshold of 20.
        rates = rng.lognormal(math.log(mean) - 0.5, 1.0, len(mine))
        if role == "ci":
            rates = rng.uniform(2, 8, len(mine)) / 60
        n = int(rng.poisson(rates.sum() * seconds))
        who = mine[rng.choice(len(mine), n, p=rates / rates.sum())]
        start = _times(rng, n, 0, span - ACTIVE_MS)
        if role == "client":
            _clients(rng, records, remotes, who, start)
        elif role == "web":
            port = np.where(rng.random(n) < 0.85, 443, 80)
            records.conversation(
                rng,
                start=start,
                duration=_durations(rng, n, 800),
                customer=who,
                remote=remotes.servers(rng, n),
                customer_opens=False,
                service_port=port,
                proto=6,
                ask_packets=_lognormal_packets(rng, n, 8, least=4),
                answer_packets=_lognormal_packets(rng, n, 12, least=4),
                ask_size=rng.integers(60, 400, n),
                answer_size=rng.integers(400, 1400, n),
            )
        elif role == "dns":
            records.conversation(
                rng,
                start=start,
                duration=rng.integers(0, 30, n),
                customer=who,
                remote=remotes.asking[skewed(rng, len(remotes.asking), n)],
                customer_opens=False,
                service_port=53,
                proto=17,
                ask_packets=np.ones(n, np.int64),
                answer_packets=np.ones(n, np.int64),
                ask_size=rng.integers(60, 90, n),
                answer_size=rng.integers(90, 400, n),
                ask_flags=0,
                answer_flags=0,
            )
        elif role == "mail":
            # Receiving at the role's rate; sending 1 to 8 messages per 5 minutes each.
            sending = rng.uniform(1, 8, len(mine)) / 300
            k = int(rng.poisson(sending.sum() * seconds))
            senders = mine[rng.choice(len(mine), k, p=sending / sending.sum())]
            for opens, host, begin in (
                (False, who, start),
                (True, senders, _times(rng, k, 0, span - ACTIVE_MS)),
            ):
                m = len(host)
                records.conversation(
                    rng,
                    start=begin,
                    duration=_durations(rng, m, 2000),
                    customer=host,
                    remote=remotes.exchangers[rng.integers(0, 10000, m)],
                    customer_opens=opens,
                    service_port=25,
                    proto=6,
                    ask_packets=_lognormal_packets(rng, m, 14, least=4),
                    answer_packets=_lognormal_packets(rng, m, 10, least=4),
                    ask_size=rng.integers(200, 1400, m),
                    answer_size=rng.integers(60, 200, m),
                )
        elif role == "ci":
            forge = remotes.forges[(who % len(remotes.forges)).astype(np.int64)]
            records.conversation(
                rng,
                start=start,
                duration=_durations(rng, n, 3000),
                customer=who,
                remote=forge,
                customer_opens=True,
                service_port=22,
                proto=6,
                ask_packets=_lognormal_packets(rng, n, 30, least=4),
                answer_packets=_lognormal_packets(rng, n, 60, least=4),
                ask_size=rng.integers(60, 300, n),
                answer_size=rng.integers(600, 1400, n),
            )
    _backups(rng, records, remotes, hosts[roles == "backup"], span)


def _clients(
    rng: np.random.Generator,
    records: Records,
    remotes: Remotes,
    who: np.ndarray,
    start: np.ndarray,
) -> None:
    n = len(who)
    what = rng.choice(6, n, p=[0.66, 0.10, 0.17, 0.04, 0.02, 0.01])
    # HTTPS and HTTP to popular servers (and a few IMAP servers).
    for code, port in ((0, 443), (1, 80), (3, 993)):
        rows = what == code
        k = int(rows.sum())
        failed = rng.random(k) < 0.02  # a SYN, then a reset
        records.conversation(
            rng,
            start=start[rows],
            duration=np.where(failed, 0, _durations(rng, k, 1500)),
            customer=who[rows],
            remote=remotes.servers(rng, k),
            customer_opens=True,
            service_port=port,
            proto=6,
            ask_packets=np.where(failed, 1, _lognormal_packets(rng, k, 10, least=4)),
            answer_packets=np.where(failed, 1, _lognormal_packets(rng, k, 16, least=4)),
            ask_size=rng.integers(60, 500, k),
            answer_size=rng.integers(400, 1400, k),
            ask_flags=np.where(failed, 0x02, 0x1B),
            answer_flags=np.where(failed, 0x14, 0x1B),
        )
    # DNS to one of the public resolvers.
    rows = what == 2
    k = int(rows.sum())
    records.conversation(
        rng,
        start=start[rows],
        duration=rng.integers(0, 50, k),
        customer=who[rows],
        remote=remotes.resolvers[(who[rows] % 4).astype(np.int64)],
        customer_opens=True,
        service_port=53,
        proto=17,
        ask_packets=np.ones(k, np.int64),
        answer_packets=np.ones(k, np.int64),
        ask_size=rng.integers(60, 90, k),
        answer_size=rng.integers(90, 400, k),
        ask_flags=0,
        answer_flags=0,
    )
    # NTP (each client keeps to its four pool servers) and interactive SSH.
    for code, port, proto, median in ((4, 123, 17, 1), (5, 22, 6, 200)):
        rows = what == code
        k = int(rows.sum())
        if port == 123:
            mine = (who[rows].astype(np.int64) * 4 + rng.integers(0, 4, k)) % 100
            peers = remotes.time_servers[mine]
        else:
            peers = remotes.servers(rng, k)
        records.conversation(
            rng,
            start=start[rows],
            duration=ACTIVE_MS * (port == 22) + np.zeros(k, np.int64),
            customer=who[rows],
            remote=peers,
            customer_opens=True,
            service_port=port,
            proto=proto,
            ask_packets=_lognormal_packets(rng, k, median) if median > 1 else np.ones(k, np.int64),
            answer_packets=(
                _lognormal_packets(rng, k, median) if median > 1 else np.ones(k, np.int64)
            ),
            ask_size=rng.integers(60, 200, k),
            answer_size=rng.integers(60, 400, k),
            ask_flags=0x18 if proto == 6 else 0,
            answer_flags=0x18 if proto == 6 else 0,
        )


def _backups(
    rng: np.random.Generator, records: Records, remotes: Remotes, who: np.ndarray, span: int
) -> None:
    """One long stream each, 50 to 300 Mbit/s of 1,400-byte packets, one record per 10 s."""
    if not len(who):
        return
    mbps = rng.uniform(50, 300, len(who))
    slices = span // ACTIVE_MS
    end = np.tile(np.arange(1, slices + 1) * ACTIVE_MS, len(who)) - rng.integers(0, 500)
    host = np.repeat(np.arange(len(who)), slices)
    packets = (mbps[host] * 1e6 / 8 / 1400 * ACTIVE_MS / 1000).astype(np.int64)
    records.add(
        start=end - ACTIVE_MS,
        duration=np.full(len(end), ACTIVE_MS),
        customer=who[host],
        remote=remotes.servers(rng, len(who))[host],
        outbound=True,
        local_port=45000 + host % 1000,
        remote_port=873,
        proto=6,
        flags=0x18,
        packets=packets,
        size=1400,
    )
    records.add(
        start=end - ACTIVE_MS,
        duration=np.full(len(end), ACTIVE_MS),
        customer=who[host],
        remote=remotes.servers(rng, len(who))[host],
        outbound=False,
        local_port=45000 + host % 1000,
        remote_port=873,
        proto=6,
        flags=0x10,
        packets=packets // 2,
        size=52,
    )


# --- attacks --------------------------------------------------------------------------------


def flood(rng: np.random.Generator, records: Records, a: Attack, index: int) -> None:
    """Records ending evenly over the attack, each holding the packets of its last
    (up to) 10 s: ``per_second`` concurrent source ports' worth a second."""
    per_second = 200 if a.kind == "syn-flood" else 100
    n = int((a.end_ms - a.start_ms) / 1000 * per_second)
    end = _times(rng, n, a.start_ms + 1, a.end_ms)
    start = np.maximum(end - ACTIVE_MS, a.start_ms)
    concurrent = per_second * ACTIVE_MS / 1000
    packets = np.maximum((end - start) / 1000 * a.intensity / concurrent, 1).astype(np.int64)
    syn = a.kind == "syn-flood"
    records.add(
        start=start,
        duration=end - start,
        customer=np.full(n, a.source),
        remote=np.full(n, a.target),
        outbound=True,
        local_port=rng.integers(1024, 65536, n),
        remote_port=a.port,
        proto=6 if syn else 17,
        flags=0x02 if syn else 0,
        packets=packets,
        size=60 if syn else 1200,
        attack=index,
    )


def scan(rng: np.random.Generator, records: Records, a: Attack, index: int) -> None:
    n = int((a.end_ms - a.start_ms) / 1000 * a.intensity)
    start = _times(rng, n, a.start_ms, a.end_ms)
    records.add(
        start=start,
        duration=np.zeros(n, np.int64),
        customer=np.full(n, a.source),
        remote=Remotes.anywhere(rng, n),
        outbound=True,
        local_port=rng.integers(1024, 65536, n),
        remote_port=a.port,
        proto=6,
        flags=0x02,
        packets=np.ones(n, np.int64),
        size=60,
        attack=index,
    )


def bruteforce(rng: np.random.Generator, records: Records, a: Attack, index: int) -> None:
    n = int((a.end_ms - a.start_ms) / 60_000 * a.intensity)
    start = _times(rng, n, a.start_ms, a.end_ms)
    records.conversation(
        rng,
        start=start,
        duration=rng.integers(1500, 4000, n),
        customer=np.full(n, a.source),
        remote=np.full(n, a.target),
        customer_opens=True,
        service_port=22,
        proto=6,
        ask_packets=rng.integers(12, 24, n),
        answer_packets=rng.integers(10, 20, n),
        ask_size=rng.integers(60, 200, n),
        answer_size=rng.integers(60, 300, n),
        attack=index,
    )


def spam(
    rng: np.random.Generator, records: Records, remotes: Remotes, a: Attack, index: int
) -> None:
    """Sessions to ``intensity`` distinct exchangers per 5 minutes, 1 to 3 each."""
    hosts = int((a.end_ms - a.start_ms) / 300_000 * a.intensity)
    sessions = rng.integers(1, 4, hosts)
    peers = np.repeat(remotes.anywhere(rng, hosts), sessions)
    n = len(peers)
    start = _times(rng, n, a.start_ms, a.end_ms)
    records.conversation(
        rng,
        start=start,
        duration=_durations(rng, n, 2500),
        customer=np.full(n, a.source),
        remote=rng.permutation(peers),
        customer_opens=True,
        service_port=25,
        proto=6,
        ask_packets=rng.integers(12, 40, n),
        answer_packets=rng.integers(8, 20, n),
        ask_size=rng.integers(200, 1400, n),
        answer_size=rng.integers(60, 200, n),
        attack=index,
    )


def add_attacks(
    rng: np.random.Generator, records: Records, remotes: Remotes, attacks: list[Attack]
) -> None:
    for i, a in enumerate(attacks):
        if a.kind in ("syn-flood", "udp-flood"):
            flood(rng, records, a, i)
        elif a.kind == "scan":
            scan(rng, records, a, i)
        elif a.kind == "ssh-bruteforce":
            bruteforce(rng, records, a, i)
        else:
            spam(rng, records, remotes, a, i)


#: Kind → (lowest and highest intensity, duration range in seconds) of the labelled
#: trace's attacks. Thresholds (config_detect defaults): 50,000 pps, 500 Mbit/s (a UDP
#: flood of 1,200-byte packets passes it at 52,000 pps); 25 hosts in 5 min; 20 attempts
#: a minute; 20 exchangers in 5 min. The lowest strengths are 1.5× to 2× those.
LABELLED: dict[str, tuple[tuple[float, float], tuple[int, int]]] = {
    "syn-flood": ((75_000, 300_000), (120, 300)),
    "udp-flood": ((75_000, 200_000), (120, 300)),
    "scan": ((50 / 300, 20.0), (600, 900)),
    "ssh-bruteforce": ((40, 200), (240, 480)),
    "spam": ((40, 400), (600, 900)),
}
PORTS = {"syn-flood": 80, "udp-flood": 443, "scan": 23, "ssh-bruteforce": 22, "spam": 25}


def population(seed: int, hosts: int = HOSTS) -> tuple[np.ndarray, np.ndarray]:
    """The network: addresses and their roles (the same for every trace of a seed)."""
    rng = np.random.default_rng(seed)
    addresses = (CUSTOMER_BASE + np.arange(hosts)).astype(np.uint32)
    names = np.array(list(ROLES))
    shares = np.array([share for share, _ in ROLES.values()])
    return addresses, names[rng.choice(len(names), hosts, p=shares / shares.sum())]


def labelled_trace(seed: int, seconds: int, per_kind: int, hosts: int = HOSTS) -> Trace:
    """``per_kind`` attacks of every kind at random times and strengths over
    background of ``hosts`` addresses for ``seconds``."""
    addresses, roles = population(seed, hosts)
    rng = np.random.default_rng(seed + 1)
    remotes = Remotes(rng)
    clients = addresses[roles == "client"]
    attackers = rng.choice(clients, per_kind * len(LABELLED), replace=False)
    attacks: list[Attack] = []
    for k, (kind, ((low, high), (shortest, longest))) in enumerate(LABELLED.items()):
        for j in range(per_kind):
            length = int(rng.integers(shortest, longest + 1)) * 1000
            begin = int(rng.integers(60_000, max(seconds * 1000 - length - 60_000, 60_001)))
            attacks.append(
                Attack(
                    kind=kind,
                    source=int(attackers[k * per_kind + j]),
                    start_ms=begin,
                    end_ms=min(begin + length, seconds * 1000 - ACTIVE_MS),
                    intensity=float(math.exp(rng.uniform(math.log(low), math.log(high)))),
                    target=int(remotes.servers(rng, 1)[0]),
                    port=PORTS[kind],
                )
            )
    return _build(rng, seconds, addresses, roles, remotes, attacks)


def replay_trace(seed: int, seconds: int, starts_s: list[float]) -> Trace:
    """One attack of every kind, from the given start (trace seconds) to the end, at
    strengths both tools should see: floods well over FastNetMon's and hostwarden's
    thresholds (120,000 pps of SYNs; 80,000 pps of 1,200-byte UDP, 768 Mbit/s), a scan
    of 5 probes a second, 90 SSH attempts a minute, spam to 600 mail exchangers per 5
    minutes (2 a second: a spam bot; at 120 per 5 minutes the bench's 30 s before a window's
    end in --quick would not hold the 20 hosts of the threshold)."""
    addresses, roles = population(seed)
    rng = np.random.default_rng(seed + 2)
    remotes = Remotes(rng)
    attackers = rng.choice(addresses[roles == "client"], len(ATTACK_KINDS), replace=False)
    strengths = {
        "syn-flood": 120_000,
        "udp-flood": 80_000,
        "scan": 5.0,
        "ssh-bruteforce": 90.0,
        "spam": 600.0,
    }
    attacks = [
        Attack(
            kind=kind,
            source=int(attackers[i]),
            start_ms=int(starts_s[i] * 1000),
            end_ms=seconds * 1000 - ACTIVE_MS,
            intensity=float(strengths[kind]),
            target=int(remotes.servers(rng, 1)[0]),
            port=PORTS[kind],
        )
        for i, kind in enumerate(ATTACK_KINDS)
    ]
    return _build(rng, seconds, addresses, roles, remotes, attacks)


def _build(
    rng: np.random.Generator,
    seconds: int,
    addresses: np.ndarray,
    roles: np.ndarray,
    remotes: Remotes,
    attacks: list[Attack],
) -> Trace:
    records = Records()
    background(rng, records, remotes, addresses, roles, seconds)
    add_attacks(rng, records, remotes, attacks)
    table = records.joined(rng)
    # Records exported after the trace's end are left out (the exporter's next minute).
    keep = table["export"] < seconds * 1000
    return Trace(seconds, addresses, roles, attacks, {k: v[keep] for k, v in table.items()})


# --- outputs ------------------------------------------------------------------------------


def datagrams(trace: Trace, base_ms: int, seed: int) -> tuple[Stream, np.ndarray]:
    """NetFlow v9 datagrams of the trace (trace time 0 = ``base_ms``), packed by
    ``ingest.pack_stream``: four exporters taking turns, 30 records a datagram (28 with
    the template, resent in every 20th of each exporter), sent at the export time of
    their last record. Also the datagram index of every record."""
    t = trace.table
    n = len(trace)
    # Datagram layout as ingest.generate_stream's, cut to n records.
    count = n // (RECORDS_PER_DATAGRAM - 2) + 2
    index = np.arange(count)
    sequence = index // EXPORTERS
    with_template = sequence % TEMPLATE_EVERY == 0
    per = np.where(with_template, RECORDS_PER_DATAGRAM - 2, RECORDS_PER_DATAGRAM)
    ends = np.cumsum(per)
    used = int(np.searchsorted(ends, n)) + 1
    per, with_template, sequence = per[:used].copy(), with_template[:used], sequence[:used]
    per[-1] -= int(ends[used - 1] - n)
    datagram_of = np.repeat(np.arange(used), per)
    time_ms = base_ms + np.maximum.reduceat(t["export"], np.concatenate(([0], ends[: used - 1])))
    boot_ms = base_ms - (np.arange(EXPORTERS) + 1) * 3 * 86_400_000 - 12_345
    uptime = base_ms - boot_ms[np.arange(used) % EXPORTERS][datagram_of]
    outbound = t["outbound"]
    fields = {
        "src_port": np.where(outbound, t["local_port"], t["remote_port"]),
        "dst_port": np.where(outbound, t["remote_port"], t["local_port"]),
        "proto": t["proto"],
        "tcp_flags": t["flags"],
        "packets": t["packets"],
        "bytes": np.minimum(t["bytes"], 0xFFFFFFFF),
        "first": uptime + t["start"],
        "last": uptime + t["start"] + t["duration"],
    }
    stream = pack_stream(
        np.random.default_rng(seed),
        which=np.where(outbound, 0, 1),
        customer=t["customer"],
        remote=t["remote"],
        other=t["remote"],
        with_template=with_template,
        per=per,
        sequence=sequence,
        time_ms=time_ms,
        boot_ms=boot_ms,
        fields=fields,
    )
    return stream, datagram_of


def flow_batches(trace: Trace, base_ms: int, size: int) -> Iterator[dict[str, np.ndarray]]:
    """The trace's records as FlowBatch columns (not attributed yet), in export order,
    ``size`` records a batch: what the collector's decoder makes of the datagrams."""
    t = trace.table
    mapped = np.uint64(0xFFFF00000000)
    for i in range(0, len(trace), size):
        s = slice(i, i + size)
        outbound = t["outbound"][s]
        customer = t["customer"][s].astype(np.uint64) | mapped
        remote = t["remote"][s].astype(np.uint64) | mapped
        start = base_ms + t["start"][s]
        yield {
            "start": start,
            "end": start + t["duration"][s],
            "source": np.full(len(start), 2, np.uint8),  # NetFlow v9
            "src_lo": np.where(outbound, customer, remote),
            "dst_lo": np.where(outbound, remote, customer),
            "src_port": np.where(outbound, t["local_port"][s], t["remote_port"][s]),
            "dst_port": np.where(outbound, t["remote_port"][s], t["local_port"][s]),
            "proto": t["proto"][s],
            "tcp_flags": t["flags"][s],
            "packets": t["packets"][s].astype(np.uint64),
            "bytes": t["bytes"][s].astype(np.uint64),
            "sampling": np.ones(len(start), np.uint32),
        }
