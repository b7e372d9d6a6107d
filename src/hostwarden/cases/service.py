"""The abuse desk's operations: taking reports in, attributing and grouping their events
into cases, and every change of a case (the only place that writes them).

A report is parsed, then stored as received (``rawstore``) in the same transaction as
its row, events and cases; each event is attributed at its own time (address + port +
time → customer and instance, or domain + time), checked against the allowlists and
grouped: it joins the open case of the same customer, subject (address or domain) and
category, reopens a resolved or ignored one, or opens a new case. An event seen before
(same source, category, subject, port, URL, time and excerpt) is dropped and counted.
Every case change is audited; events joining a case are audited through their report's
entry.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import secrets
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import Table, bindparam, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.orm import Session

from hostwarden.cases import rawstore
from hostwarden.cases.models import (
    AWAITING_STATES,
    OPEN_STATES,
    AbuseCase,
    AbuseEvent,
    AbuseReport,
    AllowlistEntry,
    CaseEntry,
)
from hostwarden.cases.parsers import parse_message
from hostwarden.cases.parsers.base import CATEGORIES, ParsedReport, ReportEvent, ReportMessage
from hostwarden.cases.parsers.mime import read_message
from hostwarden.cases.playbooks import PlaybookRule, all_playbooks
from hostwarden.core.db import Base, UtcDateTime, insert_rows, next_ids, one_of
from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Actor, Operation, Runtime, new_request_id
from hostwarden.core.timeutil import as_utc, isoformat, utcnow
from hostwarden.errors import Conflict, HostwardenError, NotFound, TooLarge, ValidationFailed
from hostwarden.registry import netaddr
from hostwarden.registry.attribution import (
    AttributionIndex,
    current_index,
    lookup,
    to_epoch_us,
)
from hostwarden.registry.models import Domain, IpRange

log = get_logger("hostwarden.cases")

INTAKE_ACTOR = "system:intake"
#: Which state may follow which. ``notified`` is reached through ``notify`` only, and
#: ``awaiting_response`` when the notification has left (the mail job).
TRANSITIONS: dict[str, frozenset[str]] = {
    "new": frozenset({"notified", "escalated", "resolved", "ignored"}),
    "notified": frozenset({"notified", "awaiting_response", "escalated", "resolved", "ignored"}),
    "awaiting_response": frozenset({"notified", "escalated", "resolved", "ignored"}),
    "escalated": frozenset({"notified", "suspended", "resolved", "ignored"}),
    "suspended": frozenset({"terminated", "resolved"}),
    "resolved": frozenset({"new"}),
    "ignored": frozenset({"new"}),
    "terminated": frozenset(),
}
#: States that end the abuse (SLA "time to mitigation").
MITIGATED = ("resolved", "suspended", "terminated")
#: States that close a case.
CLOSED = ("resolved", "ignored", "terminated")
#: Parsers of automated feeds: their senders get no acknowledgement.
AUTOMATED_PARSERS = frozenset(
    {"arf", "xarf02", "xarf4", "shadowserver", "spamhaus", "safebrowsing", "spamcop", "netcraft"}
)


# --- results -------------------------------------------------------------------------------


@dataclass
class ReceiveResult:
    """What became of one report."""

    report_id: int
    sha256: str
    status: str
    parser: str
    events: int = 0
    duplicates: int = 0
    unresolved: int = 0
    allowlisted: int = 0
    cases_opened: list[str] = field(default_factory=list)
    cases_updated: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Incoming:
    """One report to take in: the raw bytes and where they came from."""

    raw: bytes
    channel: str
    #: The reporter when the channel knows it better than the From header (API, form).
    reporter: str | None = None
    #: Already parsed (the REST API's XARF document, the web form), else parsed here.
    parsed: ParsedReport | None = None
    subject: str = ""
    #: The message as read, when the caller already read it (with ``parsed``).
    message: ReportMessage | None = None
    #: The SMTP envelope sender: the reporter when the message has no From.
    envelope_from: str = ""


# --- small helpers ------------------------------------------------------------------------


#: What json.dumps(value, ensure_ascii=False, sort_keys=True, default=str) builds at each
#: call, built once (the intake encodes two values per report).
_ENCODER = json.JSONEncoder(ensure_ascii=False, sort_keys=True, default=str)


def _json(value: Any) -> str:
    if not value and type(value) in (list, dict):
        return "[]" if type(value) is list else "{}"  # most notes and details are empty
    return _ENCODER.encode(value)


def fingerprint(event: ReportEvent, subject_key: str) -> str:
    """What makes two events the same: source, category, subject, port, URL, time and
    excerpt."""
    parts = (
        event.reporter.lower(),
        event.category,
        subject_key,
        str(event.port or ""),
        event.url or "",
        isoformat(as_utc(event.occurred_at)),
        event.excerpt,
    )
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


@dataclass(frozen=True)
class _Checked:
    """An event with its address read once, its subject key and fingerprint, or the
    reason it cannot be taken."""

    event: ReportEvent
    address: netaddr.IpAddress | None = None
    #: The address as the registry's 32-hex key, or ``d:`` + the lower-case domain.
    key: str = ""
    domain: str | None = None
    fingerprint: str = ""
    problem: str = ""


def _check(event: ReportEvent) -> _Checked:
    if event.category not in CATEGORIES:
        return _Checked(event, problem=f"{event.category!r} is not a category")
    if event.occurred_at.tzinfo is None:
        return _Checked(event, problem="the event's time has no zone")
    domain = event.domain.strip().lower().rstrip(".")[:255] if event.domain else None
    address: netaddr.IpAddress | None = None
    if event.ip is not None:
        try:
            address = netaddr.parse_address(event.ip)
        except HostwardenError as exc:
            return _Checked(event, problem=exc.message)
        key = netaddr.key_of_int(netaddr.address_int(address))
    elif domain:
        key = f"d:{domain}"
    else:
        return _Checked(event, problem="the event names neither an address nor a domain")
    return _Checked(event, address, key, domain, fingerprint(event, key))


# --- intake -------------------------------------------------------------------------------


def _table(model: type[Base]) -> Table:
    """A model's table, for Core statements that skip the ORM's per-row bookkeeping."""
    return cast(Table, model.__table__)


#: Columns of a report row the intake writes.
_REPORT_COLUMNS = (
    "id",
    "sha256",
    "size",
    "channel",
    "reporter",
    "subject",
    "message_id",
    "parser",
    "status",
    "events",
    "duplicates",
    "notes",
    "received_at",
)


@dataclass(slots=True)
class _ReportRow:
    """A report's row until it is inserted (an ORM object cost more to build than the
    rest of the report's intake; the acknowledgement reads the stored row)."""

    sha256: str
    size: int
    channel: str
    reporter: str
    subject: str
    message_id: str
    parser: str
    status: str
    notes: str
    received_at: datetime
    events: int = 0
    duplicates: int = 0
    id: int = 0


@dataclass
class _Taken:
    """One report of a batch while it is taken in."""

    item: Incoming
    digest: str
    report: _ReportRow
    result: ReceiveResult
    parsed: ParsedReport
    acknowledge: bool = False
    #: The reporter is allowlisted as "log": events are recorded, no case is opened.
    log_only: bool = False
    touched: dict[int, _Group] = field(default_factory=dict)


#: Columns of a case the grouping reads, in the order of _Group's first fields.
_GROUP_COLUMNS = (
    "id",
    "reference",
    "customer_id",
    "instance_id",
    "category",
    "subject_key",
    "subject",
    "state",
    "events",
)


@dataclass(slots=True)
class _Group:
    """A case while a batch is grouped into it: plain values, written by ``finish``."""

    id: int | None
    reference: str
    customer_id: int
    instance_id: int | None
    category: str
    subject_key: str
    subject: str
    state: str
    events: int
    #: The earliest and latest time of the events this batch put in the case. For a case
    #: already stored, ``finish`` keeps the earlier and later of these and the stored
    #: ones, in SQL, so the grouping never reads the stored times.
    first_event_at: datetime | None = None
    last_event_at: datetime | None = None
    #: Opened by this batch (inserted by ``finish``).
    new: bool = False
    #: Closed, and new events arrived: ``finish`` reopens it through the state machine.
    reopen: bool = False


@dataclass
class _NewEvent:
    """An event row to insert once its report and case have ids."""

    taken: _Taken
    values: dict[str, Any]
    case: _Group | None = None


class _Intake:
    """One unit of work taking a batch of reports in.

    Built for batches: the allowlists, playbooks, known fingerprints and the cases the
    batch may join are read once; reports and events are inserted by one executemany
    each and new cases in one flush, so a report costs a few rows rather than a dozen
    round trips."""

    def __init__(self, op: Operation, index: AttributionIndex) -> None:
        self.op = op
        self.session = op.session
        self.index = index
        self.now = utcnow()
        self.playbooks = all_playbooks(op.session)
        self.reporter_rules, self.address_rules = _active_allowlist(op.session, self.now)
        self.ranges: list[tuple[str, str]] | None = None
        #: Registry rows by domain name: (valid from, valid to, customer, instance).
        self.domains: dict[str, list[tuple[datetime, datetime | None, int, int | None]]] = {}
        #: The newest case of each (customer, subject key, category) read or opened so far.
        self.cases: dict[tuple[int, str, str], _Group] = {}
        self.new_cases: list[_Group] = []
        self.touched: dict[int, _Group] = {}
        self.seen: set[str] = set()
        #: Subject keys whose cases were read by ``_preload_cases``.
        self.preloaded: set[str] = set()
        #: Cases opened whose playbook notifies the customer at once (after the batch,
        #: so the notice quotes every event of it).
        self.to_notify: list[AbuseCase] = []

    # the batch ----------------------------------------------------------------------------

    def take_all(
        self,
        prepared: Sequence[tuple[Incoming, ReportMessage | None, ParsedReport]],
        digests: Sequence[str],
    ) -> list[_Taken]:
        batch = [
            self._report(item, digest, message, parsed)
            for (item, message, parsed), digest in zip(prepared, digests, strict=True)
        ]
        events: list[tuple[_Taken, _Checked]] = []
        for taken in batch:
            if taken.result.status == "ignored":
                continue
            events.extend((taken, _check(e)) for e in taken.parsed.events)
        known = _known_fingerprints(self.session, [c.fingerprint for _, c in events if c.key])
        self._preload_domains(c.domain for _, c in events if c.domain and c.address is None)
        self._preload_cases({c.key for _, c in events if c.key})
        pending: list[_NewEvent] = []
        duplicates_of: dict[int, int] = {}
        with self.session.no_autoflush:
            for taken, checked in events:
                if checked.problem:
                    taken.result.notes.append(f"event skipped: {checked.problem}")
                    continue
                print_ = checked.fingerprint
                if print_ in self.seen or print_ in known:
                    taken.result.duplicates += 1
                    case_id = known.get(print_)
                    if case_id is not None:
                        duplicates_of[case_id] = duplicates_of.get(case_id, 0) + 1
                    continue
                self.seen.add(print_)
                pending.append(self._event(taken, checked))
        # The reports in one executemany, their ids taken first (the ORM's unit of work
        # costs more than the statement for rows nothing else changes).
        reports = _table(AbuseReport)
        rows_of_reports = []
        ids = next_ids(self.session, reports, len(batch))
        for taken, report_id in zip(batch, ids, strict=True):
            report = taken.report
            report.id = taken.result.report_id = report_id
            report.events = taken.result.events
            report.duplicates = taken.result.duplicates
            report.notes = _json(taken.result.notes)
            rows_of_reports.append({c: getattr(report, c) for c in _REPORT_COLUMNS})
        insert_rows(self.session, reports, rows_of_reports)
        self.finish()
        if duplicates_of:
            # A plain executemany: the ORM's UPDATE would search the session for the
            # cases to synchronise, which costs more than the statements (the same goes
            # for the ORM's bulk inserts, hence Core on the tables here and above).
            table = _table(AbuseCase)
            self.session.execute(
                update(table)
                .where(table.c.id == bindparam("case"))
                .values(duplicates=table.c.duplicates + bindparam("n")),
                [{"case": case_id, "n": n} for case_id, n in duplicates_of.items()],
            )
        rows = []
        for new in pending:
            new.values["report_id"] = new.taken.report.id
            group = new.case
            if group is not None:
                new.values["case_id"] = group.id
                ref = group.reference
                opened = new.taken.result.cases_opened
                if group.new and ref not in opened:
                    opened.append(ref)
                elif ref not in opened and ref not in new.taken.result.cases_updated:
                    new.taken.result.cases_updated.append(ref)
                new.taken.touched[id(group)] = group
            rows.append(new.values)
        insert_rows(self.session, _table(AbuseEvent), rows)
        self._audit_reports(batch)
        for taken in batch:
            taken.acknowledge = bool(taken.touched) and taken.acknowledge
        return batch

    def _report(
        self, item: Incoming, digest: str, message: ReportMessage | None, parsed: ParsedReport
    ) -> _Taken:
        reporter = (
            item.reporter or (message.reporter if message else "") or item.envelope_from
        ).lower()
        subject = item.subject or (message.headers.get("subject", "") if message else "")
        notes = list(parsed.notes) + (list(message.warnings) if message else [])
        report = _ReportRow(
            sha256=digest,
            size=len(item.raw),
            channel=item.channel,
            reporter=reporter[:320],
            subject=subject[:500],
            message_id=(message.headers.get("message-id", "") if message else "")[:500],
            parser=parsed.parser,
            status="parsed" if parsed.events else "unparsed",
            notes="",
            received_at=self.now,
        )
        result = ReceiveResult(0, digest, report.status, parsed.parser, notes=notes)
        taken = _Taken(item, digest, report, result, parsed, acknowledge=True)
        rule = self._reporter_rule(reporter)
        if rule is not None:
            rule.hits += 1
            taken.acknowledge = rule.mode not in ("log", "no-ack")
            if rule.mode == "ignore":
                report.status = result.status = "ignored"
                notes.append(f"reporter {reporter} is allowlisted as ignored: {rule.reason}")
            elif rule.mode == "log":
                taken.log_only = True
                notes.append(f"reporter {reporter} is allowlisted: logged only")
        return taken

    def _audit_reports(self, batch: list[_Taken]) -> None:
        """One trail entry for the batch, listing every report it took and what became of
        it (a report is a row of its own; the cases it opened have their own entries)."""
        reports = []
        for taken in batch:
            report, result = taken.report, taken.result
            reports.append(
                {
                    "id": report.id,
                    "sha256": taken.digest,
                    "channel": taken.item.channel,
                    "reporter": report.reporter,
                    "parser": result.parser,
                    "status": report.status,
                    "events": result.events,
                    "duplicates": result.duplicates,
                    "unresolved": result.unresolved,
                    "allowlisted": result.allowlisted,
                    "cases_opened": result.cases_opened,
                    "cases_updated": result.cases_updated,
                }
            )
        first, last = batch[0].report.id, batch[-1].report.id
        channels = sorted({t.item.channel for t in batch})
        self.op.audit(
            "report.received" if len(batch) == 1 else "reports.received",
            "abuse_report",
            str(first) if first == last else f"{first}-{last}",
            after=reports[0] if len(batch) == 1 else {"reports": reports},
            reason=(
                f"{channels[0]} report from {batch[0].report.reporter or 'an unknown sender'}"
                if len(batch) == 1
                else f"{len(batch)} reports ({', '.join(channels)})"
            ),
        )

    def _reporter_rule(self, reporter: str) -> AllowlistEntry | None:
        domain = "@" + reporter.rsplit("@", 1)[-1] if "@" in reporter else None
        for rule in self.reporter_rules:
            if rule.value == reporter or (domain is not None and rule.value == domain):
                return rule
        return None

    # events -------------------------------------------------------------------------------

    def _event(self, taken: _Taken, checked: _Checked) -> _NewEvent:
        event, address, domain = checked.event, checked.address, checked.domain
        ip = str(address) if address is not None else None
        ip_key = checked.key if address is not None else None
        moment = as_utc(event.occurred_at)
        values: dict[str, Any] = {
            "report_id": None,
            "case_id": None,
            "fingerprint": checked.fingerprint,
            "source": event.reporter[:320],
            "category": event.category,
            "ip": ip,
            "ip_key": ip_key,
            "port": event.port,
            "domain": domain,
            "url": event.url,
            "occurred_at": moment,
            "zone": event.zone[:32],
            "excerpt": event.excerpt,
            "extra": _json(event.extra),
            "customer_id": None,
            "instance_id": None,
            "status": "unresolved",
            "reason": "",
            "created_at": self.now,
        }
        new = _NewEvent(taken, values)
        result = taken.result
        result.events += 1
        if taken.log_only:
            values["status"], values["reason"] = "logged", "reporter allowlisted: logged only"
            return new
        customer, instance, reason = self._holder(address, ip_key, event.port, domain, moment)
        values["customer_id"], values["instance_id"], values["reason"] = customer, instance, reason
        if customer is None:
            result.unresolved += 1
            return new
        values["status"], values["reason"], new.case = self._place(
            customer, instance, ip_key, checked.key, ip or domain or "", event.category, moment
        )
        result.allowlisted += values["status"] == "allowlisted"
        return new

    def _place(
        self,
        customer: int,
        instance: int | None,
        ip_key: str | None,
        subject_key: str,
        subject: str,
        category: str,
        moment: datetime,
    ) -> tuple[str, str, _Group | None]:
        """(status, reason, case) of an attributed event: recorded without a case when an
        address allowlist entry covers it, else grouped into its case."""
        rule = self._address_rule(ip_key)
        if rule is not None:
            rule.hits += 1
            return "allowlisted", f"address allowlist {rule.value}: {rule.reason}", None
        case = self._group(customer, instance, subject_key, subject, category, moment)
        return "grouped", "", case

    def _holder(
        self,
        address: netaddr.IpAddress | None,
        ip_key: str | None,
        port: int | None,
        domain: str | None,
        moment: datetime,
    ) -> tuple[int | None, int | None, str]:
        """(customer, instance, "") of who held the address or domain then, else
        (None, None, why nobody)."""
        if address is not None:
            found = lookup(self.index, address, moment, port)
            if found is not None:
                return found.customer_id, found.instance_id, ""
            return None, None, self._nobody_reason(address, ip_key or "", port, moment)
        holder = self._domain_holder(domain or "", moment)
        if holder is None:
            return (
                None,
                None,
                (
                    f"no customer had the domain {domain} on record at {isoformat(moment)}; "
                    "add the domain to the customer in the registry, then attribute the event again"
                ),
            )
        return holder[0], holder[1], ""

    def _preload_domains(self, domains: Iterable[str]) -> None:
        """The registry's rows of every name (and parent name) of ``domains`` not read
        yet, in one query per 500 names."""
        wanted = sorted({n for d in domains for n in _domain_names(d)} - self.domains.keys())
        for name in wanted:
            self.domains[name] = []
        for start in range(0, len(wanted), 500):
            rows = self.session.execute(
                select(
                    Domain.name,
                    Domain.valid_from,
                    Domain.valid_to,
                    Domain.customer_id,
                    Domain.instance_id,
                ).where(one_of(self.session, Domain.name, wanted[start : start + 500]))
            )
            for name, valid_from, valid_to, customer, instance in rows:
                self.domains[name].append((valid_from, valid_to, customer, instance))

    def _domain_holder(self, domain: str, moment: datetime) -> tuple[int, int | None] | None:
        """The customer (and instance) that had ``domain`` or, failing that, the most
        specific parent domain at ``moment``."""
        names = _domain_names(domain)
        if any(name not in self.domains for name in names):
            self._preload_domains([domain])
        for name in names:
            for valid_from, valid_to, customer, instance in self.domains[name]:
                if valid_from <= moment and (valid_to is None or valid_to > moment):
                    return customer, instance
        return None

    def _nobody_reason(
        self, address: netaddr.IpAddress, ip_key: str, port: int | None, moment: datetime
    ) -> str:
        if self.ranges is None:
            self.ranges = [(r.start_key, r.end_key) for r in self.session.scalars(select(IpRange))]
        ip, when = str(address), isoformat(moment)
        if not any(start <= ip_key <= end for start, end in self.ranges):
            return (
                f"{ip} is not in any of the provider's IP ranges: the report is for an "
                "address the provider does not own; answer the reporter or ignore it"
            )
        if self.index.is_nat_address(netaddr.address_int(address), to_epoch_us(moment)):
            if port is None:
                return (
                    f"{ip} was a NAT public address at {when} and the report gives no "
                    "port; ask the reporter for the source port"
                )
            return f"no NAT block of {ip} covered port {port} at {when}"
        return (
            f"{ip} is the provider's but nobody held it at {when}; check the time zone "
            "of the report and the assignment history"
        )

    def _address_rule(self, key: str | None) -> AllowlistEntry | None:
        if key is None:
            return None
        for rule in self.address_rules:
            if rule.first_key <= key <= rule.last_key:
                return rule
        return None

    # grouping -----------------------------------------------------------------------------

    def _preload_cases(self, subjects: set[str]) -> None:
        """Read, in one query per 500 subjects, the newest case of every subject the batch
        names, so grouping needs no query per event."""
        cases = _table(AbuseCase)
        keys = sorted(subjects)
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            rows = self.session.execute(
                select(*(cases.c[name] for name in _GROUP_COLUMNS))
                .where(one_of(self.session, cases.c.subject_key, chunk))
                .order_by(cases.c.id)
            )
            for row in rows:
                # Ordered by id: the newest case of a group wins.
                group = _Group(*row)
                self.cases[(group.customer_id, group.subject_key, group.category)] = group
        self.preloaded |= subjects

    def _group(
        self,
        customer: int,
        instance: int | None,
        subject_key: str,
        subject: str,
        category: str,
        moment: datetime,
    ) -> _Group:
        key = (customer, subject_key, category)
        if subject_key not in self.preloaded:
            self._preload_cases({subject_key})
        group = self.cases.get(key)
        if group is None or group.state == "terminated":
            group = self._open(customer, instance, subject_key, subject, category, moment)
        elif group.state not in OPEN_STATES:
            group.reopen = True  # carried out by finish(), through the state machine
            group.state = "new"
        self.cases[key] = group
        group.events += 1
        first, last = group.first_event_at, group.last_event_at
        group.first_event_at = moment if first is None or moment < first else first
        group.last_event_at = moment if last is None or moment > last else last
        if group.instance_id is None and instance is not None:
            group.instance_id = instance
        self.touched[id(group)] = group
        return group

    def _open(
        self,
        customer: int,
        instance: int | None,
        subject_key: str,
        subject: str,
        category: str,
        moment: datetime,
    ) -> _Group:
        group = _Group(
            None, "", customer, instance, category, subject_key, subject, "new", 0, moment, moment
        )
        group.new = True
        self.new_cases.append(group)
        return group

    def finish(self) -> None:
        """Write the cases the batch opened and touched (Core statements: the grouping
        needs plain values, not the ORM's bookkeeping), then do through the state machine
        what it decided: reopen closed cases, escalate cases at their playbook's threshold,
        and queue the playbook's automatic notices."""
        cases = _table(AbuseCase)
        self._insert_new_cases(cases)
        changed = [
            {
                "case": group.id,
                "events": group.events,
                "first": group.first_event_at,
                "last": group.last_event_at,
                "instance": group.instance_id,
            }
            for group in self.touched.values()
            if not group.new
        ]
        if changed:
            first = bindparam("first", type_=UtcDateTime())
            last = bindparam("last", type_=UtcDateTime())
            stored_first, stored_last = cases.c.first_event_at, cases.c.last_event_at
            # The earlier and the later time in SQL: both databases compare stored times
            # in order (SQLite keeps one fixed-width text form), and the grouping need
            # not read and convert the stored ones.
            self.session.execute(
                update(cases)
                .where(cases.c.id == bindparam("case"))
                .values(
                    events=bindparam("events"),
                    first_event_at=sql_case((stored_first <= first, stored_first), else_=first),
                    last_event_at=sql_case((stored_last >= last, stored_last), else_=last),
                    instance_id=bindparam("instance"),
                    activity_at=self.now,
                ),
                changed,
            )
        plans = []
        for group in self.touched.values():
            rule = self.playbooks[group.category]
            reopen = group.reopen
            due = group.events >= rule.escalate_after_events and group.state in AWAITING_STATES
            notify_now = group.new and rule.auto_notify
            if reopen or due or notify_now:
                plans.append((group, rule, reopen, due, notify_now))
        orm = self.orm_cases([plan[0] for plan in plans])
        for group, rule, reopen, due, notify_now in plans:
            assert group.id is not None  # every case has its id once inserted above
            case = orm[group.id]
            if reopen:
                group.reopen = False
                with self.op.automated("intake"):
                    _change_state(self.op, case, "new", "new events arrived after it was closed")
            if due:
                with self.op.automated("playbook"):
                    escalate(
                        self.op,
                        case,
                        rule,
                        f"{case.events} events reached the playbook's "
                        f"threshold of {rule.escalate_after_events}",
                    )
                group.state = case.state
            if notify_now:
                self.to_notify.append(case)

    def orm_cases(self, groups: Sequence[_Group]) -> dict[int, AbuseCase]:
        """The cases as ORM objects for the state machine and notices, read fresh after
        the Core writes, in one query (the session flushes its pending changes before the
        read, so what the state machine already changed in this unit is kept)."""
        ids = [group.id for group in groups]
        if not ids:
            return {}
        return {
            case.id: case
            for case in self.session.scalars(
                select(AbuseCase)
                .where(one_of(self.session, AbuseCase.id, ids))
                .execution_options(populate_existing=True)
            )
        }

    def _insert_new_cases(self, cases: Table) -> None:
        """New cases in one executemany (their ids, which their references hold, taken
        first), and one trail entry: of the case when the batch opened one, else one
        listing every case opened (a feed's batch may open thousands; each case is a row
        of its own)."""
        if not self.new_cases:
            return
        locale = self.op.runtime.settings.cases.customer_locale
        ids = next_ids(self.session, cases, len(self.new_cases))
        for group, case_id in zip(self.new_cases, ids, strict=True):
            group.id = case_id
            group.reference = f"AB-{self.now:%Y%m%d}-{case_id:06d}"
        rows = [
            {
                "id": group.id,
                "reference": group.reference,
                "customer_id": group.customer_id,
                "instance_id": group.instance_id,
                "category": group.category,
                "subject_key": group.subject_key,
                "subject": group.subject,
                "state": "new",
                "events": group.events,
                "duplicates": 0,
                "first_event_at": group.first_event_at,
                "last_event_at": group.last_event_at,
                "opened_at": self.now,
                "state_changed_at": self.now,
                "activity_at": self.now,
                "updated_at": self.now,
                "authority_required": self.playbooks[group.category].authority_decision,
                "customer_locale": locale,
            }
            for group in self.new_cases
        ]
        insert_rows(self.session, cases, rows)
        opened = [
            {
                "id": group.id,
                "reference": group.reference,
                "customer_id": group.customer_id,
                "instance_id": group.instance_id,
                "category": group.category,
                "subject": group.subject,
            }
            for group in self.new_cases
        ]
        categories = sorted({group.category for group in self.new_cases})
        playbooks = {c: self.playbooks[c].as_dict() for c in categories}
        with self.op.automated("intake"):
            if len(opened) == 1:
                group = self.new_cases[0]
                self.op.audit(
                    "case.opened",
                    "abuse_case",
                    str(group.id),
                    after={**opened[0], "playbook": playbooks[group.category]},
                    reason=f"first {group.category} event for {group.subject}",
                )
                return
            first, last = opened[0]["id"], opened[-1]["id"]
            self.op.audit(
                "cases.opened",
                "abuse_case",
                f"{first}-{last}",
                after={"cases": opened, "playbooks": playbooks},
                reason=f"{len(opened)} cases opened by the reports of one batch",
            )


def _active_allowlist(
    session: Session, now: datetime
) -> tuple[list[AllowlistEntry], list[AllowlistEntry]]:
    rows = session.scalars(select(AllowlistEntry).where(AllowlistEntry.removed_at.is_(None)))
    live = [r for r in rows if r.expires_at is None or as_utc(r.expires_at) > now]
    return [r for r in live if r.kind == "reporter"], [r for r in live if r.kind == "address"]


def _known_fingerprints(session: Session, prints: list[str]) -> dict[str, int | None]:
    known: dict[str, int | None] = {}
    for start in range(0, len(prints), 500):
        chunk = prints[start : start + 500]
        for print_, case_id in session.execute(
            select(AbuseEvent.fingerprint, AbuseEvent.case_id).where(
                one_of(session, AbuseEvent.fingerprint, chunk)
            )
        ):
            known[print_] = case_id
    return known


def _domain_names(domain: str) -> list[str]:
    """``domain`` and its parent domains, most specific first, as the registry keeps
    names (normalise_domain: lower-case punycode); a bare TLD is not a candidate."""
    name = domain.lower().rstrip(".")
    with contextlib.suppress(UnicodeError):
        name = name.encode("idna").decode("ascii")
    labels = name.split(".")
    return [".".join(labels[i:]) for i in range(len(labels) - 1)]


def read_report(runtime: Runtime, raw: bytes) -> tuple[ReportMessage | None, ParsedReport]:
    """Read and parse a report without storing anything; a message that cannot be read
    at all gives no events and a note saying why (it is still kept by ``receive``)."""
    limit = runtime.settings.cases.max_report_mb * 1024 * 1024
    if len(raw) > limit:
        raise TooLarge(
            f"the report is {len(raw):,} bytes; the limit is {limit:,} "
            f"([cases] max_report_mb = {runtime.settings.cases.max_report_mb}).",
            hint="Ask the sender for a smaller report (evidence as links or a trimmed "
            "attachment), or raise the limit.",
        )
    try:
        message = read_message(raw, max_bytes=limit)
    except ValidationFailed as exc:
        return None, ParsedReport("none", [], [f"the message could not be read: {exc}"])
    return message, parse_message(message)


def receive_many(
    runtime: Runtime,
    items: Iterable[Incoming],
    *,
    actor: Actor | None = None,
    progress: Callable[[int], None] | None = None,
) -> list[ReceiveResult]:
    """Take reports in, in one unit of work: the raw reports, their rows, events and
    cases commit together; a report that cannot be parsed is kept with status
    ``unparsed`` for a person. An oversize report raises TooLarge before
    anything of the batch is written."""
    prepared: list[tuple[Incoming, ReportMessage | None, ParsedReport]] = []
    for item in items:
        if item.parsed is not None:
            prepared.append((item, item.message, item.parsed))
        else:
            message, parsed = read_report(runtime, item.raw)
            prepared.append((item, message, parsed))
    if not prepared:
        return []
    index = current_index(runtime)
    who = actor or Actor(INTAKE_ACTOR, ("system",), new_request_id())
    with runtime.operation(who) as op:
        # The bytes commit with the rows that point at them, or neither does.
        digests = rawstore.put_many(op.session, [item.raw for item, _, _ in prepared])
        intake = _Intake(op, index)
        batch = intake.take_all(prepared, digests)
        _notify_at_once(op, intake.to_notify)
        from hostwarden.cases import notify

        for taken in batch:
            if taken.acknowledge and _wants_ack(runtime, taken.report):
                report = op.session.get(AbuseReport, taken.report.id)
                assert report is not None  # inserted by take_all above
                groups = list(taken.touched.values())
                orm = intake.orm_cases(groups)
                cases = [orm[group.id] for group in groups if group.id is not None]
                notify.acknowledge_reporter(op, report, cases)
    if progress is not None:
        progress(len(batch))
    results = [taken.result for taken in batch]
    # One line a batch (a line a report cost as much as attributing it); the trail entry
    # of the batch lists every report.
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    log.info(
        "cases.reports_received",
        reports=len(results),
        report_ids=f"{results[0].report_id}-{results[-1].report_id}",
        statuses=statuses,
        events=sum(r.events for r in results),
        duplicates=sum(r.duplicates for r in results),
        unresolved=sum(r.unresolved for r in results),
        cases_opened=sum(len(r.cases_opened) for r in results),
    )
    return results


def _notify_at_once(op: Operation, cases: list[AbuseCase]) -> None:
    """The playbook's automatic notice; a customer who cannot be mailed gets a timeline
    entry saying so (the desk notifies by other means), and the intake goes on."""
    from hostwarden.cases import notify

    with op.automated("playbook"):
        for case in cases:
            if case.state != "new":
                continue  # escalated or suspended in the same batch
            try:
                notify.notify_customer(op, case)
            except HostwardenError as exc:
                _entry(op, case, "action", f"automatic notice not sent: {exc}")


def _wants_ack(runtime: Runtime, report: _ReportRow) -> bool:
    """People who wrote by mail or through the form get an acknowledgement; feeds, API
    clients and imported archives do not."""
    if not runtime.settings.cases.acknowledge_reporters or "@" not in report.reporter:
        return False
    if report.channel == "form":
        return True
    return report.channel in ("smtp", "lmtp", "imap") and report.parser not in AUTOMATED_PARSERS


def receive(
    runtime: Runtime,
    raw: bytes,
    *,
    channel: str,
    reporter: str | None = None,
    envelope_from: str = "",
    actor: Actor | None = None,
) -> ReceiveResult:
    item = Incoming(raw, channel, reporter, envelope_from=envelope_from)
    return receive_many(runtime, [item], actor=actor)[0]


# --- cases -------------------------------------------------------------------------------


def get_case(session: Session, case_id: int | str) -> AbuseCase:
    """A case by id or by reference (``AB-20260501-000123``)."""
    case: AbuseCase | None
    if isinstance(case_id, int) or str(case_id).isdigit():
        case = session.get(AbuseCase, int(case_id))
    else:
        case = session.scalars(select(AbuseCase).where(AbuseCase.reference == case_id)).first()
    if case is None:
        raise NotFound(
            f"there is no case {case_id}.", hint="List cases with `hostwarden cases list`."
        )
    return case


def _entry(op: Operation, case: AbuseCase, kind: str, body: str, **data: Any) -> CaseEntry:
    row = CaseEntry(
        case_id=case.id,
        kind=kind,
        author=op.actor.name,
        body=body,
        data=_json(data),
        created_at=utcnow(),
    )
    op.session.add(row)
    case.activity_at = row.created_at
    return row


def _check_transition(case: AbuseCase, to: str) -> None:
    if to not in TRANSITIONS.get(case.state, frozenset()):
        allowed = ", ".join(sorted(TRANSITIONS.get(case.state, frozenset()))) or "none"
        raise Conflict(
            f"case {case.reference} is {case.state}; it cannot become {to}.",
            hint=f"From {case.state} it can become: {allowed}.",
        )


def _change_state(op: Operation, case: AbuseCase, to: str, reason: str) -> None:
    before = case.state
    _check_transition(case, to)
    now = utcnow()
    case.state = to
    case.state_changed_at = now
    person = not op.actor.name.startswith("system:")
    if case.first_action_at is None and (person or to != "new"):
        case.first_action_at = now
    if to in MITIGATED and case.mitigated_at is None:
        case.mitigated_at = now
    if to in CLOSED:
        case.closed_at = now
        case.close_reason = reason
    elif before in CLOSED:
        # Reopened (by new events or by a person): no longer closed.
        case.closed_at = None
        case.close_reason = ""
    _entry(op, case, "state", reason, **{"from": before, "to": to})
    op.audit(
        f"case.{to}" if to != "new" else "case.reopened",
        "abuse_case",
        case.id,
        before={"state": before},
        after={"state": to, "reference": case.reference},
        reason=reason,
    )


def _require_reason(reason: str, what: str) -> str:
    reason = reason.strip()
    if not reason:
        raise ValidationFailed(f"a reason is needed to {what}.", hint="Say why, in a sentence.")
    return reason


def transition(op: Operation, case: AbuseCase, to: str, reason: str) -> AbuseCase:
    """A person moves a case on. ``notified`` goes through ``notify`` instead."""
    if to == "notified":
        raise ValidationFailed(
            "a case becomes notified by sending the notification.",
            hint="Use notify (console: Notify customer; CLI: hostwarden cases notify).",
        )
    _check_transition(case, to)
    if to in ("ignored", "terminated", "suspended", "escalated", "new"):
        _require_reason(reason, f"make the case {to}")
    if to in CLOSED and case.authority_required and case.authority_decided_at is None:
        raise Conflict(
            f"case {case.reference} needs a decision on reporting to the authorities "
            "(报告主管部门) before it is closed.",
            hint="Record the decision (reported or not, to whom, reference) first.",
        )
    if to == "escalated":
        rule = all_playbooks(op.session)[case.category]
        escalate(op, case, rule, reason)
        return case
    _change_state(op, case, to, reason or f"marked {to}")
    return case


def escalate(op: Operation, case: AbuseCase, rule: PlaybookRule, reason: str) -> None:
    """Escalate, and do what the playbook says escalation does by itself."""
    _change_state(op, case, "escalated", reason)
    if rule.escalation_action == "suspend":
        target = (
            f"instance {case.instance_id}" if case.instance_id else f"customer {case.customer_id}"
        )
        _change_state(op, case, "suspended", f"playbook {case.category}: suspend on escalation")
        # The enforcement drivers (nftables, hypervisors, billing) carry the suspension
        # out; until one is configured the request stands on the timeline for the NOC.
        _entry(op, case, "action", f"suspension of {target} requested", target=target)


def add_note(op: Operation, case: AbuseCase, body: str) -> CaseEntry:
    body = body.strip()
    if not body:
        raise ValidationFailed("the note is empty.", hint="Write the note's text.")
    entry = _entry(op, case, "note", body)
    op.session.flush()
    op.audit("case.note", "abuse_case", case.id, after={"entry": entry.id}, reason="internal note")
    return entry


def record_authority_decision(
    op: Operation, case: AbuseCase, *, reported: bool, to: str, reference: str, reason: str
) -> AbuseCase:
    if reported and not to.strip():
        raise ValidationFailed(
            "say to whom the case was reported.",
            hint="For example 公安机关网安部门 (public-security cyber police) and the office.",
        )
    if not reported:
        _require_reason(reason, "decide not to report")
    case.authority_decided_by = op.actor.name
    case.authority_decided_at = utcnow()
    case.authority_reported = reported
    case.authority_to = to.strip()[:300]
    case.authority_reference = reference.strip()[:200]
    text = (
        f"reported to {case.authority_to}" + (f" ({case.authority_reference})" if reference else "")
        if reported
        else f"not reported: {reason}"
    )
    _entry(
        op,
        case,
        "authority",
        text,
        reported=reported,
        to=case.authority_to,
        reference=case.authority_reference,
    )
    op.audit(
        "case.authority_decision",
        "abuse_case",
        case.id,
        after={
            "reported": reported,
            "to": case.authority_to,
            "reference": case.authority_reference,
        },
        reason=reason or text,
    )
    return case


def new_response_token(case: AbuseCase) -> str:
    token = secrets.token_urlsafe(32)
    case.response_token_sha256 = hashlib.sha256(token.encode()).hexdigest()
    return token


def case_by_token(session: Session, token: str) -> AbuseCase:
    digest = hashlib.sha256(token.encode()).hexdigest()
    case = session.scalars(
        select(AbuseCase).where(AbuseCase.response_token_sha256 == digest)
    ).first()
    if case is None or not token:
        raise NotFound(
            "this response link is not valid (it may have been replaced by a newer one).",
            hint="Use the link in the newest message from the abuse desk, or reply by mail.",
        )
    return case


MAX_REPLY_FILES = 5


def customer_reply(
    runtime: Runtime,
    token: str,
    body: str,
    files: Sequence[tuple[str, bytes]],
    *,
    client: str = "",
) -> AbuseCase:
    """A customer's answer through the response page: lands on the case timeline."""
    body = body.strip()
    if not body and not files:
        raise ValidationFailed("the reply is empty.", hint="Write what you did, or attach a file.")
    if len(files) > MAX_REPLY_FILES:
        raise ValidationFailed(
            f"{len(files)} files attached; at most {MAX_REPLY_FILES}.", hint="Zip them together."
        )
    limit = runtime.settings.cases.max_report_mb * 1024 * 1024
    total = sum(len(data) for _, data in files)
    if total > limit:
        raise TooLarge(
            f"the attachments are {total:,} bytes; the limit is {limit:,}.",
            hint="Attach less, or send a link to the files.",
        )
    with runtime.reading() as session:
        case_id = case_by_token(session, token).id
    with runtime.operation(Actor("customer", ("customer",), new_request_id())) as op:
        digests = rawstore.put_many(op.session, [data for _, data in files])
        stored = [
            {"name": name[:200], "sha256": digest, "size": len(data)}
            for (name, data), digest in zip(files, digests, strict=True)
        ]
        case = get_case(op.session, case_id)
        if case.state == "terminated":
            raise Conflict(
                f"case {case.reference} is closed for good; replies are no longer taken.",
                hint="Contact the abuse desk by mail.",
            )
        entry = _entry(op, case, "customer-reply", body, attachments=stored, client=client)
        op.session.flush()
        op.audit(
            "case.customer_reply",
            "abuse_case",
            case.id,
            after={"entry": entry.id, "attachments": stored},
            reason="the customer replied through the response page",
        )
        return case


# --- allowlists -----------------------------------------------------------------------------

ALLOWLIST_MODES = {"reporter": ("ignore", "log", "no-ack"), "address": ("record",)}


def add_allowlist(
    op: Operation,
    *,
    kind: str,
    value: str,
    mode: str,
    reason: str,
    expires_at: datetime | None = None,
) -> AllowlistEntry:
    if kind not in ALLOWLIST_MODES:
        raise ValidationFailed(
            f"{kind!r} is not an allowlist kind.", hint="Use reporter or address."
        )
    if mode not in ALLOWLIST_MODES[kind]:
        raise ValidationFailed(
            f"{mode!r} is not a mode of a {kind} entry.",
            hint=f"Use one of: {', '.join(ALLOWLIST_MODES[kind])}.",
        )
    reason = _require_reason(reason, "add an allowlist entry")
    value = value.strip().lower()
    first = last = ""
    if kind == "address":
        first, last = netaddr.prefix_keys(value)
        value = str(netaddr.parse_prefix(value))
    elif "@" not in value:
        raise ValidationFailed(
            f"{value!r} is not a reporter.",
            hint="Give the sender's address (abuse@example.net) or @domain for all of a domain.",
        )
    if expires_at is not None and as_utc(expires_at) <= utcnow():
        raise ValidationFailed("the expiry is in the past.", hint="Give a future time or none.")
    row = AllowlistEntry(
        kind=kind,
        value=value,
        first_key=first,
        last_key=last,
        mode=mode,
        reason=reason,
        expires_at=expires_at,
        created_by=op.actor.name,
        created_at=utcnow(),
    )
    op.session.add(row)
    op.session.flush()
    op.audit(
        "allowlist.added",
        "abuse_allowlist",
        row.id,
        after={
            "kind": kind,
            "value": value,
            "mode": mode,
            "expires_at": isoformat(expires_at) if expires_at else None,
        },
        reason=reason,
    )
    return row


def remove_allowlist(op: Operation, entry_id: int, reason: str) -> AllowlistEntry:
    row = op.session.get(AllowlistEntry, entry_id)
    if row is None or row.removed_at is not None:
        raise NotFound(
            f"there is no active allowlist entry {entry_id}.",
            hint="List them with `hostwarden cases allowlist list`.",
        )
    reason = _require_reason(reason, "remove an allowlist entry")
    row.removed_at = utcnow()
    row.removed_by = op.actor.name
    op.audit(
        "allowlist.removed",
        "abuse_allowlist",
        row.id,
        before={"value": row.value, "mode": row.mode},
        reason=reason,
    )
    return row


# --- the unresolvable queue and reports for a person -----------------------------------------


def attribute_again(runtime: Runtime, actor: Actor) -> dict[str, int]:
    """Try the unresolvable events again (after the registry was fixed)."""
    index = current_index(runtime, check=True)
    done = {"grouped": 0, "allowlisted": 0, "still_unresolved": 0}
    with runtime.operation(actor) as op:
        intake = _Intake(op, index)
        rows = op.session.scalars(
            select(AbuseEvent).where(AbuseEvent.status == "unresolved").order_by(AbuseEvent.id)
        ).all()
        grouped: list[tuple[AbuseEvent, _Group]] = []
        for row in rows:
            moment = as_utc(row.occurred_at)
            address = netaddr.parse_address(row.ip) if row.ip is not None else None
            customer, instance, reason = intake._holder(
                address, row.ip_key, row.port, row.domain, moment
            )
            if customer is None:
                row.reason = reason
                done["still_unresolved"] += 1
                continue
            subject_key = row.ip_key if row.ip_key is not None else f"d:{row.domain}"
            row.customer_id, row.instance_id = customer, instance
            row.status, row.reason, case = intake._place(
                customer,
                instance,
                row.ip_key,
                subject_key,
                row.ip or row.domain or "",
                row.category,
                moment,
            )
            done[row.status] += 1
            if case is not None:
                grouped.append((row, case))
        intake.finish()
        for row, case in grouped:
            row.case_id = case.id
        _notify_at_once(op, intake.to_notify)
        if grouped or done["allowlisted"]:
            op.audit(
                "events.attributed_again",
                "abuse_event",
                "unresolved",
                after=done,
                reason="unresolvable events tried again",
            )
    return done


def review_report(op: Operation, report_id: int, note: str) -> AbuseReport:
    """A person has read an unparsed report (and acted on it outside the parsers)."""
    report = op.session.get(AbuseReport, report_id)
    if report is None:
        raise NotFound(f"there is no report {report_id}.", hint="List the queue first.")
    if report.status != "unparsed":
        raise Conflict(f"report {report_id} is {report.status}, not waiting for a person.")
    note = _require_reason(note, "mark a report reviewed")
    report.status = "reviewed"
    report.reviewed_by = op.actor.name
    report.review_note = note
    op.audit(
        "report.reviewed",
        "abuse_report",
        report.id,
        before={"status": "unparsed"},
        after={"status": "reviewed"},
        reason=note,
    )
    return report


# --- scheduled work -------------------------------------------------------------------------


def run_deadlines(runtime: Runtime, *, now: datetime | None = None) -> dict[str, int]:
    """Escalate cases whose customer deadline passed; close idle cases."""
    moment = utcnow() if now is None else as_utc(now)
    idle_before = moment - timedelta(days=runtime.settings.cases.idle_close_days)
    done = {"escalated": 0, "closed_idle": 0}
    with runtime.operation(Actor("system:deadlines", ("system",), new_request_id())) as op:
        rules = all_playbooks(op.session)
        overdue = op.session.scalars(
            select(AbuseCase).where(
                AbuseCase.state.in_(("notified", "awaiting_response")),
                AbuseCase.deadline_at.is_not(None),
                AbuseCase.deadline_at < moment,
            )
        ).all()
        for case in overdue:
            escalate(
                op,
                case,
                rules[case.category],
                f"the customer's deadline {isoformat(as_utc(case.deadline_at or moment))} passed",
            )
            done["escalated"] += 1
        idle = op.session.scalars(
            select(AbuseCase).where(
                AbuseCase.state.in_(AWAITING_STATES),
                AbuseCase.activity_at < idle_before,
            )
        ).all()
        for case in idle:
            if case.authority_required and case.authority_decided_at is None:
                continue  # a person must decide first; it stays on the list
            _change_state(
                op, case, "resolved", f"idle for {runtime.settings.cases.idle_close_days} days"
            )
            done["closed_idle"] += 1
    return done


def sla_by_category(session: Session) -> list[dict[str, Any]]:
    """Per category: cases, open cases, mean seconds to first action and to mitigation."""
    rows: dict[str, dict[str, Any]] = {}
    for case in session.execute(
        select(
            AbuseCase.category,
            AbuseCase.state,
            AbuseCase.opened_at,
            AbuseCase.first_action_at,
            AbuseCase.mitigated_at,
        )
    ):
        category, state, opened, first, mitigated = case
        row = rows.setdefault(
            category, {"category": category, "cases": 0, "open": 0, "_first": [], "_mit": []}
        )
        row["cases"] += 1
        row["open"] += state in OPEN_STATES
        if first is not None:
            row["_first"].append((as_utc(first) - as_utc(opened)).total_seconds())
        if mitigated is not None:
            row["_mit"].append((as_utc(mitigated) - as_utc(opened)).total_seconds())
    out = []
    for row in sorted(rows.values(), key=lambda r: r["category"]):
        first, mit = row.pop("_first"), row.pop("_mit")
        row["first_action_seconds"] = sum(first) / len(first) if first else None
        row["mitigation_seconds"] = sum(mit) / len(mit) if mit else None
        row["first_action_count"] = len(first)
        row["mitigation_count"] = len(mit)
        out.append(row)
    return out
