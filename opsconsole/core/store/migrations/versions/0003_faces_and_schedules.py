"""What the Slack bot and the scheduler share between processes: an outbox of notices, dedupe keys,
where each face's message about a subject lives, and the schedules' overrides and last transitions.

Several bot replicas and several consoles share one PostgreSQL: a notice (a high-severity finding, a
shutdown warning) must be posted once, a retried Slack payload must take effect once, an approval
message must be edited in place by whichever replica sees the change, and only the elected scheduler
acts — so all of that lives here, not in a process's memory. Nothing existing changes.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("resolved_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("claimed_by", sa.String(256), nullable=True),
        sa.Column("claimed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("delivered", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_notices"),
    )
    op.create_index("ix_notices_created_at", "notices", ["created_at"])
    op.create_table(
        "dedupe_keys",
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_dedupe_keys"),
    )
    op.create_index("ix_dedupe_keys_created_at", "dedupe_keys", ["created_at"])
    op.create_table(
        "message_refs",
        sa.Column("subject", sa.String(256), nullable=False),
        sa.Column("face", sa.String(32), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("ts", sa.String(64), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("subject", "face", name="pk_message_refs"),
    )
    op.create_table(
        "schedule_overrides",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("environment", sa.String(32), nullable=False),
        sa.Column("region", sa.String(64), nullable=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("face", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_schedule_overrides"),
    )
    op.create_index("ix_schedule_overrides_environment", "schedule_overrides", ["environment"])
    op.create_table(
        "schedule_state",
        sa.Column("key", sa.String(128), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_schedule_state"),
    )


def downgrade() -> None:
    op.drop_table("schedule_state")
    op.drop_index("ix_schedule_overrides_environment", table_name="schedule_overrides")
    op.drop_table("schedule_overrides")
    op.drop_table("message_refs")
    op.drop_index("ix_dedupe_keys_created_at", table_name="dedupe_keys")
    op.drop_table("dedupe_keys")
    op.drop_index("ix_notices_created_at", table_name="notices")
    op.drop_table("notices")
