"""Spam detector: SMTP fan-out from a customer address, and mail traffic that is not."""

from __future__ import annotations

from pathlib import Path

from hostwarden.core.config_detect import DetectSettings, SpamSettings
from hostwarden.detect.detectors.spam import SpamDetector, make
from tests.detect.support import T0, Trace, of, run

BOT = "100.64.3.3"
RELAY = "100.64.3.4"


def detector(**overrides: object) -> SpamDetector:
    return SpamDetector(SpamSettings(**overrides))


def mail_servers(n: int) -> list[str]:
    return [f"198.51.{100 + i // 250}.{i % 250 + 1}" for i in range(n)]


def test_smtp_to_many_mail_servers_is_spam() -> None:
    trace = Trace().background(records=5000)
    trace.flows(
        local=BOT,
        remote=mail_servers(60),
        n=120,
        remote_port=25,
        packets=12,
        spread_ms=200_000,
        customer_id=9,
        instance_id=90,
    )
    findings = of(run(detector(), trace), "spam")
    assert len(findings) == 1
    found = findings[0]
    assert (found.ip, found.kind, found.direction) == (BOT, "smtp", "outbound")
    assert (found.customer_id, found.instance_id) == (9, 90)
    assert found.counts["hosts"] == 60 and found.counts["flows"] == 120
    assert found.counts["bytes_sent"] == 120 * 12 * 500
    assert len(found.top_peers) == 10 and all(p["flows"] == 2 for p in found.top_peers)
    assert found.top_ports == [{"port": 25, "flows": 120}]
    assert "SMTP to 60 distinct mail servers in 300 s" in found.summary


def test_a_relay_talking_to_few_servers_a_lot_is_not_spam() -> None:
    trace = Trace().background(records=5000)
    # 2,000 deliveries, but to the 12 MX hosts of the big mail providers.
    trace.flows(local=RELAY, remote=mail_servers(12), n=2000, remote_port=25, spread_ms=250_000)
    # 19 distinct servers: one below the default 20.
    trace.flows(local=BOT, remote=mail_servers(19), n=19, remote_port=25)
    assert run(detector(), trace) == []


def test_mail_delivered_to_a_customers_server_is_not_its_spam() -> None:
    trace = Trace()
    # 200 senders deliver to the customer's MX: port 25 is on the customer's side.
    trace.flows(
        local=RELAY,
        remote=mail_servers(200),
        n=400,
        outbound=False,
        local_port=25,
        remote_port=45000,
    )
    # ... and its replies back to them.
    trace.flows(local=RELAY, remote=mail_servers(200), n=400, local_port=25, remote_port=45000)
    assert run(detector(), trace) == []


def test_the_window_is_five_minutes_and_fanout_split_across_two_is_not_counted_together() -> None:
    trace = Trace().flows(
        local=BOT, remote=mail_servers(15), n=15, remote_port=25, start_ms=T0 + 200_000
    )
    trace.flows(
        local=BOT, remote=mail_servers(30)[15:], n=15, remote_port=25, start_ms=T0 + 310_000
    )
    assert run(detector(), trace) == []
    assert [f.counts["hosts"] for f in run(detector(window_seconds=60, hosts=10), trace)] == [
        15,
        15,
    ]


def test_sampled_records_and_submission_ports() -> None:
    # 1:1000 sampling: one record per server is all a router exports of a spam run.
    trace = Trace().flows(
        local=BOT, remote=mail_servers(15), n=15, remote_port=587, packets=1, sampling=1000
    )
    trace.flows(local=BOT, remote=mail_servers(30)[15:], n=15, remote_port=25, packets=3)
    # 15 servers on port 25; 587 is not one of the default ports.
    assert run(detector(), trace) == []
    found = run(detector(ports=[25, 587], hosts=30), trace)
    assert [(f.counts["hosts"], f.counts["flows"]) for f in found] == [(30, 15 * 1000 + 15)]
    assert found[0].top_ports == [{"port": 587, "flows": 15_000}, {"port": 25, "flows": 15}]


def test_the_detector_can_be_disabled() -> None:
    settings = DetectSettings()
    settings.spam.enabled = False
    assert make(settings, Path(".")) is None
    assert make(DetectSettings(), Path(".")) is not None
