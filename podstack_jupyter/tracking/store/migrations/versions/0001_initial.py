"""The tracking store's first tables: experiments, runs, params, tags, metrics, datasets,
artifacts index and the model registry.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "experiments",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("tags", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_experiments"),
        sa.UniqueConstraint("name", name="uq_experiments_name"),
    )
    op.create_table(
        "runs",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("experiment_id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255)),
        sa.Column("parent_run_id", sa.String(36)),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("start_time", sa.Float(), nullable=False),
        sa.Column("end_time", sa.Float()),
        sa.Column("source", sa.Text()),
        sa.Column("gpu", sa.Text()),
        sa.PrimaryKeyConstraint("id", name="pk_runs"),
        sa.ForeignKeyConstraint(["experiment_id"], ["experiments.id"], name="fk_runs_experiment_id_experiments"),
        sa.ForeignKeyConstraint(["parent_run_id"], ["runs.id"], name="fk_runs_parent_run_id_runs"),
    )
    op.create_index("ix_runs_experiment_start", "runs", ["experiment_id", "start_time"])
    op.create_index("ix_runs_status", "runs", ["status"])
    op.create_index("ix_runs_parent", "runs", ["parent_run_id"])
    op.create_index("ix_runs_start", "runs", ["start_time"])
    op.create_table(
        "params",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("value_num", sa.Float()),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_params"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_params_run_id_runs"),
    )
    op.create_index("ix_params_key_num", "params", ["key", "value_num"])
    op.create_table(
        "tags",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_tags"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_tags_run_id_runs"),
    )
    op.create_table(
        "metrics",
        sa.Column("id", _BigId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metrics"),
    )
    op.create_index("ix_metrics_run_key_step", "metrics", ["run_id", "key", "step"])
    op.create_table(
        "metric_chunks",
        sa.Column("id", _BigId, nullable=False, autoincrement=True),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.BigInteger(), nullable=False),
        sa.Column("last_step", sa.BigInteger(), nullable=False),
        sa.Column("steps", sa.LargeBinary(), nullable=False),
        sa.Column("values", sa.LargeBinary(), nullable=False),
        sa.Column("timestamps", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_chunks"),
    )
    op.create_index("ix_metric_chunks_run_key", "metric_chunks", ["run_id", "key", "id"])
    op.create_table(
        "latest_metrics",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("value", sa.Float()),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("timestamp", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "key", name="pk_latest_metrics"),
    )
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.create_table(
        "datasets",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("source_type", sa.String(16), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("schema", sa.Text()),
        sa.Column("profile", sa.Text()),
        sa.Column("tags", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("dedup_key", sa.String(64)),
        sa.PrimaryKeyConstraint("id", name="pk_datasets"),
        sa.UniqueConstraint("dedup_key", name="uq_datasets_dedup_key"),
    )
    op.create_index("ix_datasets_name", "datasets", ["name"])
    op.create_index("ix_datasets_digest", "datasets", ["digest"])
    op.create_table(
        "run_datasets",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("dataset_id", sa.String(36), nullable=False),
        sa.Column("context", sa.String(32), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "dataset_id", "context", name="pk_run_datasets"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_run_datasets_run_id_runs"),
        sa.ForeignKeyConstraint(["dataset_id"], ["datasets.id"], name="fk_run_datasets_dataset_id_datasets"),
    )
    op.create_index("ix_run_datasets_dataset", "run_datasets", ["dataset_id"])
    op.create_table(
        "artifacts",
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "path", name="pk_artifacts"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs"),
    )
    op.create_table(
        "registered_models",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("description", sa.Text()),
        sa.Column("tags", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_registered_models"),
        sa.UniqueConstraint("name", name="uq_registered_models_name"),
    )
    op.create_table(
        "model_versions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.String(36)),
        sa.Column("stage", sa.String(16), nullable=False),
        sa.Column("source", sa.Text()),
        sa.Column("framework", sa.String(64)),
        sa.Column("description", sa.Text()),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("updated_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_model_versions"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"],
                                name="fk_model_versions_model_id_registered_models"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_model_versions_run_id_runs"),
    )
    op.create_index("ix_model_versions_run", "model_versions", ["run_id"])
    op.create_table(
        "model_aliases",
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("alias", sa.String(255), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("model_id", "alias", name="pk_model_aliases"),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"],
                                name="fk_model_aliases_model_id_registered_models"),
    )


def downgrade() -> None:
    for table in ("model_aliases", "model_versions", "registered_models", "artifacts", "run_datasets",
                  "datasets", "latest_metrics", "metric_chunks", "metrics", "tags", "params", "runs", "experiments"):
        op.drop_table(table)
