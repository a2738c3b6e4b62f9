"""deliveries.handed_over_at: which claimed deliveries a sender had begun to hand over

With ``OUTREACH_RECOVER_AS=unknown`` a sender records, just before handing a message over, that
it is doing so; recovery then marks only those deliveries ``unknown`` and puts the rest of a
dead sender's claims back in the queue.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 17:10:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.add_column(sa.Column("handed_over_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("deliveries") as batch:
        batch.drop_column("handed_over_at")
