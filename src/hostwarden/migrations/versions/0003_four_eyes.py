"""Registry: who created each customer and who requested each verification (four eyes).

Existing rows are filled from the audit trail (``customer.create`` and
``verification.submit`` entries); a row without such an entry keeps an empty name, which
matches nobody.

Revision ID: 0003_four_eyes
Revises: 0002_registry
Create Date: 2026-11-30 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_four_eyes"
down_revision = "0002_registry"
branch_labels = None
depends_on = None

#: (table, new column, audit action, audit object type)
_ACTORS = (
    ("customers", "created_by", "customer.create", "customer"),
    ("verification_requests", "requested_by", "verification.submit", "verification_request"),
)


def upgrade() -> None:
    audit = sa.table(
        "audit_entries",
        sa.column("seq", sa.Integer),
        sa.column("actor", sa.String),
        sa.column("action", sa.String),
        sa.column("object_type", sa.String),
        sa.column("object_id", sa.String),
    )
    for table, column, action, object_type in _ACTORS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(column, sa.String(length=200), nullable=False, server_default="")
            )
        rows = sa.table(table, sa.column("id", sa.Integer), sa.column(column, sa.String))
        first_actor = (
            sa.select(audit.c.actor)
            .where(
                audit.c.action == action,
                audit.c.object_type == object_type,
                audit.c.object_id == sa.cast(rows.c.id, sa.String(20)),
            )
            .order_by(audit.c.seq)
            .limit(1)
            .scalar_subquery()
        )
        op.execute(rows.update().values({column: sa.func.coalesce(first_actor, "")}))


def downgrade() -> None:
    for table, column, _action, _object_type in reversed(_ACTORS):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column(column)
