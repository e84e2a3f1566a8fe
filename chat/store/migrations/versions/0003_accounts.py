"""accounts: users, login sessions, API tokens, daily usage, and conversation.user_id (the owner)

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-23 16:10:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AutoString = sqlmodel.sql.sqltypes.AutoString
UTCDateTime = sqlmodel.sql.sqltypes.UTCDateTime


def _user_id() -> sa.Column:
    return sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False)


def upgrade() -> None:
    """Create the account tables; existing conversations get no owner (NULL: made without accounts)."""
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", AutoString(length=64), nullable=False),
        sa.Column("password_hash", AutoString(), nullable=False),
        sa.Column("is_admin", sa.Boolean(), nullable=False),
        sa.Column("disabled", sa.Boolean(), nullable=False),
        sa.Column("models", AutoString(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_login_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_users_name", "users", ["name"], unique=True)
    op.create_table(
        "login_session",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        _user_id(),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_login_session_token_hash", "login_session", ["token_hash"], unique=True)
    op.create_index("ix_login_session_user_id", "login_session", ["user_id"])
    op.create_table(
        "api_token",
        sa.Column("id", sa.Integer(), primary_key=True),
        _user_id(),
        sa.Column("name", AutoString(length=100), nullable=False),
        sa.Column("prefix", AutoString(length=16), nullable=False),
        sa.Column("token_hash", AutoString(length=64), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("last_used_at", UTCDateTime(), nullable=True),
    )
    op.create_index("ix_api_token_token_hash", "api_token", ["token_hash"], unique=True)
    op.create_index("ix_api_token_user_id", "api_token", ["user_id"])
    op.create_table(
        "daily_usage",
        sa.Column("id", sa.Integer(), primary_key=True),
        _user_id(),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("answers", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.UniqueConstraint("user_id", "day"),
    )
    op.create_index("ix_daily_usage_user_id", "daily_usage", ["user_id"])
    with op.batch_alter_table("conversation") as batch:
        batch.add_column(sa.Column("user_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("fk_conversation_user_id", "users", ["user_id"], ["id"], ondelete="CASCADE")
        batch.create_index("ix_conversation_user_id", ["user_id"])


def downgrade() -> None:
    """Drop the owner column and the account tables."""
    with op.batch_alter_table("conversation") as batch:
        batch.drop_index("ix_conversation_user_id")
        batch.drop_constraint("fk_conversation_user_id", type_="foreignkey")
        batch.drop_column("user_id")
    for table in ("daily_usage", "api_token", "login_session", "users"):
        op.drop_table(table)
