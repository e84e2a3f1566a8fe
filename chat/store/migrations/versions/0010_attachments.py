"""Attachments and side-by-side comparisons: attachment, blob, message.comparing

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 15:00:00

A plain ``ADD COLUMN`` on message (no batch copy of the table, which on SQLite would drop 0007's search triggers).
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def upgrade() -> None:
    """Create the tables, add the column."""
    op.create_table(
        "blob",
        sa.Column("sha256", AutoString(length=64), nullable=False),
        sa.Column("data", sa.LargeBinary(), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("sha256"),
    )
    op.create_table(
        "attachment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("message_id", sa.Integer(), nullable=True),
        sa.Column("kind", AutoString(length=16), nullable=False),
        sa.Column("name", AutoString(length=200), nullable=False),
        sa.Column("media_type", AutoString(length=100), nullable=False),
        sa.Column("size", sa.Integer(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("thumbnail_sha256", sa.String(length=64), nullable=True),
        sa.Column("width", sa.Integer(), nullable=True),
        sa.Column("height", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=True),
        sa.Column("tokens", sa.Integer(), nullable=True),
        sa.Column("sent_chars", sa.Integer(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["message_id"], ["message.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["sha256"], ["blob.sha256"]),
        sa.ForeignKeyConstraint(["thumbnail_sha256"], ["blob.sha256"]),
        sa.PrimaryKeyConstraint("id"),
    )
    for column in ("user_id", "message_id", "sha256", "thumbnail_sha256"):
        op.create_index(op.f(f"ix_attachment_{column}"), "attachment", [column], unique=False)
    op.add_column("message", sa.Column("comparing", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    """Drop them (plain ``DROP COLUMN``, SQLite 3.35+, which keeps the search triggers)."""
    op.drop_column("message", "comparing")
    for column in ("thumbnail_sha256", "sha256", "message_id", "user_id"):
        op.drop_index(op.f(f"ix_attachment_{column}"), table_name="attachment")
    op.drop_table("attachment")
    op.drop_table("blob")
