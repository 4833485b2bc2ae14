"""The ``Store`` interface: everything the tracking plane persists, in plain JSON-able data.

Every argument and every return value is ``str``/``int``/``float``/``bool``/``None``
or lists/tuples/dicts of those, so a call can be relayed as a message (code
running inside a remote GPU kernel logs through the notebook's store, and the
GPU node needs no route to the database). Ids of new things (experiments,
runs, datasets, models, versions) are uuid4 strings made by the caller, so the
create calls need no reply. Times are float seconds since the epoch (UTC).

Errors: a write that names a run, experiment, model or version that does not exist raises
the matching ``NotFoundError`` (``RunNotFoundError``...) and writes nothing; a store that
cannot do a call (database locked past its wait, unreachable, refusing the data) raises
``StoreError`` and has written nothing. Values are checked by the caller
(:class:`~podstack_jupyter.tracking.TrackingClient`) against the limits of
:mod:`podstack_jupyter.tracking._validate`, which every store must hold.

Records returned (dicts):

experiment
    ``{"id", "name", "description", "tags": {}, "created_at"}``
run
    ``{"id", "experiment_id", "name", "parent_run_id", "status", "start_time",
    "end_time", "source", "gpu": {} | None, "params": {}, "tags": {}, "metrics": {}}``
    (``metrics`` maps each key to its latest value)
dataset
    ``{"id", "name", "digest", "source_type", "source", "schema": {}, "profile": {},
    "tags": {}, "created_at"}`` (plus ``"context"`` when listed for a run)
artifact
    ``{"path", "digest", "size", "created_at"}``
registered model
    ``{"id", "name", "description", "tags": {}, "created_at", "updated_at",
    "versions": [model version...], "aliases": {alias: version}}``, and (issue 12)
    ``"owner", "category", "state"`` (``LIVE``/``ARCHIVED``), ``"latest_version"`` (the
    number ``set_latest_version`` pinned, ``None``: the newest), ``"last_version"`` (the
    highest number ever issued) and ``"properties": {}`` (typed metadata)
model version
    ``{"id", "model_id", "version", "run_id", "stage", "source", "framework",
    "description", "created_at", "updated_at"}``, and (issue 12) ``"name"`` (unique per
    model), ``"uri", "model_format_name", "model_format_version", "storage_key",
    "storage_path", "author"`` and ``"properties": {}`` (typed metadata: bool, int, float, str)
artifact tag
    ``{"name", "run_id", "created_at"}``
"""

from __future__ import annotations

import abc
import itertools

__all__ = ["Store", "RUN_STATUSES", "MODEL_STAGES", "DATASET_CONTEXTS", "SOURCE_TYPES", "MUTABLE_PARAM_PREFIXES"]

RUN_STATUSES = ("running", "completed", "failed", "killed")
#: params under these names may take a new value once logged: podstack's own bookkeeping, and the
#: keys the official Podstack SDK rewrites for its own (where an artifact or a model went)
MUTABLE_PARAM_PREFIXES = ("podstack.", "_artifact.", "_artifact_store", "_model.")
MODEL_STAGES = ("development", "staging", "production", "archived")
DATASET_CONTEXTS = ("training", "validation", "test")
SOURCE_TYPES = ("local", "s3", "gcs", "url")


def series_points(series: list) -> list:
    """Metric series ``[(run_id, key, steps, values, timestamps)]`` as points ``(run_id, key, value, step, timestamp)``."""
    points = []
    for run_id, key, steps, values, stamps in series:
        points += zip(itertools.repeat(run_id), itertools.repeat(key), values, steps, stamps)
    return points


class Store(abc.ABC):
    """Persistence of experiments, runs, metrics, datasets, artifacts index and the model registry."""

    #: whether ``log_metrics`` refuses points of an unknown run itself (``RunNotFoundError``,
    #: nothing written), so that a caller need not look the runs up first
    checks_runs_on_write = False
    #: whether ``end_run_with_series`` writes the points and ends the run in one call (a server:
    #: one request), so that the metric buffer hands a run's last points to its end
    ends_runs_with_series = False

    # -- experiments ---------------------------------------------------------------------------
    @abc.abstractmethod
    def ensure_experiment(self, experiment_id: str, name: str, created_at: float,
                          description: str | None = None, tags: dict | None = None) -> dict:
        """The experiment called ``name``, created with ``experiment_id`` if there is none."""

    @abc.abstractmethod
    def get_experiment(self, experiment_id: str) -> dict | None: ...

    @abc.abstractmethod
    def get_experiment_by_name(self, name: str) -> dict | None: ...

    @abc.abstractmethod
    def list_experiments(self) -> list: ...

    # -- runs ----------------------------------------------------------------------------------
    @abc.abstractmethod
    def create_run(self, run: dict) -> None:
        """Insert a run: ``{"id", "experiment_id", "name", "parent_run_id", "status",
        "start_time", "source", "gpu", "tags"}``."""

    @abc.abstractmethod
    def update_run(self, run_id: str, fields: dict) -> dict | None:
        """Set some of ``status``, ``end_time``, ``name``, ``source``, ``gpu`` of a run. Returns
        the updated run record where the store has it at no cost (a server's answer, PostgreSQL's reply
        in the same round trip), else ``None``."""

    def end_run_with_series(self, run_id: str, fields: dict, series: list) -> dict | None:
        """``log_metric_series(series)``, then ``update_run(run_id, fields)`` (an ended status):
        what ``update_run`` returns. Stores that ``ends_runs_with_series`` do both at once."""
        self.log_metric_series(series)
        return self.update_run(run_id, fields)

    @abc.abstractmethod
    def get_runs(self, run_ids: list) -> list:
        """The runs with these ids (missing ones left out), in the order asked."""

    def get_run(self, run_id: str) -> dict | None:
        found = self.get_runs([run_id])
        return found[0] if found else None

    def has_run(self, run_id: str) -> bool:
        """Whether a run with this id exists (cheaper than ``get_run`` where a store can)."""
        return self.get_run(run_id) is not None

    @abc.abstractmethod
    def search_runs(self, query: dict) -> list:
        """Runs matching ``query``: ``{"experiment_ids": [..] | None, "statuses": [..] | None,
        "clauses": [{"kind", "key", "op", "value"}...], "order_by": [{"kind", "key", "ascending"}...],
        "max_results": int}``. ``kind`` is ``metric``/``param``/``tag``/``attribute``/``dataset``.
        An experiment id the project does not have is an ``ExperimentNotFoundError`` naming it."""

    @abc.abstractmethod
    def log_params(self, run_id: str, params: dict) -> None:
        """Record params (``{key: str}``). A key already logged with another value is an
        ``InvalidArgumentError`` and nothing is written (keys under ``MUTABLE_PARAM_PREFIXES`` may change)."""

    @abc.abstractmethod
    def set_tags(self, run_id: str, tags: dict) -> None: ...

    @abc.abstractmethod
    def delete_tag(self, run_id: str, key: str) -> None: ...

    @abc.abstractmethod
    def log_metrics(self, points: list) -> None:
        """Append metric points ``[run_id, key, value, step, timestamp]`` in one transaction
        and keep each (run, key)'s latest value (highest step, then newest) current."""

    def log_metric_series(self, series: list) -> None:
        """Append metric points given per metric, ``[(run_id, key, steps, values, timestamps)]`` (equal-length
        lists in logging order), in one transaction: the same as ``log_metrics`` with those points, without
        a tuple per point (the metric flusher writes this way). Stores that take columns override it."""
        self.log_metrics(series_points(series))

    @abc.abstractmethod
    def get_metric_history(self, run_id: str, key: str) -> dict:
        """The points of one metric ordered by step, then by logging order, packed:
        ``{"count": n, "encoding": "base64-le", "steps": ..., "values": ..., "timestamps": ...}``
        where each field is the base64 of little-endian int64 (steps) or float64 (values,
        timestamps) arrays. Compact to relay, and a million points decode in milliseconds."""

    # -- datasets ------------------------------------------------------------------------------
    @abc.abstractmethod
    def log_dataset(self, run_id: str | None, dataset: dict, context: str, logged_at: float) -> dict:
        """Store ``dataset`` (or find the record it duplicates: same name and digest, or same
        name and source when there is no digest) and link it to the run. Returns the record."""

    @abc.abstractmethod
    def get_run_datasets(self, run_id: str) -> list:
        """Datasets linked to the run, in the order they were logged, each with ``context``."""

    # -- artifacts index ------------------------------------------------------------------------
    @abc.abstractmethod
    def log_artifacts(self, run_id: str, entries: list) -> None:
        """Record ``[{"path", "digest", "size", "created_at"}...]`` (a path logged again is replaced)."""

    @abc.abstractmethod
    def list_artifacts(self, run_id: str) -> list: ...

    # -- model registry -------------------------------------------------------------------------
    @abc.abstractmethod
    def ensure_registered_model(self, model_id: str, name: str, created_at: float,
                                description: str | None = None) -> dict: ...

    @abc.abstractmethod
    def get_registered_model(self, name: str | None = None, model_id: str | None = None) -> dict | None: ...

    @abc.abstractmethod
    def list_registered_models(self) -> list: ...

    @abc.abstractmethod
    def create_model_version(self, version: dict) -> dict:
        """Add the next version (1, 2, 3...) of ``version["model_id"]``: ``{"id", "model_id", "run_id",
        "stage", "source", "framework", "description", "created_at"}``. Returns it with its number."""

    @abc.abstractmethod
    def update_model_version(self, model_id: str, version: int, fields: dict, updated_at: float) -> None:
        """Set ``stage`` and/or ``description``; with ``fields["archive_others_in_stage"]`` true, other
        versions in the new stage move to ``archived``."""

    @abc.abstractmethod
    def set_model_alias(self, model_id: str, alias: str, version: int) -> None: ...

    @abc.abstractmethod
    def delete_model_alias(self, model_id: str, alias: str) -> None: ...

    @abc.abstractmethod
    def get_model_lineage(self, model_id: str) -> dict | None:
        """``{"model_id", "versions": [{"version", "stage", "run_id", "run_name", "datasets": [...]}]}``,
        newest version first; ``None`` if there is no such model."""

    def artifact_store(self):
        """The :class:`~podstack_jupyter.artifacts.ArtifactStore` that artifact bytes logged into
        this store go through, when the store decides it (a team server's); ``None``: the one the
        settings name."""
        return None

    # -- model registry, richer (issue 12) ------------------------------------------------------
    # create_model_version also takes "name" (None: the automatic "_v<number>"), "uri",
    # "model_format_name", "model_format_version", "storage_key", "storage_path", "author" and
    # "properties"; a name the model already has is a DuplicateError. A new version becomes the
    # model's latest (a pinned latest_version is cleared). update_model_version also sets those
    # fields (not "name").
    @abc.abstractmethod
    def update_registered_model(self, model_id: str, fields: dict, updated_at: float) -> None:
        """Set some of ``description``, ``owner``, ``category``, ``tags`` (dict), ``state``,
        ``latest_version`` (a version number of the model, or ``None``) and ``properties``."""

    @abc.abstractmethod
    def delete_model_version(self, model_id: str, version: int) -> None:
        """Remove a version and the aliases pointing at it (a latest pointer at it is cleared);
        ``ModelNotFoundError`` if there is no such version. The model stays, even with no versions."""

    @abc.abstractmethod
    def delete_registered_model(self, model_id: str) -> None:
        """Remove a model with its versions and aliases (nothing happens if it does not exist)."""

    @abc.abstractmethod
    def page_registered_models(self, order_by: str, ascending: bool, limit: int, after: list | None) -> list:
        """Up to ``limit`` registered models ordered by ``order_by`` (``created_at``, ``updated_at``
        or ``id``; ties by id), starting after the model whose ``[value, id]`` is ``after``."""

    @abc.abstractmethod
    def page_model_versions(self, model_id: str, order_by: str, ascending: bool, limit: int,
                            after: list | None) -> list:
        """Up to ``limit`` versions of a model, ordered and continued as ``page_registered_models``."""

    # -- tagged artifact sets (issue 12) ---------------------------------------------------------
    @abc.abstractmethod
    def create_artifact_tag(self, name: str, run_id: str, created_at: float) -> dict:
        """Bind tag ``name`` to a run; ``DuplicateError`` if the tag exists (it is never moved),
        ``RunNotFoundError`` if the run does not."""

    @abc.abstractmethod
    def get_artifact_tag(self, name: str) -> dict | None: ...

    @abc.abstractmethod
    def list_artifact_tags(self) -> list:
        """Every tag, by name."""

    @abc.abstractmethod
    def delete_artifact_tag(self, name: str) -> bool:
        """Remove a tag (the run and its files stay); whether there was one."""

    def close(self) -> None:
        """Release connections."""
