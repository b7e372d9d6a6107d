"""API routes of customer admission: customers, identity documents, verification, flags."""

from __future__ import annotations

import base64
from urllib.parse import quote

from fastapi import APIRouter, File, Form, Query, Request, Response, UploadFile

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core.rbac import Perm
from hostwarden.registry import customers, scans, verification
from hostwarden.registry.schemas_admission import ScanOut
from hostwarden.registry.schemas_customers import (
    CustomerCreate,
    CustomerDetail,
    CustomerOut,
    CustomerPage,
    CustomerPatch,
    CustomerSearch,
    Decision,
    DocumentCreate,
    DocumentOut,
    FlagOut,
    FlagResolution,
    PiiOut,
    StatusChange,
    VerificationOut,
    VerificationStart,
    customer_detail,
)

customers_router = APIRouter(prefix="/api/v1/customers", tags=["customers"])
verification_router = APIRouter(prefix="/api/v1/verification", tags=["customers"])
flags_router = APIRouter(prefix="/api/v1/ban-evasion-flags", tags=["customers"])


@customers_router.get("")
def list_customers(
    request: Request,
    status: str | None = None,
    kind: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0),
    who: Principal = require(Perm.REGISTRY_READ),
) -> CustomerPage:
    """Customers with e-mail and phone masked."""
    with runtime_of(request).reading() as session:
        rows, total = customers.list_customers(
            session, status=status, kind=kind, limit=limit, offset=offset
        )
        items = [CustomerOut.of(c) for c in rows]
    return CustomerPage(total=total, limit=limit, offset=offset, items=items)


@customers_router.post("", status_code=201)
def create_customer(
    body: CustomerCreate, request: Request, who: Principal = require(Perm.CUSTOMERS_WRITE)
) -> CustomerDetail:
    """Admit a customer (status pending); the answer lists any ban-evasion flags raised."""
    with runtime_of(request).operation(who.actor()) as op:
        customer = customers.create_customer(op, **body.model_dump())
        return customer_detail(op.session, customer)


@customers_router.post("/search")
def search_customers(
    body: CustomerSearch, request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> list[CustomerOut]:
    """Customers holding exactly this ID number or phone number (masked answers)."""
    runtime = runtime_of(request)
    with runtime.reading() as session:
        found = customers.search_customers(
            session, runtime.vault, id_number=body.id_number, phone=body.phone
        )
        return [CustomerOut.of(c) for c in found]


@customers_router.get("/{customer_id}")
def get_customer(
    customer_id: int, request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> CustomerDetail:
    with runtime_of(request).reading() as session:
        return customer_detail(session, customers.get_customer(session, customer_id))


@customers_router.patch("/{customer_id}")
def update_customer(
    customer_id: int,
    body: CustomerPatch,
    request: Request,
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> CustomerDetail:
    with runtime_of(request).operation(who.actor()) as op:
        customer = customers.update_customer(op, customer_id, **body.model_dump())
        return customer_detail(op.session, customer)


@customers_router.post("/{customer_id}/status")
def set_status(
    customer_id: int,
    body: StatusChange,
    request: Request,
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> CustomerOut:
    with runtime_of(request).operation(who.actor()) as op:
        customer = customers.set_status(
            op, customer_id, body.status, reason=body.reason, for_abuse=body.for_abuse
        )
        return CustomerOut.of(customer)


@customers_router.post("/{customer_id}/documents", status_code=201)
def add_document(
    customer_id: int,
    body: DocumentCreate,
    request: Request,
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> DocumentOut:
    """Add an identity document; a number failing validation is refused with the rule it
    broke, unless ``override_reason`` is given by a holder of kyc:review."""
    with runtime_of(request).operation(who.actor()) as op:
        document = customers.add_document(
            op,
            customer_id,
            body.doc_type,
            body.number,
            type_name=body.type_name,
            override_reason=body.override_reason,
            reason=body.reason,
        )
        return DocumentOut.of(document)


def store_upload(
    request: Request,
    who: Principal,
    customer_id: int,
    purpose: str,
    file: UploadFile,
    reason: str,
) -> ScanOut:
    """Keep an uploaded scan; one byte past the limit is read so that an oversized file is
    refused by the size check instead of being cut short."""
    data = file.file.read(scans.MAX_SCAN_BYTES + 1)
    with runtime_of(request).operation(who.actor()) as op:
        scan = scans.store_scan(op, customer_id, purpose, file.filename or "", data, reason=reason)
        return ScanOut.of(scan)


@customers_router.post("/{customer_id}/identity-scans", status_code=201)
def upload_identity_scan(
    customer_id: int,
    request: Request,
    file: UploadFile = File(description="The scanned ID card or licence: PDF, JPEG or PNG."),
    reason: str = Form(""),
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> ScanOut:
    return store_upload(request, who, customer_id, "identity", file, reason)


def attachment(filename: str) -> str:
    """A Content-Disposition value that survives any stored name (Chinese, quotes): the
    RFC 6266 ``filename*`` form whenever the plain form would need escaping."""
    encoded = quote(filename, safe="")
    if encoded == filename:
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=UTF-8''{encoded}"


@customers_router.get(
    "/{customer_id}/identity-scans/{scan_id}",
    response_class=Response,
    responses={
        200: {
            "description": "The scan as uploaded; ETag and Repr-Digest carry its SHA-256.",
            "content": {"application/pdf": {}, "image/jpeg": {}, "image/png": {}},
        }
    },
)
def download_identity_scan(
    customer_id: int,
    scan_id: int,
    request: Request,
    reason: str = Query(
        "", description="Required: why you open the scan; recorded in the audit trail."
    ),
    who: Principal = require(Perm.PII_VIEW),
) -> Response:
    """The stored identity-document scan, re-hashed against its recorded SHA-256 first
    (a mismatch answers 500 integrity-broken and is audited); every download is audited
    with its reason."""
    found = scans.download_scan(
        runtime_of(request),
        who.actor(),
        scan_id,
        reason=reason,
        customer_id=customer_id,
        purpose="identity",
    )
    digest = base64.b64encode(bytes.fromhex(found.scan.sha256)).decode()
    return Response(
        found.data,
        media_type=found.scan.content_type,
        headers={
            "Content-Disposition": attachment(found.scan.filename),
            "ETag": f'"{found.scan.sha256}"',
            "Repr-Digest": f"sha-256=:{digest}:",
            # Personal data: no copy in browser or proxy caches.
            "Cache-Control": "no-store",
            "X-Content-Type-Options": "nosniff",
        },
    )


@customers_router.get("/{customer_id}/pii")
def reveal(
    customer_id: int,
    request: Request,
    reason: str = Query(
        "", description="Required: why you need the full numbers; recorded in the audit trail."
    ),
    who: Principal = require(Perm.PII_VIEW),
) -> PiiOut:
    """Full e-mail, phone and ID numbers; every call is recorded in the audit trail
    with its reason."""
    with runtime_of(request).operation(who.actor()) as op:
        return PiiOut.of(customers.reveal(op, customer_id, reason))


@customers_router.post("/{customer_id}/verification", status_code=201)
def start_verification(
    customer_id: int,
    body: VerificationStart,
    request: Request,
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> VerificationOut:
    """Hand the customer's documents to an identity provider (``manual``: review queue)."""
    runtime = runtime_of(request)
    row = verification.request_verification(runtime, who.actor(), customer_id, body.provider)
    return VerificationOut.of(row)


@verification_router.get("")
def verification_queue(
    request: Request,
    status: str | None = Query("pending", description="pending, approved, rejected or error."),
    customer_id: int | None = None,
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[VerificationOut]:
    with runtime_of(request).reading() as session:
        rows = verification.list_requests(session, status=status or None, customer_id=customer_id)
        return [VerificationOut.of(r) for r in rows]


@verification_router.post("/{request_id}/approve")
def approve(
    request_id: int, body: Decision, request: Request, who: Principal = require(Perm.KYC_REVIEW)
) -> VerificationOut:
    """Mark the identity verified; the customer is screened against banned customers."""
    with runtime_of(request).operation(who.actor()) as op:
        return VerificationOut.of(verification.approve(op, request_id, body.reason))


@verification_router.post("/{request_id}/reject")
def reject(
    request_id: int, body: Decision, request: Request, who: Principal = require(Perm.KYC_REVIEW)
) -> VerificationOut:
    with runtime_of(request).operation(who.actor()) as op:
        return VerificationOut.of(verification.reject(op, request_id, body.reason))


@flags_router.get("")
def list_flags(
    request: Request,
    status: str | None = Query("open", description="open, cleared or confirmed."),
    customer_id: int | None = None,
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[FlagOut]:
    with runtime_of(request).reading() as session:
        rows = customers.list_flags(session, status=status or None, customer_id=customer_id)
        return [FlagOut.of(f) for f in rows]


@flags_router.post("/{flag_id}/resolve")
def resolve_flag(
    flag_id: int, body: FlagResolution, request: Request, who: Principal = require(Perm.KYC_REVIEW)
) -> FlagOut:
    with runtime_of(request).operation(who.actor()) as op:
        return FlagOut.of(customers.resolve_flag(op, flag_id, body.resolution, body.reason))
