"""Abuse desk: cases indexed by subject first, for the intake's lookup by subject.

The grouping index was (customer, subject, category). The intake reads the cases of a
batch's subjects before it knows their customers, which that index cannot serve: every
batch scanned the whole case table. Customers have an index of their own.

Revision ID: 0008_case_subject_index
Revises: 0007_cases
Create Date: 2026-12-06 23:00:00
"""

from __future__ import annotations

from alembic import op

revision = "0008_case_subject_index"
down_revision = "0007_cases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("abuse_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_abuse_cases_group")
        batch_op.create_index(
            "ix_abuse_cases_subject", ["subject_key", "customer_id", "category"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("abuse_cases", schema=None) as batch_op:
        batch_op.drop_index("ix_abuse_cases_subject")
        batch_op.create_index(
            "ix_abuse_cases_group", ["customer_id", "subject_key", "category"], unique=False
        )
