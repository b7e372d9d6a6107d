"""The alert store: findings become alerts, deduplicated, suppressed, audited, in one
transaction; the operator's close, feedback and suppressions."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import create_engine, inspect

from hostwarden.core import audit, migrate
from hostwarden.core.config import Settings
from hostwarden.core.config_detect import DetectSettings
from hostwarden.core.runtime import Actor, Runtime, system_actor
from hostwarden.detect import alerts, delivery
from hostwarden.detect.alerts import AlertSink
from hostwarden.detect.models import DetectDelivery
from hostwarden.errors import Conflict, NotFound, ValidationFailed
from tests.detect.alert_support import (
    MINUTE,
    T0,
    Holders,
    alerts_of,
    audit_of,
    count,
    finding,
    make_holders,
    stored,
)

ABUSE = Actor("li.na", ("abuse",), "req-1")


@pytest.fixture
def holders(runtime: Runtime) -> Holders:
    return make_holders(runtime)


def at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


# --- findings become alerts ---------------------------------------------------------------


def test_a_finding_becomes_an_open_alert_with_its_window_holder_and_evidence(
    runtime: Runtime, holders: Holders
) -> None:
    results = AlertSink(runtime).take(
        [finding(customer_id=holders.acme, instance_id=holders.acme_vm)]
    )
    assert [(r.action, r.alert_id) for r in results] == [("created", 1)]
    (alert,) = alerts_of(runtime)
    assert (alert.category, alert.kind, alert.severity, alert.ip, alert.status) == (
        "scan",
        "horizontal",
        "medium",
        "203.0.113.5",
        "open",
    )
    assert (alert.customer_id, alert.instance_id) == (holders.acme, holders.acme_vm)
    assert alert.first_seen == at(T0) and alert.last_seen == at(T0 + 5 * MINUTE)
    assert alert.ip_key == "00000000000000000000ffffcb007105"
    data = alerts.alert_dict(alert)
    assert data["counts"] == {"hosts": 40, "flows": 120}
    assert data["top_ports"] == [{"port": 22, "flows": 120}]
    assert data["evidence"] == {
        "from": "2026-05-04T11:55:00.000000Z",
        "to": "2026-05-04T12:05:00.000000Z",
        "ip": "203.0.113.5",
        "url": "/api/v1/flows/records?from=2026-05-04T11%3A55%3A00.000000Z"
        "&to=2026-05-04T12%3A05%3A00.000000Z&ip=203.0.113.5",
    }


def test_the_same_address_and_category_within_the_cooldown_updates_the_alert(
    runtime: Runtime, holders: Holders
) -> None:
    sink = AlertSink(runtime)
    sink.take([finding(customer_id=holders.acme, counts={"hosts": 40, "flows": 120})])
    # Next window begins 25 minutes after the first ended: inside the 30-minute cooldown.
    later = T0 + 30 * MINUTE
    results = sink.take(
        [
            finding(
                customer_id=holders.acme,
                start_ms=later,
                severity="high",
                kind="vertical",
                counts={"hosts": 12, "flows": 300, "ports": 90},
                summary="203.0.113.5 probed 90 ports of 198.51.100.7",
            )
        ]
    )
    assert [(r.action, r.alert_id) for r in results] == [("updated", 1)]
    (alert,) = alerts_of(runtime)
    assert alert.updates == 1
    assert alert.first_seen == at(T0) and alert.last_seen == at(later + 5 * MINUTE)
    assert json.loads(alert.counts) == {"hosts": 40, "flows": 300, "ports": 90}
    assert (alert.severity, alert.kind) == ("high", "vertical")
    assert alert.summary == "203.0.113.5 probed 90 ports of 198.51.100.7"
    # A lower severity later never lowers it.
    sink.take([finding(customer_id=holders.acme, start_ms=later + 5 * MINUTE, severity="low")])
    (alert,) = alerts_of(runtime)
    assert (alert.updates, alert.severity) == (2, "high")


def test_an_early_finding_and_its_windows_close_are_one_alert_described_by_the_newest(
    runtime: Runtime, holders: Holders
) -> None:
    sink = AlertSink(runtime)

    def flood(window: int, pps: int, summary: str, early: bool = False) -> None:
        """A volumetric finding on the 10 s window ``window`` (0: T0)."""
        sink.take(
            [
                finding(
                    category="ddos-out",
                    kind="syn-flood",
                    seconds=10,
                    detector="volumetric",
                    start_ms=T0 + window * 10_000,
                    customer_id=holders.acme,
                    counts={"pps": pps},
                    summary=summary,
                    early=early,
                )
            ]
        )

    flood(0, 60_000, "early 0", early=True)
    # The next window's early finding, then (after its lateness) the first window's close.
    flood(1, 70_000, "early 1", early=True)
    flood(0, 90_000, "close 0")
    (alert,) = alerts_of(runtime)
    assert alert.updates == 2
    assert json.loads(alert.counts) == {"pps": 90_000}
    # The older window's close adds its counts but does not turn the description back.
    assert alert.summary == "early 1"
    assert alert.last_seen == at(T0 + 20_000)
    flood(1, 95_000, "close 1")
    (alert,) = alerts_of(runtime)
    assert (alert.summary, alert.updates) == ("close 1", 3)


def test_after_the_cooldown_a_new_alert_is_opened(runtime: Runtime) -> None:
    sink = AlertSink(runtime)
    sink.take([finding()])
    # The first window ended at T0+5 min; this one starts 30 min 1 s after that.
    results = sink.take([finding(start_ms=T0 + 35 * MINUTE + 1000)])
    assert [r.action for r in results] == ["created"]
    assert [a.updates for a in alerts_of(runtime)] == [0, 0]


def test_the_cooldown_comes_from_the_settings(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(runtime.settings, "detect", DetectSettings(cooldown_minutes=5))
    sink = AlertSink(runtime)
    sink.take([finding()])
    assert [r.action for r in sink.take([finding(start_ms=T0 + 10 * MINUTE)])] == ["updated"]
    assert [r.action for r in sink.take([finding(start_ms=T0 + 21 * MINUTE)])] == ["created"]


def test_another_category_address_or_customer_is_another_alert(
    runtime: Runtime, holders: Holders
) -> None:
    sink = AlertSink(runtime)
    results = sink.take(
        [
            finding(customer_id=holders.acme),
            finding(customer_id=holders.acme, category="bruteforce", kind="ssh"),
            finding(customer_id=holders.acme, ip="203.0.113.6"),
            # The address changed hands: the new holder's alert is not the old one's.
            finding(customer_id=holders.globex, start_ms=T0 + 5 * MINUTE),
        ]
    )
    assert [r.action for r in results] == ["created"] * 4
    assert len(alerts_of(runtime)) == 4


def test_findings_of_one_batch_are_folded_oldest_first(runtime: Runtime) -> None:
    results = AlertSink(runtime).take(
        [
            finding(start_ms=T0 + 10 * MINUTE),
            finding(start_ms=T0),
            finding(start_ms=T0 + 5 * MINUTE),
        ]
    )
    assert [r.action for r in results] == ["created", "updated", "updated"]
    (alert,) = alerts_of(runtime)
    assert alert.first_seen == at(T0) and alert.last_seen == at(T0 + 15 * MINUTE)


def test_two_workers_taking_the_same_finding_at_once_open_one_alert(runtime: Runtime) -> None:
    barrier = threading.Barrier(2)
    actions: list[str] = []

    def worker() -> None:
        sink = AlertSink(runtime)
        barrier.wait()
        actions.extend(r.action for r in sink.take([finding()]))

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(actions) == ["created", "updated"]
    assert len(alerts_of(runtime)) == 1


def test_a_closed_alert_is_not_updated_the_next_finding_opens_a_new_one(
    runtime: Runtime,
) -> None:
    sink = AlertSink(runtime)
    sink.take([finding()])
    with runtime.operation(ABUSE) as op:
        alerts.close_alert(op, 1, reason="customer cleaned the VPS")
    results = sink.take([finding(start_ms=T0 + 5 * MINUTE)])
    assert [(r.action, r.alert_id) for r in results] == [("created", 2)]
    assert [a.status for a in alerts_of(runtime)] == ["closed", "open"]


def test_every_new_alert_and_update_is_audited_as_the_detector_with_its_summary(
    runtime: Runtime,
) -> None:
    sink = AlertSink(runtime)
    sink.take(
        [
            finding(detector="scan"),
            finding(category="bruteforce", kind="ssh", detector="bruteforce", summary="ssh x"),
        ]
    )
    sink.take([finding(start_ms=T0 + 5 * MINUTE, summary="still scanning")])
    entries = audit_of(runtime, "alert.")
    assert [(e.action, e.actor, e.object_id, e.reason) for e in entries] == [
        (
            "alert.create",
            "detector:scan",
            "1",
            "203.0.113.5 probed port 22 on 40 hosts in 5 minutes",
        ),
        ("alert.create", "detector:bruteforce", "2", "ssh x"),
        ("alert.update", "detector:scan", "1", "still scanning"),
    ]
    # One take, one unit of work: both creations share a request id.
    assert entries[0].request_id == entries[1].request_id != entries[2].request_id
    assert json.loads(entries[2].before)["updates"] == 0
    assert json.loads(entries[2].after)["updates"] == 1
    assert audit.verify(runtime).ok


def test_a_take_is_one_transaction_a_failure_stores_nothing(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runtime.settings,
        "detect",
        DetectSettings(webhook_urls=["http://127.0.0.1:9/hook"], webhook_secret="s3cret"),
    )
    calls: list[int] = []
    real = delivery.enqueue

    def failing_second(*args: object, **kwargs: object) -> int:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(delivery, "enqueue", failing_second)
    with pytest.raises(RuntimeError):
        AlertSink(runtime).take([finding(), finding(ip="203.0.113.9")])
    assert stored(runtime) == (0, 0, 0)
    assert audit_of(runtime, "alert.") == []


def test_a_malformed_finding_is_rejected_and_the_others_stored(runtime: Runtime) -> None:
    results = AlertSink(runtime).take(
        [
            finding(ip="not-an-address"),
            finding(severity="urgent"),  # type: ignore[arg-type]
            finding(category="Port Scan!"),
            finding(counts={"pps": float("nan")}),
            finding(),
        ]
    )
    assert [r.action for r in results] == ["rejected"] * 4 + ["created"]
    assert "'not-an-address' is not an IP address." in results[0].error
    assert len(alerts_of(runtime)) == 1


def test_a_holder_the_registry_does_not_know_is_stored_as_none(
    runtime: Runtime, holders: Holders
) -> None:
    AlertSink(runtime).take([finding(customer_id=999_999, instance_id=holders.acme_vm)])
    (alert,) = alerts_of(runtime)
    assert (alert.customer_id, alert.instance_id) == (None, holders.acme_vm)


def test_deliveries_are_queued_with_the_alert_and_updates_only_when_asked(
    runtime: Runtime, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        runtime.settings,
        "detect",
        DetectSettings(
            webhook_urls=["http://127.0.0.1:9/a", "https://soc.example.net/b"],
            webhook_secret="s3cret",
            syslog_host="127.0.0.1",
            deliver_updates=False,
        ),
    )
    sink = AlertSink(runtime)
    sink.take([finding()])
    sink.take([finding(start_ms=T0 + 5 * MINUTE)])
    with runtime.reading() as session:
        rows = session.query(DetectDelivery).order_by(DetectDelivery.id).all()
        queued = [(r.alert_id, r.event_type, r.channel, r.target, r.status) for r in rows]
        body = json.loads(rows[0].body)
    assert queued == [
        (1, "alert.created", "webhook", "http://127.0.0.1:9/a", "pending"),
        (1, "alert.created", "webhook", "https://soc.example.net/b", "pending"),
        (1, "alert.created", "syslog", "udp://127.0.0.1:514", "pending"),
    ]
    assert body["id"] == "alert-1-0" and body["type"] == "alert.created"
    assert body["data"]["ip"] == "203.0.113.5"


# --- suppressions -------------------------------------------------------------------------


def suppress(runtime: Runtime, cidr: str, **kwargs: object) -> int:
    with runtime.operation(ABUSE) as op:
        return alerts.add_suppression(
            op, cidr, reason="authorised pentest, ticket 4711", **kwargs
        ).id  # type: ignore[arg-type]


def test_a_suppression_keeps_findings_inside_its_cidr_out_and_counts_them(
    runtime: Runtime,
) -> None:
    rule = suppress(runtime, "203.0.113.0/29")
    results = AlertSink(runtime).take(
        [finding(ip="203.0.113.5"), finding(ip="203.0.113.7"), finding(ip="203.0.113.8")]
    )
    assert [(r.action, r.suppression_id) for r in results] == [
        ("suppressed", rule),
        ("suppressed", rule),
        ("created", None),
    ]
    assert [a.ip for a in alerts_of(runtime)] == ["203.0.113.8"]
    with runtime.reading() as session:
        (shown,) = [alerts.suppression_dict(r) for r in alerts.list_suppressions(session)]
    assert shown["hits"] == 2 and shown["last_hit_at"] is not None
    assert audit_of(runtime, "alert.")[0].object_id == "1"  # nothing for the suppressed


def test_a_suppression_for_a_customer_or_category_leaves_the_others_alone(
    runtime: Runtime, holders: Holders
) -> None:
    suppress(runtime, "203.0.113.0/24", customer_id=holders.acme)
    suppress(runtime, "2001:db8::/32", category="tunnel")
    results = AlertSink(runtime).take(
        [
            finding(customer_id=holders.acme),
            finding(customer_id=holders.globex, ip="203.0.113.77"),
            finding(ip="2001:db8::5", category="tunnel", kind="wireguard"),
            finding(ip="2001:db8::5", category="scan"),
        ]
    )
    assert [r.action for r in results] == ["suppressed", "created", "suppressed", "created"]
    assert [(a.ip, a.category) for a in alerts_of(runtime)] == [
        ("203.0.113.77", "scan"),
        ("2001:db8::5", "scan"),
    ]


def test_an_expired_or_removed_suppression_no_longer_applies(runtime: Runtime) -> None:
    suppress(runtime, "203.0.113.5", expires="1h")
    removed = suppress(runtime, "198.51.100.0/24")
    with runtime.operation(ABUSE) as op:
        alerts.remove_suppression(op, removed, reason="pentest finished")
    sink = AlertSink(runtime)
    now = datetime.now(UTC)
    assert [r.action for r in sink.take([finding()], now=now)] == ["suppressed"]
    later = [finding(), finding(ip="198.51.100.3")]
    assert [r.action for r in sink.take(later, now=now + timedelta(hours=2))] == [
        "created",
        "created",
    ]
    with runtime.reading() as session:
        assert len(alerts.list_suppressions(session, now=now)) == 1
        assert alerts.list_suppressions(session, now=now + timedelta(hours=2)) == []
        assert len(alerts.list_suppressions(session, include_inactive=True)) == 2


def test_suppressions_are_audited_with_their_reason(runtime: Runtime) -> None:
    rule = suppress(runtime, "203.0.113.0/28", category="scan", expires="2026-12-31")
    with runtime.operation(ABUSE) as op:
        alerts.remove_suppression(op, rule, reason="pentest finished")
    entries = audit_of(runtime, "suppression.")
    assert [(e.action, e.actor, e.reason) for e in entries] == [
        ("suppression.add", "li.na", "authorised pentest, ticket 4711"),
        ("suppression.remove", "li.na", "pentest finished"),
    ]
    added = json.loads(entries[0].after)
    assert (added["cidr"], added["category"], added["expires_at"]) == (
        "203.0.113.0/28",
        "scan",
        "2027-01-01T00:00:00.000000Z",
    )


@pytest.mark.parametrize(
    ("cidr", "kwargs", "error", "message"),
    [
        (
            "203.0.113.0/24",
            {"category": "phishing"},
            ValidationFailed,
            "'phishing' is not a detection category.",
        ),
        (
            "203.0.113.300",
            {},
            ValidationFailed,
            "'203.0.113.300' is not an IP address or CIDR prefix.",
        ),
        ("203.0.113.5/24", {}, ValidationFailed, "'203.0.113.5/24' has host bits set."),
        ("203.0.113.0/24", {"reason": "  "}, ValidationFailed, "a suppression needs a reason."),
        ("203.0.113.0/24", {"customer_id": 424242}, NotFound, "no customer with id 424242."),
        ("203.0.113.0/24", {"expires": "2020-01-01"}, ValidationFailed, "is not in the future."),
        ("203.0.113.0/24", {"expires": "next tuesday"}, ValidationFailed, "neither a duration"),
    ],
)
def test_a_bad_suppression_is_refused_saying_why_and_nothing_is_stored(
    runtime: Runtime,
    cidr: str,
    kwargs: dict[str, object],
    error: type[Exception],
    message: str,
) -> None:
    args: dict[str, object] = {"reason": "pentest"} | kwargs
    with pytest.raises(error) as raised, runtime.operation(ABUSE) as op:
        alerts.add_suppression(op, cidr, **args)  # type: ignore[arg-type]
    assert message in str(raised.value)
    assert stored(runtime) == (0, 0, 0)
    assert audit_of(runtime, "suppression.") == []


def test_removing_an_unknown_or_removed_suppression_says_so(runtime: Runtime) -> None:
    rule = suppress(runtime, "203.0.113.0/24")
    with pytest.raises(NotFound, match="no suppression with id 99"), runtime.operation(ABUSE) as op:
        alerts.remove_suppression(op, 99, reason="x")
    with pytest.raises(ValidationFailed, match="needs a reason"), runtime.operation(ABUSE) as op:
        alerts.remove_suppression(op, rule, reason="")
    with runtime.operation(ABUSE) as op:
        alerts.remove_suppression(op, rule, reason="done")
    removed_by = r"already removed by li\.na"
    with pytest.raises(Conflict, match=removed_by), runtime.operation(ABUSE) as op:
        alerts.remove_suppression(op, rule, reason="again")


# --- close and feedback -------------------------------------------------------------------


def test_feedback_and_close_are_recorded_and_audited(runtime: Runtime) -> None:
    AlertSink(runtime).take([finding()])
    with runtime.operation(ABUSE) as op:
        alerts.record_feedback(op, 1, "false-positive", reason="our own vulnerability scanner")
        alerts.close_alert(op, 1, reason="scanner is ours")
    (alert,) = alerts_of(runtime)
    assert (alert.feedback, alert.feedback_by, alert.feedback_reason) == (
        "false-positive",
        "li.na",
        "our own vulnerability scanner",
    )
    assert (alert.status, alert.closed_by, alert.close_reason) == (
        "closed",
        "li.na",
        "scanner is ours",
    )
    assert [(e.action, e.actor) for e in audit_of(runtime, "alert.")][1:] == [
        ("alert.feedback", "li.na"),
        ("alert.close", "li.na"),
    ]
    with pytest.raises(Conflict, match=r"already closed by li\.na"), runtime.operation(ABUSE) as op:
        alerts.close_alert(op, 1, reason="again")


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda op: alerts.close_alert(op, 77, reason="x"), NotFound, "no alert with id 77."),
        (
            lambda op: alerts.close_alert(op, 1, reason=" "),
            ValidationFailed,
            "closing an alert needs a reason.",
        ),
        (
            lambda op: alerts.record_feedback(op, 77, "true-positive", reason=""),
            NotFound,
            "no alert with id 77.",
        ),
        (
            lambda op: alerts.record_feedback(op, 1, "maybe", reason="x"),
            ValidationFailed,
            "'maybe' is not a verdict.",
        ),
        (
            lambda op: alerts.record_feedback(op, 1, "false-positive", reason=""),
            ValidationFailed,
            "needs a reason",
        ),
    ],
)
def test_bad_close_or_feedback_is_refused_and_changes_nothing(
    runtime: Runtime, call: object, error: type[Exception], message: str
) -> None:
    AlertSink(runtime).take([finding()])
    before = len(audit_of(runtime, ""))
    with pytest.raises(error) as raised, runtime.operation(ABUSE) as op:
        call(op)  # type: ignore[operator]
    assert message in str(raised.value)
    (alert,) = alerts_of(runtime)
    assert (alert.status, alert.feedback) == ("open", "none")
    assert len(audit_of(runtime, "")) == before


def test_a_true_positive_needs_no_reason(runtime: Runtime) -> None:
    AlertSink(runtime).take([finding()])
    with runtime.operation(system_actor("test")) as op:
        alerts.record_feedback(op, 1, "TRUE-POSITIVE", reason="")
    assert alerts_of(runtime)[0].feedback == "true-positive"


# --- listing ------------------------------------------------------------------------------


def test_list_filters_by_every_field_and_pages_newest_first(
    runtime: Runtime, holders: Holders
) -> None:
    AlertSink(runtime).take(
        [
            finding(customer_id=holders.acme),
            finding(
                ip="203.0.113.200",
                category="spam",
                kind="smtp",
                severity="high",
                start_ms=T0 + 60 * MINUTE,
            ),
            finding(
                ip="2001:db8::1",
                category="ddos-out",
                kind="syn-flood",
                severity="critical",
                customer_id=holders.globex,
                start_ms=T0 + 120 * MINUTE,
                seconds=10,
            ),
        ]
    )
    with runtime.operation(ABUSE) as op:
        alerts.close_alert(op, 2, reason="spam stopped")

    def ids(**filters: object) -> list[int]:
        with runtime.reading() as session:
            rows, total = alerts.list_alerts(session, **filters)  # type: ignore[arg-type]
        assert total >= len(rows)
        return [a.id for a in rows]

    assert ids() == [3, 2, 1]
    assert ids(category=["scan", "spam"]) == [2, 1]
    assert ids(severity=["critical", "high"]) == [3, 2]
    assert ids(status="open") == [3, 1]
    assert ids(customer_id=holders.globex) == [3]
    assert ids(ip="203.0.113.0/24") == [2, 1]
    assert ids(ip="203.0.113.5") == [1]
    assert ids(ip="2001:db8::/32") == [3]
    assert ids(since="2026-05-04T13:00:00Z") == [3, 2]
    assert ids(until="2026-05-04T12:30:00Z") == [1]
    assert ids(limit=1, offset=1) == [2]
    with runtime.reading() as session:
        assert alerts.list_alerts(session, limit=1)[1] == 3


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ({"category": ["phishing"]}, "'phishing' is not a detection category."),
        ({"severity": ["urgent"]}, "'urgent' is not a severity."),
        ({"status": "pending"}, "'pending' is not a status."),
        ({"ip": "10.0.0.1/8"}, "has host bits set"),
        ({"since": "yesterday"}, "is not an ISO 8601 date-time"),
        ({"limit": 0}, "out of range"),
    ],
)
def test_a_bad_filter_says_what_was_wrong(
    runtime: Runtime, filters: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationFailed) as raised, runtime.reading() as session:
        alerts.list_alerts(session, **filters)  # type: ignore[arg-type]
    assert message in str(raised.value)


def test_a_plugin_category_becomes_known_once_stored(runtime: Runtime) -> None:
    with pytest.raises(ValidationFailed), runtime.reading() as session:
        alerts.check_category(session, "cryptojacking")
    AlertSink(runtime).take([finding(category="cryptojacking", detector="acme-plugin")])
    with runtime.reading() as session:
        assert alerts.check_category(session, "cryptojacking") == "cryptojacking"
    assert count(runtime, type(alerts_of(runtime)[0])) == 1


# --- the migration ------------------------------------------------------------------------


def test_the_migration_upgrades_and_downgrades_cleanly(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.database_url)
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))
    tables = ("detect_alerts", "detect_suppressions", "detect_deliveries")
    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0006_detect")
            assert set(tables) <= set(inspect(conn).get_table_names())
            indexes = {i["name"] for i in inspect(conn).get_indexes("detect_alerts")}
            assert {"ix_detect_alerts_dedup", "ix_detect_alerts_status_last"} <= indexes
            command.downgrade(config, "0005_log_datasets")
            assert not set(tables) & set(inspect(conn).get_table_names())
            command.upgrade(config, "head")
    finally:
        engine.dispose()
