"""message.error_status and message.error_code: the upstream's HTTP status and OpenAI's error code of a failed answer

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23 17:00:00

"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add the nullable columns (answers stored before keep only their reason: NULL)."""
    with op.batch_alter_table("message") as batch:
        batch.add_column(sa.Column("error_status", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("error_code", sqlmodel.sql.sqltypes.AutoString(), nullable=True))


def downgrade() -> None:
    """Drop the columns."""
    with op.batch_alter_table("message") as batch:
        batch.drop_column("error_code")
        batch.drop_column("error_status")
