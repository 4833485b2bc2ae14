"""Projects: every experiment, run, dataset, registered model and artifact tag belongs to one (names
are unique within a project); and the team server's tables: projects, users, memberships, API keys, metric
batches already stored, pending upload URLs, stage transitions, server settings.

What a database held before belongs to the project ``default``.

Revision ID: 0003
Revises: 0003m (the richer model registry; chained after it when both landed)
Create Date: 2026-11-24
"""

import time

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0003m"
branch_labels = None
depends_on = None

_DEFAULT = "default"


def _add_project_column(table: str, unique_name_was: str | None = None, index: tuple | None = None) -> None:
    # added with a default for the rows already there, which is then dropped: every writer names its project
    with op.batch_alter_table(table) as batch:
        batch.add_column(sa.Column("project_id", sa.String(36), nullable=False, server_default=_DEFAULT))
    with op.batch_alter_table(table) as batch:
        batch.alter_column("project_id", server_default=None, existing_type=sa.String(36), existing_nullable=False)
        if unique_name_was:
            batch.drop_constraint(unique_name_was, type_="unique")
            batch.create_unique_constraint(f"uq_{table}_project_id_name", ["project_id", "name"])
        if index:
            batch.create_index(index[0], list(index[1:]))


def upgrade() -> None:
    _add_project_column("experiments", unique_name_was="uq_experiments_name")
    _add_project_column("runs", index=("ix_runs_project_start", "project_id", "start_time"))
    _add_project_column("datasets")
    _add_project_column("registered_models", unique_name_was="uq_registered_models_name")
    # tags (0003m) are named within a project
    _add_project_column("artifact_tags")
    with op.batch_alter_table("artifact_tags") as batch:
        batch.drop_constraint("pk_artifact_tags", type_="primary")
        batch.create_primary_key("pk_artifact_tags", ["project_id", "name"])

    op.create_table(
        "projects",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_projects"),
        sa.UniqueConstraint("name", name="uq_projects_name"),
    )
    op.bulk_insert(sa.table("projects", sa.column("id"), sa.column("name"), sa.column("created_at")),
                   [{"id": _DEFAULT, "name": _DEFAULT, "created_at": time.time()}])
    op.create_table(
        "users",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_users"),
        sa.UniqueConstraint("name", name="uq_users_name"),
    )
    op.create_table(
        "memberships",
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("project_id", "user_id", name="pk_memberships"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_memberships_project_id_projects"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_memberships_user_id_users"),
    )
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("user_id", sa.String(36)),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("last_used_at", sa.Float()),
        sa.Column("revoked_at", sa.Float()),
        sa.PrimaryKeyConstraint("id", name="pk_api_keys"),
        sa.ForeignKeyConstraint(["project_id"], ["projects.id"], name="fk_api_keys_project_id_projects"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name="fk_api_keys_user_id_users"),
    )
    op.create_index("ix_api_keys_project", "api_keys", ["project_id"])
    op.create_table(
        "metric_batches",
        sa.Column("id", sa.String(64), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_metric_batches"),
    )
    op.create_index("ix_metric_batches_created", "metric_batches", ["created_at"])
    op.create_table(
        "pending_uploads",
        sa.Column("key", sa.String(1024), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("path", sa.String(1024), nullable=False),
        sa.Column("expires_at", sa.Float(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_pending_uploads"),
    )
    op.create_index("ix_pending_uploads_run", "pending_uploads", ["run_id", "created_at"])
    op.create_table(
        "stage_transitions",
        sa.Column("id", sa.String(36), nullable=False),
        sa.Column("project_id", sa.String(36), nullable=False),
        sa.Column("model_id", sa.String(36), nullable=False),
        sa.Column("model_version_id", sa.String(36)),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("from_stage", sa.String(16)),
        sa.Column("to_stage", sa.String(16), nullable=False),
        sa.Column("comment", sa.Text()),
        sa.Column("transitioned_by", sa.String(255)),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stage_transitions"),
    )
    op.create_index("ix_stage_transitions_model", "stage_transitions", ["model_id", "created_at"])
    op.create_table(
        "server_settings",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_server_settings"),
    )


def downgrade() -> None:
    for table in ("server_settings", "stage_transitions", "pending_uploads", "metric_batches", "api_keys",
                  "memberships", "users", "projects"):
        op.drop_table(table)
    with op.batch_alter_table("artifact_tags") as batch:
        batch.drop_constraint("pk_artifact_tags", type_="primary")
        batch.create_primary_key("pk_artifact_tags", ["name"])
        batch.drop_column("project_id")
    for table, unique in (("registered_models", "uq_registered_models_name"), ("datasets", None),
                          ("runs", None), ("experiments", "uq_experiments_name")):
        with op.batch_alter_table(table) as batch:
            if unique:
                batch.drop_constraint(f"uq_{table}_project_id_name", type_="unique")
                batch.create_unique_constraint(unique, ["name"])
            if table == "runs":
                batch.drop_index("ix_runs_project_start")
            batch.drop_column("project_id")
