"""Pydantic shapes of the customer-admission API: customers, documents, verification, flags."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.orm import Session

from hostwarden.core.masking import mask_email
from hostwarden.registry import customers, verification
from hostwarden.registry.models import (
    BanEvasionFlag,
    Customer,
    IdentityDocument,
    VerificationRequest,
)
from hostwarden.registry.schemas_admission import ScanOut


class CustomerOut(BaseModel):
    """A customer as lists show it: e-mail and phone masked, no identifiers."""

    id: int
    external_id: str | None
    kind: str
    name: str
    email: str
    phone: str
    status: str
    risk_tier: str
    identity_status: str
    terminated_for_abuse: bool
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, c: Customer) -> CustomerOut:
        return cls(
            id=c.id,
            external_id=c.external_id,
            kind=c.kind,
            name=c.name,
            email=mask_email(c.email) if c.email else "",
            phone=c.phone_masked,
            status=c.status,
            risk_tier=c.risk_tier,
            identity_status=c.identity_status,
            terminated_for_abuse=c.terminated_for_abuse,
            created_at=c.created_at,
            updated_at=c.updated_at,
        )


class CustomerPage(BaseModel):
    total: int
    limit: int
    offset: int
    items: list[CustomerOut]


class DocumentOut(BaseModel):
    id: int
    doc_type: str
    other_type: str
    number: str = Field(description="Masked; the full number is at /pii.")
    overridden: bool
    override_reason: str
    created_at: datetime

    @classmethod
    def of(cls, d: IdentityDocument) -> DocumentOut:
        return cls(
            id=d.id,
            doc_type=d.doc_type,
            other_type=d.other_type,
            number=d.number_masked,
            overridden=bool(d.override_reason),
            override_reason=d.override_reason,
            created_at=d.created_at,
        )


class FlagOut(BaseModel):
    id: int
    customer_id: int
    matched_customer_id: int
    attributes: list[str] = Field(description="Names of what matched, never the values.")
    status: str
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str
    resolution_reason: str

    @classmethod
    def of(cls, f: BanEvasionFlag) -> FlagOut:
        return cls(
            id=f.id,
            customer_id=f.customer_id,
            matched_customer_id=f.matched_customer_id,
            attributes=customers.flag_attributes(f),
            status=f.status,
            created_at=f.created_at,
            resolved_at=f.resolved_at,
            resolved_by=f.resolved_by,
            resolution_reason=f.resolution_reason,
        )


class VerificationOut(BaseModel):
    id: int
    customer_id: int
    provider: str
    status: str
    reason: str
    provider_reference: str
    created_at: datetime
    requested_by: str
    decided_at: datetime | None
    decided_by: str

    @classmethod
    def of(cls, r: VerificationRequest) -> VerificationOut:
        return cls(
            id=r.id,
            customer_id=r.customer_id,
            provider=r.provider,
            status=r.status,
            reason=r.reason,
            provider_reference=r.provider_reference,
            created_at=r.created_at,
            requested_by=r.requested_by,
            decided_at=r.decided_at,
            decided_by=r.decided_by,
        )


class CustomerDetail(CustomerOut):
    address: str
    documents: list[DocumentOut]
    scans: list[ScanOut]
    verification: list[VerificationOut]
    ban_evasion_flags: list[FlagOut]


def customer_detail(session: Session, customer: Customer) -> CustomerDetail:
    """A customer with everything admission knows about them, identifiers masked."""
    return CustomerDetail(
        **CustomerOut.of(customer).model_dump(),
        address=customer.address,
        documents=[DocumentOut.of(d) for d in customers.list_documents(session, customer.id)],
        scans=[ScanOut.of(s) for s in customers.list_scans(session, customer.id)],
        verification=[
            VerificationOut.of(r)
            for r in verification.list_requests(session, status=None, customer_id=customer.id)
        ],
        ban_evasion_flags=[
            FlagOut.of(f) for f in customers.list_flags(session, customer_id=customer.id)
        ],
    )


class CustomerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["individual", "organisation"]
    name: str
    email: str = ""
    phone: str = ""
    address: str = ""
    risk_tier: str = "low"
    external_id: str | None = None
    signup_ip: str = ""
    device_fingerprint: str = ""
    payment_fingerprint: str = ""
    reason: str = ""


class CustomerPatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    email: str | None = None
    phone: str | None = None
    address: str | None = None
    risk_tier: str | None = None
    external_id: str | None = None
    signup_ip: str | None = None
    device_fingerprint: str | None = None
    payment_fingerprint: str | None = None
    reason: str = ""


class StatusChange(BaseModel):
    model_config = ConfigDict(extra="forbid")
    status: str
    reason: str
    for_abuse: bool = Field(False, description="Only with status terminated.")


class CustomerSearch(BaseModel):
    """Sent in a body, not a query string, so full numbers stay out of access logs."""

    model_config = ConfigDict(extra="forbid")
    id_number: str = ""
    phone: str = ""


class DocumentCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    doc_type: str
    number: str
    type_name: str = Field("", description="Names the document when doc_type is other.")
    override_reason: str = Field(
        "", description="Accept a number that fails validation (needs kyc:review)."
    )
    reason: str = ""


class RevealedDocumentOut(BaseModel):
    id: int
    doc_type: str
    other_type: str
    number: str


class PiiOut(BaseModel):
    customer_id: int
    phone: str
    email: str
    documents: list[RevealedDocumentOut]

    @classmethod
    def of(cls, view: customers.PiiView) -> PiiOut:
        return cls(
            customer_id=view.customer_id,
            phone=view.phone,
            email=view.email,
            documents=[
                RevealedDocumentOut(
                    id=d.id, doc_type=d.doc_type, other_type=d.other_type, number=d.number
                )
                for d in view.documents
            ],
        )


class VerificationStart(BaseModel):
    model_config = ConfigDict(extra="forbid")
    provider: str = "manual"


class Decision(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str


class FlagResolution(BaseModel):
    model_config = ConfigDict(extra="forbid")
    resolution: Literal["cleared", "confirmed"]
    reason: str
