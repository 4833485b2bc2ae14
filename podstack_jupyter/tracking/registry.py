"""The notebook's tracking state over a :class:`~podstack_jupyter.tracking.client.TrackingClient`.

This module is the tracking half of ``podstack.registry`` (the model registry half lives
in :mod:`podstack_jupyter.models`; ``podstack.registry`` joins them)::

    from podstack import registry

    registry.set_experiment("sentiment-analysis")
    with registry.start_run("bert-finetune-v3") as run:
        run.log_dataset("imdb-train", path="data/train.csv", df=train_df, context="training")
        registry.log_params({"lr": 2e-5, "epochs": 3})
        for epoch in range(3):
            registry.log_metrics({"loss": loss, "accuracy": acc}, step=epoch)

It keeps only what belongs to this notebook: the current experiment, the active runs
(:mod:`.runs`) and the metric buffer. Every rule and validation is the client's; each
function here finds the run it is about (the active one, unless ``run_id=`` says) and
delegates. Records live in the store of ``current_store()`` (a SQLite file under the
podstack home unless configured otherwise). Metrics are buffered and written in batches by
a background thread: ``log_metrics`` costs microseconds, and everything logged is written
by the time a run ends (or ``flush()`` returns).
"""

from __future__ import annotations

import time

from ..compute import hooks as _hooks
from ..errors import InvalidArgumentError
from . import _validate as V
from ._entities import Dataset, Experiment, MetricHistory, MetricPoint, ModelVersion, RegisteredModel
from .client import ENDED_STATUSES, TrackingClient, new_id
from .relay import RelayClient, RelayStore, at_cell_end, notebook_context
from .runs import Run, active_runs, clean_metrics, metric_buffer
from .store import MODEL_STAGES, RUN_STATUSES, current_store, in_gpu_session, reset_store

__all__ = [
    "init", "flush", "client",
    "set_experiment", "get_experiment", "get_experiment_by_name", "list_experiments",
    "start_run", "end_run", "active_run", "get_run",
    "log_param", "log_params", "log_metric", "log_metrics", "set_tag", "set_tags", "delete_tag",
    "get_metric_history", "compare_runs", "search_runs",
    "log_dataset", "get_run_datasets",
    "log_artifact", "list_artifacts", "download_artifact",
    "Run", "Experiment", "Dataset", "MetricPoint", "MetricHistory", "RegisteredModel", "ModelVersion",
    "RUN_STATUSES", "MODEL_STAGES",
]

DEFAULT_EXPERIMENT = "Default"
_MIN_STEP, _MAX_STEP = V.MIN_STEP, V.MAX_STEP  # bound here: log_metrics reads them on every call

_experiment_name: str | None = None          # set_experiment()'s choice
_experiment_cache: tuple | None = None        # (store, Experiment) it resolved to
_known_runs: set = set()                      # run ids this process started or checked (log_metrics by id stays cheap)
_client_cache: TrackingClient | None = None   # the client of the current store


def _store():
    return current_store()


def client() -> TrackingClient:
    """The :class:`TrackingClient` of the store and artifact store this notebook uses now."""
    global _client_cache
    store = current_store()
    cached = _client_cache
    if cached is not None and cached.store is store:
        return cached
    if store is not metric_buffer.store:
        metric_buffer.attach(store)  # points go to the store they were logged for; dead journals recovered
    from ..artifacts import open_store

    artifacts = store.artifact_store()  # a podstack server's; else the one the settings name
    # inside a GPU session the store is the relay: writes ask the notebook, which allows this cell's run only
    cached = _client_cache = (RelayClient if isinstance(store, RelayStore) else TrackingClient)(
        store, artifacts if artifacts is not None else open_store)
    return cached


metric_buffer.store_for = _store
_hooks.add_cell_context("tracking", notebook_context)  # a %%gpu cell logs into the notebook's active run
if in_gpu_session():  # inside a GPU session's kernel: log through the session to the notebook's store
    # which runs a cell may write is the notebook's answer for that cell: ask again in the next one
    at_cell_end(_known_runs.clear)


def _reset_store() -> None:
    """Write buffered metrics, then forget the opened store (``podstack.init`` calls this)."""
    global _experiment_cache, _client_cache
    metric_buffer.detach()  # what it cannot write stays in its journal for the next opener of that store
    reset_store()
    _experiment_cache = _client_cache = None
    _known_runs.clear()


def init(api_key: str | None = None, project_id: str | None = None, api_url: str | None = None,
         registry_url: str | None = None, **settings):
    """Configure podstack (same as ``podstack.init``); returns the resolved settings."""
    import podstack_jupyter

    return podstack_jupyter.init(api_key=api_key, project_id=project_id, api_url=api_url,
                                 registry_url=registry_url, **settings)


def flush() -> None:
    """Write every buffered metric point to the store now (raises if the store refuses them)."""
    metric_buffer.flush()


# -- experiments -------------------------------------------------------------------------------
def set_experiment(name: str) -> Experiment:
    """Make ``name`` the experiment new runs go into (created if it does not exist). Returns it."""
    global _experiment_name, _experiment_cache
    tracking = client()
    experiment = tracking.ensure_experiment(name)
    _experiment_name = name
    _experiment_cache = (tracking.store, experiment)
    return experiment


def _current_experiment() -> Experiment:
    global _experiment_cache
    tracking = client()
    if _experiment_cache is not None and _experiment_cache[0] is tracking.store:
        return _experiment_cache[1]
    experiment = tracking.ensure_experiment(_experiment_name or DEFAULT_EXPERIMENT)
    _experiment_cache = (tracking.store, experiment)
    return experiment


def _set_current_experiment(state) -> tuple:
    """Swap the current experiment choice; returns the previous one (for ``podstack.experiment``)."""
    global _experiment_name, _experiment_cache
    previous = (_experiment_name, _experiment_cache)
    _experiment_name, _experiment_cache = state
    return previous


def get_experiment(experiment_id: str) -> Experiment:
    """The experiment with this id (``ExperimentNotFoundError`` if none)."""
    return client().get_experiment(experiment_id)


def get_experiment_by_name(name: str) -> Experiment:
    """The experiment called ``name`` (``ExperimentNotFoundError`` if none)."""
    return client().get_experiment_by_name(name)


def list_experiments() -> list[Experiment]:
    """Every experiment, oldest first."""
    return client().list_experiments()


# -- runs --------------------------------------------------------------------------------------
def start_run(name: str | None = None, nested: bool = False, tags: dict | None = None, *,
              experiment_id: str | None = None, run_id: str | None = None, source: str | None = None,
              gpu: dict | None = None) -> Run:
    """Start a run and make it the active one; returns the :class:`Run` (also a context manager).

    ``with registry.start_run("v1") as run:`` ends the run when the block ends: ``completed``,
    ``failed`` on an exception, ``killed`` on KeyboardInterrupt. Without ``with``, end it with
    ``registry.end_run()``.

    Active runs are per thread (as in MLflow): while a run is active in this thread, starting
    another needs ``nested=True``: the new run is its child (``parent_run_id``) in the same
    experiment. Other threads start their own runs, or log into one handed to them
    (``run.log_metrics``, ``run_id=``). ``experiment_id`` overrides the current
    experiment (``set_experiment``, else ``Default``); ``run_id`` resumes an existing run
    (status back to ``running``); ``source`` is code text to keep with the run.
    """
    active = active_runs.top()
    if active is not None and not nested:
        raise InvalidArgumentError(
            f"run {active.name!r} ({active.id}) is already active. End it first (registry.end_run(), or leave "
            "its `with` block), or pass nested=True to start a child run inside it.")
    tracking = client()
    if run_id is not None:
        if active_runs.find(run_id) is not None:
            raise InvalidArgumentError(f"run {run_id!r} is already active")
        metric_buffer.run_started(run_id)  # (a run that does not exist is no harm: recovery skips it)
        run = Run(tracking.resume_run(run_id, name=name, tags=tags))
    else:
        parent = active if nested else None
        if experiment_id is None:
            experiment_id = parent.experiment_id if parent is not None else _current_experiment().id
        chosen = new_id()
        metric_buffer.run_started(chosen)  # first: if this process dies, the run is marked killed
        run = Run(tracking.create_run(experiment_id, name, parent_run_id=parent.id if parent is not None else None,
                                      tags=tags, source=source, gpu=gpu, run_id=chosen))
    _known_runs.add(run.id)
    active_runs.push(run)
    return run


def active_run() -> Run | None:
    """The innermost active run of the calling thread, or ``None``."""
    return active_runs.top()


def end_run(status: str = "completed", *, run_id: str | None = None) -> None:
    """End the active run (or ``run_id``, and any run nested in it) with ``status``:
    ``completed`` (default), ``failed`` or ``killed``. Buffered metrics are written first.
    Without an active run and without ``run_id`` this does nothing."""
    if status not in ENDED_STATUSES:
        raise InvalidArgumentError(f"end_run: status {status!r} is not one of {list(ENDED_STATUSES)}")
    if run_id is None:
        top = active_runs.top()
        if top is None:
            return
        run_id = top.id
    ended = active_runs.pop_through(run_id)
    tracking = client()
    now = time.time()
    records = {}

    def end_with(series):  # the run's last points go with its end (one request to a server)
        records[run_id] = tracking.end_run(run_id, status, now, last_series=series)

    one_run = [run.id for run in ended] == [run_id] and metric_buffer.store is tracking.store
    try:
        metric_buffer.flush(last=end_with if one_run and tracking.store.ends_runs_with_series else None)
    finally:
        if not ended:  # not active here: just record the status
            tracking.end_run(run_id, status, now)
            metric_buffer.run_ended(run_id)
        for run in ended:
            record = records[run.id] if run.id in records else tracking.end_run(run.id, status, now)
            metric_buffer.forget_run(run.id)
            run.status, run._end = status, now
            if record is None:
                record = tracking.store.get_run(run.id)
            if record is not None:
                run._apply(record)


def get_run(run_id: str) -> Run:
    """The run with this id, with its params, tags and latest metrics (``RunNotFoundError`` if none)."""
    metric_buffer.flush()
    return Run(client().get_run(run_id))


def _target_run(run_id: str | None, what: str) -> str:
    if run_id is None:
        run = active_runs.top()
        if run is None:
            elsewhere = active_runs.elsewhere()
            if elsewhere:
                thread, other = elsewhere[0]
                raise InvalidArgumentError(
                    f"{what}: no active run in this thread (active runs are per thread; thread {thread!r} has "
                    f"run {other.name!r}). Pass run_id={other.id!r}, or call the run's own method "
                    "(run.log_metrics(...)) from this thread")
            raise InvalidArgumentError(f"{what}: no active run. Start one with registry.start_run() "
                                       "(or podstack.run / %%track), or pass run_id=")
        return run.id
    if run_id not in _known_runs:
        client().require_writable(run_id)  # RunNotFoundError (or, in a GPU session, a refusal) now, not later
        _known_runs.add(run_id)
    return run_id


def log_params(params: dict, *, run_id: str | None = None) -> None:
    """Record hyperparameters of the active run (values kept as text; numbers compare as numbers in
    ``search_runs``). A param cannot change once logged: that is an ``InvalidArgumentError``."""
    target = _target_run(run_id, "log_params")
    clean = client().log_params(target, params)
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
    if step is not None and (type(step) is not int or not _MIN_STEP <= step <= _MAX_STEP):
        step = V.step("log_metrics: step", step)
    metric_buffer.add(run_id, clean, step, time.time())
    if run is not None:
        run.metrics.update(clean)


def log_metric(key: str, value, step: int | None = None, *, run_id: str | None = None) -> None:
    """Log one metric value (see ``log_metrics``)."""
    log_metrics({key: value}, step=step, run_id=run_id)


def set_tags(tags: dict, *, run_id: str | None = None) -> None:
    """Set tags (text) on the active run; a tag set again takes the new value."""
    target = _target_run(run_id, "set_tags")
    clean = client().set_tags(target, tags)
    live = active_runs.find(target)
    if live is not None:
        live.tags.update(clean)


def set_tag(key: str, value, *, run_id: str | None = None) -> None:
    """Set one tag on the active run."""
    set_tags({key: value}, run_id=run_id)


def delete_tag(key: str, *, run_id: str | None = None) -> None:
    """Remove a tag from the active run (or ``run_id``)."""
    target = _target_run(run_id, "delete_tag")
    client().delete_tag(target, key)
    live = active_runs.find(target)
    if live is not None:
        live.tags.pop(key, None)


def get_metric_history(run_id: str, key: str) -> MetricHistory:
    """Every point of metric ``key`` of a run, ordered by step: a sequence of points with
    ``.step``, ``.value``, ``.timestamp`` (see :class:`MetricHistory`)."""
    metric_buffer.flush()
    return client().get_metric_history(run_id, key)


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
    metric_buffer.flush()
    rows = client().compare_runs(run_ids, metric_keys)
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
    metric_buffer.flush()
    records = client().search_runs(experiment_ids=experiment_id, statuses=status, tags=tags, params=params,
                                   metrics=metrics, filter=filter, order_by=order_by, max_results=max_results,
                                   parent_run_id=parent_run_id)
    runs = [Run(r) for r in records]
    return _to_pandas([r.to_dict() for r in runs]) if output == "pandas" else runs


# -- datasets ----------------------------------------------------------------------------------
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
    target = None
    if run_id is not None or active_runs.top() is not None:
        target = _target_run(run_id, "log_dataset")
    return client().log_dataset(target, name, path=path, df=df, context=context, digest=digest,
                                source_type=source_type, tags=tags)


def get_run_datasets(run_id: str) -> list[Dataset]:
    """The datasets logged to a run, in the order they were logged (each with its ``context``)."""
    return client().get_run_datasets(run_id)


# -- artifacts ---------------------------------------------------------------------------------
def log_artifact(local_path, artifact_path: str | None = None, *, run_id: str | None = None) -> list[dict]:
    """Store a file (or every file of a folder) as artifacts of the active run.

    ``artifact_path`` is the path inside the run: for a file it defaults to the file name
    (``log_artifact("curves.png", artifact_path="plots/curves.png")``; a path ending in ``/``
    is a folder the file goes into); for a folder it is the folder the files go under
    (default: the folder's name). Returns the entries logged (``path``, ``size``, ``etag``,
    ``last_modified``).
    """
    return client().log_artifact(_target_run(run_id, "log_artifact"), local_path, artifact_path)


def list_artifacts(run_id: str, path: str | None = None) -> list[dict]:
    """The artifacts of a run (under ``path`` if given): dicts with ``path``, ``size`` (bytes),
    ``etag`` (SHA-256 of the content) and ``last_modified`` (ISO 8601)."""
    return client().list_artifacts(run_id, path)


def download_artifact(run_id: str, artifact_path: str, local_path=".") -> str:
    """Copy an artifact file, or every file under an artifact folder, into the folder
    ``local_path``; returns the absolute path of the file or folder written there.
    ``ArtifactNotFoundError`` if the run has no such artifact."""
    return client().download_artifact(run_id, artifact_path, local_path)
