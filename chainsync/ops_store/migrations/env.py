"""Alembic environment: runs migrations on the engine handed over in ``config.attributes``."""

from alembic import context

from chainsync.ops_store.tables import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()
