"""Cryptomining: a customer address talking to a mining pool named in a feed file, and,
as a weaker signal, a long-lived connection to a port typical of Stratum that no feed
names.

Pools are looked up by the remote address of every record (either direction: a sampled
reply from the pool counts as much as the miner's request); an entry with a port
(``IP:port``) matches only that remote port, since pool operators often share
addresses with their web sites. Miners keep one Stratum connection open for hours, so
the port signal needs a conversation of at least ``stratum_min_seconds`` (followed
across windows, see ``detect.conversations``): a short visit to port 3333 or 4444
(a development server, a game) is not one.

Feed files are checked every ``FEED_CHECK_SECONDS`` of wall time when a window is
evaluated, and re-read when their size or modification time changed; a file that
fails to read keeps its previous entries (logged).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from hostwarden.core.config_detect import DetectSettings, MiningSettings
from hostwarden.detect.conversations import Conversations
from hostwarden.detect.detectors.common import (
    about_local,
    local_ip,
    port_set,
    ranked,
    top_remote_ports,
)
from hostwarden.detect.feeds import FeedSet, mining_feed
from hostwarden.detect.findings import Finding, address_text
from hostwarden.detect.frame import TCP, Frame, group_by

#: How often the feed files' size and modification time are looked at (wall time).
FEED_CHECK_SECONDS = 60
#: Stratum pools send a new job at least every minute or two; a pause longer than this
#: between records of one 5-tuple starts a new conversation.
STRATUM_GAP_MS = 300_000


class MiningDetector:
    name = "mining"

    def __init__(
        self,
        settings: MiningSettings,
        home: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        self.feeds = FeedSet(
            [mining_feed(str(path), home) for path in settings.feeds], FEED_CHECK_SECONDS, clock
        )
        self.feeds.start()
        self.stratum = port_set(settings.stratum_ports)
        self.conversations = Conversations(STRATUM_GAP_MS)

    def evaluate(self, frame: Frame) -> list[Finding]:
        self.feeds.maybe_refresh()
        if frame.empty():
            return []
        table = self.feeds.table
        listed = np.zeros(len(frame), dtype=bool)
        entry = np.full(len(frame), -1, dtype=np.int64)
        if len(table):
            entry = table.lookup(frame["remote_hi"], frame["remote_lo"])
            hits = np.flatnonzero(entry >= 0)
            listed[hits] = table.port_matches(entry[hits], frame["remote_port"][hits])
        findings = self._pools(frame, listed, entry) if listed.any() else []
        if self.settings.stratum_ports:
            named = {f.ip for f in findings}
            findings += [f for f in self._stratum(frame, listed) if f.ip not in named]
        return findings

    def _pools(
        self, frame: Frame, listed: NDArray[np.bool_], entry: NDArray[np.int64]
    ) -> list[Finding]:
        local = frame.by_local()
        wanted = np.flatnonzero(local.count(listed) > 0)
        flows = local.sum(frame["flows"], listed)
        size = local.sum(frame["bytes"], listed)
        pools = local.distinct(frame["remote_hi"], frame["remote_lo"], mask=listed)
        ports = top_remote_ports(frame, local, wanted, listed)
        rows = np.flatnonzero(listed)
        # Heaviest pools per address, with the feed line that names each.
        pairs = group_by(local.inverse[rows], frame["remote_hi"][rows], frame["remote_lo"][rows])
        pair_flows = pairs.sum(frame["flows"][rows])
        order, bounds = ranked(local.inverse[rows[pairs.first]], pair_flows, len(local), 10)
        table = self.feeds.table
        findings: list[Finding] = []
        for g in wanted.tolist():
            peers = []
            for p in order[bounds[g] : bounds[g + 1]].tolist():
                r = int(rows[pairs.first[p]])
                e = int(entry[r])
                peers.append(
                    {
                        "ip": address_text(frame["remote_hi"][r], frame["remote_lo"][r]),
                        "flows": float(pair_flows[p]),
                        "listed": table.range_text(e),
                        "feed": table.origins[e],
                    }
                )
            row = int(local.first[g])
            ip = local_ip(frame, row)
            findings.append(
                about_local(
                    frame,
                    row,
                    category="mining",
                    severity=self.settings.severity,
                    direction="outbound",
                    kind="pool",
                    summary=(
                        f"{ip} talked to {pools[g]} mining pool address(es) from the feeds "
                        f"in {frame.seconds} s ({flows[g]:.0f} flows)"
                    ),
                    counts={
                        "pools": int(pools[g]),
                        "flows": float(flows[g]),
                        "bytes": float(size[g]),
                    },
                    top_peers=peers,
                    top_ports=ports[g],
                )
            )
        return findings

    def _stratum(self, frame: Frame, listed: NDArray[np.bool_]) -> list[Finding]:
        candidate = (frame["proto"] == TCP) & self.stratum[frame["remote_port"]] & ~listed
        rows = np.flatnonzero(candidate)
        if not len(rows):
            self.conversations.expire(frame)
            return []
        seen = self.conversations.update(frame, rows)
        long_lived = np.flatnonzero(seen.seconds >= self.settings.stratum_min_seconds)
        if not len(long_lived):
            return []
        local = frame.by_local()
        owners = group_by(local.inverse[seen.row[long_lived]])
        order, bounds = ranked(owners.inverse, seen.seconds[long_lived], len(owners))
        findings: list[Finding] = []
        for o in range(len(owners)):
            members = long_lived[order[bounds[o] : bounds[o + 1]]]
            row = int(seen.row[members[0]])
            ip = local_ip(frame, row)
            longest = float(seen.seconds[members[0]])
            peers = [
                {
                    "ip": address_text(
                        frame["remote_hi"][seen.row[m]], frame["remote_lo"][seen.row[m]]
                    ),
                    "port": int(frame["remote_port"][seen.row[m]]),
                    "seconds": round(float(seen.seconds[m]), 1),
                    "bytes": float(seen.bytes[m]),
                }
                for m in members[:10].tolist()
            ]
            ports = sorted({int(frame["remote_port"][seen.row[m]]) for m in members.tolist()})
            findings.append(
                about_local(
                    frame,
                    row,
                    category="mining",
                    severity=self.settings.port_severity,
                    direction="outbound",
                    kind="stratum-port",
                    summary=(
                        f"{ip} kept {len(members)} connection(s) open to Stratum port(s) "
                        f"{', '.join(map(str, ports))} of hosts no feed names, the longest "
                        f"for {longest / 60:.0f} min"
                    ),
                    counts={"connections": len(members), "seconds": longest},
                    top_peers=peers,
                    top_ports=[{"port": p} for p in ports],
                )
            )
        return findings


def make(settings: DetectSettings, home: Path) -> MiningDetector | None:
    section = settings.mining
    if not section.enabled or not (section.feeds or section.stratum_ports):
        return None
    return MiningDetector(section, home)
