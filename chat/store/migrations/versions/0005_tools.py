"""Tools: message.events (an answer's content events beyond text), conversation.tools, users.tools, tool_approval

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 12:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable columns (rows stored before: NULL, text only / the defaults) and the approvals table."""
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("events", sa.JSON(), nullable=True))
    with op.batch_alter_table("conversation") as batch:
        batch.add_column(sa.Column("tools", sa.JSON(), nullable=True))
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("tools", sqlmodel.sql.sqltypes.AutoString(), nullable=True))
    op.create_table(
        "tool_approval",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("tool", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("fingerprint", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "tool"),
    )
    op.create_index(op.f("ix_tool_approval_user_id"), "tool_approval", ["user_id"], unique=False)


def downgrade() -> None:
    """Drop them."""
    op.drop_index(op.f("ix_tool_approval_user_id"), table_name="tool_approval")
    op.drop_table("tool_approval")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("tools")
    with op.batch_alter_table("conversation") as batch:
        batch.drop_column("tools")
    with op.batch_alter_table("message") as batch:
        batch.drop_column("events")
