"""Scanned documents (ID cards, licences, signed letters): stored once in the data
directory under their SHA-256, recorded as DocumentScan rows."""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.orm import Session

from hostwarden.core.rbac import Perm
from hostwarden.core.runtime import Actor, Operation, Runtime
from hostwarden.errors import IntegrityBroken, NotFound, ValidationFailed
from hostwarden.registry import customers
from hostwarden.registry.models import Customer, DocumentScan

SCANS_DIR = "scans"
PURPOSES = ("identity", "commitment")
MAX_SCAN_BYTES = 20 * 1024 * 1024
#: What a scan may be, recognised by its first bytes rather than by what the uploader claims.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"%PDF-", "application/pdf"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
)


def scans_dir(runtime: Runtime) -> Path:
    return runtime.settings.home / SCANS_DIR


def scan_path(runtime: Runtime, sha256: str) -> Path:
    return scans_dir(runtime) / sha256


def sniff_content_type(data: bytes) -> str:
    for magic, content_type in _SIGNATURES:
        if data.startswith(magic):
            return content_type
    raise ValidationFailed(
        "the file is not a PDF, JPEG or PNG.",
        hint="Scan the document to one of those formats and upload it again.",
    )


def write_once(runtime: Runtime, data: bytes) -> str:
    """Store ``data`` as ``<home>/scans/<sha256>`` (mode 0600) and return the hash.

    A file of that name is never overwritten: the same bytes give the same name, so a
    second upload of one scan reuses the first file. The file is written before the
    database row commits; a rolled-back upload leaves an unreferenced file, which is
    harmless and is reused if the same scan is uploaded again."""
    digest = hashlib.sha256(data).hexdigest()
    directory = scans_dir(runtime)
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    final = directory / digest
    if final.exists():
        return digest
    temporary = directory / f".{digest}.{secrets.token_hex(4)}.partial"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        # link() fails if the name exists, so a concurrent writer of the same bytes
        # is never overwritten.
        with contextlib.suppress(FileExistsError):
            os.link(temporary, final)
    finally:
        temporary.unlink(missing_ok=True)
    return digest


def store_scan(
    op: Operation,
    customer_id: int,
    purpose: str,
    filename: str,
    data: bytes,
    *,
    reason: str = "",
) -> DocumentScan:
    """Keep a customer's scan; the content type comes from the file's bytes."""
    if op.session.get(Customer, customer_id) is None:
        raise NotFound(
            f"no customer with id {customer_id}.", hint="List customers to find the right id."
        )
    if purpose not in PURPOSES:
        raise ValidationFailed(
            f"'{purpose}' is not a scan purpose.", hint=f"Use one of: {', '.join(PURPOSES)}."
        )
    if not data:
        raise ValidationFailed("the scan is empty.", hint="Upload the scanned file itself.")
    if len(data) > MAX_SCAN_BYTES:
        raise ValidationFailed(
            f"the scan has {len(data)} bytes; at most {MAX_SCAN_BYTES} are accepted.",
            hint="Scan at a lower resolution or as a compressed PDF.",
        )
    content_type = sniff_content_type(data)
    digest = write_once(op.runtime, data)
    scan = DocumentScan(
        customer_id=customer_id,
        purpose=purpose,
        filename=(Path(filename).name or digest)[:300],
        content_type=content_type,
        size=len(data),
        sha256=digest,
        uploaded_by=op.actor.name[:200],
    )
    op.session.add(scan)
    op.session.flush()
    op.audit(
        "scan.store",
        "document_scan",
        scan.id,
        after={
            "customer_id": customer_id,
            "purpose": purpose,
            "filename": scan.filename,
            "content_type": content_type,
            "size": scan.size,
            "sha256": digest,
        },
        reason=reason,
    )
    return scan


def get_scan(session: Session, scan_id: int) -> DocumentScan:
    scan = session.get(DocumentScan, scan_id)
    if scan is None:
        raise NotFound(f"no document scan with id {scan_id}.", hint="Upload the scan first.")
    return scan


class ScanFileBroken(IntegrityBroken):
    """The stored file of a scan is gone or no longer hashes to the recorded SHA-256."""

    def __init__(self, message: str, *, hint: str, found_sha256: str | None) -> None:
        super().__init__(message, hint=hint)
        #: SHA-256 of the bytes found instead; None when the file is missing.
        self.found_sha256 = found_sha256


def read_scan(runtime: Runtime, scan: DocumentScan) -> bytes:
    """The stored bytes, checked against the recorded hash."""
    path = scan_path(runtime, scan.sha256)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ScanFileBroken(
            f"the file of scan {scan.id} is missing from {path.parent}.",
            hint="Restore the data directory's scans/ folder from backup.",
            found_sha256=None,
        ) from None
    found = hashlib.sha256(data).hexdigest()
    if found != scan.sha256:
        raise ScanFileBroken(
            f"the file of scan {scan.id} no longer matches its recorded SHA-256.",
            hint="Restore it from backup and find out who changed it.",
            found_sha256=found,
        )
    return data


@dataclass(frozen=True)
class ScanDownload:
    scan: DocumentScan
    data: bytes


def download_scan(
    runtime: Runtime,
    actor: Actor,
    scan_id: int,
    *,
    reason: str,
    customer_id: int | None = None,
    purpose: str | None = None,
) -> ScanDownload:
    """A stored scan's bytes, re-hashed against the recorded SHA-256, for pii:view only.

    Every download is an audit entry with its reason, and so is a file found missing or
    altered: that entry is committed before the error is raised, so a failed check is
    never lost with a rolled-back transaction. ``customer_id`` and ``purpose``, when
    given, must match the scan (as the API path names them)."""
    why = customers.required_reason(reason, "downloading a document scan")
    broken: ScanFileBroken | None = None
    data = b""
    with runtime.operation(actor) as op:
        customers.require_permission(op, Perm.PII_VIEW, "downloading a document scan")
        scan = get_scan(op.session, scan_id)
        if customer_id not in (None, scan.customer_id) or purpose not in (None, scan.purpose):
            raise NotFound(
                f"no {purpose or 'document'} scan {scan_id} of customer "
                f"{customer_id or scan.customer_id}.",
                hint="The customer's details list their scans.",
            )
        recorded = {
            "customer_id": scan.customer_id,
            "purpose": scan.purpose,
            "filename": scan.filename,
            "sha256": scan.sha256,
        }
        try:
            data = read_scan(runtime, scan)
        except ScanFileBroken as exc:
            broken = exc
            found = exc.found_sha256 or "missing"
            op.audit(
                "scan.integrity_failure",
                "document_scan",
                scan.id,
                after={**recorded, "found_sha256": found},
                reason=why,
            )
        else:
            op.audit("scan.download", "document_scan", scan.id, after=recorded, reason=why)
    if broken is not None:
        raise broken
    return ScanDownload(scan, data)
