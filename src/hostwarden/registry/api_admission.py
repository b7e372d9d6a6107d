"""API routes of admission: the commitment letter, acceptances and the provisioning gate."""

from __future__ import annotations

from fastapi import APIRouter, File, Form, Query, Request, UploadFile
from fastapi.responses import Response

from hostwarden.api.deps import Principal, require, runtime_of
from hostwarden.core.rbac import Perm
from hostwarden.registry import commitments, gate
from hostwarden.registry.api_customers import store_upload
from hostwarden.registry.commitments import LetterText
from hostwarden.registry.schemas_admission import (
    AcceptanceCreate,
    AcceptanceOut,
    CommitmentList,
    CommitmentPublish,
    CommitmentVersionOut,
    DecisionOut,
    ProvisioningCheck,
    ScanOut,
)

provisioning = APIRouter(prefix="/api/v1", tags=["provisioning"])
letters = APIRouter(prefix="/api/v1", tags=["commitments"])


@provisioning.post("/provisioning/check")
def check_provisioning(
    body: ProvisioningCheck, request: Request, who: Principal = require(Perm.PROVISIONING_CHECK)
) -> DecisionOut:
    """May this customer get a new server now? Every check is listed, passed or not, and
    the decision is stored; a refusal is an answer (200 with allowed false), not an error."""
    with runtime_of(request).operation(who.actor()) as op:
        decision = gate.check(
            op, body.customer_id, external_id=body.external_id, reason=body.reason
        )
        return DecisionOut.of(decision)


@provisioning.get("/customers/{customer_id}/provisioning-decisions")
def list_decisions(
    customer_id: int,
    request: Request,
    limit: int = Query(100, ge=1, le=1000),
    who: Principal = require(Perm.REGISTRY_READ),
) -> list[DecisionOut]:
    with runtime_of(request).reading() as session:
        return [
            DecisionOut.of(
                gate.decision_of(row), decided_at=row.decided_at, requested_by=row.requested_by
            )
            for row in gate.list_decisions(session, customer_id, limit=limit)
        ]


@letters.get("/commitments")
def list_commitments(
    request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> CommitmentList:
    """Every published version (titles and hashes), newest first."""
    with runtime_of(request).reading() as session:
        return CommitmentList(
            current_version=commitments.current_version(session),
            versions=[CommitmentVersionOut.of(v) for v in commitments.list_versions(session)],
        )


@letters.post("/commitments", status_code=201)
def publish_commitment(
    body: CommitmentPublish,
    request: Request,
    who: Principal = require(Perm.COMMITMENTS_PUBLISH),
) -> CommitmentVersionOut:
    """Publish the next version in every language; every customer must accept it again."""
    texts = {locale: LetterText(t.title, t.body) for locale, t in body.texts.items()}
    with runtime_of(request).operation(who.actor()) as op:
        version = commitments.publish(op, texts, reason=body.reason)
        return CommitmentVersionOut.of(version, with_body=True)


@letters.get("/commitments/current")
def current_commitment(
    request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> CommitmentVersionOut:
    """The current version with its full texts: what a panel shows a customer to accept."""
    with runtime_of(request).reading() as session:
        return CommitmentVersionOut.of(commitments.get_version(session), with_body=True)


@letters.get("/commitments/{version}")
def get_commitment(
    version: int, request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> CommitmentVersionOut:
    with runtime_of(request).reading() as session:
        return CommitmentVersionOut.of(commitments.get_version(session, version), with_body=True)


@letters.post("/customers/{customer_id}/commitment-scans", status_code=201)
def upload_signed_letter(
    customer_id: int,
    request: Request,
    file: UploadFile = File(description="The signed letter: PDF, JPEG or PNG."),
    reason: str = Form(""),
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> ScanOut:
    """Keep the scan of a paper letter the customer signed; accept with its id next."""
    return store_upload(request, who, customer_id, "commitment", file, reason)


@letters.post("/customers/{customer_id}/commitment-acceptances", status_code=201)
def accept_commitment(
    customer_id: int,
    body: AcceptanceCreate,
    request: Request,
    who: Principal = require(Perm.CUSTOMERS_WRITE),
) -> AcceptanceOut:
    """Record that the customer accepted the current version (the panel sends the
    customer's own IP and User-Agent, not its own)."""
    with runtime_of(request).operation(who.actor()) as op:
        row = commitments.accept(
            op,
            customer_id,
            body.locale,
            body.method,
            ip=body.ip,
            user_agent=body.user_agent,
            scan_id=body.scan_id,
            version=body.version,
            reason=body.reason,
        )
        return AcceptanceOut.of(row)


@letters.get("/customers/{customer_id}/commitment-acceptances")
def list_acceptances(
    customer_id: int, request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> list[AcceptanceOut]:
    with runtime_of(request).reading() as session:
        return [AcceptanceOut.of(a) for a in commitments.list_acceptances(session, customer_id)]


@letters.get(
    "/commitment-acceptances/{acceptance_id}/pdf",
    response_class=Response,
    responses={200: {"content": {"application/pdf": {}}}},
)
def acceptance_pdf(
    acceptance_id: int, request: Request, who: Principal = require(Perm.REGISTRY_READ)
) -> Response:
    """The accepted letter as a PDF with the acceptance record and the text's SHA-256."""
    pdf = commitments.render_pdf(runtime_of(request), acceptance_id)
    return Response(
        pdf,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="commitment-{acceptance_id}.pdf"'},
    )
