"""What answers cost: message.cost and .cost_estimated, daily_usage.cost

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 13:10:00

Plain ``ADD COLUMN``s (no batch copy of the tables, which on SQLite would drop 0007's search triggers).
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the columns (earlier answers: no cost known)."""
    op.add_column("message", sa.Column("cost", sa.Float(), nullable=True))
    op.add_column("message", sa.Column("cost_estimated", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.add_column("daily_usage", sa.Column("cost", sa.Float(), nullable=False, server_default="0"))


def downgrade() -> None:
    """Drop them (plain ``DROP COLUMN``, SQLite 3.35+, which keeps the search triggers)."""
    op.drop_column("daily_usage", "cost")
    op.drop_column("message", "cost_estimated")
    op.drop_column("message", "cost")
