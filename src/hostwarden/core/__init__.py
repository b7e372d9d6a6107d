"""Core services every domain package builds on: config, database, audit trail, auth."""
