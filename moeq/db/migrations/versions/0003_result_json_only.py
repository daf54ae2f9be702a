"""The stored result is the one read model: drop the per-fact tables nothing read (run_metrics,
routing_stats, expert_stats, artifacts) and the never-written models table with runs.model_id

Every row of the dropped fact tables was a copy of a field of `runs.result`, written from the same
dict in the same transaction, so no fact is lost: the result JSON and the runs columns the runs table
filters and sorts on stay as they are. Results stored in the earlier result shape are brought to the
current one when read (moeq.db.repository.result_shape.normalize_result).

Downgrade recreates the tables and the column empty (their contents were copies of runs.result).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

FACT_TABLES = ("run_metrics", "routing_stats", "expert_stats", "artifacts")


def upgrade() -> None:
    for table in FACT_TABLES:
        op.drop_index(f"ix_{table}_run_id", table_name=table)
        op.drop_table(table)
    bind = op.get_bind()
    if bind.dialect.name == "postgresql":  # the foreign key goes with the column; SQLite rebuilds the table
        op.drop_column("runs", "model_id")
    else:
        with op.batch_alter_table("runs", recreate="always") as batch:
            batch.drop_column("model_id")
    op.drop_table("models")


def _run_fk() -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="CASCADE")


def downgrade() -> None:
    op.create_table("models",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("name", sa.String(length=512), nullable=False),
                    sa.Column("family", sa.String(length=64), nullable=True),
                    sa.Column("source", sa.String(length=16), nullable=False),
                    sa.Column("path", sa.Text(), nullable=True),
                    sa.Column("num_params", sa.BigInteger(), nullable=True),
                    sa.Column("num_layers", sa.Integer(), nullable=True),
                    sa.Column("num_experts", sa.Integer(), nullable=True),
                    sa.Column("top_k", sa.Integer(), nullable=True),
                    sa.Column("config_hash", sa.String(length=64), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    sa.PrimaryKeyConstraint("id"), sa.UniqueConstraint("name", "config_hash"))
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("model_id", sa.Integer(), nullable=True))
        batch.create_foreign_key("runs_model_id_fkey", "models", ["model_id"], ["id"])
    op.create_table("artifacts",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("run_id", sa.String(length=32), nullable=False),
                    sa.Column("kind", sa.String(length=64), nullable=False),
                    sa.Column("path", sa.Text(), nullable=False),
                    sa.Column("bytes", sa.BigInteger(), nullable=False),
                    sa.Column("sha256", sa.String(length=64), nullable=False),
                    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
                    _run_fk(), sa.PrimaryKeyConstraint("id"))
    op.create_table("expert_stats",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("run_id", sa.String(length=32), nullable=False),
                    sa.Column("layer", sa.Integer(), nullable=False),
                    sa.Column("expert", sa.Integer(), nullable=False),
                    sa.Column("bits", sa.Integer(), nullable=True),
                    sa.Column("group_size", sa.Integer(), nullable=True),
                    sa.Column("calib_tokens", sa.Integer(), nullable=True),
                    sa.Column("weight_error", sa.Float(), nullable=True),
                    sa.Column("fallback", sa.String(length=64), nullable=True),
                    _run_fk(), sa.PrimaryKeyConstraint("id"))
    op.create_table("routing_stats",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("run_id", sa.String(length=32), nullable=False),
                    sa.Column("layer", sa.Integer(), nullable=False),
                    sa.Column("topk", sa.Float(), nullable=True),
                    sa.Column("top1", sa.Float(), nullable=True),
                    sa.Column("kl", sa.Float(), nullable=True),
                    _run_fk(), sa.PrimaryKeyConstraint("id"))
    op.create_table("run_metrics",
                    sa.Column("id", sa.Integer(), nullable=False),
                    sa.Column("run_id", sa.String(length=32), nullable=False),
                    sa.Column("name", sa.String(length=64), nullable=False),
                    sa.Column("task", sa.String(length=128), nullable=True),
                    sa.Column("value", sa.Float(), nullable=True),
                    sa.Column("stderr", sa.Float(), nullable=True),
                    _run_fk(), sa.PrimaryKeyConstraint("id"))
    for table in FACT_TABLES:
        op.create_index(f"ix_{table}_run_id", table, ["run_id"], unique=False)
