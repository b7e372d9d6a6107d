"""Threat intelligence: contacts between a customer address and an address on a
blocklist (plain, FireHOL netset or CSV with a category; files or URLs, the project
ships none), reported per address and category (``c2``, ``malware`` …).

Either direction counts. When the customer's address sent to the listed one (a bot
calling its C2 server, a download from a malware host) the finding is ``outbound`` at
``severity``; when only the listed address was seen sending (no packet back in the
sampled records) it is ``inbound`` at ``inbound_severity``, since listed hosts scan the
whole Internet and a provider sees that against every customer.

Lists are reloaded every ``refresh_minutes`` of *wall* time, checked when a window is
evaluated: the lists describe the world now, so a replay of last month's flows uses
today's lists once rather than reloading them for every hour of stream time it goes
through (and a replay in seconds would never reach a reload by stream time).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hostwarden.core.config_detect import DetectSettings, ThreatIntelSettings
from hostwarden.detect.detectors.common import about_local, local_ip, ranked
from hostwarden.detect.feeds import FeedSet, threat_feed
from hostwarden.detect.findings import Finding, address_text, number
from hostwarden.detect.frame import Frame, group_by, top_per_group


class ThreatIntelDetector:
    name = "threatintel"

    def __init__(
        self,
        settings: ThreatIntelSettings,
        home: Path,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        feeds = [
            threat_feed(
                item.source,
                home,
                format=item.format,
                category=item.category,
                ip_column=item.ip_column,
                category_column=item.category_column,
            )
            for item in settings.lists
        ]
        self.feeds = FeedSet(feeds, settings.refresh_minutes * 60, clock)
        self.feeds.start()

    def evaluate(self, frame: Frame) -> list[Finding]:
        self.feeds.maybe_refresh()
        table = self.feeds.table
        if frame.empty() or not len(table):
            return []
        entry = table.lookup(frame["remote_hi"], frame["remote_lo"])
        listed = entry >= 0
        if not listed.any():
            return []
        rows = np.flatnonzero(listed)
        local = frame.by_local()
        category = table.label_code[entry[rows]]
        groups = group_by(local.inverse[rows], category)
        flows = groups.sum(frame["flows"][rows])
        size = groups.sum(frame["bytes"][rows])
        sent = groups.count(frame["outbound"][rows])
        peers_n = groups.distinct(frame["remote_hi"][rows], frame["remote_lo"][rows])
        # Per (group, listed peer): flows and whether the customer sent to it; the
        # heaviest ten of each group, and its ports, in one sort each.
        pairs = group_by(groups.inverse, frame["remote_hi"][rows], frame["remote_lo"][rows])
        pair_flows = pairs.sum(frame["flows"][rows])
        pair_sent = pairs.count(frame["outbound"][rows])
        order, bounds = ranked(groups.inverse[pairs.first], pair_flows, len(groups), 10)
        ports = top_per_group(
            groups, np.arange(len(groups)), [frame["remote_port"][rows]], frame["flows"][rows], 10
        )
        findings: list[Finding] = []
        for g in range(len(groups)):
            row = int(rows[groups.first[g]])
            label = table.labels[int(category[groups.first[g]])]
            outbound = bool(sent[g])
            peers: list[dict[str, Any]] = []
            for p in order[bounds[g] : bounds[g + 1]].tolist():
                r = int(rows[pairs.first[p]])
                e = int(entry[r])
                peers.append(
                    {
                        "ip": address_text(frame["remote_hi"][r], frame["remote_lo"][r]),
                        "flows": float(pair_flows[p]),
                        "sent_to": bool(pair_sent[p]),
                        "listed": table.range_text(e),
                        "list": table.origins[e],
                    }
                )
            ip = local_ip(frame, row)
            if outbound:
                what = f"{ip} sent to {peers_n[g]} address(es) listed as {label}"
            else:
                what = f"{peers_n[g]} address(es) listed as {label} sent to {ip} (no reply seen)"
            findings.append(
                about_local(
                    frame,
                    row,
                    category="threat-intel",
                    severity=self.settings.severity if outbound else self.settings.inbound_severity,
                    direction="outbound" if outbound else "inbound",
                    kind=label,
                    summary=f"{what} in {frame.seconds} s ({flows[g]:.0f} flows)",
                    counts={
                        "peers": int(peers_n[g]),
                        "flows": float(flows[g]),
                        "bytes": float(size[g]),
                    },
                    top_peers=peers,
                    top_ports=[{"port": key[0], "flows": number(w)} for key, w in ports[g]],
                )
            )
        return findings


def make(settings: DetectSettings, home: Path) -> ThreatIntelDetector | None:
    section = settings.threatintel
    if not section.enabled or not section.lists:
        return None
    return ThreatIntelDetector(section, home)
