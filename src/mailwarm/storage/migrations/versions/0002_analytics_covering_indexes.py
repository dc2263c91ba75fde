"""analytics covering indexes

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-06
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_account_id_action_at"))
        batch_op.create_index(
            batch_op.f("ix_activities_account_id_action_at_placement_peer_id"),
            ["account_id", "action", "at", "placement", "peer_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_activities_peer_id_action_at_placement_account_id"),
            ["peer_id", "action", "at", "placement", "account_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("activities", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_activities_peer_id_action_at_placement_account_id"))
        batch_op.drop_index(batch_op.f("ix_activities_account_id_action_at_placement_peer_id"))
        batch_op.create_index(
            batch_op.f("ix_activities_account_id_action_at"),
            ["account_id", "action", "at"],
            unique=False,
        )
