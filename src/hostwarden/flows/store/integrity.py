"""The segment hash chain: append seal and expire entries, sign its head, verify it all.

Each entry's hash is SHA-256(previous hash ‖ canonical JSON of the entry), as in the
audit trail, whose helpers (canonical JSON, checkpoint message, head file) and signing key
this module reuses. Checkpoints go into ``audit_checkpoints`` under the chain name
``flows``; the newest is also written to ``flows-head.json`` in the data directory, so
that removing the last entries together with their checkpoints still shows.

Verification trusts the chain, not the segment table: a segment's expected size and
SHA-256 come from its seal entry, whose hash is linked and signed.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from hostwarden.core import audit
from hostwarden.core.audit import GENESIS, canonical_json, checkpoint_message, read_head_file
from hostwarden.core.models import AuditCheckpoint
from hostwarden.core.signing import ChainSigner, ChainVerifier
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.flows.models import (
    CHAIN_EXPIRE,
    CHAIN_SEAL,
    FLOWS_DATASET,
    FlowChainEntry,
    FlowSegment,
)
from hostwarden.flows.store import ProgressFn, StoreProblem, StoreVerifyReport

if TYPE_CHECKING:
    from hostwarden.core.runtime import Runtime

CHAIN = "flows"
HEAD_FILE = "flows-head.json"
SEGMENT_SUFFIX = ".parquet"
#: A compacted flow segment's companion (the same rows ordered by the remote address)
#: is named after it: ``…/<sealed>-<token>.remote.parquet``. Its SHA-256 and size are in
#: the segment's seal entry (``companion_sha256``, ``companion_size``).
COMPANION_SUFFIX = ".remote.parquet"
TEMP_SUFFIX = ".tmp"
# PostgreSQL advisory lock namespace of segment-chain appends (audit.py uses 0x68770001,
# the scheduler 0x68770002); the second key is the schema, as for the audit chain.
_PG_LOCK_NAMESPACE = 0x68770003
_HASH_CHUNK = 1 << 20


def lock_chain(session: Session) -> None:
    """Serialise appends: seals from several collector processes and expiry runs."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:ns, hashtext(current_schema()))"),
            {"ns": _PG_LOCK_NAMESPACE},
        )
    # SQLite: the unit of work began with BEGIN IMMEDIATE and holds the write lock.


def entry_hash(prev_hash: str, body: str) -> str:
    return hashlib.sha256(bytes.fromhex(prev_hash) + body.encode("utf-8")).hexdigest()


def _head(session: Session) -> tuple[int, str]:
    row = session.execute(
        select(FlowChainEntry.seq, FlowChainEntry.entry_hash)
        .order_by(FlowChainEntry.seq.desc())
        .limit(1)
    ).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def append(session: Session, kind: str, segment: str, fields: dict[str, Any]) -> FlowChainEntry:
    """Add one entry after the head; the caller holds ``lock_chain`` in this transaction."""
    session.flush()
    seq, prev = _head(session)
    body = canonical_json({"v": 1, "kind": kind, "segment": segment, **fields})
    entry = FlowChainEntry(
        seq=seq + 1,
        kind=kind,
        segment=segment,
        body=body,
        prev_hash=prev,
        entry_hash=entry_hash(prev, body),
    )
    session.add(entry)
    session.flush()
    return entry


def sign_head(session: Session, signer: ChainSigner) -> dict[str, Any] | None:
    """Sign the chain head in this transaction; returns the checkpoint to publish after
    commit (None when the head is already signed)."""
    session.flush()
    seq, head = _head(session)
    if seq == 0:
        return None
    done = session.scalar(
        select(AuditCheckpoint.id).where(AuditCheckpoint.chain == CHAIN, AuditCheckpoint.seq == seq)
    )
    if done is not None:
        return None
    signed_at = isoformat(utcnow())
    cp = AuditCheckpoint(
        chain=CHAIN,
        seq=seq,
        head_hash=head,
        signed_at=signed_at,
        key_id=signer.key_id,
        signature=signer.sign(checkpoint_message(CHAIN, seq, head, signed_at)),
    )
    session.add(cp)
    session.flush()
    return audit.checkpoint_dict(cp)


def publish_head(runtime: Runtime, checkpoint: dict[str, Any] | None) -> None:
    if checkpoint is not None:
        audit.publish_head(runtime, checkpoint, HEAD_FILE)


def file_sha256(
    path: Path, progress: ProgressFn | None = None, done: int = 0, total: int = 0
) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_HASH_CHUNK):
            digest.update(chunk)
            done += len(chunk)
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


# --- verification -------------------------------------------------------------------------


@dataclass
class ChainState:
    """What the chain says about every segment it ever sealed."""

    sealed: dict[str, dict[str, Any]] = field(default_factory=dict)
    sealed_seq: dict[str, int] = field(default_factory=dict)
    expired: dict[str, int] = field(default_factory=dict)
    #: Segments whose file was missing or resized when they expired.
    expired_damaged: dict[str, str] = field(default_factory=dict)
    #: The dataset each seal entry names (``flows`` when it names none).
    datasets: dict[str, str] = field(default_factory=dict)


def _walk(entries: list[FlowChainEntry], report: StoreVerifyReport) -> ChainState:
    state = ChainState()
    prev_hash, prev_seq = GENESIS, 0
    for entry in entries:
        body: dict[str, Any] = {}
        try:
            parsed = json.loads(entry.body)
            body = parsed if isinstance(parsed, dict) else {}
        except ValueError:
            pass
        if (
            entry_hash(entry.prev_hash, entry.body) != entry.entry_hash
            or body.get("kind") != entry.kind
            or body.get("segment") != entry.segment
        ):
            report.problems.append(
                StoreProblem(
                    "altered",
                    f"chain entry #{entry.seq} ({entry.kind} {entry.segment}) was altered: "
                    "its content no longer matches its hash.",
                    entry.segment,
                    entry.seq,
                )
            )
        elif entry.prev_hash != prev_hash or entry.seq != prev_seq + 1:
            report.problems.append(
                StoreProblem(
                    "broken-link",
                    f"chain entry #{entry.seq} does not link to entry #{prev_seq} before it: "
                    "entries between them were deleted, inserted or reordered.",
                    entry.segment,
                    entry.seq,
                )
            )
        if entry.kind == CHAIN_SEAL:
            state.sealed[entry.segment] = body
            state.sealed_seq[entry.segment] = entry.seq
            state.datasets[entry.segment] = str(body.get("dataset", FLOWS_DATASET))
        elif entry.kind == CHAIN_EXPIRE:
            state.expired[entry.segment] = entry.seq
            if body.get("file", "present") != "present":
                state.expired_damaged[entry.segment] = str(body["file"])
        prev_hash, prev_seq = entry.entry_hash, entry.seq
    return state


def _check_checkpoint(
    cp: dict[str, Any],
    verifier: ChainVerifier,
    hashes: dict[int, str],
    last_seq: int,
    label: str,
) -> StoreProblem | None:
    seq = int(cp.get("seq", -1))
    message = checkpoint_message(
        str(cp.get("chain", "")), seq, str(cp.get("head_hash", "")), str(cp.get("signed_at", ""))
    )
    if (
        cp.get("chain") != CHAIN
        or cp.get("key_id") != verifier.key_id
        or not verifier.verify(str(cp.get("signature", "")), message)
    ):
        return StoreProblem(
            "forged",
            f"{label} for chain entry #{seq} carries a signature this data directory's key "
            "did not make (forged or altered checkpoint).",
            None,
            seq,
        )
    if seq > last_seq:
        return StoreProblem(
            "broken-link",
            f"chain entries #{last_seq + 1}..#{seq} were deleted: {label} signed the chain up "
            f"to #{seq} but it ends at #{last_seq}.",
            None,
            last_seq + 1,
        )
    if hashes.get(seq) != cp.get("head_hash"):
        return StoreProblem(
            "rewritten",
            f"the chain up to entry #{seq} was rewritten: its hash differs from the one "
            f"{label} signed.",
            None,
            seq,
        )
    return None


def _check_signatures(
    session: Session,
    verifier: ChainVerifier,
    head_file: Path,
    entries: list[FlowChainEntry],
    report: StoreVerifyReport,
) -> None:
    checkpoints = list(
        session.scalars(
            select(AuditCheckpoint)
            .where(AuditCheckpoint.chain == CHAIN)
            .order_by(AuditCheckpoint.seq, AuditCheckpoint.id)
        )
    )
    report.checkpoints = len(checkpoints)
    hashes = {e.seq: e.entry_hash for e in entries}
    last_seq = entries[-1].seq if entries else 0
    signed_up_to = 0
    for cp in checkpoints:
        problem = _check_checkpoint(
            audit.checkpoint_dict(cp), verifier, hashes, last_seq, f"checkpoint {cp.id}"
        )
        if problem is not None:
            report.problems.append(problem)
        if problem is None or problem.kind != "forged":
            signed_up_to = max(signed_up_to, cp.seq)
    head = read_head_file(head_file)
    if head is not None:
        if head.get("invalid"):
            report.problems.append(StoreProblem("forged", f"{head_file} is not readable JSON."))
        else:
            problem = _check_checkpoint(head, verifier, hashes, last_seq, f"head file {head_file}")
            if problem is not None:
                report.problems.append(problem)
    if last_seq > signed_up_to:
        report.problems.append(
            StoreProblem(
                "unsigned",
                f"chain entries #{signed_up_to + 1}..#{last_seq} are covered by no signed "
                "checkpoint: they were added outside hostwarden.",
                None,
                signed_up_to + 1,
            )
        )


_INDEXED = ("sha256", "size", "rows", "day", "first_ms", "last_ms")


def _check_index(rows: list[FlowSegment], state: ChainState, report: StoreVerifyReport) -> None:
    """The segment table must say what the chain says (a changed row could hide a file's
    deletion as an expiry, or steer queries and holds)."""
    seen: set[str] = set()
    for row in rows:
        seen.add(row.name)
        sealed = state.sealed.get(row.name)
        if sealed is None:
            report.problems.append(
                StoreProblem(
                    "index",
                    f"segment {row.name} is in the segment table but was never chained.",
                    row.name,
                )
            )
            continue
        differs = [name for name in _INDEXED if getattr(row, name) != sealed.get(name)]
        if row.seal_seq != state.sealed_seq[row.name]:
            differs.append("seal_seq")
        if row.dataset != state.datasets[row.name]:
            # A changed dataset would hide a segment from the queries of its own.
            differs.append("dataset")
        expired_seq = state.expired.get(row.name)
        if (row.expired_at is not None) != (expired_seq is not None) or (
            expired_seq is not None and row.expire_seq != expired_seq
        ):
            differs.append("expired")
        if differs:
            report.problems.append(
                StoreProblem(
                    "index",
                    f"segment {row.name}: the segment table's {', '.join(differs)} "
                    "disagree(s) with the chain.",
                    row.name,
                    state.sealed_seq[row.name],
                )
            )
    for name in sorted(set(state.sealed) - seen):
        report.problems.append(
            StoreProblem(
                "index",
                f"segment {name} is chained but missing from the segment table.",
                name,
                state.sealed_seq[name],
            )
        )


def verify_chain(runtime: Runtime, report: StoreVerifyReport) -> ChainState:
    """The half of verification every backend shares: the chain's links, the signed
    checkpoints and head file, and the segment table against the chain. Returns what the
    chain says about each segment, for the backend to check its stored data against."""
    with runtime.reading() as session:
        entries = list(session.scalars(select(FlowChainEntry).order_by(FlowChainEntry.seq)))
        report.chain_entries = len(entries)
        if entries:
            report.head_seq, report.head_hash = entries[-1].seq, entries[-1].entry_hash
        state = _walk(entries, report)
        _check_signatures(
            session, runtime.signer, runtime.settings.home / HEAD_FILE, entries, report
        )
        _check_index(list(session.scalars(select(FlowSegment))), state, report)
    return state


def list_files(
    root: Path, subdirs: Iterable[str] | None = None
) -> tuple[dict[str, Path], list[Path]]:
    """Segment files under ``root`` (or only under these subdirectories of it: the log
    datasets' directories) by name (path relative to ``root``), and leftover temporary
    files."""
    found: dict[str, Path] = {}
    temporary: list[Path] = []
    tops = [root] if subdirs is None else [root / d for d in subdirs]
    for top in tops:
        if top.is_dir():
            _list_under(root, top, found, temporary)
    return found, temporary


def _list_under(root: Path, top: Path, found: dict[str, Path], temporary: list[Path]) -> None:
    for dirpath, _dirs, files in os.walk(top):
        for name in files:
            path = Path(dirpath) / name
            if name.endswith(TEMP_SUFFIX):
                temporary.append(path)
            elif name.endswith(SEGMENT_SUFFIX):
                found[path.relative_to(root).as_posix()] = path


def companion_name(segment: str) -> str:
    """The companion file's name (relative to the store) of a segment name."""
    return segment.removesuffix(SEGMENT_SUFFIX) + COMPANION_SUFFIX


def segment_of_companion(name: str) -> str | None:
    """The segment a companion file's name belongs to (None: not a companion's name)."""
    if not name.endswith(COMPANION_SUFFIX):
        return None
    return name.removesuffix(COMPANION_SUFFIX) + SEGMENT_SUFFIX


def dataset_of(name: str) -> str:
    """The dataset a segment's name places it in (a file no chain entry seals has only
    its name to say)."""
    parts = name.split("/")
    return parts[0] if len(parts) >= 3 else FLOWS_DATASET


def day_of(name: str) -> str:
    """The UTC day of a segment name: ``YYYY-MM-DD/…`` (flows) or ``<dataset>/YYYY-MM-DD/…``."""
    parts = name.split("/")
    return parts[-2] if len(parts) >= 2 else parts[0]


def verify_store(
    runtime: Runtime,
    root: Path,
    *,
    since_day: str | None = None,
    progress: ProgressFn | None = None,
) -> StoreVerifyReport:
    """Check the chain (links, signatures, head file), the segment table against it, and
    every live segment file at or after ``since_day`` against its seal entry; name every
    segment modified, truncated, deleted or added."""
    report = StoreVerifyReport()
    # Files first, chain second: a segment sealed in between is then in the chain we read,
    # not reported as added.
    on_disk, temporary = list_files(root)
    state = verify_chain(runtime, report)
    check_files(runtime, report, state, on_disk, temporary, since_day=since_day, progress=progress)
    return report


def check_files(
    runtime: Runtime,
    report: StoreVerifyReport,
    state: ChainState,
    on_disk: dict[str, Path],
    temporary: list[Path],
    *,
    since_day: str | None = None,
    progress: ProgressFn | None = None,
    datasets: Collection[str] | None = None,
) -> None:
    """The file half of verification: every live segment file (of ``datasets``, or all)
    at or after ``since_day`` against its seal entry, and files no entry seals; a
    backend that keeps flows elsewhere calls it for the log datasets' files."""

    def wanted(name: str) -> bool:
        if datasets is not None and state.datasets.get(name, dataset_of(name)) not in datasets:
            return False
        return since_day is None or day_of(name) >= since_day

    live = {
        name: body
        for name, body in sorted(state.sealed.items())
        if name not in state.expired and wanted(name)
    }
    # Each live segment's files: the segment, and the companion its seal entry names.
    expected: list[tuple[str, str, dict[str, Any]]] = []
    for name, body in live.items():
        expected.append((name, name, {"size": body.get("size"), "sha256": body.get("sha256")}))
        if "companion_sha256" in body:
            expected.append(
                (
                    companion_name(name),
                    name,
                    {"size": body.get("companion_size"), "sha256": body["companion_sha256"]},
                )
            )
    total = sum(int(want.get("size") or 0) for file, _, want in expected if file in on_disk)
    gone: dict[str, list[str]] = {}
    for file, name, want in expected:
        path = on_disk.get(file)
        seq = state.sealed_seq[name]
        what = "segment" if file == name else f"companion file of segment {name},"
        if path is None:
            gone.setdefault(name, []).append(file)
            continue
        try:
            size = path.stat().st_size
            digest = file_sha256(path, progress, report.bytes_hashed, total)
        except FileNotFoundError:
            gone.setdefault(name, []).append(file)  # removed while we looked: an expiry, or not
            continue
        report.bytes_hashed += size
        if file == name:
            report.segments_checked += 1
        sealed_size = int(want.get("size") or -1)
        if size < sealed_size:
            report.problems.append(
                StoreProblem(
                    "truncated",
                    f"{what} {file} was truncated: {size} bytes, sealed with {sealed_size}.",
                    name,
                    seq,
                )
            )
        elif size > sealed_size:
            report.problems.append(
                StoreProblem(
                    "modified",
                    f"{what} {file} was modified: it grew from {sealed_size} to {size} bytes.",
                    name,
                    seq,
                )
            )
        elif digest != want.get("sha256"):
            report.problems.append(
                StoreProblem(
                    "modified",
                    f"{what} {file} was modified: same size, but its SHA-256 is no longer "
                    "the one sealed.",
                    name,
                    seq,
                )
            )
    for name in still_live(runtime, gone):
        for file in gone[name]:
            what = "segment" if file == name else f"companion file of segment {name},"
            report.problems.append(
                StoreProblem(
                    "deleted",
                    f"{what} {file} was deleted: its file is gone but it was never expired.",
                    name,
                    state.sealed_seq[name],
                )
            )

    def owner(file: str) -> str | None:
        """The chained segment a file on disk belongs to (itself, or the segment whose
        seal entry names it as companion)."""
        if file in state.sealed:
            return file
        segment = segment_of_companion(file)
        if segment is not None and "companion_sha256" in state.sealed.get(segment, {}):
            return segment
        return None

    unknown = sorted(n for n in on_disk if owner(n) is None and wanted(n))
    for name in still_unchained(runtime, unknown):
        report.problems.append(
            StoreProblem(
                "added",
                f"segment file {name} was added: no chain entry seals it.",
                name,
            )
        )
    for file in sorted(on_disk):
        segment = owner(file)
        if segment is not None and segment in state.expired and wanted(segment):
            report.notes.append(
                f"segment {segment} is expired (or replaced by a compaction) but its file "
                f"{file} is still there; the next expiry or compaction run removes it."
            )
    for name, file_state in sorted(state.expired_damaged.items()):
        if wanted(name):
            report.notes.append(
                f"segment {name} was already {file_state} when it expired (chain entry "
                f"#{state.expired[name]})."
            )
    for path in sorted(temporary):
        report.notes.append(f"{path} is a leftover temporary file of an interrupted seal.")


def still_live(runtime: Runtime, names: Iterable[str]) -> list[str]:
    """Of these segments, the ones still without an expire entry (an expiry may have
    committed and removed the file since the chain was read)."""
    pending = list(names)
    if not pending:
        return []
    with runtime.reading() as session:
        expired = set(
            session.scalars(
                select(FlowChainEntry.segment).where(
                    FlowChainEntry.kind == CHAIN_EXPIRE, FlowChainEntry.segment.in_(pending)
                )
            )
        )
    return [n for n in pending if n not in expired]


def still_unchained(runtime: Runtime, names: Iterable[str]) -> list[str]:
    """Of these files, the ones still without a seal entry (one seal may have committed
    since the chain was read)."""
    pending = list(names)
    if not pending:
        return []
    with runtime.reading() as session:
        chained = set(
            session.scalars(
                select(FlowChainEntry.segment).where(
                    FlowChainEntry.kind == CHAIN_SEAL, FlowChainEntry.segment.in_(pending)
                )
            )
        )
    return [n for n in pending if n not in chained]
