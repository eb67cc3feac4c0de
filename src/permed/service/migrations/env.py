"""Alembic environment: permed always hands over an open connection (see permed.service.schema)."""

from alembic import context

from permed.service.store import Base

connection = context.config.attributes["connection"]
# batch mode: SQLite cannot ALTER most things, so changes there are made by copying the table
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True,
                  transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
