"""Flow store: sealed segments, the segment hash chain, legal holds.

Revision ID: 0004_flow_store
Revises: 0003_four_eyes
Create Date: 2026-11-30 14:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_flow_store"
down_revision = "0003_four_eyes"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "flow_chain",
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("segment", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("entry_hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_flow_chain")),
        sa.UniqueConstraint("entry_hash", name=op.f("uq_flow_chain_entry_hash")),
    )
    with op.batch_alter_table("flow_chain", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flow_chain_segment"), ["segment"], unique=False)

    op.create_table(
        "flow_segments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("day", sa.String(length=10), nullable=False),
        sa.Column("rows", sa.BigInteger(), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.Column("min_local", sa.String(length=32), nullable=False),
        sa.Column("max_local", sa.String(length=32), nullable=False),
        sa.Column("min_customer", sa.BigInteger(), nullable=False),
        sa.Column("max_customer", sa.BigInteger(), nullable=False),
        sa.Column("sealed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("seal_seq", sa.Integer(), nullable=False),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expire_seq", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_flow_segments")),
        sa.UniqueConstraint("name", name=op.f("uq_flow_segments_name")),
    )
    with op.batch_alter_table("flow_segments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_flow_segments_day"), ["day"], unique=False)
        batch_op.create_index(batch_op.f("ix_flow_segments_first_ms"), ["first_ms"], unique=False)
        batch_op.create_index("ix_flow_segments_live_last", ["expired_at", "last_ms"], unique=False)

    op.create_table(
        "legal_holds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("case_ref", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("prefixes", sa.Text(), nullable=False),
        sa.Column("customer_ids", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("released_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("released_by", sa.String(length=200), nullable=False),
        sa.Column("release_reason", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_legal_holds")),
    )
    with op.batch_alter_table("legal_holds", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_legal_holds_released_at"), ["released_at"], unique=False
        )


def downgrade() -> None:
    op.drop_table("legal_holds")
    op.drop_table("flow_segments")
    op.drop_table("flow_chain")
