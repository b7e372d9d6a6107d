"""Alembic environment: runs against the connection handed over by hostwarden.core.migrate."""

from __future__ import annotations

from alembic import context

import hostwarden.cases.models
import hostwarden.core.models
import hostwarden.detect.models
import hostwarden.flows.models
import hostwarden.registry.models  # noqa: F401
from hostwarden.core.db import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through `hostwarden db upgrade`, not bare alembic")

context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
