"""Abuse desk: reports, events, cases, timeline, playbooks, allowlist, outbox.

Revision ID: 0007_cases
Revises: 0006_detect
Create Date: 2026-12-06 16:26:29.347619
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_cases"
down_revision = "0006_detect"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "abuse_raw",
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("sha256", name=op.f("pk_abuse_raw")),
    )
    op.create_table(
        "abuse_allowlist",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=320), nullable=False),
        sa.Column("first_key", sa.String(length=32), nullable=False),
        sa.Column("last_key", sa.String(length=32), nullable=False),
        sa.Column("mode", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("hits", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("removed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_by", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abuse_allowlist")),
    )
    with op.batch_alter_table("abuse_allowlist", schema=None) as batch_op:
        batch_op.create_index("ix_abuse_allowlist_active", ["removed_at", "kind"], unique=False)

    op.create_table(
        "abuse_playbooks",
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("deadline_hours", sa.Integer(), nullable=False),
        sa.Column("escalate_after_events", sa.Integer(), nullable=False),
        sa.Column("escalation_action", sa.String(length=16), nullable=False),
        sa.Column("authority_decision", sa.Boolean(), nullable=False),
        sa.Column("auto_notify", sa.Boolean(), nullable=False),
        sa.Column("updated_by", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("category", name=op.f("pk_abuse_playbooks")),
    )
    op.create_table(
        "abuse_reports",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("reporter", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("message_id", sa.String(length=500), nullable=False),
        sa.Column("parser", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reviewed_by", sa.String(length=200), nullable=False),
        sa.Column("review_note", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abuse_reports")),
    )
    with op.batch_alter_table("abuse_reports", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_abuse_reports_reporter"), ["reporter"], unique=False)
        batch_op.create_index(batch_op.f("ix_abuse_reports_sha256"), ["sha256"], unique=False)
        batch_op.create_index(
            "ix_abuse_reports_status_received", ["status", "received_at"], unique=False
        )

    op.create_table(
        "abuse_cases",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(length=32), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("subject_key", sa.String(length=300), nullable=False),
        sa.Column("subject", sa.String(length=300), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("events", sa.Integer(), nullable=False),
        sa.Column("duplicates", sa.Integer(), nullable=False),
        sa.Column("first_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_event_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("opened_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("state_changed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("activity_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deadline_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("first_action_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("mitigated_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("close_reason", sa.Text(), nullable=False),
        sa.Column("authority_required", sa.Boolean(), nullable=False),
        sa.Column("authority_decided_by", sa.String(length=200), nullable=False),
        sa.Column("authority_decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("authority_reported", sa.Boolean(), nullable=True),
        sa.Column("authority_to", sa.String(length=300), nullable=False),
        sa.Column("authority_reference", sa.String(length=200), nullable=False),
        sa.Column("response_token_sha256", sa.String(length=64), nullable=False),
        sa.Column("customer_locale", sa.String(length=8), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_abuse_cases_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_abuse_cases_instance_id_instances")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abuse_cases")),
        sa.UniqueConstraint("reference", name=op.f("uq_abuse_cases_reference")),
    )
    with op.batch_alter_table("abuse_cases", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_abuse_cases_customer_id"), ["customer_id"], unique=False
        )
        batch_op.create_index(
            "ix_abuse_cases_group", ["customer_id", "subject_key", "category"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_abuse_cases_response_token_sha256"),
            ["response_token_sha256"],
            unique=False,
        )
        batch_op.create_index("ix_abuse_cases_state_opened", ["state", "opened_at"], unique=False)

    op.create_table(
        "abuse_case_entries",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["abuse_cases.id"], name=op.f("fk_abuse_case_entries_case_id_abuse_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abuse_case_entries")),
    )
    with op.batch_alter_table("abuse_case_entries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_abuse_case_entries_case_id"), ["case_id"], unique=False
        )

    op.create_table(
        "abuse_events",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("report_id", sa.Integer(), nullable=True),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("source", sa.String(length=320), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("ip", sa.String(length=64), nullable=True),
        sa.Column("ip_key", sa.String(length=32), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("domain", sa.String(length=255), nullable=True),
        sa.Column("url", sa.Text(), nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("zone", sa.String(length=32), nullable=False),
        sa.Column("excerpt", sa.Text(), nullable=False),
        sa.Column("extra", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("instance_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["case_id"], ["abuse_cases.id"], name=op.f("fk_abuse_events_case_id_abuse_cases")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_abuse_events_customer_id_customers")
        ),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instances.id"], name=op.f("fk_abuse_events_instance_id_instances")
        ),
        sa.ForeignKeyConstraint(
            ["report_id"],
            ["abuse_reports.id"],
            name=op.f("fk_abuse_events_report_id_abuse_reports"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_abuse_events")),
        sa.UniqueConstraint("fingerprint", name=op.f("uq_abuse_events_fingerprint")),
    )
    with op.batch_alter_table("abuse_events", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_abuse_events_case_id"), ["case_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_abuse_events_ip_key"), ["ip_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_abuse_events_report_id"), ["report_id"], unique=False)
        batch_op.create_index(
            "ix_abuse_events_status_time", ["status", "occurred_at"], unique=False
        )

    op.create_table(
        "mail_outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_id", sa.Integer(), nullable=True),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["case_id"], ["abuse_cases.id"], name=op.f("fk_mail_outbox_case_id_abuse_cases")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_mail_outbox")),
    )
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_mail_outbox_case_id"), ["case_id"], unique=False)
        batch_op.create_index("ix_mail_outbox_due", ["status", "next_attempt_at"], unique=False)


def downgrade() -> None:
    op.drop_table("abuse_raw")
    with op.batch_alter_table("mail_outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_mail_outbox_due")
        batch_op.drop_index(batch_op.f("ix_mail_outbox_case_id"))

    op.drop_table("mail_outbox")
    with op.batch_alter_table("abuse_events", schema=None) as batch_op:
        batch_op.drop_index("ix_abuse_events_status_time")
        batch_op.drop_index(batch_op.f("ix_abuse_events_report_id"))
        batch_op.drop_index(batch_op.f("ix_abuse_events_ip_key"))
        batch_op.drop_index(batch_op.f("ix_abuse_events_case_id"))

    op.drop_table("abuse_events")
    with op.batch_alter_table("abuse_case_entries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_abuse_case_entries_case_id"))

    op.drop_table("abuse_case_entries")
    with op.batch_alter_table("abuse_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_abuse_cases_state_opened")
        batch_op.drop_index(batch_op.f("ix_abuse_cases_response_token_sha256"))
        batch_op.drop_index("ix_abuse_cases_group")
        batch_op.drop_index(batch_op.f("ix_abuse_cases_customer_id"))

    op.drop_table("abuse_cases")
    with op.batch_alter_table("abuse_reports", schema=None) as batch_op:
        batch_op.drop_index("ix_abuse_reports_status_received")
        batch_op.drop_index(batch_op.f("ix_abuse_reports_sha256"))
        batch_op.drop_index(batch_op.f("ix_abuse_reports_reporter"))

    op.drop_table("abuse_reports")
    op.drop_table("abuse_playbooks")
    with op.batch_alter_table("abuse_allowlist", schema=None) as batch_op:
        batch_op.drop_index("ix_abuse_allowlist_active")

    op.drop_table("abuse_allowlist")
