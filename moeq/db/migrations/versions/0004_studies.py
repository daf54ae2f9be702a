"""studies: a grid of recipes (× seeds) launched as one; runs.study_id and runs.study_point link each
run to its study and grid point

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

JsonType = sa.JSON().with_variant(JSONB(), "postgresql")


def upgrade() -> None:
    op.create_table(
        "studies",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, server_default=""),
        sa.Column("project_id", sa.Integer, sa.ForeignKey("projects.id"), nullable=True, index=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=True, index=True),
        sa.Column("model_ref", sa.String(512), nullable=False, server_default=""),
        sa.Column("base_recipe", JsonType, nullable=True),
        sa.Column("axes", JsonType, nullable=True),
        sa.Column("estimate_s", sa.Float, nullable=True),
        sa.Column("cancel_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("celery_group_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
    )
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("study_id", sa.String(32), nullable=True))
        batch.add_column(sa.Column("study_point", sa.String(512), nullable=True))
        batch.create_index("ix_runs_study_id", ["study_id"])
        batch.create_foreign_key("fk_runs_study_id", "studies", ["study_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.drop_constraint("fk_runs_study_id", type_="foreignkey")
        batch.drop_index("ix_runs_study_id")
        batch.drop_column("study_point")
        batch.drop_column("study_id")
    op.drop_table("studies")
