"""Flow store: the dataset of each segment (flows, or the http, nat and ssh logs).

Every segment stored before this revision holds flow records, so the column defaults to
``flows``.

Revision ID: 0005_log_datasets
Revises: 0004_flow_store
Create Date: 2026-11-23 16:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_log_datasets"
down_revision = "0004_flow_store"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("flow_segments", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("dataset", sa.String(length=16), nullable=False, server_default="flows")
        )
        batch_op.create_index(batch_op.f("ix_flow_segments_dataset"), ["dataset"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("flow_segments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_flow_segments_dataset"))
        batch_op.drop_column("dataset")
