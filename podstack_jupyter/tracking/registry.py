"""``podstack.registry``: experiment tracking and the model registry (the API of the Podstack SDK).

::

    from podstack import registry

    registry.set_experiment("sentiment-analysis")
    with registry.start_run("bert-finetune-v3") as run:
        run.log_dataset("imdb-train", path="data/train.csv", df=train_df, context="training")
        registry.log_params({"lr": 2e-5, "epochs": 3})
        for epoch in range(3):
            registry.log_metrics({"loss": loss, "accuracy": acc}, step=epoch)
        registry.log_model(model, artifact_path="model")

    registry.register_model("sentiment-bert", run_id=run.id)          # -> version 1, 2, 3...
    registry.set_model_stage("sentiment-bert", version=1, stage="production")
    lineage = registry.get_model_lineage(registry.get_model("sentiment-bert").id)
    model = registry.load_model("sentiment-bert", stage="production")

Records live in the store of ``podstack.tracking.store.current_store()`` (a SQLite
file under the podstack home unless configured otherwise); artifact files in the
content-addressed artifact store. Metrics are buffered and written in batches by a
background thread: ``log_metrics`` costs microseconds, and everything logged is
written by the time a run ends (or ``flush()`` returns).
"""

from __future__ import annotations

import atexit
import os
import posixpath
import tempfile
import time
import uuid
from pathlib import Path

from ..errors import (ArtifactNotFoundError, ExperimentNotFoundError, InvalidArgumentError, ModelNotFoundError,
                      PodstackError, RunNotFoundError)
from ..compute import hooks as _hooks
from . import datasets as _datasets
from ._entities import Dataset, Experiment, MetricHistory, MetricPoint, ModelLineage, ModelVersion, RegisteredModel, iso
from ._search import dict_clauses, make_clause, parse_filter, parse_order_by
from .relay import notebook_context
from .runs import Run, active_runs, clean_metrics, metric_buffer
from .store import MODEL_STAGES, RUN_STATUSES, current_store, in_gpu_session, reset_store

__all__ = [
    "init", "flush",
    "set_experiment", "get_experiment", "get_experiment_by_name", "list_experiments",
    "start_run", "end_run", "active_run", "get_run",
    "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "delete_tag",
    "get_metric_history", "compare_runs", "search_runs",
    "log_dataset", "get_run_datasets", "get_model_lineage",
    "log_artifact", "list_artifacts", "download_artifact", "log_model", "load_model",
    "register_model", "set_model_stage", "set_model_alias", "delete_model_alias", "get_model",
    "get_model_version", "list_models",
    "Run", "Experiment", "Dataset", "MetricPoint", "MetricHistory", "RegisteredModel", "ModelVersion",
    "RUN_STATUSES", "MODEL_STAGES",
]

DEFAULT_EXPERIMENT = "Default"
_PROGRESS_BYTES = 50 * 1024 * 1024

_experiment_name: str | None = None          # set_experiment()'s choice
_experiment_cache: tuple | None = None        # (store, Experiment) it resolved to
_known_runs: set = set()                      # run ids checked to exist (so log_* by id stays cheap)


def _store():
    return current_store()


metric_buffer.store_for = _store
_hooks.add_cell_context("tracking", notebook_context)  # a %%gpu cell logs into the notebook's active run
in_gpu_session()  # inside a GPU session's kernel: log through the session to the notebook's store


def _reset_store() -> None:
    """Write buffered metrics, then forget the opened store (``podstack.init`` calls this)."""
    global _experiment_cache
    try:
        metric_buffer.flush()
    except PodstackError:
        pass  # the points stay queued and go to the next store
    reset_store()
    _experiment_cache = None
    _known_runs.clear()


def init(api_key: str | None = None, project_id: str | None = None, api_url: str | None = None,
         registry_url: str | None = None, **settings):
    """Configure podstack (same as ``podstack.init``); returns the resolved settings.

    ``registry.init(api_key=..., project_id=...)``. Other keyword arguments are
    settings fields (``home``, ``tracking_uri``, ``artifact_root``...).
    """
    import podstack_jupyter

    return podstack_jupyter.init(api_key=api_key, project_id=project_id, api_url=api_url,
                                 registry_url=registry_url, **settings)


def flush() -> None:
    """Write every buffered metric point to the store now (raises if the store refuses them)."""
    metric_buffer.flush()


def _new_id() -> str:
    return str(uuid.uuid4())


def _check_name(what: str, name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidArgumentError(f"{what} must be a non-empty string, got {name!r}")
    if len(name) > 255:
        raise InvalidArgumentError(f"{what} is longer than 255 characters: {name[:40]!r}...")
    return name


# -- experiments -------------------------------------------------------------------------------
def set_experiment(name: str) -> Experiment:
    """Make ``name`` the experiment new runs go into (created if it does not exist). Returns it."""
    global _experiment_name, _experiment_cache
    experiment = _ensure_experiment(name)
    _experiment_name = name
    _experiment_cache = (_store(), experiment)
    return experiment


def _ensure_experiment(name: str) -> Experiment:
    _check_name("experiment name", name)
    return Experiment.from_record(_store().ensure_experiment(_new_id(), name, time.time()))


def _current_experiment() -> Experiment:
    global _experiment_cache
    store = _store()
    if _experiment_cache is not None and _experiment_cache[0] is store:
        return _experiment_cache[1]
    name = _experiment_name or DEFAULT_EXPERIMENT
    experiment = Experiment.from_record(store.ensure_experiment(_new_id(), name, time.time()))
    _experiment_cache = (store, experiment)
    return experiment


def _set_current_experiment(state) -> tuple:
    """Swap the current experiment choice; returns the previous one (for ``podstack.experiment``)."""
    global _experiment_name, _experiment_cache
    previous = (_experiment_name, _experiment_cache)
    _experiment_name, _experiment_cache = state
    return previous


def get_experiment(experiment_id: str) -> Experiment:
    """The experiment with this id (``ExperimentNotFoundError`` if none)."""
    record = _store().get_experiment(experiment_id)
    if record is None:
        raise ExperimentNotFoundError(f"no experiment with id {experiment_id!r}; "
                                      "registry.list_experiments() shows them")
    return Experiment.from_record(record)


def get_experiment_by_name(name: str) -> Experiment:
    """The experiment called ``name`` (``ExperimentNotFoundError`` if none)."""
    record = _store().get_experiment_by_name(name)
    if record is None:
        raise ExperimentNotFoundError(f"no experiment named {name!r}; registry.set_experiment({name!r}) creates it")
    return Experiment.from_record(record)


def list_experiments() -> list[Experiment]:
    """Every experiment, oldest first."""
    return [Experiment.from_record(r) for r in _store().list_experiments()]


# -- runs --------------------------------------------------------------------------------------
def _fetch_run(run_id: str) -> dict:
    if not isinstance(run_id, str) or not run_id:
        raise InvalidArgumentError(f"run_id must be a run id string, got {run_id!r}")
    record = _store().get_run(run_id)
    if record is None:
        raise RunNotFoundError(f"no run with id {run_id!r}")
    return record


def start_run(name: str | None = None, nested: bool = False, tags: dict | None = None, *,
              experiment_id: str | None = None, run_id: str | None = None, source: str | None = None,
              gpu: dict | None = None) -> Run:
    """Start a run and make it the active one; returns the :class:`Run` (also a context manager).

    ``with registry.start_run("v1") as run:`` ends the run when the block ends: ``completed``,
    ``failed`` on an exception, ``killed`` on KeyboardInterrupt. Without ``with``, end it with
    ``registry.end_run()``.

    While a run is active, starting another needs ``nested=True``: the new run is its child
    (``parent_run_id``) in the same experiment. ``experiment_id`` overrides the current
    experiment (``set_experiment``, else ``Default``); ``run_id`` resumes an existing run
    (status back to ``running``); ``source`` is code text to keep with the run.
    """
    if name is not None:
        _check_name("run name", name)
    if tags is not None and not isinstance(tags, dict):
        raise InvalidArgumentError(f"start_run: tags must be a dict, got {type(tags).__name__}")
    active = active_runs.top()
    if active is not None and not nested:
        raise InvalidArgumentError(
            f"run {active.name!r} ({active.id}) is already active. End it first (registry.end_run(), or leave "
            "its `with` block), or pass nested=True to start a child run inside it.")
    store = _store()
    if run_id is not None:
        if active_runs.find(run_id) is not None:
            raise InvalidArgumentError(f"run {run_id!r} is already active")
        record = _fetch_run(run_id)
        fields = {"status": "running", "end_time": None}
        if name is not None:
            fields["name"] = name
        store.update_run(run_id, fields)
        if tags:
            store.set_tags(run_id, {str(k): str(v) for k, v in tags.items()})
        run = Run(_fetch_run(run_id) if tags or name else {**record, **fields})
    else:
        parent = active if nested else None
        if experiment_id is not None:
            experiment_id = get_experiment(experiment_id).id
        elif parent is not None:
            experiment_id = parent.experiment_id
        else:
            experiment_id = _current_experiment().id
        new_id = _new_id()
        record = {"id": new_id, "experiment_id": experiment_id, "name": name or f"run-{new_id[:8]}",
                  "parent_run_id": parent.id if parent is not None else None, "status": "running",
                  "start_time": time.time(), "end_time": None, "source": source, "gpu": gpu,
                  "tags": {str(k): str(v) for k, v in (tags or {}).items()}}
        store.create_run(record)
        run = Run(record)
    _known_runs.add(run.id)
    active_runs.push(run)
    return run


def active_run() -> Run | None:
    """The innermost active run, or ``None``."""
    return active_runs.top()


def end_run(status: str = "completed", *, run_id: str | None = None) -> None:
    """End the active run (or ``run_id``, and any run nested in it) with ``status``:
    ``completed`` (default), ``failed`` or ``killed``. Buffered metrics are written first.
    Without an active run and without ``run_id`` this does nothing."""
    if status not in RUN_STATUSES or status == "running":
        raise InvalidArgumentError(f"end_run: status {status!r} is not one of {list(RUN_STATUSES[1:])}")
    if run_id is None:
        top = active_runs.top()
        if top is None:
            return
        run_id = top.id
    ended = active_runs.pop_through(run_id)
    store = _store()
    try:
        metric_buffer.flush()
    finally:
        now = time.time()
        if not ended:  # not active here: just record the status
            _fetch_run(run_id)
            store.update_run(run_id, {"status": status, "end_time": now})
        for run in ended:
            store.update_run(run.id, {"status": status, "end_time": now})
            metric_buffer.forget_run(run.id)
            run.status, run._end = status, now
            record = store.get_run(run.id)
            if record is not None:
                run._apply(record)


def get_run(run_id: str) -> Run:
    """The run with this id, with its params, tags and latest metrics (``RunNotFoundError`` if none)."""
    metric_buffer.flush()
    return Run(_fetch_run(run_id))


def _target_run(run_id: str | None, what: str) -> str:
    if run_id is None:
        run = active_runs.top()
        if run is None:
            raise InvalidArgumentError(f"{what}: no active run. Start one with registry.start_run() "
                                       "(or podstack.run / %%track), or pass run_id=")
        return run.id
    if run_id not in _known_runs:
        _fetch_run(run_id)
        _known_runs.add(run_id)
    return run_id


def _text(value) -> str:
    return value if isinstance(value, str) else str(value)


def _clean_pairs(what: str, pairs) -> dict:
    if not isinstance(pairs, dict):
        raise InvalidArgumentError(f"{what} takes a dict of name -> value, got {type(pairs).__name__}")
    clean = {}
    for key, value in pairs.items():
        if not isinstance(key, str) or not key or len(key) > 255:
            raise InvalidArgumentError(f"{what}: names are non-empty strings of at most 255 characters, got {key!r}")
        clean[key] = _text(value)
    return clean


def log_params(params: dict, *, run_id: str | None = None) -> None:
    """Record hyperparameters of the active run (values kept as text; numbers compare as numbers in
    ``search_runs``). A param cannot change once logged: that is an ``InvalidArgumentError``."""
    target = _target_run(run_id, "log_params")
    clean = _clean_pairs("log_params", params)
    _store().log_params(target, clean)
    live = active_runs.find(target)
    if live is not None:
        live.params.update(clean)


def log_param(key: str, value, *, run_id: str | None = None) -> None:
    """Record one hyperparameter (see ``log_params``)."""
    log_params({key: value}, run_id=run_id)


def log_metrics(metrics: dict, step: int | None = None, *, run_id: str | None = None) -> None:
    """Log metric values for the active run at ``step``.

    Without ``step``, each metric's points are numbered 0, 1, 2... in logging order. Values
    are numbers (Python, numpy or 0-d tensor scalars). The points are buffered: this returns in
    microseconds and they are written in the background, and before the run ends.
    """
    if run_id is None:
        run = active_runs.top()
        if run is None:
            _target_run(None, "log_metrics")
        run_id = run.id
    else:
        run_id = _target_run(run_id, "log_metrics")
        run = active_runs.find(run_id)
    clean = clean_metrics(metrics)
    if step is not None and type(step) is not int:
        try:
            step = int(step.__index__())
        except AttributeError:
            raise InvalidArgumentError(f"log_metrics: step must be an integer, got {step!r}") from None
    metric_buffer.add(run_id, clean, step, time.time())
    if run is not None:
        run.metrics.update(clean)


def log_metric(key: str, value, step: int | None = None, *, run_id: str | None = None) -> None:
    """Log one metric value (see ``log_metrics``)."""
    log_metrics({key: value}, step=step, run_id=run_id)


def set_tags(tags: dict, *, run_id: str | None = None) -> None:
    """Set tags (text) on the active run; a tag set again takes the new value."""
    target = _target_run(run_id, "set_tags")
    clean = _clean_pairs("set_tags", tags)
    _store().set_tags(target, clean)
    live = active_runs.find(target)
    if live is not None:
        live.tags.update(clean)


def set_tag(key: str, value, *, run_id: str | None = None) -> None:
    """Set one tag on the active run."""
    set_tags({key: value}, run_id=run_id)


def delete_tag(key: str, *, run_id: str | None = None) -> None:
    """Remove a tag from the active run (or ``run_id``)."""
    target = _target_run(run_id, "delete_tag")
    _store().delete_tag(target, key)
    live = active_runs.find(target)
    if live is not None:
        live.tags.pop(key, None)


def get_metric_history(run_id: str, key: str) -> MetricHistory:
    """Every point of metric ``key`` of a run, ordered by step: a sequence of points with
    ``.step``, ``.value``, ``.timestamp`` (see :class:`MetricHistory`)."""
    metric_buffer.flush()
    if run_id not in _known_runs:
        _fetch_run(run_id)
        _known_runs.add(run_id)
    return MetricHistory.from_packed(run_id, key, _store().get_metric_history(run_id, key))


def _runs_by_id(run_ids) -> list[dict]:
    if isinstance(run_ids, str) or not isinstance(run_ids, (list, tuple)):
        raise InvalidArgumentError(f"run_ids must be a list of run ids, got {run_ids!r}")
    records = _store().get_runs(list(run_ids))
    missing = [r for r in run_ids if r not in {x["id"] for x in records}]
    if missing:
        raise RunNotFoundError(f"no run with id {missing[0]!r}" + (f" (and {len(missing) - 1} more)"
                                                                    if len(missing) > 1 else ""))
    return records


def _to_pandas(rows: list[dict]):
    try:
        import pandas as pd
    except ImportError:
        raise InvalidArgumentError('output="pandas" needs pandas: pip install pandas') from None
    flat = []
    for row in rows:
        item = {k: v for k, v in row.items() if k not in ("params", "metrics", "tags")}
        for group in ("metrics", "params", "tags"):
            item.update({f"{group}.{k}": v for k, v in (row.get(group) or {}).items()})
        flat.append(item)
    return pd.DataFrame(flat)


def _check_output(output):
    if output not in ("list", "pandas"):
        raise InvalidArgumentError(f'output must be "list" or "pandas", got {output!r}')


def compare_runs(run_ids: list, metric_keys: list | None = None, output: str = "list"):
    """Side by side: for each run (in the order given) its ``run_id``, ``name``, ``status``,
    ``params`` and the latest value of each metric in ``metric_keys`` (all metrics when ``None``;
    ``None`` where a run lacks one). ``output="pandas"`` gives a DataFrame with ``metrics.<key>``
    and ``params.<key>`` columns."""
    _check_output(output)
    if metric_keys is not None and (isinstance(metric_keys, str) or not all(isinstance(k, str) for k in metric_keys)):
        raise InvalidArgumentError(f"metric_keys must be a list of metric names, got {metric_keys!r}")
    metric_buffer.flush()
    records = {r["id"]: r for r in _runs_by_id(run_ids)}
    rows = []
    for run_id in run_ids:
        r = records[run_id]
        keys = metric_keys if metric_keys is not None else sorted(r["metrics"])
        rows.append({"run_id": run_id, "name": r["name"], "status": r["status"], "experiment_id": r["experiment_id"],
                     "params": dict(r["params"]), "metrics": {k: r["metrics"].get(k) for k in keys}})
    return _to_pandas(rows) if output == "pandas" else rows


def search_runs(experiment_id=None, status=None, tags: dict | None = None, params: dict | None = None,
                metrics: dict | None = None, filter: str | None = None, order_by=None, max_results: int = 1000,
                output: str = "list", *, parent_run_id: str | None = None):
    """Runs matching every condition given, newest first unless ``order_by`` says otherwise.

    * ``experiment_id``: an id (or a list of ids, or an :class:`Experiment`).
    * ``status``: ``"running"``, ``"completed"``, ``"failed"``, ``"killed"`` (or a list).
    * ``tags`` / ``params``: ``{"key": value}`` equality, or ``{"key": (op, value)}``.
    * ``metrics``: on each run's latest value: ``{"accuracy": (">", 0.9)}``, ``{"loss": "< 0.5"}``,
      ``{"loss": [(">", 0.1), ("<", 0.5)]}`` or ``{"epoch": 3}`` (equality).
    * ``filter``: the same as text, ``"metrics.accuracy > 0.9 and params.optimizer = 'adam'"``
      (see :mod:`podstack_jupyter.tracking._search` for the grammar: ``= != < <= > >= LIKE
      ILIKE IN NOT IN``, ``datasets.name = 'imdb'``, ``start_time >= '2025-01-01'``...).
    * ``order_by``: ``"metrics.accuracy DESC"``, ``"start_time"``, ``"params.lr"``, or a list.
    * ``max_results``: at most this many runs (default 1000).
    * ``output``: ``"list"`` of :class:`Run`, or ``"pandas"`` (a DataFrame, one row per run with
      ``metrics.*``, ``params.*``, ``tags.*`` columns).
    """
    _check_output(output)
    if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
        raise InvalidArgumentError(f"max_results must be a positive integer, got {max_results!r}")
    experiment_ids = None
    if experiment_id is not None:
        items = experiment_id if isinstance(experiment_id, (list, tuple)) else [experiment_id]
        experiment_ids = [e.id if isinstance(e, Experiment) else e for e in items]
        if not all(isinstance(e, str) for e in experiment_ids):
            raise InvalidArgumentError(f"experiment_id must be an id string or a list of them, got {experiment_id!r}")
    statuses = None
    if status is not None:
        statuses = [status] if isinstance(status, str) else list(status)
        bad = [s for s in statuses if s not in RUN_STATUSES]
        if bad:
            raise InvalidArgumentError(f"status {bad[0]!r} is not one of {list(RUN_STATUSES)}")
    clauses = dict_clauses("tag", tags) + dict_clauses("param", params) + dict_clauses("metric", metrics)
    if filter:
        clauses += parse_filter(filter)
    if parent_run_id is not None:
        clauses.append(make_clause("attribute", "parent_run_id", "=", parent_run_id))
    query = {"experiment_ids": experiment_ids, "statuses": statuses, "clauses": clauses,
             "order_by": parse_order_by(order_by), "max_results": max_results}
    metric_buffer.flush()
    runs = [Run(r) for r in _store().search_runs(query)]
    return _to_pandas([r.to_dict() for r in runs]) if output == "pandas" else runs


# -- datasets and lineage ----------------------------------------------------------------------
def log_dataset(name: str, path=None, df=None, context: str = "training", digest: str | None = None,
                source_type: str | None = None, tags: dict | None = None, *, run_id: str | None = None) -> Dataset:
    """Record a dataset and link it to the active run (or ``run_id``); returns the :class:`Dataset`.

    ``path``: a local file or folder (its SHA-256 ``digest`` is computed when at most 500 MB)
    or a URI (``s3://``, ``gcs://``, ``https://``). ``df``: a pandas DataFrame, from which
    ``schema`` (column -> dtype) and ``profile`` (``num_rows``, ``num_features``) are
    computed; pass both to get the file's digest and the schema. ``context``: ``"training"``
    (default), ``"validation"`` or ``"test"``. ``source_type``: ``"local"`` unless ``path`` is a
    URI (``s3``, ``gcs``, ``url``). The same data logged again (same name and digest, or same name
    and URI when there is no digest) is the same record, whichever run logs it. Without an
    active run the dataset is recorded at project level only.
    """
    record = _datasets.describe(name, path, df, context, digest, source_type, tags)
    target = None
    if run_id is not None or active_runs.top() is not None:
        target = _target_run(run_id, "log_dataset")
    now = time.time()
    stored = _store().log_dataset(target, {**record, "id": _new_id(), "created_at": now}, context, now)
    return Dataset.from_record({**stored, "context": context if target else None})


def get_run_datasets(run_id: str) -> list[Dataset]:
    """The datasets logged to a run, in the order they were logged (each with its ``context``)."""
    _fetch_run(run_id)
    return [Dataset.from_record(r) for r in _store().get_run_datasets(run_id)]


def _model_record(name_or_id: str, by_id_first: bool = False) -> dict:
    if not isinstance(name_or_id, str) or not name_or_id:
        raise InvalidArgumentError(f"a model name or id is a non-empty string, got {name_or_id!r}")
    store = _store()
    lookups = (("model_id", "name") if by_id_first else ("name", "model_id"))
    for field in lookups:
        record = store.get_registered_model(**{field: name_or_id})
        if record is not None:
            return record
    names = [m["name"] for m in store.list_registered_models()]
    hint = f"registered models: {names[:20]}" if names else "no model is registered yet"
    raise ModelNotFoundError(f"no registered model {name_or_id!r}; {hint}")


def get_model_lineage(model_id: str) -> dict:
    """Which datasets trained each version of a model, via which run::

        {"model_id": str,
         "versions": [{"version": int, "stage": str, "run_id": str, "run_name": str,
                       "datasets": [{"id", "name", "digest", "source_type", "source",
                                     "schema", "profile", "tags", "created_at"}, ...]}, ...]}

    Newest version first; ``run_id``/``run_name`` are ``""`` for a version without a run.
    ``model_id`` is the model's id (its name is accepted too).
    """
    metric_buffer.flush()
    record = _model_record(model_id, by_id_first=True)
    lineage = _store().get_model_lineage(record["id"])
    for version in lineage["versions"]:
        version["datasets"] = [Dataset.from_record(d).to_dict() for d in version["datasets"]]
    return ModelLineage(lineage)


# -- model registry ----------------------------------------------------------------------------
def register_model(name: str, run_id: str | None = None, description: str | None = None, *,
                   artifact_path: str | None = None) -> ModelVersion:
    """Register the model a run produced as the next version (1, 2, 3...) of ``name``, in stage
    ``development``. ``run_id`` defaults to the active run. The version points at the model the
    run logged with ``log_model`` (or at ``artifact_path`` inside the run's artifacts)."""
    _check_name("model name", name)
    if run_id is None and active_runs.top() is not None:
        run_id = active_runs.top().id
    framework = source = None
    if run_id is not None:
        metric_buffer.flush()
        params = _fetch_run(run_id)["params"]
        framework = params.get("podstack.model.framework")
        source = artifact_path or params.get("podstack.model.artifact_path") or ("model" if framework else None)
    elif artifact_path is not None:
        raise InvalidArgumentError("register_model: artifact_path= needs run_id= (or an active run)")
    store = _store()
    now = time.time()
    model = store.ensure_registered_model(_new_id(), name, now, description)
    version = store.create_model_version({"id": _new_id(), "model_id": model["id"], "run_id": run_id,
                                          "stage": "development", "source": source, "framework": framework,
                                          "description": description, "created_at": now})
    return ModelVersion.from_record(version, name)


def _version_record(model: dict, version) -> dict:
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidArgumentError(f"version must be an integer (1, 2, 3...), got {version!r}")
    found = next((v for v in model["versions"] if v["version"] == version), None)
    if found is None:
        have = [v["version"] for v in model["versions"]]
        raise ModelNotFoundError(f"model {model['name']!r} has no version {version}; versions: {have}")
    return found


def set_model_stage(name: str, version: int, stage: str, archive_existing: bool = False) -> ModelVersion:
    """Move a version to ``stage``: ``development``, ``staging``, ``production`` or ``archived``.
    With ``archive_existing=True`` the versions already in that stage move to ``archived``."""
    if stage not in MODEL_STAGES:
        raise InvalidArgumentError(f"stage {stage!r} is not valid; valid stages: {list(MODEL_STAGES)}")
    model = _model_record(name)
    _version_record(model, version)
    _store().update_model_version(model["id"], version, {"stage": stage, "archive_others_in_stage": archive_existing},
                                  time.time())
    return get_model_version(model["name"], version=version)


def set_model_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` (e.g. ``"champion"``) at a version; ``load_model(name, alias=...)`` follows it."""
    _check_name("alias", alias)
    if alias.isdigit():
        raise InvalidArgumentError(f"alias {alias!r} looks like a version number; use a word like 'champion'")
    model = _model_record(name)
    _version_record(model, version)
    _store().set_model_alias(model["id"], alias, version)


def delete_model_alias(name: str, alias: str) -> None:
    """Remove an alias of a model."""
    model = _model_record(name)
    if alias not in model["aliases"]:
        raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}; aliases: {sorted(model['aliases'])}")
    _store().delete_model_alias(model["id"], alias)


def get_model(name: str) -> RegisteredModel:
    """A registered model with ``.id``, ``.name``, ``.versions``, ``.aliases``, ``.latest_version``."""
    return RegisteredModel.from_record(_model_record(name))


def list_models() -> list[RegisteredModel]:
    """Every registered model, by name."""
    return [RegisteredModel.from_record(r) for r in _store().list_registered_models()]


def get_model_version(name: str, version: int | None = None, stage: str | None = None,
                      alias: str | None = None) -> ModelVersion:
    """One version of a model: by number, by ``stage`` (the newest version in it), by ``alias``,
    or the latest version when none is given."""
    if sum(x is not None for x in (version, stage, alias)) > 1:
        raise InvalidArgumentError("give only one of version=, stage= and alias=")
    model = RegisteredModel.from_record(_model_record(name))
    if version is not None:
        _version_record(_model_record(name), version)
        return model.get_version(version)
    if stage is not None:
        if stage not in MODEL_STAGES:
            raise InvalidArgumentError(f"stage {stage!r} is not valid; valid stages: {list(MODEL_STAGES)}")
        found = [v for v in model.versions if v.stage == stage]
        if not found:
            stages = {v.version: v.stage for v in model.versions}
            raise ModelNotFoundError(f"model {name!r} has no version in stage {stage!r}; stages: {stages}")
        return found[-1]
    if alias is not None:
        if alias not in model.aliases:
            raise ModelNotFoundError(f"model {name!r} has no alias {alias!r}; aliases: {sorted(model.aliases)}")
        return model.get_version(model.aliases[alias])
    if model.latest_version is None:
        raise ModelNotFoundError(f"model {name!r} has no versions yet")
    return model.latest_version


# -- artifacts and models ----------------------------------------------------------------------
def _artifact_store():
    try:
        from ..artifacts import open_store
    except ImportError as exc:
        raise PodstackError(f"the artifact store is not available in this installation: {exc}") from None
    return open_store()


def _clean_artifact_path(path: str, what: str = "artifact_path") -> str:
    if not isinstance(path, str):
        raise InvalidArgumentError(f"{what} must be a string, got {type(path).__name__}")
    text = path.replace("\\", "/")
    normalized = posixpath.normpath(text) if text.strip("/") else ""
    if text.startswith("/") or normalized == ".." or normalized.startswith("../"):
        raise InvalidArgumentError(f"{what} {path!r} must be a relative path inside the run (no leading '/', no '..')")
    return "" if normalized == "." else normalized


def _progress(total: int, description: str):
    if total < _PROGRESS_BYTES:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description)


def log_artifact(local_path, artifact_path: str | None = None, *, run_id: str | None = None) -> list[dict]:
    """Store a file (or every file of a folder) as artifacts of the active run.

    ``artifact_path`` is the path inside the run: for a file it defaults to the file name
    (``log_artifact("curves.png", artifact_path="plots/curves.png")``; a path ending in ``/``
    is a folder the file goes into); for a folder it is the folder the files go under
    (default: the folder's name). Returns the entries logged (``path``, ``size``, ``etag``,
    ``last_modified``).
    """
    target = _target_run(run_id, "log_artifact")
    if not isinstance(local_path, (str, os.PathLike)):
        raise InvalidArgumentError(f"log_artifact: local_path must be a path, got {type(local_path).__name__}")
    source = Path(local_path)
    if not source.exists():
        raise InvalidArgumentError(f"log_artifact: {os.fspath(local_path)!r} does not exist")
    if source.is_file():
        if artifact_path is None:
            destination = source.name
        else:
            folder_like = artifact_path.endswith("/")
            destination = _clean_artifact_path(artifact_path)
            if folder_like or not destination:
                destination = posixpath.join(destination, source.name) if destination else source.name
        files = [(source, destination)]
    else:
        base = _clean_artifact_path(artifact_path if artifact_path is not None else source.name)
        files = [(p, posixpath.join(base, p.relative_to(source).as_posix()) if base else p.relative_to(source).as_posix())
                 for p in sorted(source.rglob("*")) if p.is_file()]
    blobs = _artifact_store()
    total = sum(p.stat().st_size for p, _ in files)
    bar = _progress(total, f"uploading {len(files)} artifact file(s)")
    entries = []
    try:
        for path, destination in files:
            digest, size = blobs.put_file(path)
            entries.append({"path": destination, "digest": digest, "size": int(size), "created_at": time.time()})
            if bar is not None:
                bar.update(size)
    finally:
        if bar is not None:
            bar.close()
    _store().log_artifacts(target, entries)
    return [_artifact_entry(e) for e in entries]


def _artifact_entry(e: dict) -> dict:
    return {"path": e["path"], "size": e["size"], "etag": e["digest"], "last_modified": iso(e["created_at"])}


def list_artifacts(run_id: str, path: str | None = None) -> list[dict]:
    """The artifacts of a run (under ``path`` if given): dicts with ``path``, ``size`` (bytes),
    ``etag`` (SHA-256 of the content) and ``last_modified`` (ISO 8601)."""
    _fetch_run(run_id)
    entries = _store().list_artifacts(run_id)
    if path is not None:
        prefix = _clean_artifact_path(path, "path")
        entries = [e for e in entries if not prefix or e["path"] == prefix or e["path"].startswith(prefix + "/")]
    return [_artifact_entry(e) for e in entries]


def _select_artifacts(run_id: str, artifact_path: str) -> tuple[list[dict], bool]:
    """The entries under ``artifact_path`` and whether it names a single file."""
    wanted = _clean_artifact_path(artifact_path)
    entries = _store().list_artifacts(run_id)
    exact = [e for e in entries if e["path"] == wanted]
    if exact:
        return exact, True
    under = [e for e in entries if not wanted or e["path"].startswith(wanted + "/")]
    if not under:
        shown = sorted({e["path"].split("/")[0] for e in entries})
        raise ArtifactNotFoundError(f"run {run_id} has no artifact {artifact_path!r}; "
                                    f"top-level artifacts: {shown[:20]}")
    return under, False


def _materialize(blobs, entries: list[dict], target_of, description: str) -> None:
    from .datasets import file_digest

    todo = []
    for e in entries:
        target = target_of(e)
        if target.is_file() and target.stat().st_size == e["size"] and file_digest(target, limit=1 << 62) == e["digest"]:
            continue  # already here with the right content
        todo.append((e, target))
    bar = _progress(sum(e["size"] for e, _ in todo), description)
    try:
        for e, target in todo:
            target.parent.mkdir(parents=True, exist_ok=True)
            blobs.get_file(e["digest"], target)
            if bar is not None:
                bar.update(e["size"])
    finally:
        if bar is not None:
            bar.close()


def download_artifact(run_id: str, artifact_path: str, local_path=".") -> str:
    """Copy an artifact file, or every file under an artifact folder, into the folder
    ``local_path``; returns the absolute path of the file or folder written there.
    ``ArtifactNotFoundError`` if the run has no such artifact."""
    _fetch_run(run_id)
    entries, single = _select_artifacts(run_id, artifact_path)
    destination = Path(local_path).expanduser().resolve()
    destination.mkdir(parents=True, exist_ok=True)
    blobs = _artifact_store()
    wanted = _clean_artifact_path(artifact_path)
    if single:
        target = destination / posixpath.basename(wanted)
        _materialize(blobs, entries, lambda e: target, f"downloading {wanted}")
        return str(target)
    root = destination / posixpath.basename(wanted) if wanted else destination
    offset = len(wanted) + 1 if wanted else 0
    _materialize(blobs, entries, lambda e: root.joinpath(*e["path"][offset:].split("/")), f"downloading {wanted or 'artifacts'}")
    return str(root)


def log_model(model, artifact_path: str = "model", framework: str | None = None, metadata: dict | None = None,
              *, run_id: str | None = None) -> dict:
    """Serialize ``model`` and store its files as artifacts of the active run under ``artifact_path``.

    ``framework``: ``"pytorch"``, ``"tensorflow"``, ``"sklearn"``, ``"huggingface"`` or ``"pickle"``
    (auto-detected when ``None``); it is recorded as the run param ``podstack.model.framework``,
    and ``metadata`` as run params. Returns ``{"run_id", "artifact_path", "framework", "files"}``.
    ``register_model(name, run_id=run.id)`` then makes it a model version.
    """
    target = _target_run(run_id, "log_model")
    destination = _clean_artifact_path(artifact_path)
    if not destination:
        raise InvalidArgumentError("log_model: artifact_path must name a folder, e.g. 'model'")
    if metadata is not None and not isinstance(metadata, dict):
        raise InvalidArgumentError(f"log_model: metadata must be a dict, got {type(metadata).__name__}")
    from .. import models

    with tempfile.TemporaryDirectory(prefix="podstack-model-") as tmp:
        folder = Path(tmp) / "model"
        folder.mkdir()
        used = models.save_model(model, str(folder), framework=framework)
        files = log_artifact(folder, destination, run_id=target)
    log_params({"podstack.model.framework": used, "podstack.model.artifact_path": destination, **(metadata or {})},
               run_id=target)
    return {"run_id": target, "artifact_path": destination, "framework": used, "files": [f["path"] for f in files]}


def load_model(model_name: str, version: int | None = None, stage: str | None = None, alias: str | None = None,
               framework: str | None = None):
    """Load a registered model: by ``version``, ``stage`` or ``alias`` (one of them; the latest
    version when none). Its files are fetched from the artifact store into a cache under the
    podstack home (files already there with the right digest are kept), then deserialized with
    ``framework`` (default: the one recorded by ``log_model``)."""
    if version is not None and stage is not None:
        raise InvalidArgumentError("load_model: version= and stage= are mutually exclusive; give one")
    chosen = get_model_version(model_name, version=version, stage=stage, alias=alias)
    if not chosen.run_id:
        raise ModelNotFoundError(f"{model_name} v{chosen.version} is not linked to a run, so it has no files to load")
    source = chosen.source or "model"
    try:
        entries, single = _select_artifacts(chosen.run_id, source)
    except ArtifactNotFoundError as exc:
        raise ArtifactNotFoundError(f"{model_name} v{chosen.version}: {exc.message}") from None
    from ..config import settings

    cache = Path(settings().home) / "model-cache" / chosen.model_id / str(chosen.version)
    offset = 0 if single else len(source) + 1
    _materialize(_artifact_store(), entries,
                 lambda e: cache.joinpath(*(posixpath.basename(e["path"]) if single else e["path"][offset:]).split("/")),
                 f"fetching {model_name} v{chosen.version}")
    framework = framework or chosen.framework or _fetch_run(chosen.run_id)["params"].get("podstack.model.framework")
    from .. import models

    return models.load_model_from_dir(str(cache), framework=framework)


@atexit.register
def _end_runs_at_exit():
    # Runs still open when the interpreter exits normally are complete; write what they logged.
    while active_runs.all():  # this process's own runs (not a notebook's run a GPU session logs into)
        try:
            end_run("completed", run_id=active_runs.all()[-1].id)
        except Exception:  # noqa: BLE001 - nothing left to report to at exit
            active_runs.clear()
