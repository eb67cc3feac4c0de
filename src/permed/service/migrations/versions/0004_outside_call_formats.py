"""Outside calls of any format with an upload: the format asked for (None: detected from the text) and the
uploaded file's name (StellarPGx names its sample in the file name).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# plain ALTER TABLE on both databases (SQLite >= 3.35 drops columns itself): a batch copy of `samples` would
# drop the table that jobs and patient links refer to, which SQLite's foreign keys refuse
def upgrade() -> None:
    op.add_column("samples", sa.Column("outside_calls_format", sa.String(16), nullable=True))
    op.add_column("samples", sa.Column("outside_calls_name", sa.String(255), nullable=True))


def downgrade() -> None:
    op.drop_column("samples", "outside_calls_name")
    op.drop_column("samples", "outside_calls_format")
