"""The ops server becomes the one authority: personal API tokens, a keyed MAC on every audit entry, the
world (sandbox or live) each request and vote belongs to, and the store's own identity.

- ``api_tokens``: personal tokens, stored as SHA-256 hashes only, with expiry, last use and revocation.
- ``audit_log.mac``: HMAC-SHA256 of the entry's hash under a key the server keeps outside the database,
  so that rewriting the chain (entries and head together) is detected by ``audit verify``.
- ``change_requests.world`` / ``votes.world``: ``sandbox`` or ``live``; a store of one world refuses
  the other.
- ``store_meta``: the store's identity (its id, its world), written once when a store is first opened.

Existing rows keep NULL in the new columns (entries written before the key existed carry no MAC, and are
reported as such). Nothing existing changes.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "api_tokens",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("person", sa.String(256), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("label", sa.String(256), nullable=True),
        sa.Column("created_by", sa.String(256), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_used_addr", sa.String(64), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_api_tokens_token_hash"),
    )
    op.create_index("ix_api_tokens_person", "api_tokens", ["person"])
    # A database adopted from before the migrations had its tables made by create_all of the current
    # metadata, which may already hold these columns.
    inspector = sa.inspect(op.get_bind())
    for table, column in (("audit_log", "mac"), ("change_requests", "world"), ("votes", "world")):
        if column not in {c["name"] for c in inspector.get_columns(table)}:
            op.add_column(table, sa.Column(column, sa.String(64 if column == "mac" else 16), nullable=True))
    op.create_table(
        "store_meta",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_store_meta"),
    )


def downgrade() -> None:
    op.drop_table("store_meta")
    with op.batch_alter_table("votes") as batch:
        batch.drop_column("world")
    with op.batch_alter_table("change_requests") as batch:
        batch.drop_column("world")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("mac")
    op.drop_index("ix_api_tokens_person", table_name="api_tokens")
    op.drop_table("api_tokens")
