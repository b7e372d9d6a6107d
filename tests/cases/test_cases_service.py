"""Cases: attribution at the event's own time, grouping, duplicates, reopening, the
unresolvable queue, allowlists, the state machine, playbooks, deadlines, and reports that
cannot be read or are too large."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from email import message_from_string, policy

import pytest
from sqlalchemy import func, select

from hostwarden.cases import notify, rawstore, service
from hostwarden.cases.models import AbuseCase, AbuseEvent, AbuseReport, CaseEntry, RawReport
from hostwarden.cases.playbooks import set_playbook
from hostwarden.core import audit
from hostwarden.core.models import AuditEntry
from hostwarden.core.runtime import Runtime, system_actor
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import Conflict, TooLarge, ValidationFailed
from tests.cases.support import IN_RANGE_UNHELD, NOT_OURS, SHARED_IP, build, event, take


@pytest.fixture
def scene(runtime: Runtime) -> object:
    return build(runtime)


def _case(runtime: Runtime, reference: str) -> AbuseCase:
    with runtime.reading() as session:
        return service.get_case(session, reference)


def _op(runtime: Runtime) -> object:
    return runtime.operation(system_actor("desk-test"))


def _playbook(
    op: object,
    category: str,
    *,
    deadline_hours: int = 24,
    escalate_after_events: int = 3,
    escalation_action: str = "none",
    auto_notify: bool = False,
) -> None:
    set_playbook(
        op,  # type: ignore[arg-type]
        category,
        deadline_hours=deadline_hours,
        escalate_after_events=escalate_after_events,
        escalation_action=escalation_action,
        authority_decision=False,
        auto_notify=auto_notify,
        reason="test",
    )


def _assign_the_unheld_address(op: object, customer: int, reason: str) -> None:
    """The registry entry that was missing: IN_RANGE_UNHELD held by ``customer`` since
    January (for attributing waiting events again)."""
    from hostwarden.registry import inventory

    inventory.assign(
        op,  # type: ignore[arg-type]
        f"{IN_RANGE_UNHELD}/32",
        customer,
        valid_from="2026-01-01T00:00:00Z",
        reason=reason,
    )


def _case_actions(runtime: Runtime, case_id: int) -> list[str]:
    """The trail's actions on a case, in order."""
    with runtime.reading() as session:
        return [
            e.action
            for e in session.scalars(
                select(AuditEntry)
                .where(AuditEntry.object_type == "abuse_case", AuditEntry.object_id == str(case_id))
                .order_by(AuditEntry.seq)
            )
        ]


def test_an_event_is_attributed_to_whoever_held_the_address_at_its_own_time(
    runtime: Runtime, scene: object
) -> None:
    before = take(runtime, event("2026-05-01T10:00:00+08:00"))
    after = take(runtime, event("2026-06-02T10:00:00+08:00", excerpt="later"))
    # 2026-06-01 07:30 Beijing time is still 2026-05-31 in UTC: Alice's.
    edge = take(runtime, event("2026-06-01T07:30:00+08:00", excerpt="edge"))
    assert len(before.cases_opened) == 1 and len(after.cases_opened) == 1
    alice_case = _case(runtime, before.cases_opened[0])
    bob_case = _case(runtime, after.cases_opened[0])
    assert alice_case.customer_id == scene.alice  # type: ignore[attr-defined]
    assert alice_case.instance_id == scene.alice_instance  # type: ignore[attr-defined]
    assert bob_case.customer_id == scene.bob  # type: ignore[attr-defined]
    assert edge.cases_updated == [alice_case.reference]


def test_events_of_one_customer_subject_and_category_share_a_case(
    runtime: Runtime, scene: object
) -> None:
    first = take(runtime, event("2026-05-01T10:00:00+00:00"), event("2026-05-01T11:00:00+00:00"))
    assert first.events == 2 and len(first.cases_opened) == 1
    more = take(runtime, event("2026-05-02T10:00:00+00:00"))
    assert more.cases_updated == first.cases_opened
    other = take(runtime, event("2026-05-02T10:00:00+00:00", category="scanning"))
    assert other.cases_opened and other.cases_opened != first.cases_opened
    case = _case(runtime, first.cases_opened[0])
    assert case.events == 3
    assert case.first_event_at.isoformat().startswith("2026-05-01T10:00")
    assert case.last_event_at.isoformat().startswith("2026-05-02T10:00")
    # Events between the case's first and last (in another zone, and to the microsecond
    # next to the first) leave both times as they are.
    inside = take(
        runtime,
        event("2026-05-01T20:00:00+08:00", excerpt="inside"),
        event("2026-05-01T10:00:00.000001+00:00", excerpt="just after the first"),
    )
    assert inside.cases_updated == first.cases_opened
    case = _case(runtime, first.cases_opened[0])
    assert case.events == 5
    assert case.first_event_at == datetime(2026, 5, 1, 10, 0, tzinfo=UTC)
    assert case.last_event_at == datetime(2026, 5, 2, 10, 0, tzinfo=UTC)


def test_the_same_event_again_is_dropped_and_counted(runtime: Runtime, scene: object) -> None:
    first = take(runtime, event())
    again = take(runtime, event())
    assert again.events == 0 and again.duplicates == 1
    case = _case(runtime, first.cases_opened[0])
    assert case.events == 1 and case.duplicates == 1
    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(AbuseEvent)) == 1
        # Both reports are kept: the second is evidence that it was sent again.
        assert session.scalar(select(func.count()).select_from(AbuseReport)) == 2


def test_a_resolved_case_reopens_when_new_events_arrive(runtime: Runtime, scene: object) -> None:
    reference = take(runtime, event()).cases_opened[0]
    with _op(runtime) as op:
        service.transition(
            op, service.get_case(op.session, reference), "resolved", "customer fixed it"
        )
    later = take(runtime, event("2026-05-03T10:00:00+00:00"))
    assert later.cases_updated == [reference]
    case = _case(runtime, reference)
    assert case.state == "new" and case.closed_at is None
    assert _case_actions(runtime, case.id) == ["case.opened", "case.resolved", "case.reopened"]


def test_a_terminated_case_does_not_reopen_a_new_one_is_opened(
    runtime: Runtime, scene: object
) -> None:
    reference = take(runtime, event()).cases_opened[0]
    with _op(runtime) as op:
        case = service.get_case(op.session, reference)
        service.transition(op, case, "escalated", "repeat offender")
        service.transition(op, case, "suspended", "stop the spam")
        service.transition(op, case, "terminated", "contract ended for abuse")
    later = take(runtime, event("2026-05-04T10:00:00+00:00"))
    assert later.cases_opened and later.cases_opened != [reference]


def test_events_nobody_can_be_found_for_wait_in_the_queue_with_the_reason(
    runtime: Runtime, scene: object
) -> None:
    result = take(
        runtime,
        event(ip=NOT_OURS),
        event(ip=IN_RANGE_UNHELD, excerpt="x"),
        event("2025-01-01T00:00:00+00:00", excerpt="before"),
    )
    assert result.unresolved == 3 and not result.cases_opened
    with runtime.reading() as session:
        reasons = {
            e.ip + e.occurred_at.isoformat()[:4]: e.reason
            for e in session.scalars(select(AbuseEvent).where(AbuseEvent.status == "unresolved"))
        }
    assert "does not own" in reasons[f"{NOT_OURS}2026"]
    assert "nobody held it" in reasons[f"{IN_RANGE_UNHELD}2026"]
    assert "nobody held it" in reasons[f"{SHARED_IP}2025"]


def test_attributing_again_after_the_registry_is_fixed_groups_the_waiting_events(
    runtime: Runtime, scene: object
) -> None:
    take(runtime, event(ip=IN_RANGE_UNHELD))
    with _op(runtime) as op:
        _assign_the_unheld_address(op, scene.bob, "late entry")  # type: ignore[attr-defined]
    done = service.attribute_again(runtime, system_actor("desk-test"))
    assert done == {"grouped": 1, "allowlisted": 0, "still_unresolved": 0}
    with runtime.reading() as session:
        case = session.scalars(select(AbuseCase)).one()
    assert case.customer_id == scene.bob  # type: ignore[attr-defined]


def test_a_domain_event_goes_to_the_customer_of_the_domain_or_a_parent(
    runtime: Runtime, scene: object
) -> None:
    result = take(
        runtime,
        event(
            ip=None,
            domain="login.shop.example.com",
            category="phishing",
            url="http://login.shop.example.com/bank",
        ),
    )
    case = _case(runtime, result.cases_opened[0])
    assert case.customer_id == scene.alice and case.subject == "login.shop.example.com"  # type: ignore[attr-defined]
    unknown = take(runtime, event(ip=None, domain="elsewhere.example.org", category="phishing"))
    assert unknown.unresolved == 1


def test_reporter_and_address_allowlists(runtime: Runtime, scene: object) -> None:
    with _op(runtime) as op:
        service.add_allowlist(
            op,
            kind="reporter",
            value="noise@feeds.example.org",
            mode="ignore",
            reason="sends false reports",
        )
        service.add_allowlist(
            op,
            kind="reporter",
            value="@logged.example.org",
            mode="log",
            reason="only for statistics",
        )
        service.add_allowlist(
            op,
            kind="address",
            value="203.0.113.10/32",
            mode="record",
            reason="our own honeypot",
            expires_at=utcnow() + timedelta(days=1),
        )
    ignored = take(runtime, event(), reporter="noise@feeds.example.org")
    assert ignored.status == "ignored" and ignored.events == 0
    logged = take(
        runtime,
        event(excerpt="l", reporter="x@logged.example.org"),
        reporter="x@logged.example.org",
    )
    assert logged.events == 1 and not logged.cases_opened
    recorded = take(runtime, event(excerpt="honeypot"))
    assert recorded.allowlisted == 1 and not recorded.cases_opened
    with runtime.reading() as session:
        statuses = sorted(e.status for e in session.scalars(select(AbuseEvent)))
        assert session.scalar(select(func.count()).select_from(AbuseCase)) == 0
    assert statuses == ["allowlisted", "logged"]


def test_allowlist_entries_need_a_reason_a_known_mode_and_a_future_expiry(
    runtime: Runtime, scene: object
) -> None:
    with _op(runtime) as op:
        with pytest.raises(ValidationFailed, match="reason"):
            service.add_allowlist(
                op, kind="reporter", value="a@b.example", mode="ignore", reason=" "
            )
        with pytest.raises(ValidationFailed, match="mode"):
            service.add_allowlist(
                op, kind="address", value="203.0.113.0/28", mode="ignore", reason="x"
            )
        with pytest.raises(ValidationFailed, match="past"):
            service.add_allowlist(
                op,
                kind="reporter",
                value="a@b.example",
                mode="log",
                reason="x",
                expires_at=utcnow() - timedelta(hours=1),
            )


def test_the_state_machine_refuses_a_jump_and_says_which_states_may_follow(
    runtime: Runtime, scene: object
) -> None:
    reference = take(runtime, event()).cases_opened[0]
    with _op(runtime) as op:
        case = service.get_case(op.session, reference)
        with pytest.raises(Conflict, match="cannot become terminated") as info:
            service.transition(op, case, "terminated", "no")
        assert "escalated" in str(info.value.hint)
        with pytest.raises(ValidationFailed, match="reason"):
            service.transition(op, case, "ignored", "")
        with pytest.raises(ValidationFailed, match="notification"):
            service.transition(op, case, "notified", "")
    assert _case(runtime, reference).state == "new"


def test_a_case_whose_playbook_asks_for_it_cannot_close_before_the_authority_decision(
    runtime: Runtime, scene: object
) -> None:
    reference = take(runtime, event(category="gambling", excerpt="casino")).cases_opened[0]
    with _op(runtime) as op:
        case = service.get_case(op.session, reference)
        assert case.authority_required
        with pytest.raises(Conflict, match="报告主管部门"):
            service.transition(op, case, "resolved", "site removed")
        with pytest.raises(ValidationFailed, match="to whom"):
            service.record_authority_decision(
                op, case, reported=True, to="", reference="", reason=""
            )
    with _op(runtime) as op:
        case = service.get_case(op.session, reference)
        service.record_authority_decision(
            op, case, reported=True, to="公安机关网安部门", reference="GA-2026-17", reason=""
        )
        service.transition(op, case, "resolved", "site removed")
    case = _case(runtime, reference)
    assert case.state == "resolved" and case.authority_reference == "GA-2026-17"
    assert case.mitigated_at is not None and case.first_action_at is not None


def test_enough_events_escalate_and_the_playbook_suspends_by_itself(
    runtime: Runtime, scene: object
) -> None:
    with _op(runtime) as op:
        _playbook(op, "spam", escalation_action="suspend")
    reference = take(
        runtime, event("2026-05-01T10:00:00+00:00"), event("2026-05-01T10:01:00+00:00")
    ).cases_opened[0]
    assert _case(runtime, reference).state == "new"
    take(runtime, event("2026-05-01T10:02:00+00:00"))
    case = _case(runtime, reference)
    assert case.state == "suspended"
    with runtime.reading() as session:
        kinds = [
            (e.kind, e.author)
            for e in session.scalars(
                select(CaseEntry).where(CaseEntry.case_id == case.id).order_by(CaseEntry.id)
            )
        ]
    assert ("state", "system:playbook") in kinds and kinds[-1][0] == "action"


def test_playbook_settings_are_checked(runtime: Runtime, scene: object) -> None:
    with _op(runtime) as op:
        with pytest.raises(ValidationFailed, match="not a category"):
            set_playbook(
                op,
                "nonsense",
                deadline_hours=1,
                escalate_after_events=1,
                escalation_action="none",
                authority_decision=False,
                auto_notify=False,
            )
        with pytest.raises(ValidationFailed, match="escalation action"):
            set_playbook(
                op,
                "spam",
                deadline_hours=1,
                escalate_after_events=1,
                escalation_action="delete",
                authority_decision=False,
                auto_notify=False,
            )


def test_a_passed_deadline_escalates_and_idle_cases_close(runtime: Runtime, scene: object) -> None:
    reference = take(runtime, event()).cases_opened[0]
    idle = take(runtime, event(category="scanning", excerpt="scan")).cases_opened[0]
    with _op(runtime) as op:
        notify.notify_customer(op, service.get_case(op.session, reference))
    deadline = _case(runtime, reference).deadline_at
    assert deadline is not None
    done = service.run_deadlines(runtime, now=deadline + timedelta(minutes=1))
    assert done["escalated"] == 1
    assert _case(runtime, reference).state == "escalated"
    later = utcnow() + timedelta(days=runtime.settings.cases.idle_close_days + 1)
    done = service.run_deadlines(runtime, now=later)
    assert done["closed_idle"] == 1 and _case(runtime, idle).state == "resolved"


def test_notes_are_internal_and_kept_apart_from_messages(runtime: Runtime, scene: object) -> None:
    from hostwarden.cases import queries

    reference = take(runtime, event()).cases_opened[0]
    with _op(runtime) as op:
        case = service.get_case(op.session, reference)
        service.add_note(op, case, "customer is a reseller, call them first")
        notify.notify_customer(op, case, locale="en")
    with runtime.reading() as session:
        detail = queries.case_detail(session, service.get_case(session, reference))
    by_kind = {t["kind"]: t["audience"] for t in detail["timeline"]}
    assert by_kind["note"] == "internal" and by_kind["to-customer"] == "customer"
    sent = next(t["text"] for t in detail["timeline"] if t["kind"] == "to-customer")
    assert "reseller" not in sent


def test_a_report_too_large_is_refused_and_nothing_is_stored(
    runtime: Runtime, scene: object
) -> None:
    limit = runtime.settings.cases.max_report_mb * 1024 * 1024
    with pytest.raises(TooLarge, match="limit"):
        service.receive(runtime, b"x" * (limit + 1), channel="smtp")
    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(AbuseReport)) == 0
        assert session.scalar(select(func.count()).select_from(RawReport)) == 0


def test_a_report_nobody_understands_is_kept_unchanged_for_a_person(
    runtime: Runtime, scene: object
) -> None:
    raw = b"\x00\x01 not a mail at all \xff\xfe" * 10
    result = service.receive(runtime, raw, channel="smtp")
    assert result.status == "unparsed" and result.events == 0
    with runtime.reading() as session:
        assert rawstore.get(session, result.sha256) == raw
    assert result.sha256 == hashlib.sha256(raw).hexdigest()
    with _op(runtime) as op:
        service.review_report(op, result.report_id, "spoke to the sender on the phone")
        with pytest.raises(Conflict):
            service.review_report(op, result.report_id, "again")


def test_every_intake_is_in_the_audit_trail_and_the_chain_verifies(
    runtime: Runtime, scene: object
) -> None:
    result = take(runtime, event())
    with runtime.reading() as session:
        entry = session.scalars(
            select(AuditEntry).where(AuditEntry.action == "report.received")
        ).one()
        assert entry.actor == "system:intake"
        assert json.loads(entry.after)["cases_opened"] == result.cases_opened
    assert audit.verify(runtime).ok


def test_a_raw_report_altered_in_the_database_is_named_as_modified(
    runtime: Runtime, scene: object
) -> None:
    result = take(runtime, event(), raw=b"original report bytes")
    with _op(runtime) as op:
        op.session.get(RawReport, result.sha256).data = b"altered report bytes"  # type: ignore[union-attr]
    with runtime.reading() as session, pytest.raises(Exception, match="no longer matches"):
        rawstore.get(session, result.sha256)


def test_a_playbook_that_notifies_at_once_sends_the_notice_when_the_case_opens(
    runtime: Runtime, scene: object
) -> None:
    from hostwarden.cases.models import OutgoingMail

    with _op(runtime) as op:
        _playbook(op, "phishing", deadline_hours=4, escalate_after_events=10, auto_notify=True)
    result = take(
        runtime,
        event(category="phishing", excerpt="fake bank login page"),
        event("2026-05-01T10:05:00+08:00", category="phishing", excerpt="second"),
    )
    case = _case(runtime, result.cases_opened[0])
    assert case.state == "notified" and case.deadline_at is not None
    with runtime.reading() as session:
        sent = session.scalars(select(OutgoingMail)).one()
    assert sent.recipient == "alice@example.com"
    body = message_from_string(sent.message, policy=policy.default).get_content()
    assert "fake bank login page" in body and "second" in body and "网络钓鱼" in body


def test_outbound_detection_alerts_open_cases_through_the_same_intake(
    runtime: Runtime, scene: object
) -> None:
    from datetime import UTC, datetime

    from hostwarden.cases import detections
    from hostwarden.detect.models import DetectAlert
    from hostwarden.registry import netaddr

    def alert(category: str, direction: str, minute: int) -> DetectAlert:
        moment = datetime(2026, 5, 1, 2, minute, tzinfo=UTC)
        return DetectAlert(
            category=category,
            kind="x",
            severity="high",
            ip=SHARED_IP,
            ip_key=netaddr.address_key(SHARED_IP),
            direction=direction,
            first_seen=moment,
            last_seen=moment,
            window_seconds=10,
            summary=f"{category} from {SHARED_IP}",
            detector="volumetric",
        )

    with _op(runtime) as op:
        op.session.add_all(
            [
                alert("ddos-out", "outbound", 1),
                alert("ddos-in", "inbound", 2),
                alert("anomaly", "outbound", 3),
                alert("scan", "outbound", 4),
            ]
        )
    assert detections.take_alerts(runtime) == {"alerts": 2, "events": 2, "duplicates": 0}
    assert detections.take_alerts(runtime)["alerts"] == 0
    with runtime.reading() as session:
        cases = sorted((c.category, c.customer_id) for c in session.scalars(select(AbuseCase)))
    assert cases == [("ddos", scene.alice), ("scanning", scene.alice)]  # type: ignore[attr-defined]


def test_a_cgnat_address_needs_the_port_to_find_the_customer(
    runtime: Runtime, scene: object
) -> None:
    from hostwarden.registry import inventory

    with _op(runtime) as op:
        inventory.create_range(op, "10.0.0.0/24", purpose="CGNAT pool")
        inventory.assign(
            op,
            "10.0.0.5/32",
            scene.bob,  # type: ignore[attr-defined]
            valid_from="2026-01-01T00:00:00Z",
        )
        inventory.create_nat(
            op, "203.0.113.200", 40000, 40999, "10.0.0.5", valid_from="2026-01-01T00:00:00Z"
        )
    with_port = take(runtime, event(ip="203.0.113.200", port=40123, category="bruteforce"))
    case = _case(runtime, with_port.cases_opened[0])
    assert case.customer_id == scene.bob  # type: ignore[attr-defined]
    assert case.subject == "203.0.113.200"
    without = take(runtime, event(ip="203.0.113.200", category="bruteforce", excerpt="no port"))
    other_port = take(
        runtime,
        event(ip="203.0.113.200", port=50000, category="bruteforce", excerpt="outside the block"),
    )
    assert without.unresolved == 1 and other_port.unresolved == 1
    with runtime.reading() as session:
        reasons = sorted(
            e.reason
            for e in session.scalars(select(AbuseEvent).where(AbuseEvent.status == "unresolved"))
        )
    assert "ask the reporter for the source port" in reasons[0]
    assert "no NAT block of 203.0.113.200 covered port 50000" in reasons[1]


def test_a_batch_that_fails_half_way_leaves_nothing_behind(
    runtime: Runtime, scene: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(self: object, *_args: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(service._Intake, "_audit_reports", broken)
    with pytest.raises(OSError, match="No space left"):
        take(runtime, event(), raw=b"a report that does not fit")
    with runtime.reading() as session:
        for table in (AbuseReport, AbuseEvent, AbuseCase, RawReport):
            assert session.scalar(select(func.count()).select_from(table)) == 0, table
    monkeypatch.undo()
    assert take(runtime, event(), raw=b"a report that does not fit").cases_opened


def test_the_same_bytes_are_stored_once(runtime: Runtime, scene: object) -> None:
    raw = b"the same report twice"
    first = take(runtime, event(), raw=raw)
    second = take(runtime, event(excerpt="again"), raw=raw)
    assert first.sha256 == second.sha256
    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(RawReport)) == 1
        assert session.scalar(select(func.count()).select_from(AbuseReport)) == 2
        assert rawstore.get(session, first.sha256) == raw


def test_a_case_a_person_reopens_is_no_longer_marked_closed(
    runtime: Runtime, scene: object
) -> None:
    reference = take(runtime, event()).cases_opened[0]
    with _op(runtime) as op:
        case = service.get_case(op.session, reference)
        service.transition(op, case, "ignored", "reporter's own test traffic")
    assert _case(runtime, reference).closed_at is not None
    with _op(runtime) as op:
        service.transition(op, service.get_case(op.session, reference), "new", "it was not")
    case = _case(runtime, reference)
    assert case.state == "new" and case.closed_at is None and case.close_reason == ""


def test_attributing_again_respects_the_address_allowlist(runtime: Runtime, scene: object) -> None:
    take(runtime, event(ip=IN_RANGE_UNHELD))
    with _op(runtime) as op:
        _assign_the_unheld_address(op, scene.bob, "our scanner")  # type: ignore[attr-defined]
        service.add_allowlist(
            op,
            kind="address",
            value=f"{IN_RANGE_UNHELD}/32",
            mode="record",
            reason="our own scanner",
        )
    done = service.attribute_again(runtime, system_actor("desk-test"))
    assert done == {"grouped": 0, "allowlisted": 1, "still_unresolved": 0}
    with runtime.reading() as session:
        assert session.scalar(select(func.count()).select_from(AbuseCase)) == 0
        row = session.scalars(select(AbuseEvent)).one()
    assert row.status == "allowlisted" and "our own scanner" in row.reason


def test_a_closed_case_reopened_by_a_batch_escalates_in_the_same_batch(
    runtime: Runtime, scene: object
) -> None:
    """The intake reopens a resolved case, then escalates it when the batch's events reach
    the threshold: both through the state machine, in that order, with the events and
    times the batch added."""
    with _op(runtime) as op:
        _playbook(op, "spam")
    reference = take(runtime, event("2026-05-01T10:00:00+00:00")).cases_opened[0]
    with _op(runtime) as op:
        service.transition(op, service.get_case(op.session, reference), "resolved", "fixed")
    later = take(
        runtime,
        event("2026-05-03T10:00:00+00:00", excerpt="again"),
        event("2026-04-30T09:00:00+00:00", excerpt="older"),
    )
    assert later.cases_updated == [reference] and not later.cases_opened
    case = _case(runtime, reference)
    assert case.state == "escalated" and case.events == 3 and case.closed_at is None
    assert case.first_event_at.isoformat().startswith("2026-04-30T09:00")
    assert case.last_event_at.isoformat().startswith("2026-05-03T10:00")
    assert _case_actions(runtime, case.id) == [
        "case.opened",
        "case.resolved",
        "case.reopened",
        "case.escalated",
    ]


def test_a_case_opened_by_attributing_again_gets_the_playbooks_notice(
    runtime: Runtime, scene: object
) -> None:
    from hostwarden.cases.models import OutgoingMail

    take(runtime, event(ip=IN_RANGE_UNHELD, category="phishing", excerpt="fake login"))
    with _op(runtime) as op:
        _playbook(op, "phishing", deadline_hours=4, escalate_after_events=10, auto_notify=True)
        _assign_the_unheld_address(op, scene.alice, "late entry")  # type: ignore[attr-defined]
    assert service.attribute_again(runtime, system_actor("desk-test"))["grouped"] == 1
    with runtime.reading() as session:
        case = session.scalars(select(AbuseCase)).one()
        sent = session.scalars(select(OutgoingMail)).one()
    assert case.state == "notified" and case.events == 1
    assert case.reference.startswith("AB-")
    assert sent.recipient == "alice@example.com"


# --- the subject index (migration 0008) ------------------------------------------------------


def test_the_subject_index_migration_upgrades_and_downgrades_cleanly(settings: object) -> None:
    from alembic import command
    from alembic.config import Config
    from sqlalchemy import create_engine, inspect

    from hostwarden.core import migrate

    settings.home.mkdir(parents=True, exist_ok=True)  # type: ignore[attr-defined]
    engine = create_engine(settings.database_url)  # type: ignore[attr-defined]
    config = Config()
    config.set_main_option("script_location", str(migrate.MIGRATIONS))

    def indexes(conn: object) -> set[str]:
        return {i["name"] for i in inspect(conn).get_indexes("abuse_cases")}

    try:
        with engine.begin() as conn:
            config.attributes["connection"] = conn
            command.upgrade(config, "0007_cases")
            assert "ix_abuse_cases_group" in indexes(conn)
            command.upgrade(config, "0008_case_subject_index")
            found = indexes(conn)
            assert "ix_abuse_cases_subject" in found and "ix_abuse_cases_group" not in found
            command.downgrade(config, "0007_cases")
            found = indexes(conn)
            assert "ix_abuse_cases_group" in found and "ix_abuse_cases_subject" not in found
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def test_the_intake_reads_a_batchs_cases_by_the_subject_index(
    runtime: Runtime, scene: object
) -> None:
    """The cases of a batch's subjects are found through the index, not by reading the
    whole case table (which every batch did while the index began with the customer)."""
    from sqlalchemy import text

    from tests.conftest import IS_POSTGRES

    take(runtime, event())
    with runtime.reading() as session:
        if IS_POSTGRES:
            # A table this small is read whole whatever the indexes; force the planner
            # to show whether it could use one.
            session.execute(text("SET LOCAL enable_seqscan = off"))
            explain = "EXPLAIN SELECT id FROM abuse_cases WHERE subject_key = ANY(:keys)"
            params: dict[str, object] = {"keys": ["a", "b"]}
        else:
            explain = "EXPLAIN QUERY PLAN SELECT id FROM abuse_cases WHERE subject_key IN (:a, :b)"
            params = {"a": "a", "b": "b"}
        plan = " ".join(str(row) for row in session.execute(text(explain), params))
    assert "ix_abuse_cases_subject" in plan, plan
