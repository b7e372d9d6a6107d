"""Outbound spam: one customer address talking SMTP to many distinct mail servers.

A mail server or relay delivers to the recipients' MX hosts, so it talks to many
servers too; what sets a spamming host apart is how many distinct servers in a short
time. A small business relay reaches a handful of providers' MX hosts in five minutes;
a spam bot walks its list of domains and reaches dozens to thousands. The default of 20
distinct hosts in 5 minutes sits between (tunable per network: a provider hosting
busy legitimate mail relays raises it or suppresses their addresses).

A contact is any record whose remote port is an SMTP port (``ports``): the customer's
connection and the server's replies both have the server's port 25 on the remote side,
so unidirectional sampling still sees it, and counting distinct hosts is not inflated
by seeing both. Mail delivered *to* a customer's server has port 25 on the local side
and is not counted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hostwarden.core.config_detect import DetectSettings, SpamSettings
from hostwarden.detect.detectors.common import (
    about_local,
    local_ip,
    port_set,
    top_remote_ports,
    top_remotes,
)
from hostwarden.detect.findings import Finding
from hostwarden.detect.frame import Frame


class SpamDetector:
    name = "spam"

    def __init__(self, settings: SpamSettings) -> None:
        self.settings = settings
        self.window_seconds: int = settings.window_seconds
        self.smtp = port_set(settings.ports)

    def evaluate(self, frame: Frame) -> list[Finding]:
        if frame.empty():
            return []
        mask = self.smtp[frame["remote_port"]]
        if not mask.any():
            return []
        local = frame.by_local()
        hosts = local.distinct(frame["remote_hi"], frame["remote_lo"], mask=mask)
        wanted = np.flatnonzero(hosts >= self.settings.hosts)
        if not len(wanted):
            return []
        flows = local.sum(frame["flows"], mask)
        sent = local.sum(frame["bytes"], mask & frame["outbound"])
        peers = top_remotes(frame, local, wanted, mask)
        ports = top_remote_ports(frame, local, wanted, mask)
        findings: list[Finding] = []
        for g in wanted.tolist():
            row = int(local.first[g])
            ip = local_ip(frame, row)
            findings.append(
                about_local(
                    frame,
                    row,
                    category="spam",
                    severity=self.settings.severity,
                    direction="outbound",
                    kind="smtp",
                    summary=(
                        f"{ip} talked SMTP to {hosts[g]} distinct mail servers in "
                        f"{frame.seconds} s ({flows[g]:.0f} flows)"
                    ),
                    counts={
                        "hosts": int(hosts[g]),
                        "flows": float(flows[g]),
                        "bytes_sent": float(sent[g]),
                    },
                    top_peers=peers[g],
                    top_ports=ports[g],
                )
            )
        return findings


def make(settings: DetectSettings, home: Path) -> SpamDetector | None:
    return SpamDetector(settings.spam) if settings.spam.enabled else None
