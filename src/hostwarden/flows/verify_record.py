"""The record of integrity checks of the flow/log store, shared by the console and the CLI.

Every run of ``verify`` (console button or ``hostwarden logs verify``) is an audit entry
``logs.verify`` with its figures, and the newest result is kept in
``<home>/run/last-verify.json`` so that the console shows it after a restart.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from hostwarden.core.logs import get_logger
from hostwarden.core.runtime import Actor, Runtime
from hostwarden.core.timeutil import isoformat, utcnow
from hostwarden.flows.store import PROBLEM_KINDS, StoreVerifyReport

log = get_logger("hostwarden.flows.verify")


def last_verify_path(runtime: Runtime) -> Path:
    return runtime.settings.home / "run" / "last-verify.json"


def read_last_verify(runtime: Runtime) -> dict[str, Any] | None:
    path = last_verify_path(runtime)
    try:
        data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        # A damaged file must not hide the page; the next run replaces it.
        log.warning("last verify result unreadable", path=str(path), error=str(exc))
        return None
    return data


def _write_atomically(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with temporary.open("w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def verify_summary(report: StoreVerifyReport) -> dict[str, Any]:
    """What the audit entry and the last-result file keep of a report: its figures, and
    the findings (each names a segment or chain entry, so they are worth keeping whole)."""
    counts = {kind: len([p for p in report.problems if p.kind == kind]) for kind in PROBLEM_KINDS}
    data = report.as_dict()
    data["problem_count"] = len(report.problems)
    data["problem_counts"] = {k: n for k, n in counts.items() if n}
    return data


def record_verify(
    runtime: Runtime,
    actor: Actor,
    summary: dict[str, Any],
    *,
    started_at: str,
    via: str,
    since: str | None = None,
) -> dict[str, Any]:
    """Audit one verify run and keep it as the last result; returns what was kept.

    A partial run (``since``) is audited but does not replace the last full result, which
    is what the console shows as the state of the whole store."""
    kept = {
        **summary,
        "started_at": started_at,
        "finished_at": isoformat(utcnow()),
        "actor": actor.name,
        "backend": runtime.settings.flows.store,
        "since": since,
        "via": via,
    }
    with runtime.operation(actor) as op:
        op.audit(
            "logs.verify",
            "flow_store",
            runtime.settings.flows.store,
            after={
                "ok": summary["ok"],
                "problems": summary["problem_count"],
                "problem_counts": summary["problem_counts"],
                "segments_checked": summary.get("segments_checked", 0),
                "bytes_hashed": summary.get("bytes_hashed", 0),
                "head_seq": summary.get("head_seq", 0),
                "since": since,
                "error": summary.get("error"),
            },
            reason=f"run from the {via}",
        )
    if since is None:
        _write_atomically(last_verify_path(runtime), json.dumps(kept, ensure_ascii=False, indent=1))
    return kept
