"""business controls: tenant policies, holds, the GPU ledger, retention, pause, secrets at rest

- tenant_policies: the operator's per-tenant rules (models/domain/policy.py);
- gpu_usage: the ledger, one row per recorded shard attempt;
- cell_analyses: each image analyzer's (label, score) per cell (screening);
- storage_deletions: folders the sweep empties (expired, deleted jobs and tenants);
- jobs: paused_at, held, max_gpu_ms, retention_s, expires_at, expired_at,
  removed_objects, progress_at, progress_fraction, artifacts_stale_at;
- items: hold (held | released | deleted), device;
- webhook_secrets: ciphertext, previous_ciphertext, previous_until; the plaintext
  column stays nullable for rows written before, which the application encrypts (on
  first use and in every retention sweep) and clears: no key is needed to migrate.

Shards get a new status value ('paused') and cells one more ('expired'): the columns
are strings, so no DDL. The claim function is unchanged: a paused shard is simply not
'queued'.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-27 10:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _job_columns() -> list[sa.Column[object]]:
    return [
        sa.Column("paused_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("held", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("max_gpu_ms", sa.BigInteger(), nullable=True),
        sa.Column("retention_s", sa.Integer(), nullable=True),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("removed_objects", sa.Integer(), nullable=True),
        sa.Column("progress_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("progress_fraction", sa.Float(), nullable=True),
        sa.Column("artifacts_stale_at", sa.DateTime(timezone=True), nullable=True),
    ]


def upgrade() -> None:
    op.create_table(
        "tenant_policies",
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("allowed_ratings", sa.JSON(), nullable=True),
        sa.Column("forced_rating", sa.String(length=16), nullable=True),
        sa.Column("forced_negative", sa.Text(), nullable=True),
        sa.Column("screening_threshold", sa.Float(), nullable=True),
        sa.Column("retention_s", sa.Integer(), nullable=True),
        sa.Column("max_retention_s", sa.Integer(), nullable=True),
        sa.Column("monthly_gpu_seconds", sa.Float(), nullable=True),
        sa.Column("metrics_by_name", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"],
            ["tenants.id"],
            name="fk_tenant_policies_tenant_id_tenants",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("tenant_id", name="pk_tenant_policies"),
    )
    op.create_table(
        "gpu_usage",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("model", sa.String(length=200), nullable=False),
        sa.Column("device", sa.String(length=100), nullable=False),
        sa.Column("shard_index", sa.Integer(), nullable=False),
        sa.Column("cells", sa.Integer(), nullable=False),
        sa.Column("gpu_ms", sa.BigInteger(), nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["tenant_id"], ["tenants.id"], name="fk_gpu_usage_tenant_id_tenants", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_gpu_usage"),
    )
    op.create_index("ix_gpu_usage_tenant_time", "gpu_usage", ["tenant_id", "recorded_at"])
    op.create_table(
        "cell_analyses",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("cell_index", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("analyzer", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("analysis_ms", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name="fk_cell_analyses_job_id_jobs", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("job_id", "cell_index", "analyzer", name="pk_cell_analyses"),
    )
    op.create_table(
        "storage_deletions",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("prefix", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Uuid(), nullable=True),
        sa.Column("reason", sa.String(length=16), nullable=False),
        sa.Column("passes", sa.Integer(), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_storage_deletions"),
    )
    op.create_index("ix_storage_deletions_due", "storage_deletions", ["not_before"])
    with op.batch_alter_table("jobs") as batch:
        for column in _job_columns():
            batch.add_column(column)
        batch.create_index("ix_jobs_expires_at", ["expires_at"])
        batch.create_index("ix_jobs_artifacts_stale_at", ["artifacts_stale_at"])
    with op.batch_alter_table("items") as batch:
        batch.add_column(sa.Column("hold", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("device", sa.String(length=100), nullable=True))
    with op.batch_alter_table("webhook_secrets") as batch:
        batch.alter_column("secret", existing_type=sa.String(length=100), nullable=True)
        batch.add_column(sa.Column("ciphertext", sa.Text(), nullable=True))
        batch.add_column(sa.Column("previous_ciphertext", sa.Text(), nullable=True))
        batch.add_column(sa.Column("previous_until", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    # Encrypted secrets cannot be decrypted here (no key): they are dropped, and made
    # anew on first use. Rotate receivers' secrets after a downgrade.
    op.execute("DELETE FROM webhook_secrets WHERE secret IS NULL")
    with op.batch_alter_table("webhook_secrets") as batch:
        batch.drop_column("previous_until")
        batch.drop_column("previous_ciphertext")
        batch.drop_column("ciphertext")
        batch.alter_column("secret", existing_type=sa.String(length=100), nullable=False)
    with op.batch_alter_table("items") as batch:
        batch.drop_column("device")
        batch.drop_column("hold")
    op.execute("UPDATE shards SET status = 'queued' WHERE status = 'paused'")
    op.execute("UPDATE items SET status = 'done' WHERE status = 'expired'")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_artifacts_stale_at")
        batch.drop_index("ix_jobs_expires_at")
        for column in reversed(_job_columns()):
            batch.drop_column(column.name)
    op.drop_index("ix_storage_deletions_due", table_name="storage_deletions")
    op.drop_table("storage_deletions")
    op.drop_table("cell_analyses")
    op.drop_index("ix_gpu_usage_tenant_time", table_name="gpu_usage")
    op.drop_table("gpu_usage")
    op.drop_table("tenant_policies")
