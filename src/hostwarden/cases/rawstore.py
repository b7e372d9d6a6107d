"""The report store: every report and customer attachment exactly as received, kept under
its SHA-256 in the database, in the same transaction as the rows that point at it.

In the database rather than in files: a report and its bytes then commit together or not
at all, a database backup holds the evidence with the cases, and the intake needs no file
per report (creating one costs about half a millisecond on an ordinary disk, more than
the rest of the report's intake). Each is checked against its SHA-256 when read back.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import cast

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from hostwarden.cases.models import AbuseReport, RawReport
from hostwarden.core.db import insert_rows, one_of
from hostwarden.core.timeutil import utcnow
from hostwarden.errors import HostwardenError, NotFound


def put_many(session: Session, datas: Sequence[bytes]) -> list[str]:
    """Store a batch in the caller's transaction; returns the SHA-256 of each. The same
    bytes are stored once (also when another intake stores them at the same moment)."""
    digests = [hashlib.sha256(data).hexdigest() for data in datas]
    new: dict[str, bytes] = dict(zip(digests, datas, strict=True))
    keys = list(new)
    for start in range(0, len(keys), 500):
        chunk = keys[start : start + 500]
        found = session.scalars(
            select(RawReport.sha256).where(one_of(session, RawReport.sha256, chunk))
        )
        for digest in found:
            new.pop(digest, None)
    if new:
        now = utcnow()
        insert_rows(
            session,
            cast(Table, RawReport.__table__),
            [
                {"sha256": digest, "size": len(data), "data": data, "stored_at": now}
                for digest, data in new.items()
            ],
            skip_conflicts_on=["sha256"],
        )
    return digests


def get(session: Session, sha256: str) -> bytes:
    """The stored bytes, checked against their SHA-256."""
    data = session.scalar(select(RawReport.data).where(RawReport.sha256 == sha256))
    if data is None:
        raise NotFound(
            f"the raw report {sha256} is not in the report store.",
            hint="It was removed outside hostwarden; restore it from a database backup.",
        )
    if hashlib.sha256(data).hexdigest() != sha256:
        raise HostwardenError(
            f"the raw report {sha256} no longer matches its SHA-256: it was modified after "
            "it was stored.",
            hint="Restore it from a database backup; do not hand it over as evidence as it is.",
        )
    return bytes(data)


def of_report(session: Session, report_id: int) -> tuple[str, bytes]:
    """(SHA-256, bytes) of report ``report_id`` exactly as received."""
    digest = session.scalar(select(AbuseReport.sha256).where(AbuseReport.id == report_id))
    if digest is None:
        raise NotFound(
            f"there is no report {report_id}.", hint="Find it on its case or in the work queue."
        )
    return digest, get(session, digest)
