"""Detection benchmark: detector throughput, precision/recall, and FastNetMon side by side.

    .venv/bin/python bench/detect.py [--quick] [--json] [--hours 1] [--per-kind 20]
                                     [--runs 3] [--replay-seconds 300] [--no-replay]

Input (bench/detect_support.py, numpy, fixed seed): a hosting network of 12,000 customer
addresses (clients, web, DNS and mail servers, CI machines and backup hosts: realistic
mixes with legitimate look-alikes) and outbound attacks from distinct customer
addresses with known start and end: SYN flood, UDP flood, horizontal scan, SSH brute
force and spam. The data directory is made by ``ingest.make_home`` (12,000 addresses of
100.64.0.0/16 held by 3,000 customers), so records are attributed by the registry.

Measured:

1. **Detector throughput**: the labelled trace (--hours of background, --per-kind
   attacks of each kind at 1.5× to 40× the default thresholds) as attributed
   ``FlowBatch``es of 50,000 records (the collector's ``batch_records``) in export
   order, fed to one ``Engine`` with every detector ``plugins.load_detectors`` returns
   (detectors whose modules are not there yet are left out and named), on one pinned
   core: records/s of ``feed`` + ``flush``, best of --runs (fresh engine and detectors
   each run), with each detector's seconds from ``engine.stats.seconds``. Target
   ≥ 1,000,000 records/s.
2. **Precision and recall per detector** on the same run's findings. A finding is a
   *true positive* when its ``ip`` is an attack's source, its ``category`` is that
   attack's category (``ddos-out``, ``scan``, ``bruteforce``, ``spam``) and its window
   overlaps the attack's time. An attack is *detected* (recall) when it has at least one
   true positive. Findings are grouped into alerts as the alert store does (same
   address and category within ``[detect] cooldown_minutes``); an alert with no true
   positive finding is *collateral* when it names an attack's source during its
   attack in another category (say, an anomaly on a flooding address), and *false*
   otherwise. Targets: recall ≥ 0.95, ≤ 1 false alert per 10,000 host-hours
   (host-hours = customer addresses × trace hours).
3. **FastNetMon side by side**: a short trace (--replay-seconds, one attack of every
   kind) packed as NetFlow v9 by ``ingest.pack_stream`` (four exporters, 30 records a
   datagram, each datagram at the export time of its last record) and replayed in real
   time over 127.0.0.1, each datagram sent to both tools back to back, each exporter
   from its own loopback address:
   - FastNetMon (Debian's 1.2.4, ``fastnetmon --configuration_file``) with its own
     configuration in a temporary directory: NetFlow on a loopback port, the provider
     range as ``networks_list``, thresholds as hostwarden's defaults (50,000 pps,
     500 Mbit/s, 5,000 flows/s per address), ban on pps, bandwidth and flows; its
     ``notify_script_path`` script records the time of every ban;
   - hostwarden: ``hostwarden flows collect`` (one worker) on its own data directory,
     the product's path: ``CollectorWorker`` (receive, decode) → ``Ingestor``
     (attribution) → the ``detect`` ingest tap (``ParquetStore``, then ``Engine``, then
     ``AlertSink``); the alerts' ``created_at`` from the alert store after the run;
   - the same with ``[detect] lateness_seconds = 10`` instead of the default 30, on a
     second data directory (a what-if: how much of the delay is the engine waiting for
     late records).
   For each attack: the time from sending the first datagram holding one of its
   records to the first ban (FastNetMon) or alert of its category (hostwarden). Alerts
   created only by the engine's flush at shutdown are reported as such, not as a
   detection time. The attacks start 2 s apart, the first 150 s before the end of a
   5-minute window (25 s with --quick), since the windows are aligned to the clock.
   Target: every attack FastNetMon detects, hostwarden detects no later; and it detects
   the others.

``--quick`` (under 2 minutes): 6 minutes of labelled trace, 4 attacks of each kind, one
throughput run, a 70-second replay. ``--json`` prints the results as JSON on stdout
(the tables go to stderr).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from detect_support import (  # bench/detect_support.py
    ATTACK_KINDS,
    CUSTOMERS,
    HOSTS,
    Trace,
    address_text,
    datagrams,
    flow_batches,
    labelled_trace,
    replay_trace,
)
from ingest import (  # bench/ingest.py
    EXPORTERS,
    PROVIDER_RANGE,
    cores,
    free_port,
    loopback_address,
    make_home,
    pin,
    udp_sockets,
)
from rich.console import Console
from rich.table import Table

from hostwarden.core.timeutil import as_utc

console = Console(highlight=False, width=170, stderr=True)

#: 2026-05-04 12:00:00 UTC, a Monday: a whole multiple of 300 s, so windows of 10, 60
#: and 300 s all begin there.
ALIGNED_MS = 1_777_896_000_000
BATCH_RECORDS = 50_000  # [flows] batch_records


# --- the detectors ------------------------------------------------------------------------


def detectors_now(settings: Any, home: Path) -> tuple[list[Any], list[str]]:
    """What ``load_detectors`` returns; while some built-in modules are still being
    written, the ones that import, and the names of those that do not."""
    from hostwarden.detect import plugins

    try:
        return plugins.load_detectors(settings, home), []
    except ModuleNotFoundError:
        pass
    found: list[Any] = []
    missing: list[str] = []
    for spec in plugins.BUILTIN:
        module_name, attribute = spec.split(":")
        qualified = f"hostwarden.detect.detectors.{module_name}"
        try:
            module = importlib.import_module(qualified)
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
            missing.append(module_name)
            continue
        detector = getattr(module, attribute)(settings, home)
        if detector is not None:
            found.append(detector)
    return found, missing


# --- the labelled trace: throughput, precision and recall -----------------------------------


def attributed_batches(home: Path, trace: Trace, base_ms: int) -> list[Any]:
    """The trace as attributed FlowBatches, through the registry's bulk attribution."""
    from hostwarden.core.config import load_settings
    from hostwarden.core.runtime import Runtime
    from hostwarden.flows.ingest import attribute_batch
    from hostwarden.flows.schema import FlowBatch
    from hostwarden.registry import attribution

    runtime = Runtime.open(load_settings(home=home))
    try:
        index = attribution.current_index(runtime)
        return [
            attribute_batch(index, FlowBatch(columns))
            for columns in flow_batches(trace, base_ms, BATCH_RECORDS)
        ]
    finally:
        runtime.close()


@dataclass
class ThroughputRun:
    records: int
    seconds: float
    cpu_s: float
    detector_seconds: dict[str, float]
    findings: list[Any] = field(repr=False)
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def rate(self) -> float:
        return self.records / self.seconds


def run_engine(
    home: Path, batches: list[Any], peek_seconds: int | None = None
) -> tuple[ThroughputRun, list[str], list[str]]:
    """One pass of the engine over the batches on one pinned core."""
    from hostwarden.core.config_detect import DetectSettings
    from hostwarden.detect.engine import Engine

    settings = DetectSettings()
    if peek_seconds is not None:
        settings = settings.model_copy(update={"peek_seconds": peek_seconds})
    # Every run starts without learnt baselines (the trace is one hour, not weeks).
    shutil.rmtree(home / settings.state_dir, ignore_errors=True)
    detectors, missing = detectors_now(settings, home)
    engine = Engine(settings, detectors)
    before = os.sched_getaffinity(0)
    pin(cores()[0])
    try:
        began, cpu_began = time.perf_counter(), time.process_time()
        findings = engine.feed_all(batches)
        seconds, cpu_s = time.perf_counter() - began, time.process_time() - cpu_began
    finally:
        os.sched_setaffinity(0, before)
    run = ThroughputRun(
        records=sum(len(b) for b in batches),
        seconds=seconds,
        cpu_s=cpu_s,
        detector_seconds=dict(engine.stats.seconds),
        findings=findings,
        stats=engine.stats.as_dict(),
    )
    return run, [d.name for d in detectors], missing


@dataclass
class Score:
    """Precision and recall of one detector on the labelled trace."""

    detector: str
    attacks: int = 0
    detected: int = 0
    alerts: int = 0
    true_alerts: int = 0
    false_alerts: int = 0
    collateral_alerts: int = 0
    findings: int = 0
    false_findings: int = 0
    #: Trace seconds from an attack's start to the end of its first true window.
    delays_s: list[float] = field(default_factory=list)
    kinds: dict[str, int] = field(default_factory=dict)
    missed: list[str] = field(default_factory=list)
    #: False alerts by the role of the address (client, web, dns, mail, ci, backup).
    false_roles: dict[str, int] = field(default_factory=dict)
    false_examples: list[str] = field(default_factory=list)

    @property
    def recall(self) -> float | None:
        return self.detected / self.attacks if self.attacks else None

    @property
    def precision(self) -> float | None:
        judged = self.true_alerts + self.false_alerts
        return self.true_alerts / judged if judged else None


def evaluate(
    trace: Trace, findings: list[Any], base_ms: int, cooldown_ms: int, detectors: list[str]
) -> dict[str, Score]:
    scores = {name: Score(name) for name in detectors}
    for a in trace.attacks:
        scores.setdefault(a.detector, Score(a.detector)).attacks += 1
    role_of = {address_text(int(a)): str(r) for a, r in zip(trace.hosts, trace.roles, strict=True)}
    by_source: dict[str, list[int]] = defaultdict(list)
    for i, a in enumerate(trace.attacks):
        by_source[a.ip].append(i)

    def overlapping(f: Any) -> list[int]:
        begin, end = f.window_start_ms - base_ms, f.window_end_ms - base_ms
        return [
            i
            for i in by_source.get(f.ip, [])
            if begin < trace.attacks[i].end_ms and end > trace.attacks[i].start_ms
        ]

    first_true: dict[int, float] = {}
    # Alerts: findings of one address and category, a new alert after a quiet cooldown.
    groups: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for f in sorted(findings, key=lambda f: f.window_start_ms):
        groups[(f.ip, f.category)].append(f)
    for (_, category), found in groups.items():
        alerts: list[list[Any]] = []
        last_end = None
        for f in found:
            if last_end is None or f.window_start_ms - last_end > cooldown_ms:
                alerts.append([])
            alerts[-1].append(f)
            last_end = max(last_end or 0, f.window_end_ms)
        for alert in alerts:
            score = scores.setdefault(alert[0].detector, Score(alert[0].detector))
            score.alerts += 1
            verdict = "false"
            for f in alert:
                score.findings += 1
                score.kinds[f.kind] = score.kinds.get(f.kind, 0) + 1
                hits = overlapping(f)
                true = [i for i in hits if trace.attacks[i].category == category]
                for i in true:
                    delay = (f.window_end_ms - base_ms - trace.attacks[i].start_ms) / 1000
                    first_true[i] = min(first_true.get(i, delay), delay)
                    verdict = "true"
                if hits and not true and verdict == "false":
                    verdict = "collateral"
                if not hits:
                    score.false_findings += 1
            if verdict == "true":
                score.true_alerts += 1
            elif verdict == "collateral":
                score.collateral_alerts += 1
            else:
                score.false_alerts += 1
                role = role_of.get(alert[0].ip, "?")
                score.false_roles[role] = score.false_roles.get(role, 0) + 1
                if sum(f"({role})" in e for e in score.false_examples) < 2:
                    f = alert[0]
                    score.false_examples.append(f"({role}) {f.category}/{f.kind}: {f.summary}")
    for i, a in enumerate(trace.attacks):
        score = scores[a.detector]
        if i in first_true:
            score.detected += 1
            score.delays_s.append(first_true[i])
        else:
            score.missed.append(a.describe())
    return scores


# --- the replay: hostwarden's collector and FastNetMon over loopback ------------------------


def collector_toml(port: int, lateness: int | None) -> str:
    """One collector's configuration: one worker, its port; the what-if run also its
    lateness."""
    text = (
        '[logging]\nlevel = "WARNING"\n\n[flows]\nworkers = 1\n\n'
        f'[[flows.listeners]]\nprotocol = "netflow"\nhost = "127.0.0.1"\nport = {port}\n'
    )
    if lateness is not None:
        text += f"\n[detect]\nlateness_seconds = {lateness}\n"
    return text


def start_collector(home: Path, port: int, lateness: int | None, log: Path, cpu: int) -> Any:
    """``hostwarden flows collect`` on ``home`` (its own data directory: alerts are
    deduplicated per database), detection on through the ``detect`` ingest tap."""
    (home / "hostwarden.toml").write_text(collector_toml(port, lateness), encoding="utf-8")
    (home / "run" / "collector-0.json").unlink(missing_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSTWARDEN_")}
    env["HOSTWARDEN_HOME"] = str(home)
    with log.open("ab") as errors:
        return subprocess.Popen(
            [sys.executable, "-m", "hostwarden", "flows", "collect"],
            env=env,
            stdout=errors,
            stderr=errors,
            preexec_fn=lambda: pin(cpu),
        )


def read_alerts(home: Path) -> list[dict[str, Any]]:
    """Every alert the run recorded, with when it was created."""
    from sqlalchemy import select

    from hostwarden.core.config import load_settings
    from hostwarden.core.runtime import Runtime
    from hostwarden.detect.models import DetectAlert

    runtime = Runtime.open(load_settings(home=home))
    try:
        with runtime.reading() as session:
            rows = session.execute(
                select(
                    DetectAlert.ip,
                    DetectAlert.category,
                    DetectAlert.kind,
                    DetectAlert.summary,
                    DetectAlert.created_at,
                ).order_by(DetectAlert.created_at)
            ).all()
    finally:
        runtime.close()
    return [
        {"ip": ip, "category": c, "kind": k, "summary": s, "t": as_utc(t).timestamp()}
        for ip, c, k, s, t in rows
    ]


def fastnetmon_binary() -> str | None:
    """Debian installs it in /usr/sbin, which is not on every user's PATH."""
    found = shutil.which("fastnetmon")
    if found is None and Path("/usr/sbin/fastnetmon").exists():
        found = "/usr/sbin/fastnetmon"
    return found


def fastnetmon_version() -> str:
    try:
        return subprocess.run(
            ["dpkg-query", "-W", "-f=${Version}", "fastnetmon"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown version"


def fastnetmon_conf(work: Path, port: int) -> Path:
    """FastNetMon's configuration for the run: NetFlow on 127.0.0.1:port, the provider
    range, hostwarden's default per-address thresholds, every outside service off
    (API, Prometheus, usage report), files in ``work``."""
    (work / "networks_list").write_text(PROVIDER_RANGE + "\n", encoding="utf-8")
    (work / "networks_whitelist").write_text("", encoding="utf-8")
    notify = work / "notify.sh"
    notify.write_text(
        "#!/bin/sh\n"
        f'echo "$(date +%s.%N) $1 $2 $3 $4" >> {work / "bans"}\n'
        "cat > /dev/null\n",  # ban details come on stdin; FastNetMon expects them read
        encoding="utf-8",
    )
    notify.chmod(0o755)
    options = {
        "logging_level": "info",
        "disable_usage_report": "on",
        "enable_ban": "on",
        "enable_ban_ipv6": "off",
        "process_incoming_traffic": "on",
        "process_outgoing_traffic": "on",
        "ban_time": "1900",
        "unban_only_if_attack_finished": "on",
        "networks_list_path": str(work / "networks_list"),
        "white_list_path": str(work / "networks_whitelist"),
        "check_period": "1",
        "enable_connection_tracking": "on",
        # hostwarden's [detect.volumetric] out_pps, out_mbps, out_fps defaults.
        "ban_for_pps": "on",
        "ban_for_bandwidth": "on",
        "ban_for_flows": "on",
        "threshold_pps": "50000",
        "threshold_mbps": "500",
        "threshold_flows": "5000",
        "netflow": "on",
        "netflow_host": "127.0.0.1",
        "netflow_port": str(port),
        "netflow_sampling_ratio": "1",
        "sflow": "off",
        "pcap": "off",
        "mirror_afpacket": "off",
        "average_calculation_time": "5",
        "speed_calculation_delay": "1",
        "notify_script_path": str(notify),
        "monitor_local_ip_addresses": "off",
        "enable_api": "off",
        "prometheus": "off",
        "redis_enabled": "off",
        "mongodb_enabled": "off",
        "exabgp": "off",
        "gobgp": "off",
        "influxdb": "off",
        "graphite": "off",
        "pid_path": str(work / "fastnetmon.pid"),
        "cli_stats_file_path": str(work / "fastnetmon.dat"),
        "cli_stats_ipv6_file_path": str(work / "fastnetmon_ipv6.dat"),
    }
    path = work / "fastnetmon.conf"
    path.write_text("".join(f"{k} = {v}\n" for k, v in options.items()), encoding="utf-8")
    return path


def start_pinned(command: list[str], log: Path, cpu: int) -> subprocess.Popen[bytes]:
    with log.open("ab") as errors:
        return subprocess.Popen(command, stdout=errors, stderr=errors, preexec_fn=lambda: pin(cpu))


def wait_until(ready: Any, process: subprocess.Popen[bytes], what: str, log: Path) -> None:
    deadline = time.monotonic() + 60
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            raise RuntimeError(f"{what} did not start; see {log}")
        time.sleep(0.05)


def send(stream: Any, base_ms: int, ports: list[int]) -> tuple[np.ndarray, float]:
    """Send every datagram at its export time (trace time 0 one second from now) to
    every port; the wall time each was sent."""
    sockets = []
    for e in range(EXPORTERS):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((loopback_address(e), 0))
        sockets.append(sock)
    targets = [("127.0.0.1", p) for p in ports]
    offsets = (np.asarray(stream.time_ms, np.int64) - base_ms) / 1000.0
    sent_at = np.zeros(len(offsets))
    wall0 = time.time() + 1.0
    try:
        for i, payload in enumerate(stream.datagrams):
            due = wall0 + offsets[i]
            wait = due - time.time()
            if wait > 0:
                time.sleep(wait)
            sock = sockets[int(stream.exporter[i])]
            for target in targets:
                sock.sendto(payload, target)
            sent_at[i] = time.time()
    finally:
        for sock in sockets:
            sock.close()
    return sent_at, wall0


#: The tools of the replay: FastNetMon, hostwarden with its defaults, and hostwarden with
#: a shorter ``[detect] lateness_seconds`` (records are exported up to 5 s after their end
#: and handed to the writer every 2 s, so 10 s still takes nearly all of them in time):
#: how much of hostwarden's delay is the engine's wait for late records.
FASTNETMON = "FastNetMon"
HOSTWARDEN = "hostwarden"
WHAT_IF = "hostwarden, lateness 10 s"
WHAT_IF_LATENESS = 10


@dataclass
class Detection:
    attack: str
    ip: str
    first_sent: float  # wall time of the first datagram with one of its records
    #: Tool → seconds from ``first_sent`` to its first alert on this attack.
    seconds: dict[str, float] = field(default_factory=dict)
    #: Tools whose first alert came only from the engine's flush at shutdown.
    at_shutdown: list[str] = field(default_factory=list)
    kinds: dict[str, str] = field(default_factory=dict)

    def met(self) -> bool:
        """hostwarden (defaults) alerted during the replay, no later than FastNetMon."""
        hw = self.seconds.get(HOSTWARDEN)
        if hw is None or HOSTWARDEN in self.at_shutdown:
            return False
        fnm = self.seconds.get(FASTNETMON)
        return fnm is None or hw <= fnm


@dataclass
class Replay:
    seconds: int
    records: int
    datagrams: int
    detections: list[Detection]
    #: Tool → "(role) category/kind" → alerts on addresses that did not attack.
    false_alerts: dict[str, dict[str, int]]
    false_examples: list[str]
    #: hostwarden findings on an attacker in another category than its attack's.
    collateral: list[str]
    kernel_drops: dict[str, int]
    note: str
    #: Lines of the tools' output that name a problem.
    problems: list[str] = field(default_factory=list)


def run_replay(
    work: Path,
    homes: list[Path],
    seconds: int,
    first_attack_s: float,
    before_boundary_s: float,
    seed: int,
) -> Replay:
    """The attacks start 2 s apart from ``first_attack_s`` (trace time), the first of
    them ``before_boundary_s`` before the end of a 5-minute (and 1-minute) window."""
    starts = [first_attack_s + 2.0 * i for i in range(len(ATTACK_KINDS))]
    base_ms = ALIGNED_MS - int((first_attack_s + before_boundary_s) * 1000)
    trace = replay_trace(seed, seconds, starts)
    for home in homes:
        shutil.rmtree(home / "detect", ignore_errors=True)  # no baselines from the runs before
    stream, datagram_of = datagrams(trace, base_ms, seed)
    log = work / "tools.log"
    ports: list[int] = []
    while len(ports) < 3:
        port = free_port()
        if port not in ports:
            ports.append(port)
    fnm_port = ports[0]
    fnm_dir = work / "fastnetmon"
    fnm_dir.mkdir()
    conf = fastnetmon_conf(fnm_dir, fnm_port)
    tool_cpu, other_cpu = cores()
    fnm = start_pinned(
        [
            str(fastnetmon_binary()),
            "--configuration_file",
            str(conf),
            "--log_file",
            str(fnm_dir / "fastnetmon.log"),
            "--disable_pid_logic",
        ],
        log,
        other_cpu,
    )
    collectors: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    for i, (name, lateness) in enumerate(((HOSTWARDEN, None), (WHAT_IF, WHAT_IF_LATENESS))):
        collectors[name] = (
            start_collector(homes[i], ports[1 + i], lateness, log, tool_cpu),
            homes[i],
        )
    try:
        wait_until(lambda: udp_sockets(fnm_port)[0] > 0, fnm, "fastnetmon", log)
        for name, (process, data) in collectors.items():
            # The worker writes its stats once its socket is bound and its loop runs.
            stats = data / "run" / "collector-0.json"
            wait_until(stats.exists, process, name, log)
        time.sleep(1.0)
        sent_at, _ = send(stream, base_ms, ports)
        time.sleep(3.0)  # let the tools drain their sockets and the collectors hand off
        drops = {
            FASTNETMON: udp_sockets(fnm_port)[2],
            HOSTWARDEN: udp_sockets(ports[1])[2],
            WHAT_IF: udp_sockets(ports[2])[2],
        }
    finally:
        stopped_at = time.time()
        for process in [c[0] for c in collectors.values()] + [fnm]:
            process.send_signal(signal.SIGTERM)
        for process in [c[0] for c in collectors.values()] + [fnm]:
            try:
                process.wait(timeout=120)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    role_of = {address_text(int(a)): str(r) for a, r in zip(trace.hosts, trace.roles, strict=True)}
    attack_of = trace.table["attack"]
    detections: list[Detection] = []
    for i, a in enumerate(trace.attacks):
        first_record = int(np.flatnonzero(attack_of == i)[0])
        detections.append(Detection(a.kind, a.ip, float(sent_at[datagram_of[first_record]])))
    by_ip = {d.ip: d for d in detections}
    sources = {a.ip: a for a in trace.attacks}
    false: dict[str, dict[str, int]] = {FASTNETMON: {}, HOSTWARDEN: {}, WHAT_IF: {}}
    examples: list[str] = []
    seen: set[tuple[str, str, str]] = set()

    def alert_false(tool: str, ip: str, what: str, text: str) -> None:
        if (tool, ip, what) in seen:
            return
        seen.add((tool, ip, what))
        key = f"({role_of.get(ip, '?')}) {what}"
        false[tool][key] = false[tool].get(key, 0) + 1
        if sum(e.startswith(f"{tool}: {key}") for e in examples) < 1:
            examples.append(f"{tool}: {key}: {text}")

    bans = fnm_dir / "bans"
    for line in bans.read_text().splitlines() if bans.exists() else []:
        parts = line.split()
        if len(parts) < 5 or parts[4] != "ban":
            continue
        at, ip = float(parts[0]), parts[1]
        d = by_ip.get(ip)
        if d is None:
            alert_false(FASTNETMON, ip, f"ban {parts[2]}", f"{ip} {parts[3]} pps")
        elif FASTNETMON not in d.seconds:
            d.seconds[FASTNETMON] = at - d.first_sent

    collateral: list[str] = []
    for name, (_, data) in collectors.items():
        for row in read_alerts(data):
            d = by_ip.get(row["ip"])
            attack = sources.get(row["ip"])
            what = f"{row['category']}/{row['kind']}"
            if d is None or attack is None:
                alert_false(name, row["ip"], what, row["summary"])
            elif row["category"] != attack.category:
                if name == HOSTWARDEN:
                    collateral.append(f"{what} on the {attack.kind} source")
            elif name not in d.seconds:
                d.seconds[name] = row["t"] - d.first_sent
                d.kinds[name] = row["kind"]
                if row["t"] >= stopped_at:
                    d.at_shutdown.append(name)
    output = log.read_text(encoding="utf-8", errors="replace") if log.exists() else ""
    problems = [
        line
        for line in output.splitlines()
        if re.search(r"error|warn|fail|traceback|exception", line, re.IGNORECASE)
    ]
    return Replay(
        problems=problems[-20:],
        seconds=seconds,
        records=len(trace),
        datagrams=len(stream.datagrams),
        detections=detections,
        false_alerts=false,
        false_examples=examples,
        collateral=collateral,
        kernel_drops=drops,
        note=(
            "hostwarden: `hostwarden flows collect` (CollectorWorker → Ingestor → the detect "
            "tap: ParquetStore, Engine, AlertSink), alert times from the alert store, both "
            "collectors pinned to one core; FastNetMon (Debian package "
            f"{fastnetmon_version()}) pinned to the other"
        ),
    )


# --- the report -------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "—" if value is None else format(value, spec)


def report(
    args: argparse.Namespace,
    trace: Trace,
    runs: list[ThroughputRun],
    detector_names: list[str],
    missing: list[str],
    scores: dict[str, Score],
    replay: Replay | None,
) -> dict[str, Any]:
    best = max(runs, key=lambda r: r.rate)
    hours = trace.seconds / 3600
    console.print(
        f"labelled trace: {len(trace):,} records, {len(trace.hosts):,} customer addresses × "
        f"{hours:g} h = {trace.host_hours:,.0f} host-hours, {len(trace.attacks)} attacks; "
        f"detectors: {', '.join(detector_names) or 'none'}"
        + (f"; not there yet: {', '.join(missing)}" if missing else "")
    )
    grid = Table(title="Detector stage, one core", title_justify="left")
    for column in ("measure", "hostwarden", "target", "met"):
        grid.add_column(column)
    grid.add_row(
        f"records/s, Engine.feed + flush (best of {len(runs)})",
        f"{best.rate:,.0f}",
        "≥ 1,000,000",
        "yes" if best.rate >= 1_000_000 else "NO",
    )
    grid.add_row("  records per CPU-second", f"{best.records / best.cpu_s:,.0f}", "", "")
    spent = sum(best.detector_seconds.values())
    for name, seconds in sorted(best.detector_seconds.items(), key=lambda kv: -kv[1]):
        grid.add_row(f"  {name}", f"{seconds:.3f} s", "", "")
    grid.add_row("  engine (windows, frames)", f"{best.seconds - spent:.3f} s", "", "")
    console.print(grid)

    table = Table(title="Precision and recall on the labelled trace", title_justify="left")
    for column in (
        "detector",
        "attacks",
        "detected",
        "recall",
        "alerts: true / false / collateral",
        "precision",
        "false per 10k host-h",
        "first window end − start, median s",
        "kinds",
        "met",
    ):
        table.add_column(column)
    per_10k = 10_000 / trace.host_hours
    for name, s in scores.items():
        recall_ok = s.recall is None or s.recall >= 0.95
        false_ok = s.false_alerts * per_10k <= 1
        delays = sorted(s.delays_s)
        table.add_row(
            name,
            str(s.attacks),
            str(s.detected),
            fmt(s.recall),
            f"{s.true_alerts} / {s.false_alerts} / {s.collateral_alerts}",
            fmt(s.precision),
            f"{s.false_alerts * per_10k:.2f}",
            fmt(delays[len(delays) // 2] if delays else None, ".0f"),
            ", ".join(f"{k} {v}" for k, v in sorted(s.kinds.items())),
            "yes" if recall_ok and false_ok else "NO",
        )
    absent = sorted({kind for kind, (_, det) in ATTACK_KINDS.items() if det not in scores})
    console.print(table)
    if absent:
        console.print(f"attack kinds without a detector: {', '.join(absent)}")
    for s in scores.values():
        for text in s.missed[:5]:
            console.print(f"  missed ({s.detector}): {text}")
        if s.false_roles:
            roles = ", ".join(f"{r} {n}" for r, n in sorted(s.false_roles.items()))
            console.print(f"  false alerts of {s.detector} by role of the address: {roles}")
        for text in s.false_examples:
            console.print(f"  false ({s.detector}): {text}")

    if replay is not None:
        side = Table(
            title=f"Replay over loopback, real time, {replay.seconds} s, {replay.records:,} "
            f"records in {replay.datagrams:,} datagrams: seconds from the attack's first "
            "datagram to the alert",
            title_justify="left",
        )
        tools = (FASTNETMON, HOSTWARDEN, WHAT_IF)
        for column in ("attack", "source", *tools, "hostwarden ≤ FastNetMon"):
            side.add_column(column)
        for d in replay.detections:
            cells = []
            for tool in tools:
                text = fmt(d.seconds.get(tool), ".1f")
                if tool in d.at_shutdown:
                    text += " (only at shutdown)"
                cells.append("not detected" if tool not in d.seconds else text)
            side.add_row(d.attack, d.ip, *cells, "yes" if d.met() else "NO")
        false = Table(title="Replay: alerts on addresses that did not attack", title_justify="left")
        for column in ("tool", "alerts", "by (role of the address) what"):
            false.add_column(column)
        for tool in tools:
            found = replay.false_alerts[tool]
            false.add_row(
                tool,
                str(sum(found.values())),
                ", ".join(f"{k} {v}" for k, v in sorted(found.items(), key=lambda kv: -kv[1])),
            )
        console.print(side)
        console.print(false)
        for text in replay.false_examples:
            console.print(f"  e.g. {text}")
        console.print(
            f"{replay.note}. hostwarden findings in another category on attackers: "
            f"{', '.join(sorted(set(replay.collateral))) or 'none'}; kernel drops "
            f"{replay.kernel_drops}."
        )
        if replay.problems:
            console.print("[bold]tool output:[/bold]\n" + "\n".join(replay.problems))

    replay_met = None if replay is None else all(d.met() for d in replay.detections)
    return {
        "targets": {
            "records_per_s": best.rate >= 1_000_000,
            "recall": all(s.recall is None or s.recall >= 0.95 for s in scores.values()),
            "false_alerts": all(s.false_alerts * per_10k <= 1 for s in scores.values()),
            "replay_no_later_than_fastnetmon_and_all_detected": replay_met,
        },
        "trace": {
            "records": len(trace),
            "hosts": len(trace.hosts),
            "hours": hours,
            "host_hours": trace.host_hours,
            "attacks": [asdict(a) | {"ip": a.ip} for a in trace.attacks],
        },
        "detectors": detector_names,
        "missing_detectors": missing,
        "throughput": [
            {
                "records": r.records,
                "seconds": r.seconds,
                "cpu_s": r.cpu_s,
                "records_per_s": r.rate,
                "detector_seconds": r.detector_seconds,
                "engine": r.stats,
            }
            for r in runs
        ],
        "scores": {
            name: asdict(s)
            | {
                "recall": s.recall,
                "precision": s.precision,
                "false_per_10k_host_hours": s.false_alerts * per_10k,
            }
            for name, s in scores.items()
        },
        "replay": None if replay is None else asdict(replay),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=1.0, help="labelled trace length")
    parser.add_argument("--per-kind", type=int, default=20, help="attacks of each kind")
    parser.add_argument("--runs", type=int, default=3, help="throughput runs (best counts)")
    parser.add_argument("--replay-seconds", type=int, default=300)
    parser.add_argument("--no-replay", action="store_true", help="skip FastNetMon side by side")
    parser.add_argument("--seed", type=int, default=20261123)
    parser.add_argument("--quick", action="store_true", help="6 min trace, 70 s replay")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument(
        "--peek-seconds",
        type=int,
        default=None,
        help="[detect] peek_seconds for the throughput runs (0: judge at close only)",
    )
    args = parser.parse_args()
    if args.quick:
        args.hours, args.per_kind, args.runs, args.replay_seconds = 0.1, 4, 1, 70
    if not args.no_replay and fastnetmon_binary() is None:
        sys.exit(
            "fastnetmon is needed (Debian: apt-get install fastnetmon; scripts/system-deps.sh)"
        )
    for key in [k for k in os.environ if k.startswith("HOSTWARDEN_")]:
        del os.environ[key]
    from hostwarden.core.config_detect import DetectSettings
    from hostwarden.core.logs import configure_logging

    configure_logging("WARNING", "console")
    console.print("load average at the start: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg()))
    with tempfile.TemporaryDirectory(prefix="hw-bench-detect-") as tmp:
        work = Path(tmp)
        home = work / "home"
        began = time.perf_counter()
        make_home(home, args.seed, assigned=HOSTS, customers=CUSTOMERS)
        seconds = int(args.hours * 3600)
        trace = labelled_trace(args.seed, seconds, args.per_kind)
        batches = attributed_batches(home, trace, ALIGNED_MS)
        console.print(
            f"setup: registry, trace and attribution in {time.perf_counter() - began:.1f} s; "
            f"{sum(int((b['local_side'] != 0).sum()) for b in batches):,} of {len(trace):,} "
            "records attributed"
        )
        runs: list[ThroughputRun] = []
        names: list[str] = []
        missing: list[str] = []
        for _ in range(args.runs):
            with console.status("engine over the labelled trace"):
                run, names, missing = run_engine(home, batches, args.peek_seconds)
            runs.append(run)
            console.print(f"engine run: {run.rate:,.0f} records/s, {len(run.findings)} findings")
        del batches
        cooldown_ms = DetectSettings().cooldown_minutes * 60_000
        scores = evaluate(trace, runs[-1].findings, ALIGNED_MS, cooldown_ms, names)
        replay = None
        if not args.no_replay:
            with console.status(f"replay: {args.replay_seconds} s in real time to both tools"):
                first, before = (8.0, 25.0) if args.quick else (20.0, 150.0)
                second = work / "home-what-if"
                make_home(second, args.seed, assigned=HOSTS, customers=CUSTOMERS)
                replay = run_replay(
                    work, [home, second], args.replay_seconds, first, before, args.seed
                )
    result = report(args, trace, runs, names, missing, scores, replay)
    console.print("load average at the end: {:.2f}, {:.2f}, {:.2f}".format(*os.getloadavg()))
    if args.json:
        print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
