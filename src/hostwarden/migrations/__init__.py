"""Alembic migrations of hostwarden's relational schema (one chain for every package)."""
