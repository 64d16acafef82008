"""The schema's history as Alembic migrations: how a database gets from what it has to what the code needs.

Users' databases outlive releases (the previous release shipped SQLite files holding only ``jobs`` and
``job_events``), so the schema is never created from :data:`opsconsole.core.store.db.metadata` directly: this
package is an Alembic script directory that :func:`opsconsole.core.store.db.ensure_schema` runs
programmatically (no ``alembic.ini``) every time a :class:`~opsconsole.core.store.db.Database` is opened.
``db.metadata`` stays the description the code queries against; a test upgrades a fresh database and
compares it with ``db.metadata`` (Alembic's ``compare_metadata``) so that the two cannot drift apart.

Migrations are written by hand with explicit ``op.create_table`` / ``op.add_column`` calls and never import
``db.py``'s tables: a migration describes the schema as it was on the day it was written. To add one:

1. write ``versions/NNNN_what.py`` (revision ``"NNNN"``, ``down_revision`` the previous head), from
   ``script.py.mako`` or with ``alembic.command.revision(alembic_config(), "what", rev_id="NNNN")``;
   SQLite changes existing tables only through ``op.batch_alter_table``;
2. change ``db.py``'s tables to match, and set :data:`HEAD` to the new revision.

:data:`HEAD` is a constant so that opening a database already at head needs neither Alembic (about
120 ms to import) nor a read of the scripts; ``tests/integration/test_migrations.py`` checks that it
names the scripts' real head.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from alembic.config import Config
    from sqlalchemy import Connection

#: The newest revision in ``versions/``: what every database is brought to.
HEAD = "0005"

#: The script directory (this package): ``env.py``, ``script.py.mako`` and ``versions/``.
SCRIPT_LOCATION = Path(__file__).resolve().parent


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for this script directory, without an ``alembic.ini``.

    Args:
        connection: the connection ``env.py`` runs the migrations on, inside the caller's transaction;
            ``None`` lets ``env.py`` connect to the configured database itself (for ``command.revision``
            and other developer commands).

    Returns:
        A :class:`alembic.config.Config` to pass to :mod:`alembic.command`.
    """
    # Alembic costs about 120 ms to import: only the paths that migrate pay for it.
    from alembic.config import Config  # noqa: PLC0415

    config = Config()
    # Options go through ConfigParser interpolation: a "%" in the install path must be doubled.
    config.set_main_option("script_location", str(SCRIPT_LOCATION).replace("%", "%%"))
    if connection is not None:
        config.attributes["connection"] = connection
    return config
