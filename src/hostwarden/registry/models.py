"""Tables of the registry: customers, identity, commitments, inventory, assignments."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Integer, LargeBinary, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hostwarden.core.db import Base, UtcDateTime
from hostwarden.core.timeutil import utcnow

CUSTOMER_KINDS = ("individual", "organisation")
CUSTOMER_STATUSES = ("pending", "active", "restricted", "suspended", "terminated")
RISK_TIERS = ("low", "medium", "high")
IDENTITY_STATUSES = ("unverified", "pending", "verified", "rejected")
INSTANCE_KINDS = ("vps", "dedicated", "colocation")
INSTANCE_STATUSES = ("active", "suspended", "terminated")


class Customer(Base):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: The provider's billing-system id; imports upsert by it.
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    kind: Mapped[str] = mapped_column(String(16))
    name: Mapped[str] = mapped_column(String(300))
    email: Mapped[str] = mapped_column(String(320), default="")
    #: E-mail normalised per provider rules (dots and +tags for Gmail …), for screening.
    email_norm: Mapped[str] = mapped_column(String(320), default="", index=True)
    #: Phone encrypted (AES-GCM) and its keyed blind index (HMAC) for equality search.
    phone_enc: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    phone_bidx: Mapped[str] = mapped_column(String(64), default="", index=True)
    phone_masked: Mapped[str] = mapped_column(String(32), default="")
    address: Mapped[str] = mapped_column(Text, default="")
    status: Mapped[str] = mapped_column(String(16), default="pending")
    risk_tier: Mapped[str] = mapped_column(String(8), default="low")
    identity_status: Mapped[str] = mapped_column(String(16), default="unverified")
    terminated_for_abuse: Mapped[bool] = mapped_column(Boolean, default=False)
    signup_ip: Mapped[str] = mapped_column(String(64), default="", index=True)
    device_fingerprint: Mapped[str] = mapped_column(String(128), default="", index=True)
    payment_fingerprint: Mapped[str] = mapped_column(String(128), default="", index=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: Actor who admitted the customer; they may not also approve its verification.
    created_by: Mapped[str] = mapped_column(String(200), default="")
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class IdentityDocument(Base):
    __tablename__ = "identity_documents"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    #: resident-id, uscc, passport, hk-macao-permit, taiwan-permit, foreign-prc, other
    doc_type: Mapped[str] = mapped_column(String(32))
    other_type: Mapped[str] = mapped_column(String(100), default="")
    number_enc: Mapped[bytes] = mapped_column(LargeBinary)
    number_bidx: Mapped[str] = mapped_column(String(64), index=True)
    number_masked: Mapped[str] = mapped_column(String(64))
    #: Set when an operator accepted a number that failed validation, with why.
    override_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class DocumentScan(Base):
    """A scan (ID card, licence, signed letter) stored in the data directory by SHA-256."""

    __tablename__ = "document_scans"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    purpose: Mapped[str] = mapped_column(String(32))  # identity | commitment
    filename: Mapped[str] = mapped_column(String(300))
    content_type: Mapped[str] = mapped_column(String(100))
    size: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    uploaded_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    uploaded_by: Mapped[str] = mapped_column(String(200))


class VerificationRequest(Base):
    __tablename__ = "verification_requests"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    provider: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(
        String(16), default="pending"
    )  # pending|approved|rejected|error
    reason: Mapped[str] = mapped_column(Text, default="")
    provider_reference: Mapped[str] = mapped_column(String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    #: Actor who asked for the verification; they may not also approve it.
    requested_by: Mapped[str] = mapped_column(String(200), default="")
    decided_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    decided_by: Mapped[str] = mapped_column(String(200), default="")


class CommitmentTemplate(Base):
    """One published version of the commitment letter (承诺书) in one language."""

    __tablename__ = "commitment_templates"
    __table_args__ = (UniqueConstraint("version", "locale"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    locale: Mapped[str] = mapped_column(String(8))
    title: Mapped[str] = mapped_column(String(300))
    body: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    published_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    published_by: Mapped[str] = mapped_column(String(200))


class CommitmentAcceptance(Base):
    __tablename__ = "commitment_acceptances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    template_id: Mapped[int] = mapped_column(ForeignKey("commitment_templates.id"))
    version: Mapped[int] = mapped_column(Integer)
    text_sha256: Mapped[str] = mapped_column(String(64))
    accepted_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    ip: Mapped[str] = mapped_column(String(64), default="")
    user_agent: Mapped[str] = mapped_column(String(400), default="")
    method: Mapped[str] = mapped_column(String(16))  # click-through | signed-scan
    scan_id: Mapped[int | None] = mapped_column(ForeignKey("document_scans.id"), nullable=True)


class ProvisioningDecision(Base):
    __tablename__ = "provisioning_decisions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    allowed: Mapped[bool] = mapped_column(Boolean)
    #: JSON list of {"check", "ok", "detail"}.
    reasons: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    requested_by: Mapped[str] = mapped_column(String(200))


class BanEvasionFlag(Base):
    __tablename__ = "ban_evasion_flags"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    matched_customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    #: JSON list of the attribute names that matched (never their values).
    attributes: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="open")  # open|cleared|confirmed
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    resolved_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    resolved_by: Mapped[str] = mapped_column(String(200), default="")
    resolution_reason: Mapped[str] = mapped_column(Text, default="")


class MachineRoom(Base):
    __tablename__ = "machine_rooms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    address: Mapped[str] = mapped_column(Text, default="")
    #: IDC/ISP operator licence numbers (e.g. B1-20190001), comma-separated.
    licences: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class IpRange(Base):
    __tablename__ = "ip_ranges"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cidr: Mapped[str] = mapped_column(String(64), unique=True)
    #: Fixed-width hex of the first and last address in IPv6 space (IPv4 mapped), so that
    #: text comparison orders addresses on every backend.
    start_key: Mapped[str] = mapped_column(String(32), index=True)
    end_key: Mapped[str] = mapped_column(String(32))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("machine_rooms.id"), nullable=True)
    purpose: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Instance(Base):
    __tablename__ = "instances"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str | None] = mapped_column(String(100), unique=True, nullable=True)
    hostname: Mapped[str] = mapped_column(String(255))
    kind: Mapped[str] = mapped_column(String(16))
    room_id: Mapped[int | None] = mapped_column(ForeignKey("machine_rooms.id"), nullable=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="active")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    terminated_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class IpAssignment(Base):
    """Address or prefix held by a customer (and instance) from valid_from to valid_to."""

    __tablename__ = "ip_assignments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prefix: Mapped[str] = mapped_column(String(64), index=True)
    start_key: Mapped[str] = mapped_column(String(32), index=True)
    end_key: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), nullable=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    #: None while the assignment is current.
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    source: Mapped[str] = mapped_column(String(16), default="api")  # api|webhook|import|console
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class NatMapping(Base):
    """A CGNAT/NAT port block: public IP and port range → private IP, for an interval."""

    __tablename__ = "nat_mappings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_ip: Mapped[str] = mapped_column(String(64), index=True)
    port_start: Mapped[int] = mapped_column(Integer)
    port_end: Mapped[int] = mapped_column(Integer)
    private_ip: Mapped[str] = mapped_column(String(64))
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class Domain(Base):
    __tablename__ = "domains"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(255), index=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"), index=True)
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), nullable=True)
    valid_from: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    valid_to: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    #: ICP filing details arrive with the filing issue; the number is kept here then.
    icp_number: Mapped[str] = mapped_column(String(64), default="")


class RegistryGeneration(Base):
    """One row whose counter goes up with every inventory change, so in-memory indexes
    in any process know when to rebuild."""

    __tablename__ = "registry_generation"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class WebhookSource(Base):
    """A system (billing, panel) allowed to push inventory changes, with its HMAC secret."""

    __tablename__ = "webhook_sources"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    secret_enc: Mapped[bytes] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


class WebhookDelivery(Base):
    __tablename__ = "webhook_deliveries"
    __table_args__ = (UniqueConstraint("source_id", "event_id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source_id: Mapped[int] = mapped_column(ForeignKey("webhook_sources.id"))
    event_id: Mapped[str] = mapped_column(String(100))
    event_type: Mapped[str] = mapped_column(String(50))
    received_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    status: Mapped[str] = mapped_column(String(16))  # applied|rejected
    detail: Mapped[str] = mapped_column(Text, default="")
