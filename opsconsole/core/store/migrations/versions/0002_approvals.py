"""The approval queue, leases, the audit log and leader election, shared by every face and bot replica.

Adds change requests and their votes (compare-and-set on ``version``), leases on targets with the
one-row ``lease_guard`` every acquirer updates first, the hash-chained ``audit_log`` with its one-row
``audit_head``, and ``leaders`` for the scheduler's election. Nothing existing changes, so a previous
release's jobs and events stay as they are.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "change_requests",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("playbook", sa.String(512), nullable=False),
        sa.Column("extravars", sa.JSON(), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("observed", sa.JSON(), nullable=False),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.Column("hash_inputs", sa.JSON(), nullable=False),
        sa.Column("risk", sa.String(16), nullable=False),
        sa.Column("risk_reasons", sa.JSON(), nullable=False),
        sa.Column("approvals_needed", sa.Integer(), nullable=False),
        sa.Column("approver_scope", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("requester", sa.String(256), nullable=False),
        sa.Column("face", sa.String(32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("break_glass", sa.Boolean(), nullable=False),
        sa.Column("review_due_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("preview", sa.JSON(), nullable=False),
        sa.Column("drift", sa.JSON(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_change_requests"),
    )
    op.create_index("ix_change_requests_status", "change_requests", ["status"])
    op.create_index("ix_change_requests_created_at", "change_requests", ["created_at"])

    op.create_table(
        "votes",
        sa.Column("request_id", sa.String(32), nullable=False),
        sa.Column("voter", sa.String(256), nullable=False),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("face", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("plan_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("request_id", "voter", "plan_hash", name="pk_votes"),
    )

    op.create_table(
        "leases",
        sa.Column("target", sa.String(256), nullable=False),
        sa.Column("lease_id", sa.String(32), nullable=False),
        sa.Column("mode", sa.String(16), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("host", sa.String(256), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("acquired_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("target", "lease_id", name="pk_leases"),
    )
    op.create_index("ix_leases_lease_id", "leases", ["lease_id"])

    op.create_table(
        "lease_guard",
        # autoincrement=False: a plain INTEGER, not PostgreSQL's SERIAL (the one row is id 1).
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("generation", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_lease_guard"),
    )

    op.create_table(
        "audit_log",
        # The chain numbers its entries itself: no sequence behind seq.
        sa.Column("seq", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("kind", sa.String(48), nullable=False),
        sa.Column("actor", sa.String(256), nullable=False),
        sa.Column("face", sa.String(32), nullable=False),
        sa.Column("request_id", sa.String(32), nullable=True),
        sa.Column("job_id", sa.String(32), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name="pk_audit_log"),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_request_id", "audit_log", ["request_id"])

    op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_audit_head"),
    )

    op.create_table(
        "leaders",
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("holder", sa.String(256), nullable=False),
        sa.Column("renewed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("term", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("role", name="pk_leaders"),
    )


def downgrade() -> None:
    op.drop_table("leaders")
    op.drop_table("audit_head")
    op.drop_index("ix_audit_log_request_id", table_name="audit_log")
    op.drop_index("ix_audit_log_at", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("lease_guard")
    op.drop_index("ix_leases_lease_id", table_name="leases")
    op.drop_table("leases")
    op.drop_table("votes")
    op.drop_index("ix_change_requests_created_at", table_name="change_requests")
    op.drop_index("ix_change_requests_status", table_name="change_requests")
    op.drop_table("change_requests")
