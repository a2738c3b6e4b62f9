"""claims walk the queue in id order: index (campaign_id, round, status, id)

The claim's ``WHERE campaign_id, round, status = 'queued' ORDER BY id LIMIT n`` sorted every
queued delivery of the campaign on each claim with the former index (campaign_id, status,
next_attempt_at): cheap at 10,000 contacts, a third of the rate at 100,000. With ``id`` in the
index the claim reads its few rows in order and stops.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 17:00:00.000000
"""

from __future__ import annotations

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_deliveries_claim", table_name="deliveries")
    op.create_index("ix_deliveries_queue", "deliveries", ["campaign_id", "round", "status", "id"])


def downgrade() -> None:
    op.drop_index("ix_deliveries_queue", table_name="deliveries")
    op.create_index(
        "ix_deliveries_claim", "deliveries", ["campaign_id", "status", "next_attempt_at"]
    )
