"""Pydantic shapes of the admission API: commitment letters, acceptances, the gate."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

from hostwarden.registry.commitments import LetterVersion
from hostwarden.registry.gate import Decision
from hostwarden.registry.models import CommitmentAcceptance, CommitmentTemplate, DocumentScan


class LetterTextIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str
    body: str


class CommitmentPublish(BaseModel):
    model_config = ConfigDict(extra="forbid")
    texts: dict[str, LetterTextIn] = Field(
        description="One text per language (zh-CN and en); all are published as one version."
    )
    reason: str = ""


class LetterTextOut(BaseModel):
    locale: str
    title: str
    sha256: str = Field(description="SHA-256 of UTF-8 title + '\\n\\n' + body.")
    body: str | None = None

    @classmethod
    def of(cls, template: CommitmentTemplate, *, with_body: bool) -> LetterTextOut:
        return cls(
            locale=template.locale,
            title=template.title,
            sha256=template.sha256,
            body=template.body if with_body else None,
        )


class CommitmentVersionOut(BaseModel):
    version: int
    published_at: datetime
    published_by: str
    texts: list[LetterTextOut]

    @classmethod
    def of(cls, version: LetterVersion, *, with_body: bool = False) -> CommitmentVersionOut:
        return cls(
            version=version.version,
            published_at=version.published_at,
            published_by=version.published_by,
            texts=[
                LetterTextOut.of(t, with_body=with_body)
                for _, t in sorted(version.templates.items())
            ],
        )


class CommitmentList(BaseModel):
    current_version: int | None
    versions: list[CommitmentVersionOut]


class AcceptanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    locale: str
    method: str = Field("click-through", description="click-through or signed-scan")
    ip: str = Field("", description="Address the customer accepted from; needed for click-through.")
    user_agent: str = ""
    scan_id: int | None = Field(None, description="The signed letter's scan, for signed-scan.")
    version: int | None = Field(
        None, description="The version the customer was shown; refused if no longer current."
    )
    reason: str = ""


class AcceptanceOut(BaseModel):
    id: int
    customer_id: int
    version: int
    template_id: int
    text_sha256: str
    method: str
    accepted_at: datetime
    ip: str
    user_agent: str
    scan_id: int | None

    @classmethod
    def of(cls, row: CommitmentAcceptance) -> AcceptanceOut:
        return cls(
            id=row.id,
            customer_id=row.customer_id,
            version=row.version,
            template_id=row.template_id,
            text_sha256=row.text_sha256,
            method=row.method,
            accepted_at=row.accepted_at,
            ip=row.ip,
            user_agent=row.user_agent,
            scan_id=row.scan_id,
        )


class ScanOut(BaseModel):
    id: int
    customer_id: int
    purpose: str
    filename: str
    content_type: str
    size: int
    sha256: str
    uploaded_at: datetime
    uploaded_by: str

    @classmethod
    def of(cls, scan: DocumentScan) -> ScanOut:
        return cls(
            id=scan.id,
            customer_id=scan.customer_id,
            purpose=scan.purpose,
            filename=scan.filename,
            content_type=scan.content_type,
            size=scan.size,
            sha256=scan.sha256,
            uploaded_at=scan.uploaded_at,
            uploaded_by=scan.uploaded_by,
        )


class ProvisioningCheck(BaseModel):
    model_config = ConfigDict(extra="forbid")
    customer_id: int | None = None
    external_id: str | None = None
    reason: str = ""


class ReasonOut(BaseModel):
    check: str
    ok: bool
    detail: str


class DecisionOut(BaseModel):
    decision_id: int
    customer_id: int
    allowed: bool
    reasons: list[ReasonOut]
    decided_at: datetime | None = None
    requested_by: str | None = None

    @classmethod
    def of(
        cls,
        decision: Decision,
        *,
        decided_at: datetime | None = None,
        requested_by: str | None = None,
    ) -> DecisionOut:
        return cls(
            decision_id=decision.decision_id,
            customer_id=decision.customer_id,
            allowed=decision.allowed,
            reasons=[ReasonOut(check=r.check, ok=r.ok, detail=r.detail) for r in decision.reasons],
            decided_at=decided_at,
            requested_by=requested_by,
        )
