"""``TrackingClient``: every rule of the tracking plane, over a store and an artifact store, by explicit id.

The client holds no state of its own: each call names the run or experiment it is about,
is validated (:mod:`._validate` lists the limits, the same on every store), runs against
``store``, and publishes what happened on :mod:`podstack_jupyter.events`. The notebook's
``podstack.registry`` keeps the notebook's state (current experiment, active runs, the
metric buffer) and calls a client; ``podstack server`` makes one per request and project::

    from podstack_jupyter.tracking import TrackingClient, open_store
    from podstack_jupyter.artifacts import open_repository

    client = TrackingClient(open_store("sqlite:////tmp/t.db"), open_repository("/tmp/artifacts"))
    experiment = client.ensure_experiment("sweep")
    run = client.create_run(experiment.id, name="trial-1", tags={"team": "nlp"})
    client.log_params(run["id"], {"lr": 0.01})
    client.log_metrics(run["id"], {"loss": 0.4}, step=0)
    client.end_run(run["id"], "completed")

Runs are *run records* (dicts, see :mod:`.store._base`: ``id``, ``experiment_id``, ``name``,
``parent_run_id``, ``status``, ``start_time``/``end_time`` in epoch seconds, ``source``,
``gpu``, ``params``, ``tags``, ``metrics``); the other results are the entity objects of
:mod:`._entities`. Errors are ``InvalidArgumentError`` (a bad argument; nothing written),
``NotFoundError`` subclasses and ``StoreError`` (the store failed; nothing written).

Events published: ``run.started`` (``run``: the record), ``run.ended`` (``run_id``, ``status``,
``end_time``), ``metrics.logged`` (``run_id``, ``key``, ``steps``, ``values``, ``timestamps``).
"""

from __future__ import annotations

import math
import os
import posixpath
import time
import uuid
from pathlib import Path

from .. import events
from ..errors import (ArtifactIntegrityError, ArtifactNotFoundError, ExperimentNotFoundError, InvalidArgumentError,
                      PodstackError, RunNotFoundError)
from . import _validate as V
from . import datasets as _datasets
from ._entities import Dataset, Experiment, MetricHistory, iso
from ._publish import publish_points
from ._search import dict_clauses, make_clause, parse_filter, parse_order_by
from .runs import clean_metrics
from .store import RUN_STATUSES, Store

__all__ = ["TrackingClient", "new_id", "artifact_files", "ENDED_STATUSES", "MAX_ARTIFACT_PATH"]

ENDED_STATUSES = tuple(s for s in RUN_STATUSES if s != "running")
MAX_ARTIFACT_PATH = 1024
_MAX_RESULTS = 2 ** 63 - 1
_PROGRESS_BYTES = 50 * 1024 * 1024


def new_id() -> str:
    """A new id for an experiment, run, dataset, model or version (a uuid4 string)."""
    return str(uuid.uuid4())


def _progress(total: int, description: str):
    if total < _PROGRESS_BYTES:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description)


def clean_artifact_path(path, what: str = "artifact_path") -> str:
    """``path`` as a normalized relative POSIX path inside a run (``""`` for the run's root)."""
    if not isinstance(path, str):
        raise InvalidArgumentError(f"{what} must be a string path inside the run, got {type(path).__name__} "
                                   f"{path!r}")
    V.text(what, path, MAX_ARTIFACT_PATH)
    text = path.replace("\\", "/")
    normalized = posixpath.normpath(text) if text.strip("/") else ""
    if text.startswith("/") or normalized == ".." or normalized.startswith("../"):
        raise InvalidArgumentError(f"{what} {path!r} must be a relative path inside the run (no leading '/', no '..')")
    return "" if normalized == "." else normalized


def _within(path: Path, root: Path) -> bool:
    return path == root or root in path.parents


def _folder_files(folder: Path, what: str) -> list[tuple[Path, str]]:
    """Every file under ``folder`` with its path relative to it, never leaving the folder.

    Links are not followed out of it: a link to a file inside the folder is stored as that
    file's content under the link's name (as ``cp -r`` would copy it); a link that leads
    outside, a dangling link and a link to a folder are refused, naming the link."""
    root = Path(os.path.realpath(folder))
    found = []
    for directory, folders, names in os.walk(folder, followlinks=False):
        for name in folders:
            path = Path(directory, name)
            if path.is_symlink():
                raise InvalidArgumentError(
                    f"{what}: {path} is a link to a folder ({os.readlink(path)}); links to folders are not followed. "
                    "Log the folder it points to on its own, or replace the link with a copy.")
        for name in names:
            path = Path(directory, name)
            if path.is_symlink():
                target = Path(os.path.realpath(path))
                if not _within(target, root):
                    raise InvalidArgumentError(
                        f"{what}: {path} is a link to {target}, outside the folder {str(folder)!r}; nothing was "
                        "uploaded. Links are never followed out of a logged folder: copy the file in, or log it "
                        "on its own.")
                if not target.is_file():
                    raise InvalidArgumentError(f"{what}: {path} is a link to {os.readlink(path)!r}, which is not a "
                                               "file in the folder (a dangling link?); remove it or make it a file")
            elif not path.is_file():
                continue  # sockets, pipes: nothing to store
            found.append((path, path.relative_to(folder).as_posix()))
    return sorted(found, key=lambda item: item[1])


def artifact_files(local_path, artifact_path: str | None = None, what: str = "log_artifact") -> list[tuple[Path, str]]:
    """The files ``log_artifact(local_path, artifact_path)`` stores, each with its artifact path
    (validated; links inside a folder are never followed out of it)."""
    if not isinstance(local_path, (str, os.PathLike)):
        raise InvalidArgumentError(f"{what}: local_path must be a path, got {type(local_path).__name__}")
    if artifact_path is not None and not isinstance(artifact_path, str):
        raise InvalidArgumentError(f"{what}: artifact_path must be a string path inside the run "
                                   f"(or None for the file's name), got {type(artifact_path).__name__} "
                                   f"{artifact_path!r}")
    source = Path(local_path)
    if not source.exists():
        raise InvalidArgumentError(f"{what}: {os.fspath(local_path)!r} does not exist")
    if source.is_file():
        if artifact_path is None:
            destination = clean_artifact_path(source.name, "file name")
        else:
            folder_like = artifact_path.endswith("/")
            destination = clean_artifact_path(artifact_path)
            if folder_like or not destination:
                destination = posixpath.join(destination, source.name) if destination else source.name
        files = [(source, destination)]
    else:
        base = clean_artifact_path(artifact_path if artifact_path is not None else source.name)
        files = [(p, posixpath.join(base, relative) if base else relative) for p, relative in _folder_files(source, what)]
    for _, destination in files:
        clean_artifact_path(destination, "artifact path")
    return files


def checked_entry_path(entry: dict, run_id: str) -> str:
    """An artifact row's path, if it is a clean path inside its run; ``ArtifactIntegrityError`` if
    the store holds anything else (a row that no ``log_artifact`` could have written)."""
    path = entry.get("path")
    try:
        clean = clean_artifact_path(path, "artifact path")
    except InvalidArgumentError:
        clean = None
    if not path or clean != path:
        raise ArtifactIntegrityError(f"the store lists an artifact of run {run_id} at {path!r}, which is not a path "
                                     "inside the run; refusing to download it (the store's rows were written by "
                                     "something other than podstack)")
    return path


def checked_target(root: Path, target: Path, entry_path: str) -> Path:
    """``target`` if writing it stays inside the folder ``root`` (resolved), whatever links are on
    the way; ``ArtifactIntegrityError`` otherwise. Checked before any folder is made."""
    escaped = not _within(target.parent, root)
    if not escaped:
        probe = target.parent
        while not os.path.lexists(probe) and probe != root:
            probe = probe.parent  # folders not made yet cannot be links
        escaped = not _within(Path(os.path.realpath(probe)), root)
    if escaped:
        raise ArtifactIntegrityError(f"artifact {entry_path!r} would be written to {target}, outside {root} "
                                     "(through a link there); nothing was written for it")
    return target


def artifact_entry(e: dict) -> dict:
    """An artifact as ``list_artifacts`` shows it: ``path``, ``size``, ``etag``, ``last_modified``."""
    return {"path": e["path"], "size": e["size"], "etag": e["digest"], "last_modified": iso(e["created_at"])}


class TrackingClient:
    """Experiments, runs, params, metrics, tags, datasets and artifacts: see the module docstring.

    ``store``: a :class:`~podstack_jupyter.tracking.store.Store`. ``artifacts``: an
    :class:`~podstack_jupyter.artifacts.ArtifactStore`, or a callable returning one (opened on
    the first artifact call), or ``None`` (artifact calls are then refused).
    """

    def __init__(self, store: Store, artifacts=None):
        if not isinstance(store, Store):
            raise InvalidArgumentError(f"TrackingClient needs a podstack Store, got {type(store).__name__}")
        self.store = store
        self._artifacts = artifacts

    def __repr__(self):
        return f"TrackingClient({self.store!r})"

    @property
    def artifacts(self):
        """The artifact store (``PodstackError`` if this client has none)."""
        artifacts = self._artifacts
        if artifacts is None:
            raise PodstackError("this tracking client has no artifact store; give TrackingClient(store, artifacts)")
        if callable(artifacts) and not hasattr(artifacts, "put_file"):
            artifacts = self._artifacts = artifacts()
        return artifacts

    # -- experiments ---------------------------------------------------------------------------
    def ensure_experiment(self, name: str, description: str | None = None, tags: dict | None = None) -> Experiment:
        """The experiment called ``name``, created if there is none."""
        name = V.name("experiment name", name)
        description = V.optional_text("experiment description", description)
        tags = V.string_dict("experiment tags", tags) if tags is not None else None
        return Experiment.from_record(self.store.ensure_experiment(new_id(), name, time.time(), description, tags))

    def create_experiment(self, name: str, description: str | None = None, tags: dict | None = None) -> Experiment:
        """A new experiment called ``name``; ``InvalidArgumentError`` (``already exists``) if there is one."""
        name = V.name("experiment name", name)
        if self.store.get_experiment_by_name(name) is not None:
            raise InvalidArgumentError(f"experiment {name!r} already exists")
        return self.ensure_experiment(name, description, tags)

    def get_experiment(self, experiment_id: str) -> Experiment:
        """The experiment with this id (``ExperimentNotFoundError`` if none)."""
        record = self.store.get_experiment(V.identifier("experiment_id", experiment_id))
        if record is None:
            raise ExperimentNotFoundError(f"no experiment with id {experiment_id!r}; "
                                          "registry.list_experiments() shows them")
        return Experiment.from_record(record)

    def get_experiment_by_name(self, name: str) -> Experiment:
        """The experiment called ``name`` (``ExperimentNotFoundError`` if none)."""
        record = self.store.get_experiment_by_name(V.name("experiment name", name))
        if record is None:
            raise ExperimentNotFoundError(f"no experiment named {name!r}; registry.set_experiment({name!r}) creates it")
        return Experiment.from_record(record)

    def list_experiments(self) -> list[Experiment]:
        """Every experiment, oldest first."""
        return [Experiment.from_record(r) for r in self.store.list_experiments()]

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, experiment_id: str, name: str | None = None, *, parent_run_id: str | None = None,
                   tags: dict | None = None, source: str | None = None, gpu: dict | None = None,
                   run_id: str | None = None) -> dict:
        """Start a run in ``experiment_id`` (``running``, started now); returns its record.
        ``name`` defaults to ``run-<first 8 characters of its id>``; ``parent_run_id`` makes it
        a child run; ``source`` is code to keep with it; ``gpu`` describes where it ran;
        ``run_id`` is the new run's id when the caller must know it first (default: ``new_id()``)."""
        experiment_id = V.identifier("experiment_id", experiment_id)
        if name is not None:
            name = V.name("run name", name)
        if parent_run_id is not None:
            parent_run_id = V.identifier("parent_run_id", parent_run_id)
        clean_tags = V.string_dict("run tags", tags) if tags is not None else {}
        source = V.optional_text("source", source)
        if gpu is not None and not isinstance(gpu, dict):
            raise InvalidArgumentError(f"gpu must be a dict describing the GPUs, got {type(gpu).__name__}")
        if run_id is None:
            run_id = new_id()
        elif len(V.identifier("run_id", run_id)) > 36:  # ids are stored in 36 characters (a uuid's)
            raise InvalidArgumentError(f"a new run's id has at most 36 characters (a uuid), got {run_id!r}")
        record = {"id": run_id, "experiment_id": experiment_id, "name": name or f"run-{run_id[:8]}",
                  "parent_run_id": parent_run_id, "status": "running", "start_time": time.time(), "end_time": None,
                  "source": source, "gpu": gpu, "tags": clean_tags}
        self.store.create_run(record)  # NotFoundError if the experiment or the parent does not exist
        record = {**record, "params": {}, "metrics": {}}
        if events.has_subscribers("run.started"):
            events.publish("run.started", run=record)
        return record

    def resume_run(self, run_id: str, name: str | None = None, tags: dict | None = None) -> dict:
        """Set an ended run ``running`` again (``name``/``tags`` update it); returns its record."""
        run_id = V.identifier("run_id", run_id)
        fields = {"status": "running", "end_time": None}
        if name is not None:
            fields["name"] = V.name("run name", name)
        clean_tags = V.string_dict("run tags", tags) if tags is not None else {}
        self.store.update_run(run_id, fields)
        if clean_tags:
            self.store.set_tags(run_id, clean_tags)
        record = self.get_run(run_id)
        if events.has_subscribers("run.started"):
            events.publish("run.started", run=record)
        return record

    def end_run(self, run_id: str, status: str = "completed", end_time: float | None = None, *,
                last_series: list | None = None) -> dict | None:
        """End a run: ``completed``, ``failed`` or ``killed`` (at ``end_time``, default now).
        ``last_series``: metric series to write first (the metric buffer's last batch; a server
        takes both in one request). Returns the ended run's record where the store answered with
        it, else ``None``."""
        run_id = V.identifier("run_id", run_id)
        if status not in ENDED_STATUSES:
            raise InvalidArgumentError(f"end_run: status {status!r} is not one of {list(ENDED_STATUSES)}")
        end_time = time.time() if end_time is None else V.number("end_time", end_time)
        fields = {"status": status, "end_time": end_time}
        record = (self.store.end_run_with_series(run_id, fields, last_series) if last_series
                  else self.store.update_run(run_id, fields))
        if events.has_subscribers("run.ended"):
            events.publish("run.ended", run_id=run_id, status=status, end_time=end_time)
        return record

    def get_run(self, run_id: str) -> dict:
        """The run record with this id (``RunNotFoundError`` if none)."""
        record = self.store.get_run(V.identifier("run_id", run_id))
        if record is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        return record

    def require_run(self, run_id: str) -> None:
        """``RunNotFoundError`` unless a run with this id exists (a cheap check for callers that write)."""
        if not self.store.has_run(run_id):
            raise RunNotFoundError(f"no run with id {run_id!r}")

    def require_writable(self, run_id: str) -> str:
        """``run_id`` if this client may write into that run (``RunNotFoundError`` if there is no such
        run). Every run of its store is writable here; a GPU session's relayed client asks the
        notebook, which allows only the run of the cell the session runs in and the runs it started."""
        run_id = V.identifier("run_id", run_id)
        self.require_run(run_id)
        return run_id

    def get_runs(self, run_ids) -> list[dict]:
        """The run records of ``run_ids``, in that order (``RunNotFoundError`` naming any missing)."""
        if isinstance(run_ids, str) or not isinstance(run_ids, (list, tuple)):
            raise InvalidArgumentError(f"run_ids must be a list of run ids, got {run_ids!r}")
        ids = [V.identifier("run id", r) for r in run_ids]
        records = {r["id"]: r for r in self.store.get_runs(ids)}
        missing = [r for r in ids if r not in records]
        if missing:
            raise RunNotFoundError(f"no run with id {missing[0]!r}" + (f" (and {len(missing) - 1} more)"
                                                                        if len(missing) > 1 else ""))
        return [records[r] for r in ids]

    def log_params(self, run_id: str, params: dict) -> dict:
        """Record params (values kept as text; ``InvalidArgumentError`` if a logged param would
        change, and then nothing is written). Returns them as stored."""
        run_id = V.identifier("run_id", run_id)
        clean = V.string_dict("log_params", params)
        if clean:
            self.store.log_params(run_id, clean)
        return clean

    def set_tags(self, run_id: str, tags: dict) -> dict:
        """Set tags (text; a tag set again takes the new value). Returns them as stored."""
        run_id = V.identifier("run_id", run_id)
        clean = V.string_dict("set_tags", tags)
        if clean:
            self.store.set_tags(run_id, clean)
        return clean

    def delete_tag(self, run_id: str, key: str) -> None:
        """Remove a tag of a run (nothing happens if it has none by that name)."""
        self.store.delete_tag(V.identifier("run_id", run_id), V.key("tag name", key))

    # -- metrics -------------------------------------------------------------------------------
    def log_metrics(self, run_id: str, metrics: dict, step: int = 0, timestamp: float | None = None) -> None:
        """Write metric values of a run at ``step`` now (default 0, as MLflow's client; the
        notebook's ``registry.log_metrics`` numbers steps itself and buffers)."""
        run_id = V.identifier("run_id", run_id)
        clean = clean_metrics(metrics)
        step = V.step("step", step)
        stamp = time.time() if timestamp is None else self._timestamp(timestamp)
        self.log_points([(run_id, key, value, step, stamp) for key, value in clean.items()])

    @staticmethod
    def _timestamp(value) -> float:
        stamp = V.number("timestamp", value)
        if not math.isfinite(stamp):
            raise InvalidArgumentError(f"timestamp must be finite epoch seconds, got {value!r}")
        return stamp

    def log_points(self, points, batch_id: str | None = None) -> int:
        """Write metric points ``(run_id, key, value, step, timestamp)`` in one transaction
        (every run must exist); returns how many. What a batch of buffered points is.
        ``batch_id`` (stores that take one: SQL): a batch with an id already stored is not
        stored again (0 is returned)."""
        clean, runs = [], set()
        for point in points:
            try:
                run_id, key, value, step, stamp = point
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"a metric point is (run_id, key, value, step, timestamp), got "
                                           f"{point!r}") from None
            if run_id not in runs:
                runs.add(V.identifier("run_id", run_id))
            (value,) = clean_metrics({key: value}).values()
            clean.append((run_id, key, value, V.step("step", step), self._timestamp(stamp)))
        return self._write_points(clean, runs, batch_id)

    def _write_points(self, points: list, runs: set, batch_id) -> int:
        """Store checked points of existing ``runs`` and tell listeners; how many (0: none, or a
        batch stored before)."""
        if not points:
            return 0
        if not self.store.checks_runs_on_write:
            for run_id in sorted(runs):
                self.require_run(run_id)
        if batch_id is None:
            self.store.log_metrics(points)
        elif self.store.log_metrics(points, batch_id=V.identifier("batch_id", batch_id)) is False:
            return 0
        publish_points(points)
        return len(points)

    def log_series(self, series, batch_id: str | None = None) -> int:
        """Write metric series ``(run_id, key, steps, values, timestamps)`` (equal-length sequences
        of int steps, float values and float epoch-second timestamps, e.g. ``array.array``s) in one
        transaction, checked per series rather than per point; returns how many points (0 when
        ``batch_id`` was stored before). What a server receives from a client's metric buffer."""
        import itertools

        points, runs = [], set()
        for item in series:
            try:
                run_id, key, steps, values, stamps = item
            except (TypeError, ValueError):
                raise InvalidArgumentError(f"a metric series is (run_id, key, steps, values, timestamps), got "
                                           f"{type(item).__name__}") from None
            run_id = V.identifier("run_id", run_id)
            key = V.key("metric name", key)
            if not len(steps) == len(values) == len(stamps):
                raise InvalidArgumentError(f"metric {key!r}: {len(steps)} steps, {len(values)} values and "
                                           f"{len(stamps)} timestamps; a series has as many of each")
            if not all(type(v) is float for v in values):
                values = [V.number(f"metric {key!r}: value", v) for v in values]
            if not all(type(s) is int and V.MIN_STEP <= s <= V.MAX_STEP for s in steps):
                steps = [V.step(f"metric {key!r}: step", s) for s in steps]
            if not all(type(t) is float and math.isfinite(t) for t in stamps):
                stamps = [self._timestamp(t) for t in stamps]
            runs.add(run_id)
            points.extend(zip(itertools.repeat(run_id), itertools.repeat(key), values, steps, stamps))
        return self._write_points(points, runs, batch_id)

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        """Every point of metric ``key`` of a run, ordered by step (``[]`` if it has none)."""
        run_id = V.identifier("run_id", run_id)
        key = V.key("metric name", key)
        self.require_run(run_id)
        return MetricHistory.from_packed(run_id, key, self.store.get_metric_history(run_id, key))

    # -- search --------------------------------------------------------------------------------
    def search_runs(self, experiment_ids=None, statuses=None, tags: dict | None = None, params: dict | None = None,
                    metrics: dict | None = None, filter: str | None = None, order_by=None, max_results: int = 1000,
                    parent_run_id: str | None = None) -> list[dict]:
        """Run records matching every condition, newest first unless ``order_by`` says otherwise
        (see ``registry.search_runs`` for the forms of each argument)."""
        if not isinstance(max_results, int) or isinstance(max_results, bool) or max_results < 1:
            raise InvalidArgumentError(f"max_results must be a positive integer, got {max_results!r}")
        if experiment_ids is not None:
            if isinstance(experiment_ids, (str, Experiment)):
                experiment_ids = [experiment_ids]
            if not isinstance(experiment_ids, (list, tuple)):
                raise InvalidArgumentError(f"experiment_id must be an id or a list of ids, got {experiment_ids!r}")
            experiment_ids = [V.identifier("experiment_id", e.id if isinstance(e, Experiment) else e)
                              for e in experiment_ids]
        if statuses is not None:
            statuses = [statuses] if isinstance(statuses, str) else statuses
            if not isinstance(statuses, (list, tuple)):
                raise InvalidArgumentError(f"status must be a status or a list of them, got {statuses!r}")
            bad = [s for s in statuses if s not in RUN_STATUSES]
            if bad:
                raise InvalidArgumentError(f"status {bad[0]!r} is not one of {list(RUN_STATUSES)}")
        clauses = dict_clauses("tag", tags) + dict_clauses("param", params) + dict_clauses("metric", metrics)
        if filter:
            clauses += parse_filter(filter)
        if parent_run_id is not None:
            clauses.append(make_clause("attribute", "parent_run_id", "=", V.identifier("parent_run_id", parent_run_id)))
        query = {"experiment_ids": experiment_ids, "statuses": list(statuses) if statuses else None,
                 "clauses": clauses, "order_by": parse_order_by(order_by),
                 "max_results": min(max_results, _MAX_RESULTS)}
        try:  # the store checks the experiment ids in the same request: one round trip to a server
            return self.store.search_runs(query)
        except ExperimentNotFoundError as exc:
            for experiment_id in experiment_ids or ():  # a name where an id belongs is the usual slip
                named = self.store.get_experiment_by_name(experiment_id)
                if named and self.store.get_experiment(experiment_id) is None:
                    raise ExperimentNotFoundError(
                        f"search_runs: no experiment with id {experiment_id!r}; {experiment_id!r} is the name of "
                        f"experiment {named['id']!r}: pass its id (registry.get_experiment_by_name("
                        f"{experiment_id!r}).id)") from None
            raise exc from None

    def compare_runs(self, run_ids, metric_keys=None) -> list[dict]:
        """For each run (in the order given): ``run_id``, ``name``, ``status``, ``experiment_id``,
        ``params`` and the latest value of each metric in ``metric_keys`` (all when ``None``;
        ``None`` where a run lacks one)."""
        if metric_keys is not None:
            if isinstance(metric_keys, str) or not isinstance(metric_keys, (list, tuple)):
                raise InvalidArgumentError(f"metric_keys must be a list of metric names, got {metric_keys!r}")
            metric_keys = [V.key("metric name", k) for k in metric_keys]
        rows = []
        for r in self.get_runs(run_ids):
            keys = metric_keys if metric_keys is not None else sorted(r["metrics"])
            rows.append({"run_id": r["id"], "name": r["name"], "status": r["status"],
                         "experiment_id": r["experiment_id"], "params": dict(r["params"]),
                         "metrics": {k: r["metrics"].get(k) for k in keys}})
        return rows

    # -- datasets ------------------------------------------------------------------------------
    def log_dataset(self, run_id: str | None, name: str, path=None, df=None, context: str = "training",
                    digest: str | None = None, source_type: str | None = None, tags: dict | None = None) -> Dataset:
        """Record a dataset and link it to the run (``run_id=None``: project level only); see
        ``registry.log_dataset``. Returns the :class:`Dataset` (with ``context`` when linked)."""
        if run_id is not None:
            run_id = V.identifier("run_id", run_id)
        record = _datasets.describe(name, path, df, context, digest, source_type, tags)
        now = time.time()
        stored = self.store.log_dataset(run_id, {**record, "id": new_id(), "created_at": now}, context, now)
        return Dataset.from_record({**stored, "context": context if run_id else None})

    def log_dataset_record(self, run_id: str | None, record: dict, context: str = "training") -> Dataset:
        """Record a dataset described elsewhere (``datasets.describe``'s fields: ``name``, ``digest``,
        ``source_type``, ``source``, ``schema``, ``profile``, ``tags``), e.g. by a GPU session whose
        files and DataFrames the notebook cannot see; each field is checked here."""
        if run_id is not None:
            run_id = V.identifier("run_id", run_id)
        clean = _datasets.check_record(record, context)
        now = time.time()
        stored = self.store.log_dataset(run_id, {**clean, "id": new_id(), "created_at": now}, context, now)
        return Dataset.from_record({**stored, "context": context if run_id else None})

    def get_run_datasets(self, run_id: str) -> list[Dataset]:
        """The datasets logged to a run, in the order they were logged (each with its ``context``)."""
        run_id = V.identifier("run_id", run_id)
        self.require_run(run_id)
        return [Dataset.from_record(r) for r in self.store.get_run_datasets(run_id)]

    # -- artifacts -----------------------------------------------------------------------------
    def log_artifact(self, run_id: str, local_path, artifact_path: str | None = None) -> list[dict]:
        """Store a file, or every file of a folder, as artifacts of a run; see ``registry.log_artifact``.
        Returns the entries logged (``path``, ``size``, ``etag``, ``last_modified``)."""
        run_id = V.identifier("run_id", run_id)
        return self.log_artifact_files(run_id, artifact_files(local_path, artifact_path))

    def log_artifact_files(self, run_id: str, files) -> list[dict]:
        """Store local files as artifacts of a run: ``files`` is ``[(local file, artifact path)...]``
        (what :func:`artifact_files` lists). Returns the entries logged."""
        run_id = V.identifier("run_id", run_id)
        files = [(Path(path), clean_artifact_path(destination, "artifact path")) for path, destination in files]
        self.require_run(run_id)  # before uploading anything
        blobs = self.artifacts
        bar = _progress(sum(p.stat().st_size for p, _ in files), f"uploading {len(files)} artifact file(s)")
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
        self.store.log_artifacts(run_id, entries)
        return [artifact_entry(e) for e in entries]

    def list_artifacts(self, run_id: str, path: str | None = None) -> list[dict]:
        """The artifacts of a run (under ``path`` if given), as ``artifact_entry`` dicts."""
        run_id = V.identifier("run_id", run_id)
        self.require_run(run_id)
        entries = self.store.list_artifacts(run_id)
        if path is not None:
            prefix = clean_artifact_path(path, "path")
            entries = [e for e in entries if not prefix or e["path"] == prefix or e["path"].startswith(prefix + "/")]
        return [artifact_entry(e) for e in entries]

    def select_artifacts(self, run_id: str, artifact_path: str) -> tuple[list[dict], bool]:
        """The stored entries under ``artifact_path`` and whether it names a single file
        (``ArtifactNotFoundError`` if none)."""
        run_id = V.identifier("run_id", run_id)
        wanted = clean_artifact_path(artifact_path)
        self.require_run(run_id)
        entries = self.store.list_artifacts(run_id)
        exact = [e for e in entries if e["path"] == wanted]
        if exact:
            return exact, True
        under = [e for e in entries if not wanted or e["path"].startswith(wanted + "/")]
        if not under:
            shown = sorted({e["path"].split("/")[0] for e in entries})
            raise ArtifactNotFoundError(f"run {run_id} has no artifact {artifact_path!r}; "
                                        f"top-level artifacts: {shown[:20]}")
        return under, False

    def download_artifact(self, run_id: str, artifact_path: str, local_path=".") -> str:
        """Copy an artifact file, or every file under an artifact folder, into the folder
        ``local_path``; returns the absolute path of the file or folder written there. Nothing is
        ever written outside ``local_path``, whatever the store's rows say."""
        if not isinstance(local_path, (str, os.PathLike)):
            raise InvalidArgumentError(f"download_artifact: local_path must be a folder path, got "
                                       f"{type(local_path).__name__}")
        entries, single = self.select_artifacts(run_id, artifact_path)
        wanted = clean_artifact_path(artifact_path)
        destination = Path(local_path).expanduser().resolve()
        if destination.exists() and not destination.is_dir():
            raise InvalidArgumentError(f"download_artifact: {os.fspath(local_path)!r} is a file; local_path is the "
                                       "folder the artifact is copied into")
        if single:
            target = destination / posixpath.basename(wanted)
            self.fetch(entries, lambda e: target, f"downloading {wanted}", within=destination, run_id=run_id)
            return str(target)
        root = destination / posixpath.basename(wanted) if wanted else destination
        offset = len(wanted) + 1 if wanted else 0
        self.fetch(entries, lambda e: root.joinpath(*e["path"][offset:].split("/")),
                   f"downloading {wanted or 'artifacts'}", within=destination, run_id=run_id)
        return str(root)

    def fetch(self, entries: list[dict], target_of, description: str = "downloading", *, within,
              run_id: str = "?") -> None:
        """Copy each stored entry to ``target_of(entry)`` (verified; files already there with the
        right content are kept). Every entry's path must be a clean path inside its run and every
        target must lie inside the folder ``within``, checked here, at read time: the rows may have
        been written by anyone with access to the store (``ArtifactIntegrityError``, nothing written)."""
        from .datasets import file_digest

        base, root = Path(os.path.abspath(within)), Path(os.path.realpath(within))
        todo = []
        for e in entries:
            checked_entry_path(e, run_id)
            target = Path(os.path.abspath(target_of(e)))
            if not _within(target, base) or target == base:
                raise ArtifactIntegrityError(f"artifact {e['path']!r} would be written to {target}, outside {base}; "
                                             "nothing was written")
            target = checked_target(root, root / target.relative_to(base), e["path"])
            if target.is_dir():
                raise InvalidArgumentError(f"cannot write artifact {e['path']!r} to {target}: a folder is there")
            if target.is_file() and target.stat().st_size == e["size"] and \
                    file_digest(target, limit=1 << 62) == e["digest"]:
                continue  # already here with the right content
            todo.append((e, target))
        bar = _progress(sum(e["size"] for e, _ in todo), description)
        blobs = self.artifacts if todo else None
        try:
            for e, target in todo:
                checked_target(root, target, e["path"])  # again: an earlier entry may have made a folder
                try:
                    target.parent.mkdir(parents=True, exist_ok=True)
                except (FileExistsError, NotADirectoryError):
                    raise InvalidArgumentError(f"cannot write artifact {e['path']!r} to {target}: a file stands "
                                               "where a folder on its path should be") from None
                blobs.get_file(e["digest"], target)
                if bar is not None:
                    bar.update(e["size"])
        finally:
            if bar is not None:
                bar.close()
