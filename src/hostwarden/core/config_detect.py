"""The ``[detect]`` section: the detection engine and every built-in detector's thresholds.

Each detector has its own sub-section (``[detect.scan]`` …) whose defaults are the
documented ones (docs/detect.md has the table and where each default comes from). All
rates are of sampling-scaled counts: a record's packets and bytes are already multiplied
by its sampling rate at decode, and it counts as ``sampling`` flows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

Severity = Literal["info", "low", "medium", "high", "critical"]
#: The windows the engine keeps, in seconds (a detector picks one of them).
WINDOWS = (10, 60, 300)
WindowSeconds = Literal[10, 60, 300]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Detector(_Section):
    enabled: bool = True


class VolumetricSettings(_Detector):
    """Outbound attacks from a customer address, and inbound attacks against one."""

    window_seconds: WindowSeconds = 10
    #: Outbound, per provider-side address (FastNetMon's defaults are per host too).
    out_pps: float = Field(50_000, gt=0)
    out_mbps: float = Field(500, gt=0)
    out_fps: float = Field(5_000, gt=0)
    #: Outbound, per customer (all its addresses together).
    customer_pps: float = Field(100_000, gt=0)
    customer_mbps: float = Field(1_000, gt=0)
    customer_fps: float = Field(10_000, gt=0)
    #: Also alert when an address sends this many times its own baseline for the hour of
    #: week, once it sends at least ``baseline_min_pps``.
    baseline_ratio: float = Field(20.0, gt=1)
    baseline_min_pps: float = Field(5_000, ge=0)
    #: The baseline of an hour-of-week slot is used once it holds this many windows
    #: (30 × 10 s: five minutes of that hour's traffic) …
    baseline_min_observations: int = Field(30, ge=1)
    #: … and moves by this weight for each hour of new traffic, so 0.2 remembers about
    #: the last five weeks of that hour (the first weeks are a plain average).
    baseline_alpha: float = Field(0.2, gt=0, le=1)
    #: Addresses whose baseline is kept (2.4 KB each, 240 MB when full; the least
    #: recently seen go).
    baseline_max_addresses: int = Field(100_000, ge=100)
    #: Inbound, per provider-side address: an attack on a customer (suggests a blackhole).
    in_pps: float = Field(100_000, gt=0)
    in_mbps: float = Field(1_000, gt=0)
    #: While a window is open (``[detect] peek_seconds``), an address also alerts when
    #: the records that *arrived* over the last ``recent_seconds`` carried a threshold's
    #: rate, as FastNetMon counts: a flood then shows in seconds, not after its window.
    #: Only on ``recent_min_records`` records' worth of evidence, counted as the
    #: effective number (Σ packets)² / Σ packets², so the two big records of a long
    #: transfer arriving together are not read as a burst. 0 seconds turns it off.
    recent_seconds: float = Field(2.0, ge=0, le=60)
    recent_min_records: float = Field(50, ge=1)
    #: Source ports of reflection/amplification responses (DNS, NTP, SNMP, CLDAP, SSDP,
    #: memcached).
    amplification_ports: list[int] = Field(default=[53, 123, 161, 389, 1900, 11211])
    top: int = Field(10, ge=1, le=100)
    severity: Severity = "high"


class ScanSettings(_Detector):
    """Horizontal (one port, many hosts) and vertical (one host, many ports) scans; the
    thresholds are Zeek's scan policy defaults (25 hosts or 15 ports in 5 minutes)."""

    window_seconds: WindowSeconds = 300
    hosts: int = Field(25, ge=2)
    ports: int = Field(15, ge=2)
    #: A flow counts as a probe when it has at most this many packets (per sampled
    #: record: packets ÷ sampling), or is a TCP SYN without ACK.
    probe_max_packets: int = Field(3, ge=1)
    severity: Severity = "medium"


class BruteForceSettings(_Detector):
    """Many short flows from one source to one login service in a minute."""

    window_seconds: WindowSeconds = 60
    #: Port → service name.
    services: dict[int, str] = Field(
        default={
            22: "ssh",
            3389: "rdp",
            23: "telnet",
            5900: "vnc",
            445: "smb",
            3306: "mysql",
            1433: "mssql",
            6379: "redis",
        }
    )
    flows_per_minute: float = Field(20, gt=0)
    #: Outbound: attempts per target on average; one per host is a scan, not guessing.
    min_attempts_per_target: float = Field(3.0, ge=1)
    #: A login attempt is a flow of at most this many packets.
    max_packets: int = Field(40, ge=1)
    #: Imported sshd logs: failed logins from one source to one server in the window.
    auth_failures: int = Field(10, ge=1)
    #: Also alert on inbound brute force against a customer (informational by default).
    inbound: bool = True
    severity: Severity = "medium"
    inbound_severity: Severity = "low"


class SpamSettings(_Detector):
    """SMTP fan-out: one address talking to many distinct mail servers."""

    window_seconds: WindowSeconds = 300
    ports: list[int] = Field(default=[25])
    hosts: int = Field(20, ge=2)
    severity: Severity = "medium"


class MiningSettings(_Detector):
    """Connections to mining pools (Stratum) named in feed files."""

    window_seconds: WindowSeconds = 60
    #: Files of pool addresses: one ``IP``, ``CIDR``, ``IP:port`` or ``[IPv6]:port`` a
    #: line (``#`` comments); relative paths are under the data directory. Re-read when
    #: they change (checked once a minute). The project ships none.
    feeds: list[Path] = Field(default_factory=list)
    #: Remote ports typical of Stratum; a connection to one of them lasting at least
    #: ``stratum_min_seconds`` (followed across windows) is reported at
    #: ``port_severity`` even without a feed entry (an empty list: off). Miners hold one
    #: connection for hours; ten minutes leaves out short visits to a service on 4444.
    stratum_ports: list[int] = Field(default=[3333, 4444, 5555, 7777, 14433, 14444, 45700])
    stratum_min_seconds: int = Field(600, ge=0)
    severity: Severity = "medium"
    port_severity: Severity = "low"


class TunnelSettings(_Detector):
    """VPNs and proxies: a policy category, not abuse by itself."""

    window_seconds: WindowSeconds = 300
    #: Which kinds to report: openvpn, wireguard, ipsec, gre, l2tp, pptp, proxy.
    kinds: list[str] = Field(
        default=["openvpn", "wireguard", "ipsec", "gre", "l2tp", "pptp", "proxy"]
    )
    #: Bytes in the window before a tunnel is reported.
    min_bytes: int = Field(10_000_000, ge=0)
    #: Proxy: one peer, a flow of at least this long and this much, on a port outside
    #: ``common_ports``.
    proxy_min_seconds: int = Field(600, ge=1)
    proxy_min_bytes: int = Field(100_000_000, ge=1)
    #: Bulk transfers that are not proxies: rsync (873), SMB (445), NFS (2049) and iSCSI
    #: (3260) backups hold one peer for hours too (bench/detect.py: 149 false proxy
    #: alerts on rsync backups before 873 was here).
    common_ports: list[int] = Field(
        default=[
            *(20, 21, 22, 25, 53, 80, 110, 123, 143, 443, 445, 465, 587, 873, 993, 995),
            *(2049, 3260, 3306, 5432, 8080),
        ]
    )
    severity: Severity = "low"


class ThreatList(_Section):
    """One blocklist: a file or a URL, its format and the category its entries mean."""

    #: A path (relative: under the data directory) or an http, https or file URL.
    source: str
    format: Literal["plain", "netset", "csv"] = "plain"
    category: str = "malware"
    #: CSV: the column of the address and, optionally, of a per-row category.
    ip_column: str = "ip"
    category_column: str = ""


class ThreatIntelSettings(_Detector):
    """Contacts between a customer address and an address on a blocklist."""

    window_seconds: WindowSeconds = 60
    lists: list[ThreatList] = Field(default_factory=list)
    #: Lists are read again this often (wall time; a list that fails keeps its previous
    #: version). Most public blocklists change a few times a day.
    refresh_minutes: int = Field(60, ge=1)
    #: The customer's address sent to the listed one (a C2 callback, a download).
    severity: Severity = "high"
    #: Only the listed address sent (no packet back seen): mostly the Internet's
    #: background scanning from listed hosts.
    inbound_severity: Severity = "low"


class AnomalySettings(_Detector):
    """An instance far from its own baseline (pps, bps, flows/s, distinct peers)."""

    window_seconds: WindowSeconds = 300
    #: EWMA weight of one hour of new observations in its hour-of-week slot (each
    #: window gets its share), so 0.2 remembers about the last five weeks of that hour.
    alpha: float = Field(0.2, gt=0, le=1)
    #: Alert above ``factor`` × the baseline …
    factor: float = Field(10.0, gt=1)
    #: … once the slot has this many observations (windows: 3 × 5 min of that hour) …
    min_observations: int = Field(3, ge=1)
    #: … and the value is above these floors (small numbers vary a lot).
    min_pps: float = Field(1_000, ge=0)
    min_mbps: float = Field(10, ge=0)
    min_fps: float = Field(100, ge=0)
    min_peers: int = Field(200, ge=0)
    #: Instances (or addresses without one) whose baseline is kept (3 KB each, 150 MB
    #: when full; the least recently seen go).
    max_baselines: int = Field(50_000, ge=100)
    severity: Severity = "low"


#: Syslog facilities an alert may be sent with (RFC 5424 §6.2.1 names and codes).
SyslogFacility = Literal[
    "user",
    "daemon",
    "auth",
    "local0",
    "local1",
    "local2",
    "local3",
    "local4",
    "local5",
    "local6",
    "local7",
]


class DetectSettings(_Section):
    #: Run the detectors on the collectors' batches as they arrive.
    enabled: bool = True
    #: A window closes once records this much later than its end have arrived.
    lateness_seconds: int = Field(30, ge=0, le=3600)
    #: A window holding more records is evaluated at once (memory bound), and a new one
    #: starts for the rest of its time.
    max_window_records: int = Field(5_000_000, ge=1_000, le=500_000_000)
    #: Detectors that can judge a window before it closes (volumetric: an address whose
    #: packets so far already make the threshold) look at the records that arrived in
    #: it every this many seconds of stream time; 0 turns it off (alerts at close only).
    peek_seconds: int = Field(1, ge=0, le=300)
    #: The same address and category within this time updates the alert, not a new one.
    cooldown_minutes: int = Field(30, ge=0, le=7 * 24 * 60)
    #: Where the per-address baselines are kept (relative to the data directory).
    state_dir: Path = Path("detect")
    #: Alert delivery (docs/detect.md). Webhooks: each new alert (and update, with
    #: ``deliver_updates``) is POSTed to every URL, signed like the change feed
    #: (``X-Hostwarden-Signature: t=…,v1=HMAC-SHA256(webhook_secret, "<t>.<body>")``).
    webhook_urls: list[str] = Field(default_factory=list)
    webhook_secret: SecretStr = SecretStr("")
    webhook_timeout_seconds: float = Field(5.0, gt=0, le=60)
    #: Syslog (RFC 5424): off while ``syslog_host`` is empty. UDP is the RFC 5426
    #: transport; TCP frames by octet counting (RFC 6587).
    syslog_host: str = ""
    syslog_port: int = Field(514, ge=1, le=65535)
    syslog_protocol: Literal["udp", "tcp"] = "udp"
    syslog_facility: SyslogFacility = "local0"
    #: Also deliver every update of an open alert (each window of an ongoing attack).
    deliver_updates: bool = True
    #: A failed delivery is tried again after this, doubling each time up to an hour,
    #: and given up after ``delivery_attempts`` tries (the row stays, status failed).
    delivery_retry_seconds: int = Field(30, ge=1, le=3600)
    delivery_attempts: int = Field(10, ge=1, le=100)
    #: How often the scheduler's delivery job sends what is due.
    delivery_interval_seconds: float = Field(10.0, gt=0, le=3600)
    volumetric: VolumetricSettings = VolumetricSettings()
    scan: ScanSettings = ScanSettings()
    bruteforce: BruteForceSettings = BruteForceSettings()
    spam: SpamSettings = SpamSettings()
    mining: MiningSettings = MiningSettings()
    tunnels: TunnelSettings = TunnelSettings()
    threatintel: ThreatIntelSettings = ThreatIntelSettings()
    anomaly: AnomalySettings = AnomalySettings()

    @model_validator(mode="after")
    def _webhooks_are_signed(self) -> DetectSettings:
        for url in self.webhook_urls:
            if not url.startswith(("http://", "https://")):
                raise ValueError(
                    f"[detect] webhook_urls has '{url}', which is not an http(s) URL; "
                    "write it like https://soc.example.net/hooks/hostwarden"
                )
        if self.webhook_urls and not self.webhook_secret.get_secret_value():
            raise ValueError(
                "[detect] webhook_urls is set but webhook_secret is empty; set a secret "
                "(e.g. env HOSTWARDEN_DETECT__WEBHOOK_SECRET) so receivers can check the "
                "signature"
            )
        return self

    @model_validator(mode="after")
    def _known_tunnel_kinds(self) -> DetectSettings:
        known = {"openvpn", "wireguard", "ipsec", "gre", "l2tp", "pptp", "proxy"}
        unknown = sorted(set(self.tunnels.kinds) - known)
        if unknown:
            raise ValueError(
                f"[detect.tunnels] kinds has unknown kind(s) {', '.join(unknown)}; "
                f"choose from {', '.join(sorted(known))}"
            )
        return self
