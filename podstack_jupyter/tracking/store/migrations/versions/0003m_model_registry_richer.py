"""The richer model registry and tagged artifact sets (issue 12).

Registered models get an owner, a category, a state (LIVE / ARCHIVED), a pinned ``latest``
version, the highest version number ever issued (numbers and automatic names are never
reused after a delete) and typed metadata. Model versions get a name (unique per model;
existing versions are named ``_v<number>``, the automatic name), the location and format
of their files (``uri``, ``model_format_name``/``_version``, ``storage_key``/``_path``),
an author and typed metadata. ``artifact_tags`` maps a tag to the run holding its files.

Revision ID: 0003m
Revises: 0002
Create Date: 2026-11-24
"""

import sqlalchemy as sa
from alembic import op

revision = "0003m"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registered_models") as batch:
        batch.add_column(sa.Column("owner", sa.String(255)))
        batch.add_column(sa.Column("category", sa.String(64)))
        batch.add_column(sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'LIVE'")))
        batch.add_column(sa.Column("latest_version", sa.Integer()))
        batch.add_column(sa.Column("last_version", sa.Integer(), nullable=False, server_default=sa.text("0")))
        batch.add_column(sa.Column("properties", sa.Text()))
    op.execute("UPDATE registered_models SET last_version = COALESCE((SELECT MAX(v.version) FROM model_versions v "
               "WHERE v.model_id = registered_models.id), 0)")

    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("name", sa.String(255)))
        for name, kind in (("uri", sa.Text()), ("model_format_name", sa.String(255)),
                           ("model_format_version", sa.String(255)), ("storage_key", sa.String(255)),
                           ("storage_path", sa.Text()), ("author", sa.String(255)), ("properties", sa.Text())):
            batch.add_column(sa.Column(name, kind))
    op.execute("UPDATE model_versions SET name = '_v' || CAST(version AS VARCHAR(20))")
    with op.batch_alter_table("model_versions") as batch:
        batch.alter_column("name", existing_type=sa.String(255), nullable=False)
        batch.create_unique_constraint("uq_model_versions_model_name", ["model_id", "name"])

    op.create_table(
        "artifact_tags",
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("run_id", sa.String(36), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", name="pk_artifact_tags"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifact_tags_run_id_runs"),
    )
    op.create_index("ix_artifact_tags_run", "artifact_tags", ["run_id"])


def downgrade() -> None:
    op.drop_index("ix_artifact_tags_run", table_name="artifact_tags")
    op.drop_table("artifact_tags")
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_constraint("uq_model_versions_model_name", type_="unique")
        for name in ("properties", "author", "storage_path", "storage_key", "model_format_version",
                     "model_format_name", "uri", "name"):
            batch.drop_column(name)
    with op.batch_alter_table("registered_models") as batch:
        for name in ("properties", "last_version", "latest_version", "state", "category", "owner"):
            batch.drop_column(name)
