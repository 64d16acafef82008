"""Alembic's environment for opsconsole: run the migrations on the connection opsconsole hands over.

:func:`opsconsole.core.store.db.ensure_schema` opens the connection, takes the lock (PostgreSQL's advisory
lock, SQLite's write lock) and begins the transaction, then runs ``alembic.command.upgrade`` with the
connection in ``config.attributes["connection"]``; Alembic sees the transaction already open and runs
every migration inside it, so a failed upgrade leaves nothing half done, and the caller commits.

Without a connection (a developer running ``alembic.command.revision(..., autogenerate=True)``) this
connects to the database opsconsole is configured for (``sqlalchemy.url``, else ``OPSCONSOLE_DB_URL`` or
``$OPSCONSOLE_HOME``). There is no offline (``--sql``) mode, and no ``logging.fileConfig``: the CLI
keeps the console clean.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from opsconsole.core.store.db import database_url, make_engine, metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite alters a table by copying it: autogenerate writes ``batch_alter_table`` for it.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    given = context.config.attributes.get("connection")
    if isinstance(given, Connection):
        _run(given)
        return
    engine = make_engine(database_url(context.config.get_main_option("sqlalchemy.url")))
    try:
        with engine.connect() as connection:
            _run(connection)
            connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    raise RuntimeError("opsconsole's migrations run online only (no --sql)")
run_migrations_online()
