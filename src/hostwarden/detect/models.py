"""Tables of detection: alerts, suppressions, and the queue of alert deliveries."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hostwarden.core.db import Base, UtcDateTime
from hostwarden.core.timeutil import utcnow

ALERT_STATUSES = ("open", "closed")
FEEDBACK_VALUES = ("none", "true-positive", "false-positive")
DELIVERY_STATUSES = ("pending", "delivered", "failed")


class DetectAlert(Base):
    """Findings of one provider-side address and category, deduplicated: a finding
    within the cooldown of an open alert's last window updates it instead of adding one."""

    __tablename__ = "detect_alerts"
    __table_args__ = (
        # Deduplication looks up the newest open alert of an address and category.
        Index("ix_detect_alerts_dedup", "ip_key", "category", "last_seen"),
        # The list's usual filters, newest first.
        Index("ix_detect_alerts_status_last", "status", "last_seen"),
        Index("ix_detect_alerts_category_last", "category", "last_seen"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    category: Mapped[str] = mapped_column(String(32))
    #: Within the category: "syn-flood", "horizontal", "ssh" … (of the latest finding).
    kind: Mapped[str] = mapped_column(String(64), default="")
    severity: Mapped[str] = mapped_column(String(16))
    ip: Mapped[str] = mapped_column(String(64))
    #: The address as the registry's 32-hex key, so a CIDR filter is a range on text.
    ip_key: Mapped[str] = mapped_column(String(32))
    direction: Mapped[str] = mapped_column(String(16))
    customer_id: Mapped[int | None] = mapped_column(
        ForeignKey("customers.id"), nullable=True, index=True
    )
    instance_id: Mapped[int | None] = mapped_column(ForeignKey("instances.id"), nullable=True)
    #: Start of the first window and end of the last window that found it.
    first_seen: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    window_seconds: Mapped[int] = mapped_column(Integer)
    #: JSON: figures of the window (the largest seen of each), heaviest peers and ports.
    counts: Mapped[str] = mapped_column(Text, default="{}")
    top_peers: Mapped[str] = mapped_column(Text, default="[]")
    top_ports: Mapped[str] = mapped_column(Text, default="[]")
    summary: Mapped[str] = mapped_column(Text, default="")
    suggested_action: Mapped[str] = mapped_column(Text, default="")
    detector: Mapped[str] = mapped_column(String(100), default="")
    status: Mapped[str] = mapped_column(String(16), default="open")
    #: How many later findings were folded into this alert.
    updates: Mapped[int] = mapped_column(Integer, default=0)
    feedback: Mapped[str] = mapped_column(String(16), default="none")
    feedback_by: Mapped[str] = mapped_column(String(200), default="")
    feedback_reason: Mapped[str] = mapped_column(Text, default="")
    closed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    closed_by: Mapped[str] = mapped_column(String(200), default="")
    close_reason: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow, onupdate=utcnow)


class DetectSuppression(Base):
    """Findings inside ``cidr`` (and of ``customer_id`` and ``category`` when set) are
    counted here and not stored, until ``expires_at`` or removal."""

    __tablename__ = "detect_suppressions"
    __table_args__ = (Index("ix_detect_suppressions_active", "removed_at", "first_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    cidr: Mapped[str] = mapped_column(String(64))
    #: 32-hex keys of the prefix's first and last address (registry.netaddr).
    first_key: Mapped[str] = mapped_column(String(32))
    last_key: Mapped[str] = mapped_column(String(32))
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("customers.id"), nullable=True)
    #: None: every category.
    category: Mapped[str | None] = mapped_column(String(32), nullable=True)
    #: None: until removed.
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    reason: Mapped[str] = mapped_column(Text)
    #: Findings it kept out, and when it last did.
    hits: Mapped[int] = mapped_column(Integer, default=0)
    last_hit_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    created_by: Mapped[str] = mapped_column(String(200))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    removed_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    removed_by: Mapped[str] = mapped_column(String(200), default="")
    remove_reason: Mapped[str] = mapped_column(Text, default="")


class DetectDelivery(Base):
    """One event for one destination (a webhook URL or the syslog server), written in
    the transaction that created or updated the alert, so a crash between storing an
    alert and sending it loses nothing: the delivery job sends it later."""

    __tablename__ = "detect_deliveries"
    __table_args__ = (Index("ix_detect_deliveries_due", "status", "next_attempt_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[int] = mapped_column(ForeignKey("detect_alerts.id"), index=True)
    #: alert.created | alert.updated
    event_type: Mapped[str] = mapped_column(String(32))
    #: webhook | syslog
    channel: Mapped[str] = mapped_column(String(16))
    #: The URL, or ``udp://host:port`` / ``tcp://host:port`` for syslog.
    target: Mapped[str] = mapped_column(String(500))
    #: The event as JSON, as it was when queued.
    body: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    last_error: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
