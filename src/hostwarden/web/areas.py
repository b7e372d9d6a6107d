"""The console's areas, one per domain of DESIGN.md, and what each will hold."""

from __future__ import annotations

from dataclasses import dataclass

from hostwarden.core.rbac import Perm
from hostwarden.web.i18n import N_


@dataclass(frozen=True)
class Area:
    slug: str
    title: str
    permission: Perm
    #: Empty while the area is built: the page then lists what is coming.
    ready: bool = False
    issue: str = ""
    coming: tuple[str, ...] = ()
    #: Other paths the area's pages live under (the side menu marks the area there too).
    paths: tuple[str, ...] = ()

    def holds(self, path: str) -> bool:
        """Whether ``path`` is one of the area's pages."""
        return any(path == p or path.startswith(p + "/") for p in (f"/{self.slug}", *self.paths))


AREAS: tuple[Area, ...] = (
    Area(
        "customers",
        N_("Customers & KYC"),
        Perm.REGISTRY_READ,
        ready=True,
        issue="#4",
        coming=(
            N_("Identity verification with resident ID and unified social credit code checks"),
            N_("Commitment letters (承诺书): versions, acceptance records, signed PDFs"),
            N_("Provisioning gate and ban-evasion screening"),
        ),
    ),
    Area(
        "inventory",
        N_("Inventory"),
        Perm.REGISTRY_READ,
        ready=True,
        issue="#4",
        coming=(
            N_("Machine rooms, IP ranges and instances"),
            N_("Who held which IP (and NAT port) at which time"),
            N_("Change feed from billing and panels"),
        ),
    ),
    Area(
        "flows",
        N_("Flows & logs"),
        Perm.FLOWS_READ,
        ready=True,
        issue="#5",
        coming=(
            N_("NetFlow v5/v9, IPFIX and sFlow collection"),
            N_("Access, NAT and SSH log import"),
            N_("Sealed, hash-chained store kept at least 180 days, with legal holds"),
        ),
    ),
    Area(
        "detect",
        N_("Detection"),
        Perm.ALERTS_READ,
        ready=True,
        issue="#6",
        coming=(
            N_("Outbound DDoS, scanning, brute force, spam, mining, tunnels"),
            N_("Threat-intelligence matches and anomalies per instance"),
            N_("Alerts, suppressions and traffic charts"),
        ),
        # /detect itself only leads to the alert list.
        paths=("/alerts",),
    ),
    Area(
        "cases",
        N_("Abuse desk"),
        Perm.CASES_READ,
        ready=True,
        issue="#7",
        coming=(
            N_("Reports by mail, API and web form, parsed and attributed"),
            N_("Cases with deadlines, notifications and escalation"),
            N_("SLA figures per category"),
        ),
    ),
    Area(
        "filing",
        N_("ICP filing (备案)"),
        Perm.CONSOLE_VIEW,
        issue=N_("a later issue"),
        coming=(
            N_("Domains served from the network checked against ICP filings"),
            N_("Unfiled sites queued for action"),
        ),
    ),
    Area(
        "scans",
        N_("Webshell scans (挂马)"),
        Perm.CONSOLE_VIEW,
        issue=N_("a later issue"),
        coming=(N_("Scan results for webshells and injected malware, per instance"),),
    ),
    Area(
        "enforcement",
        N_("Enforcement"),
        Perm.CONSOLE_VIEW,
        issue=N_("a later issue"),
        coming=(
            N_("nftables, BGP blackhole, hypervisor and billing drivers"),
            N_("Suspension and termination with data-destruction certificates"),
        ),
    ),
    Area(
        "legal",
        N_("Legal"),
        Perm.CONSOLE_VIEW,
        issue=N_("a later issue"),
        coming=(
            N_("Law-enforcement requests and legal holds"),
            N_("Evidence packages with integrity proofs"),
            N_("Breach notifications (PIPL art. 57)"),
        ),
    ),
    Area(
        "reports",
        N_("Reports"),
        Perm.CONSOLE_VIEW,
        issue=N_("a later issue"),
        coming=(N_("Regulator instructions and periodic self-audit reports"),),
    ),
)
