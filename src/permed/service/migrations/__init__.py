"""Alembic migration scripts of the service's database (run by permed.service.schema, not by hand)."""
