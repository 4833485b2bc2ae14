"""The tables of the SQL store, as SQLAlchemy Core metadata.

The database itself is created and upgraded by the Alembic scripts in
``migrations/versions``; a test checks that they produce exactly these tables.
JSON documents are kept in TEXT columns (portable across SQLite and PostgreSQL);
times are float seconds since the epoch.
"""

from __future__ import annotations

from sqlalchemy import (BigInteger, Column, Float, ForeignKey, Index, Integer, LargeBinary, MetaData, String, Table,
                        Text, UniqueConstraint, text)

# Deterministic constraint names, so migrations can refer to them on every database.
metadata = MetaData(naming_convention={
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
})

# SQLite only makes INTEGER PRIMARY KEY an alias of the rowid (cheap appends).
_BigId = BigInteger().with_variant(Integer(), "sqlite")

experiments = Table(
    "experiments", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text),
    Column("tags", Text),
    Column("created_at", Float, nullable=False),
)

runs = Table(
    "runs", metadata,
    Column("id", String(36), primary_key=True),
    Column("experiment_id", String(36), ForeignKey("experiments.id"), nullable=False),
    Column("name", String(255)),
    Column("parent_run_id", String(36), ForeignKey("runs.id")),
    Column("status", String(16), nullable=False),
    Column("start_time", Float, nullable=False),
    Column("end_time", Float),
    Column("source", Text),
    Column("gpu", Text),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
    Index("ix_runs_status", "status"),
    Index("ix_runs_parent", "parent_run_id"),
    Index("ix_runs_start", "start_time"),
)

params = Table(
    "params", metadata,
    Column("run_id", String(36), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
    # the value as a number when it is one, so "params.lr < 0.01" compares numbers
    Column("value_num", Float),
    Index("ix_params_key_num", "key", "value_num"),
)

tags = Table(
    "tags", metadata,
    Column("run_id", String(36), ForeignKey("runs.id"), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Text, nullable=False),
)

# Metric history, packed per flush and (run, key) (no foreign key: appends stay cheap): little-endian int64 steps, float64 values and
# timestamps, each chunk sorted by step. Reading a million-point history is then a few rows.
metric_chunks = Table(
    "metric_chunks", metadata,
    Column("id", _BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), nullable=False),
    Column("key", String(255), nullable=False),
    Column("count", Integer, nullable=False),
    Column("first_step", BigInteger, nullable=False),
    Column("last_step", BigInteger, nullable=False),
    Column("steps", LargeBinary, nullable=False),
    Column("values", LargeBinary, nullable=False),
    Column("timestamps", LargeBinary, nullable=False),
    Index("ix_metric_chunks_run_key", "run_id", "key", "id"),
)

# The latest value (highest step, then newest) of each (run, key): what search and compare read.
latest_metrics = Table(
    "latest_metrics", metadata,
    Column("run_id", String(36), primary_key=True),
    Column("key", String(255), primary_key=True),
    Column("value", Float),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", Float, nullable=False),
    Index("ix_latest_metrics_key_value", "key", "value"),
)

datasets = Table(
    "datasets", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(16), nullable=False),
    Column("source", Text),
    Column("schema", Text),
    Column("profile", Text),
    Column("tags", Text),
    Column("created_at", Float, nullable=False),
    # sha256 of (name, digest) or (name, source): what makes two logs the same dataset; NULL = never shared
    Column("dedup_key", String(64), unique=True),
    Index("ix_datasets_name", "name"),
    Index("ix_datasets_digest", "digest"),
)

run_datasets = Table(
    "run_datasets", metadata,
    Column("run_id", String(36), ForeignKey("runs.id"), primary_key=True),
    Column("dataset_id", String(36), ForeignKey("datasets.id"), primary_key=True),
    Column("context", String(32), primary_key=True),
    Column("position", Integer, nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_run_datasets_dataset", "dataset_id"),
)

artifacts = Table(
    "artifacts", metadata,
    Column("run_id", String(36), ForeignKey("runs.id"), primary_key=True),
    Column("path", String(1024), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("created_at", Float, nullable=False),
)

registered_models = Table(
    "registered_models", metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("description", Text),
    Column("tags", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

model_versions = Table(
    "model_versions", metadata,
    Column("id", String(36), primary_key=True),
    Column("model_id", String(36), ForeignKey("registered_models.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("run_id", String(36), ForeignKey("runs.id")),
    Column("stage", String(16), nullable=False),
    Column("source", Text),
    Column("framework", String(64)),
    Column("description", Text),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    UniqueConstraint("model_id", "version", name="uq_model_versions_model_version"),
    Index("ix_model_versions_run", "run_id"),
)

model_aliases = Table(
    "model_aliases", metadata,
    Column("model_id", String(36), ForeignKey("registered_models.id"), primary_key=True),
    Column("alias", String(255), primary_key=True),
    Column("version", Integer, nullable=False),
)


# -- the richer model registry and tagged artifact sets (issue 12, migration 0003m) --------------------------------
# Kept apart from the tables above so that other changes to them merge cleanly.

for _column in (
    Column("owner", String(255)),
    # one of models/_rules.py's MODEL_CATEGORIES, or NULL
    Column("category", String(64)),
    # LIVE or ARCHIVED (the model as a whole; a version's state follows its stage)
    Column("state", String(16), nullable=False, server_default=text("'LIVE'")),
    # the version "latest" points at when set_latest_version pinned one; NULL: the newest version
    Column("latest_version", Integer),
    # the highest version number ever issued: numbers (and the automatic names _v<n>) are never reused
    Column("last_version", Integer, nullable=False, server_default=text("0")),
    # typed metadata: a JSON object of bool / int / float / str
    Column("properties", Text),
):
    registered_models.append_column(_column)

for _column in (
    # the version's name: given ("1.0.0", "v1.0") or automatic ("_v<number>"); unique per model
    Column("name", String(255), nullable=False),
    Column("uri", Text),
    Column("model_format_name", String(255)),
    Column("model_format_version", String(255)),
    Column("storage_key", String(255)),
    Column("storage_path", Text),
    Column("author", String(255)),
    Column("properties", Text),
):
    model_versions.append_column(_column)
model_versions.append_constraint(UniqueConstraint("model_id", "name", name="uq_model_versions_model_name"))

# A tag names one run: the run whose artifacts ``podstack.artifacts.upload(..., tag=...)`` stored (seed 001).
artifact_tags = Table(
    "artifact_tags", metadata,
    Column("name", String(255), primary_key=True),
    Column("run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("created_at", Float, nullable=False),
    Index("ix_artifact_tags_run", "run_id"),
)
