"""Detection: alerts, suppressions and the queue of alert deliveries.

Revision ID: 0006_detect
Revises: 0005_log_datasets
Create Date: 2026-11-23 18:32:25.881098
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_detect"
down_revision = "0005_log_datasets"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "detect_suppressions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("cidr", sa.String(length=64), nullable=False),
        sa.Column("first_key", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("last_hit_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(length=200), nullable=False),
        sa.Column("remove_reason", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_detect_suppressions_customer_id_customers"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detect_suppressions")),
    )
    with op.batch_alter_table("detect_suppressions", schema=None) as batch_op:
        batch_op.create_index(
            "ix_detect_suppressions_active", ["removed_at", "first_key"], unique=False
        )

    op.create_table(
        "detect_alerts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=False),
        sa.Column("ip_key", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_seconds", sa.Integer(), nullable=False),
        sa.Column("counts", sa.Text(), nullable=False),
        sa.Column("top_peers", sa.Text(), nullable=False),
        sa.Column("top_ports", sa.Text(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("suggested_action", sa.Text(), nullable=False),
        sa.Column("detector", sa.String(length=100), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("updates", sa.Integer(), nullable=False),
        sa.Column("feedback", sa.String(length=16), nullable=False),
        sa.Column("feedback_by", sa.String(length=200), nullable=False),
        sa.Column("feedback_reason", sa.Text(), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_by", sa.String(length=200), nullable=False),
        sa.Column("close_reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_detect_alerts_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_detect_alerts_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detect_alerts")),
    )
    with op.batch_alter_table("detect_alerts", schema=None) as batch_op:
        batch_op.create_index(
            "ix_detect_alerts_category_last", ["category", "last_seen"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_detect_alerts_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_detect_alerts_dedup", ["ip_key", "category", "last_seen"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_detect_alerts_last_seen"), ["last_seen"], unique=False)
        batch_op.create_index("ix_detect_alerts_status_last", ["status", "last_seen"], unique=False)

    op.create_table(
        "detect_deliveries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("alert_id", sa.Integer(), nullable=False),
        sa.Column("event_type", sa.String(length=32), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("target", sa.String(length=500), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["alert_id"],
            ["detect_alerts.id"],
            name=op.f("fk_detect_deliveries_alert_id_detect_alerts"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_detect_deliveries")),
    )
    with op.batch_alter_table("detect_deliveries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_detect_deliveries_alert_id"), ["alert_id"], unique=False
        )
        batch_op.create_index(
            "ix_detect_deliveries_due", ["status", "next_attempt_at"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("detect_deliveries", schema=None) as batch_op:
        batch_op.drop_index("ix_detect_deliveries_due")
        batch_op.drop_index(batch_op.f("ix_detect_deliveries_alert_id"))

    op.drop_table("detect_deliveries")
    with op.batch_alter_table("detect_alerts", schema=None) as batch_op:
        batch_op.drop_index("ix_detect_alerts_status_last")
        batch_op.drop_index(batch_op.f("ix_detect_alerts_last_seen"))
        batch_op.drop_index("ix_detect_alerts_dedup")
        batch_op.drop_index(batch_op.f("ix_detect_alerts_customer_id"))
        batch_op.drop_index("ix_detect_alerts_category_last")

    op.drop_table("detect_alerts")
    with op.batch_alter_table("detect_suppressions", schema=None) as batch_op:
        batch_op.drop_index("ix_detect_suppressions_active")

    op.drop_table("detect_suppressions")
