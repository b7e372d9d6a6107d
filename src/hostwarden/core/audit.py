"""The hash-chained, signed audit trail: append, checkpoint, verify, export."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from hostwarden.core.masking import mask_value
from hostwarden.core.models import AuditCheckpoint, AuditEntry
from hostwarden.core.signing import ChainVerifier
from hostwarden.core.timeutil import isoformat, utcnow

if TYPE_CHECKING:
    from hostwarden.core.runtime import Operation, Runtime

GENESIS = "0" * 64
CHAIN = "audit"
HEAD_FILE = "audit-head.json"
# Namespace of the PostgreSQL advisory lock that serialises chain appends; the second key
# is the schema, so installs (or test runs) sharing one database do not wait on each other.
_PG_LOCK_NAMESPACE = 0x68770001


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


#: The fields an entry's hash covers, in the v1 payload. ``seq`` is left out on purpose:
#: order is proven by the links, so a moved row shows up as a broken link rather than as
#: altered content.
HASHED_FIELDS = (
    "ts",
    "actor",
    "role",
    "action",
    "object_type",
    "object_id",
    "before",
    "after",
    "reason",
    "request_id",
)


def entry_payload(entry: AuditEntry) -> bytes:
    """The bytes hashed for an entry: canonical JSON of its hashed fields."""
    body: dict[str, Any] = {"v": 1}
    body.update((name, getattr(entry, name)) for name in HASHED_FIELDS)
    return canonical_json(body).encode("utf-8")


def entry_hash(prev_hash: str, entry: AuditEntry) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + entry_payload(entry)).hexdigest()


def checkpoint_message(chain: str, seq: int, head_hash: str, signed_at: str) -> bytes:
    return f"hostwarden-checkpoint/v1\n{chain}\n{seq}\n{head_hash}\n{signed_at}".encode()


def _lock_chain(session: Session) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(current_schema()))"),
            {"ns": _PG_LOCK_NAMESPACE},
        )
    # SQLite: the transaction began with BEGIN IMMEDIATE and already holds the write lock.


def _head(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(AuditEntry.seq, AuditEntry.entry_hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def append(
    op: Operation,
    action: str,
    object_type: str,
    object_id: str,
    before: Any,
    after: Any,
    reason: str,
) -> AuditEntry:
    session = op.session
    if not op.audited:
        _lock_chain(session)
    if op.audit_head is None:
        # The unit's changes so far go to the database before its first entry (and after
        # a savepoint rollback), so that a constraint they break fails before the trail.
        session.flush()
        op.audit_head = _head(session)
    seq, prev = op.audit_head
    entry = AuditEntry(
        seq=seq + 1,
        ts=isoformat(utcnow()),
        actor=op.actor.name,
        role=op.actor.role_text,
        action=action,
        object_type=object_type,
        object_id=object_id,
        before=canonical_json(mask_value(before)),
        after=canonical_json(mask_value(after)),
        reason=str(mask_value(reason)),
        request_id=op.actor.request_id,
        prev_hash=prev,
        entry_hash="",
    )
    entry.entry_hash = entry_hash(prev, entry)
    # Not flushed here: the entries of a unit go in with its next flush, in order.
    session.add(entry)
    op.audit_head = (entry.seq, entry.entry_hash)
    return entry


def seal(op: Operation) -> None:
    """Sign the chain head at the end of a unit of work that appended entries."""
    seq, head = _head(op.session)
    signed = op.session.scalar(
        select(AuditCheckpoint.id).where(AuditCheckpoint.chain == CHAIN, AuditCheckpoint.seq == seq)
    )
    if signed is not None:
        # Every entry of this unit of work was rolled back to a savepoint: the head is
        # one that is already signed.
        return
    signed_at = isoformat(utcnow())
    signer = op.runtime.signer
    cp = AuditCheckpoint(
        chain=CHAIN,
        seq=seq,
        head_hash=head,
        signed_at=signed_at,
        key_id=signer.key_id,
        signature=signer.sign(checkpoint_message(CHAIN, seq, head, signed_at)),
    )
    op.session.add(cp)
    op.session.flush()
    op.checkpoint = checkpoint_dict(cp)


def checkpoint_dict(cp: AuditCheckpoint) -> dict[str, Any]:
    """A signed checkpoint as the head file and verification read it (any chain)."""
    return {
        "chain": cp.chain,
        "seq": cp.seq,
        "head_hash": cp.head_hash,
        "signed_at": cp.signed_at,
        "key_id": cp.key_id,
        "signature": cp.signature,
    }


def publish_head(runtime: Runtime, checkpoint: dict[str, Any], file_name: str = HEAD_FILE) -> None:
    """Keep the newest signed head in a file outside the database too, so that deleting
    the last entries together with their checkpoints still shows. ``file_name`` (in the
    data directory) is the audit trail's by default; other chains name their own."""
    path = runtime.settings.home / file_name
    # Threads and processes sharing the data directory publish one at a time (flock is
    # per open file, so it also separates threads), each through its own temporary file:
    # otherwise an older head could overwrite a newer one, or a rename find no file.
    with open(path.with_name(file_name + ".lock"), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = read_head_file(path)
        if current is not None and current.get("seq", 0) >= checkpoint["seq"]:
            return
        tmp = path.with_name(f"{file_name}.tmp{os.getpid()}-{threading.get_ident()}")
        tmp.write_text(canonical_json(checkpoint), encoding="utf-8")
        os.replace(tmp, path)


def read_head_file(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except ValueError:
        return {"invalid": True}
    return data if isinstance(data, dict) else {"invalid": True}


@dataclass
class Problem:
    seq: int
    kind: str  # altered | deleted | inserted | reordered | forged
    message: str


@dataclass
class VerifyReport:
    entries: int = 0
    checkpoints: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first(self) -> Problem | None:
        return min(self.problems, key=lambda p: p.seq) if self.problems else None

    def as_dict(self) -> dict[str, Any]:
        first = self.first
        return {
            "ok": self.ok,
            "entries": self.entries,
            "checkpoints": self.checkpoints,
            "head_seq": self.head_seq,
            "head_hash": self.head_hash,
            "first_problem": None if first is None else first.__dict__,
            "problems": [p.__dict__ for p in self.problems],
        }


def _walk_links(entries: list[AuditEntry]) -> Problem | None:
    """Find the first entry whose content or link is wrong, and say what happened to it."""
    position = {e.entry_hash: i for i, e in enumerate(entries)}
    prev_hash, prev_seq = GENESIS, 0
    for i, entry in enumerate(entries):
        if entry_hash(entry.prev_hash, entry) != entry.entry_hash:
            return Problem(
                entry.seq,
                "altered",
                f"entry #{entry.seq} was altered: its content no longer matches its hash.",
            )
        if entry.prev_hash != prev_hash:
            j = position.get(entry.prev_hash)
            if j is not None and j > i:
                return Problem(
                    entry.seq,
                    "reordered",
                    f"entry #{entry.seq} is out of order: it was written after "
                    f"entry #{entries[j].seq} but now stands before it.",
                )
            if j is not None and j < i - 1:
                inserted = entries[j + 1]
                return Problem(
                    inserted.seq,
                    "inserted",
                    f"entry #{inserted.seq} was inserted: entry #{entry.seq} links to "
                    f"entry #{entries[j].seq}, not to it.",
                )
            if j is None and entry.prev_hash == GENESIS and i > 0:
                return Problem(
                    entries[0].seq,
                    "inserted",
                    f"entry #{entries[0].seq} was inserted before the first real entry "
                    f"#{entry.seq}.",
                )
            missing = prev_seq + 1
            return Problem(
                missing,
                "deleted",
                f"entry #{missing} was deleted: entry #{entry.seq} links to an entry "
                f"that is no longer in the chain (after #{prev_seq}).",
            )
        if entry.seq != prev_seq + 1:
            return Problem(
                prev_seq + 1,
                "altered",
                f"entry numbers were changed: #{entry.seq} follows #{prev_seq} with intact links.",
            )
        prev_hash, prev_seq = entry.entry_hash, entry.seq
    return None


def _check_checkpoint(
    cp: dict[str, Any],
    verifier: ChainVerifier,
    by_seq: dict[int, AuditEntry],
    last_seq: int,
    label: str,
) -> Problem | None:
    message = checkpoint_message(
        str(cp.get("chain", "")),
        int(cp.get("seq", -1)),
        str(cp.get("head_hash", "")),
        str(cp.get("signed_at", "")),
    )
    seq = int(cp.get("seq", -1))
    if cp.get("key_id") != verifier.key_id or not verifier.verify(
        str(cp.get("signature", "")), message
    ):
        return Problem(
            seq,
            "forged",
            f"{label} for entry #{seq} has a signature that this data directory's key did "
            "not make (forged or altered checkpoint).",
        )
    if seq > last_seq:
        return Problem(
            last_seq + 1,
            "deleted",
            f"entries #{last_seq + 1}..#{seq} were deleted: {label} signed the chain up to "
            f"#{seq} but it ends at #{last_seq}.",
        )
    entry = by_seq.get(seq)
    if entry is not None and entry.entry_hash != cp.get("head_hash"):
        return Problem(
            seq,
            "altered",
            f"the chain up to entry #{seq} was rewritten: its hash differs from the one "
            f"{label} signed.",
        )
    return None


def verify_chain(session: Session, verifier: ChainVerifier, head_file: Path) -> VerifyReport:
    entries = list(session.scalars(select(AuditEntry).order_by(AuditEntry.seq)))
    checkpoints = list(
        session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain == CHAIN)
            .order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
        )
    )
    report = VerifyReport(entries=len(entries), checkpoints=len(checkpoints))
    if entries:
        report.head_seq, report.head_hash = entries[-1].seq, entries[-1].entry_hash
    link_problem = _walk_links(entries)
    if link_problem is not None:
        report.problems.append(link_problem)
    by_seq = {e.seq: e for e in entries}
    last_seq = entries[-1].seq if entries else 0
    signed_up_to = 0
    for cp in checkpoints:
        problem = _check_checkpoint(
            checkpoint_dict(cp), verifier, by_seq, last_seq, f"checkpoint {cp.id}"
        )
        if problem is not None:
            report.problems.append(problem)
        if problem is None or problem.kind != "forged":
            # A genuine signature covers its entries even when they were rewritten since
            # (that is reported above); only unsigned tails count as inserted.
            signed_up_to = max(signed_up_to, cp.seq)
    head = read_head_file(head_file)
    if head is not None:
        if head.get("invalid"):
            report.problems.append(
                Problem(last_seq, "forged", f"{head_file} is not readable JSON.")
            )
        else:
            problem = _check_checkpoint(head, verifier, by_seq, last_seq, f"head file {head_file}")
            if problem is not None:
                report.problems.append(problem)
    if last_seq > signed_up_to and link_problem is None:
        report.problems.append(
            Problem(
                signed_up_to + 1,
                "inserted",
                f"entries #{signed_up_to + 1}..#{last_seq} are covered by no signed "
                "checkpoint: they were added outside hostwarden.",
            )
        )
    return report


def verify(runtime: Runtime) -> VerifyReport:
    with runtime.reading() as session:
        return verify_chain(session, runtime.signer, runtime.settings.home / HEAD_FILE)


def entry_dict(entry: AuditEntry) -> dict[str, Any]:
    """An entry for export and display: its hashed fields (before/after decoded), its
    number and its links, so that a recipient can re-check the chain."""
    data: dict[str, Any] = {"seq": entry.seq}
    data.update((name, getattr(entry, name)) for name in HASHED_FIELDS)
    data["before"] = json.loads(entry.before)
    data["after"] = json.loads(entry.after)
    data["prev_hash"] = entry.prev_hash
    data["entry_hash"] = entry.entry_hash
    return data


def changes(entry: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(field, before, after) for each field that differs, for showing an entry to a person."""
    before = entry["before"] if isinstance(entry["before"], dict) else {}
    after = entry["after"] if isinstance(entry["after"], dict) else {}
    return [
        (key, before.get(key), after.get(key))
        for key in sorted(set(before) | set(after))
        if before.get(key) != after.get(key)
    ]


def _filtered(
    since: datetime | None,
    until: datetime | None,
    action: str | None = None,
    object_type: str | None = None,
    actor: str | None = None,
) -> Any:
    query = select(AuditEntry)
    if since is not None:
        query = query.where(AuditEntry.ts >= isoformat(since))
    if until is not None:
        query = query.where(AuditEntry.ts < isoformat(until))
    if action:
        query = query.where(AuditEntry.action == action)
    if object_type:
        query = query.where(AuditEntry.object_type == object_type)
    if actor:
        query = query.where(AuditEntry.actor == actor)
    return query


def list_entries(
    session: Session,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    action: str | None = None,
    object_type: str | None = None,
    actor: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> tuple[list[AuditEntry], int]:
    query = _filtered(since, until, action, object_type, actor)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(AuditEntry.seq.desc()).limit(limit).offset(offset))
    return list(rows), total


def iter_export(
    session: Session, since: datetime | None, until: datetime | None
) -> Iterator[dict[str, Any]]:
    """Entries in chain order, with hashes, so the recipient can re-check the links."""
    query = _filtered(since, until).order_by(AuditEntry.seq).execution_options(yield_per=500)
    for entry in session.scalars(query):
        yield entry_dict(entry)
