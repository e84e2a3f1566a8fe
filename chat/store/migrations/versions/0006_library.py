"""Conversations as a library: conversation.pinned, .archived, .source_id (unique per owner); share_link

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 13:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the columns (existing conversations: not pinned, not archived, not imported) and the share links."""
    with op.batch_alter_table("conversation") as batch:
        batch.add_column(sa.Column("pinned", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("archived", sa.Boolean(), nullable=False, server_default=sa.false()))
        batch.add_column(sa.Column("source_id", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True))
        batch.create_unique_constraint("uq_conversation_user_id_source_id", ["user_id", "source_id"])
    with op.batch_alter_table("conversation") as batch:  # the defaults only filled the existing rows
        batch.alter_column("pinned", server_default=None)
        batch.alter_column("archived", server_default=None)
    op.create_table(
        "share_link",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("conversation_id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("audience", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("snapshot", sa.JSON(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("revoked_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(["conversation_id"], ["conversation.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index(op.f("ix_share_link_token_hash"), "share_link", ["token_hash"], unique=True)
    op.create_index(op.f("ix_share_link_conversation_id"), "share_link", ["conversation_id"], unique=False)
    op.create_index(op.f("ix_share_link_user_id"), "share_link", ["user_id"], unique=False)


def downgrade() -> None:
    """Drop them."""
    op.drop_index(op.f("ix_share_link_user_id"), table_name="share_link")
    op.drop_index(op.f("ix_share_link_conversation_id"), table_name="share_link")
    op.drop_index(op.f("ix_share_link_token_hash"), table_name="share_link")
    op.drop_table("share_link")
    with op.batch_alter_table("conversation") as batch:
        batch.drop_constraint("uq_conversation_user_id_source_id", type_="unique")
        batch.drop_column("source_id")
        batch.drop_column("archived")
        batch.drop_column("pinned")
