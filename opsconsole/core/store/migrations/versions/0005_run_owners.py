"""Runs and leases belong to an owner with a heartbeat, judged in database time.

- ``jobs.owner``: the process that runs the job, ``host/boot_id/pid/start_ticks[/worker]`` (see
  :class:`opsconsole.core.processes.Owner`): recovery on one host proves a job dead only when its owner is
  on this host and boot and that exact process is gone; another host's job is never judged by pid.
- ``jobs.heartbeat_at``: renewed by the owner while the run goes, in the store's clock; only a heartbeat
  older than the liveness window (database time) makes another host's job dead.
- ``leases.owner``: the same identity for a lease holder (a reused pid no longer keeps a dead lease alive,
  a live pid of another boot no longer counts).

Existing rows keep NULL (judged as before: by expiry, and by pid on the host that wrote them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_COLUMNS = (
    ("jobs", "owner", lambda: sa.String(256)),
    ("jobs", "heartbeat_at", lambda: sa.DateTime(timezone=True)),
    ("leases", "owner", lambda: sa.String(256)),
)


def upgrade() -> None:
    inspector = sa.inspect(op.get_bind())
    for table, column, kind in _COLUMNS:
        # A database adopted from before the migrations had its tables made by create_all of the current
        # metadata, which may already hold these columns.
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column(column, kind(), nullable=True))


def downgrade() -> None:
    for table in ("leases", "jobs"):
        with op.batch_alter_table(table) as batch:
            for name, column, _kind in _COLUMNS:
                if name == table:
                    batch.drop_column(column)
