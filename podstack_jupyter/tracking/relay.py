"""Tracking from inside a GPU session, through the session itself, and only into the cell's run.

Code running in a remote kernel (``podstack.registry.log_metrics`` in a training loop on
the GPU node) logs into the notebook's store without a route to the database: the session's
registry uses a :class:`RelayClient`, whose writes travel to the notebook as agent messages
and run there through the notebook's :class:`~podstack_jupyter.tracking.TrackingClient`
(so every rule and validation is the notebook's, and ``run.started`` / ``run.ended`` /
``metrics.logged`` are published in the notebook). Reads go to the notebook's store as
they are (a :class:`RelayStore`, read-only).

**What a session may do** is decided in the notebook, by :class:`SessionScope`, for every
relayed call, from what the *notebook* knows of the call's origin (which session sent it,
and the run of the cell that session is running, ``compute.hooks.event_origin()``), never
from the message, which the remote wrote:

* write into the run of the cell it runs in (``%%track`` around ``%%gpu``): params,
  metrics, tags, datasets, artifacts, models, and register a model version of that run;
* start runs of its own, as children of that run (``start_run(nested=True)``; a top-level
  run when the cell has no run), and write into them, end them;
* create an experiment by name (its own runs need one), and read anything.

Everything else (ending or renaming the notebook's run, writing into another run, moving a
model between stages, aliases, versions of other runs) is a ``PermissionDeniedError``,
raised in the session. Artifact and model files travel through the session as bytes and are
stored by the notebook, which computes their digests and writes the rows itself: a session
never writes an artifact row, and never holds the notebook's model-signing key (the
notebook signs a model's manifest when its files arrive, :mod:`podstack_jupyter.models`).

Calls on the cell's main thread wait for their answer (errors are raised in the session, in
order with everything sent before); writes from background threads, such as the metric
flusher, are sent without waiting (a refusal is then printed in the notebook), so a training
loop never blocks on the notebook and its metrics arrive while the cell is still running.
"""

from __future__ import annotations

import atexit
import dataclasses
import inspect
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from ..compute import hooks
from ..errors import InvalidArgumentError, PermissionDeniedError, PodstackError
from . import _validate as V
from ._entities import Dataset, Experiment
from .client import TrackingClient, artifact_files, clean_artifact_path
from .runs import clean_metrics
from .store import Store, current_store

__all__ = ["RelayStore", "RelayClient", "SessionScope", "session_store", "handle_relay_call", "notebook_context",
           "current_scope", "take_upload", "send_files", "call_notebook", "at_cell_end", "OP"]

OP = "tracking.relay"
_CHUNK = 4 * 1024 * 1024  # bytes of a file per message
_IN_FLIGHT = 64 * 1024 * 1024  # bytes sent before waiting for the notebook to confirm them

# Store methods that only read: a session may call them as they are.
STORE_READS = frozenset({
    "get_experiment", "get_experiment_by_name", "list_experiments", "get_runs", "get_run", "has_run", "search_runs",
    "get_metric_history", "get_run_datasets", "list_artifacts", "get_registered_model", "list_registered_models",
    "get_model_lineage",
})


# -- session side ------------------------------------------------------------------------------
def call_notebook(agent, op: str, method: str, args=(), kwargs=None, *, answer: bool = True, buffers=None):
    """Run ``method`` in the notebook. On the main thread: wait and return its answer (raising
    its error here). Elsewhere: a call that needs no answer is sent without waiting."""
    data = {"method": method, "args": list(args), "kwargs": dict(kwargs or {})}
    if threading.current_thread() is threading.main_thread() and buffers is None:
        return agent.call(op, data)
    if answer:
        raise PodstackError(f"{method} needs an answer from the notebook, and only the main thread of a GPU session "
                            "can wait for one; call it from the cell's own code, not from a background thread")
    agent.emit(op, data, buffers=buffers)
    return None


class RelayStore(Store):
    """The notebook's store, read-only, seen from a GPU session (see the module docstring).

    Reads run in the notebook as they are; ``log_metrics`` (the metric buffer's batches) goes
    through the notebook's client; any other write is refused here: write through
    ``podstack.registry``, whose client asks the notebook."""

    def __init__(self, agent):
        self._agent = agent

    def __repr__(self):
        return "RelayStore(the notebook's store, through this GPU session)"

    def log_metrics(self, points: list) -> None:
        call_notebook(self._agent, OP, "log_points", [[list(p) for p in points]], answer=False)

    def close(self) -> None:
        pass


def _reader(name):
    def method(self, *args, **kwargs):
        return call_notebook(self._agent, OP, "read", [name, list(args), kwargs])

    method.__name__ = name
    method.__doc__ = getattr(Store, name).__doc__
    return method


def _refused_write(name):
    def method(self, *args, **kwargs):
        raise PermissionDeniedError(f"{name}: a GPU session does not write the notebook's store directly; use "
                                    "podstack.registry (it logs into the run of this cell through the notebook)")

    method.__name__ = name
    return method


for _name in sorted(Store.__abstractmethods__ | {"get_run", "has_run"}):
    if _name in STORE_READS:
        setattr(RelayStore, _name, _reader(_name))
    elif _name != "log_metrics":
        setattr(RelayStore, _name, _refused_write(_name))
RelayStore.__abstractmethods__ = frozenset()


def send_files(agent, run_id: str, files) -> str:
    """Send local files (``[(path, name)...]``, names clean relative paths) to the notebook for
    ``run_id``; returns the upload id a following call names. The notebook refuses a run this
    session may not write before any byte travels."""
    listed = [(Path(path), clean_artifact_path(name, "file name")) for path, name in files]
    upload = call_notebook(agent, OP, "begin_upload", [run_id, [[name, path.stat().st_size] for path, name in listed]])
    sent = unconfirmed = 0
    for index, (path, _) in enumerate(listed):
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                agent.emit(OP, {"method": "upload_chunk", "args": [upload, index], "kwargs": {}}, buffers=[chunk])
                sent += len(chunk)
                unconfirmed += len(chunk)
                if unconfirmed >= _IN_FLIGHT:  # wait for the notebook: the kernel's channel drops what overflows it
                    _confirm(agent, upload, sent)
                    unconfirmed = 0
    _confirm(agent, upload, sent)
    return upload


def _confirm(agent, upload: str, sent: int) -> None:
    received = call_notebook(agent, OP, "upload_progress", [upload])
    if received != sent:
        raise PodstackError(f"the notebook received {received:,} of the {sent:,} bytes sent; nothing was stored. "
                            "Try again (the session's channel to the notebook dropped messages)")


class RelayClient(TrackingClient):
    """A :class:`TrackingClient` inside a GPU session: reads run here over a :class:`RelayStore`;
    every write is a call of the notebook's client, which the notebook allows or refuses
    (see the module docstring). Artifact files travel as bytes to the notebook."""

    def __init__(self, store: RelayStore, artifacts=None):
        super().__init__(store, artifacts)
        self._agent = store._agent

    def __repr__(self):
        return "RelayClient(the notebook's tracking, through this GPU session)"

    def _call(self, method, *args, answer=True, **kwargs):
        return call_notebook(self._agent, OP, method, args, kwargs, answer=answer)

    def ensure_experiment(self, name, description=None, tags=None) -> Experiment:
        return Experiment(**self._call("ensure_experiment", name, description, tags))

    def create_run(self, experiment_id, name=None, *, parent_run_id=None, tags=None, source=None, gpu=None,
                   run_id=None) -> dict:
        return self._call("create_run", experiment_id, name, parent_run_id=parent_run_id, tags=tags, source=source,
                          gpu=gpu, run_id=run_id)

    def resume_run(self, run_id, name=None, tags=None) -> dict:
        return self._call("resume_run", run_id, name, tags)

    def end_run(self, run_id, status="completed", end_time=None) -> None:
        self._call("end_run", run_id, status, end_time)

    def require_writable(self, run_id) -> str:
        return self._call("require_writable", V.identifier("run_id", run_id))

    def log_params(self, run_id, params) -> dict:
        clean = V.string_dict("log_params", params)  # a bad value is refused here, before anything travels
        if clean:
            self._call("log_params", run_id, clean, answer=False)
        return clean

    def set_tags(self, run_id, tags) -> dict:
        clean = V.string_dict("set_tags", tags)
        if clean:
            self._call("set_tags", run_id, clean, answer=False)
        return clean

    def delete_tag(self, run_id, key) -> None:
        self._call("delete_tag", run_id, key, answer=False)

    def log_metrics(self, run_id, metrics, step=0, timestamp=None) -> None:
        clean = clean_metrics(metrics)
        stamp = time.time() if timestamp is None else self._timestamp(timestamp)
        self.log_points([(run_id, key, value, V.step("step", step), stamp) for key, value in clean.items()])

    def log_points(self, points) -> int:
        points = [list(p) for p in points]
        self._call("log_points", points, answer=False)
        return len(points)

    def log_dataset(self, run_id, name, path=None, df=None, context="training", digest=None, source_type=None,
                    tags=None) -> Dataset:
        from .datasets import describe

        # the file and the DataFrame are here: describe them here, the notebook checks what it is sent
        return self.log_dataset_record(run_id, describe(name, path, df, context, digest, source_type, tags), context)

    def log_dataset_record(self, run_id, record, context="training") -> Dataset:
        return Dataset(**self._call("log_dataset_record", run_id, record, context))

    def log_artifact_files(self, run_id, files) -> list[dict]:
        files = [(Path(path), clean_artifact_path(name, "artifact path")) for path, name in files]
        upload = send_files(self._agent, V.identifier("run_id", run_id), files)
        return self._call("store_upload", upload)


def session_store() -> RelayStore | None:
    """The relay, when this process is a GPU session's kernel with a connected agent.

    Also makes the notebook's active run (``%%track`` around ``%%gpu``) the run that
    registry calls log into here, and writes buffered metrics before each cell's
    results go back, so the notebook sees them when the cell ends.
    """
    agent = _session_agent()
    if agent is None:
        return None
    from .runs import Run, active_runs, metric_buffer

    def notebook_run():
        tracking = agent.context.get("tracking")
        if not tracking:
            return None
        return Run({"id": tracking["run_id"], "experiment_id": tracking["experiment_id"],
                    "name": tracking.get("name")})

    active_runs.fallback = notebook_run
    agent.on_cell_end.append(metric_buffer.flush)
    return RelayStore(agent)


def _session_agent():
    if os.environ.get("PODSTACK_SESSION") != "1":
        return None
    agent_module = sys.modules.get("_podstack_agent")
    agent = getattr(agent_module, "_agent", None)
    if agent is None or agent.comm is None:
        return None
    return agent


def at_cell_end(callback) -> None:
    """Inside a GPU session: run ``callback()`` at the end of each cell (nothing elsewhere)."""
    agent = _session_agent()
    if agent is not None:
        agent.on_cell_end.append(callback)


# -- notebook side -----------------------------------------------------------------------------
class SessionScope:
    """What one relayed call may write: the run of the cell its session runs in (``cell_run``) and
    the runs that session started (``started``, kept for the session's life). Built in the
    notebook from ``hooks.event_origin()``; see the module docstring."""

    _started: dict = {}  # session id -> set of run ids it started
    _lock = threading.Lock()

    def __init__(self, session_id: str | None, cell_run: dict | None):
        self.session_id = session_id
        self.cell_run = cell_run or None
        with self._lock:
            self.started = self._started.setdefault(session_id, set())

    def _where(self) -> str:
        if self.cell_run:
            return (f"the run of the cell it runs in ({self.cell_run.get('name')!r}, {self.cell_run['run_id']}) "
                    "and runs it starts inside it")
        return "runs it starts itself (this cell runs in no tracked run: put %%track above %%gpu)"

    def writable(self, run_id, what: str) -> str:
        """``run_id`` if this session may write into it, else ``PermissionDeniedError``."""
        run_id = V.identifier("run_id", run_id)
        if run_id in self.started or (self.cell_run and run_id == self.cell_run["run_id"]):
            return run_id
        raise PermissionDeniedError(f"{what}: a GPU session may write only into {self._where()}; run {run_id} is "
                                    "not one of them. Log into it from the notebook instead.")

    def own(self, run_id, what: str) -> str:
        """``run_id`` if this session started it (it may end or resume it), else ``PermissionDeniedError``."""
        run_id = V.identifier("run_id", run_id)
        if run_id in self.started:
            return run_id
        if self.cell_run and run_id == self.cell_run["run_id"]:
            raise PermissionDeniedError(f"{what}: run {run_id} is the notebook's run of this cell; the notebook ends "
                                        "it (when the %%track cell ends). A GPU session ends only runs it started.")
        raise PermissionDeniedError(f"{what}: a GPU session ends or resumes only runs it started; run {run_id} is "
                                    "not one of them")

    def refuse(self, what: str, why: str):
        raise PermissionDeniedError(f"{what}: {why}. A GPU session may log into {self._where()}, and read; do this "
                                    "in the notebook.")


def current_scope() -> SessionScope:
    """The scope of the relayed call being handled (no cell run outside a session's event)."""
    origin = hooks.event_origin() or {}
    return SessionScope(origin.get("session_id"), (origin.get("context") or {}).get("tracking"))


def _notebook_client() -> TrackingClient:
    from . import registry

    return registry.client()


def _read(scope, client, method, args, kwargs):
    if method not in STORE_READS:
        raise PermissionDeniedError(f"{method!r} is not a read of the tracking store")
    return getattr(client.store, method)(*args, **kwargs)


def _ensure_experiment(scope, client, name, description=None, tags=None):
    # the session's own runs need an experiment; making one by name changes nothing that exists
    return dataclasses.asdict(client.ensure_experiment(name, description, tags))


def _create_run(scope, client, experiment_id, name=None, *, parent_run_id=None, tags=None, source=None, gpu=None,
                run_id=None):
    if parent_run_id is not None:
        scope.writable(parent_run_id, "start_run(nested=True)")
    elif scope.cell_run:
        scope.refuse("start_run", "this cell runs inside the notebook's run, so a run started here must be its "
                                  "child: registry.start_run(..., nested=True)")
    record = client.create_run(experiment_id, name, parent_run_id=parent_run_id, tags=tags, source=source, gpu=gpu,
                               run_id=run_id)
    with SessionScope._lock:
        scope.started.add(record["id"])
    return record


def _resume_run(scope, client, run_id, name=None, tags=None):
    return client.resume_run(scope.own(run_id, "start_run(run_id=...)"), name, tags)


def _end_run(scope, client, run_id, status="completed", end_time=None):
    client.end_run(scope.own(run_id, "end_run"), status, end_time)


def _require_writable(scope, client, run_id):
    return client.require_writable(scope.writable(run_id, "logging"))


def _log_params(scope, client, run_id, params):
    return client.log_params(scope.writable(run_id, "log_params"), params)


def _set_tags(scope, client, run_id, tags):
    return client.set_tags(scope.writable(run_id, "set_tags"), tags)


def _delete_tag(scope, client, run_id, key):
    client.delete_tag(scope.writable(run_id, "delete_tag"), key)


def _log_points(scope, client, points):
    if not isinstance(points, list) or not all(isinstance(p, list) and p for p in points):
        raise InvalidArgumentError("log_points takes a list of metric points [run_id, key, value, step, timestamp]")
    checked = set()
    for point in points:
        if point[0] not in checked:
            checked.add(scope.writable(point[0], "log_metrics"))
    return client.log_points(points)


def _log_dataset_record(scope, client, run_id, record, context="training"):
    if run_id is None:
        scope.refuse("log_dataset", "a dataset logged from a GPU session belongs to a run, and no run is active")
    dataset = client.log_dataset_record(scope.writable(run_id, "log_dataset"), record, context)
    return dataclasses.asdict(dataset)


class _Upload:
    """Files a session is sending for one run, gathered in a private temporary folder."""

    def __init__(self, session_id, run_id: str, files: list):
        self.session_id, self.run_id = session_id, run_id
        self.names = [clean_artifact_path(name, "file name") for name, _ in files]
        self.sizes = [V.step("file size", size) for _, size in files]
        if len(set(self.names)) != len(self.names) or any(s < 0 for s in self.sizes):
            raise InvalidArgumentError("an upload lists a file twice, or a negative size")
        self.folder = Path(tempfile.mkdtemp(prefix="podstack-upload-"))
        self.received = [0] * len(self.names)
        self.started = time.monotonic()

    def path(self, index: int) -> Path:
        return self.folder.joinpath(*self.names[index].split("/"))

    def add(self, index, chunk) -> None:
        if not (isinstance(index, int) and 0 <= index < len(self.names)):
            raise InvalidArgumentError(f"upload: no file number {index!r}")
        size = len(chunk)
        if self.received[index] + size > self.sizes[index]:
            raise InvalidArgumentError(f"upload: {self.names[index]!r} is larger than the {self.sizes[index]} bytes "
                                       "announced")
        path = self.path(index)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "ab") as f:
            f.write(chunk)
        self.received[index] += size

    def complete(self) -> list[tuple[Path, str]]:
        short = [n for n, got, want in zip(self.names, self.received, self.sizes) if got != want]
        if short:
            raise PodstackError(f"upload: {short[:5]} did not arrive whole from the GPU session; nothing was stored")
        for index in range(len(self.names)):  # empty files get no chunk
            self.path(index).parent.mkdir(parents=True, exist_ok=True)
            self.path(index).touch()
        return [(self.path(i), name) for i, name in enumerate(self.names)]

    def discard(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


_uploads: dict[str, _Upload] = {}
_uploads_lock = threading.Lock()


@atexit.register
def _discard_pending_uploads():
    with _uploads_lock:
        pending = list(_uploads.values())
        _uploads.clear()
    for upload in pending:  # a session that died mid-upload
        upload.discard()


def _begin_upload(scope, client, run_id, files):
    if not isinstance(files, list) or not all(isinstance(f, list) and len(f) == 2 for f in files):
        raise InvalidArgumentError("begin_upload takes [[name, size]...]")
    upload = _Upload(scope.session_id, scope.writable(run_id, "log_artifact"), files)
    upload_id = uuid.uuid4().hex
    with _uploads_lock:
        _uploads[upload_id] = upload
    return upload_id


def _upload_of(scope, upload_id) -> _Upload:
    with _uploads_lock:
        upload = _uploads.get(upload_id)
    if upload is None or upload.session_id != scope.session_id:
        raise InvalidArgumentError(f"no upload {upload_id!r} from this GPU session")
    return upload


def _upload_chunk(scope, client, upload_id, index, *, buffers):
    upload = _upload_of(scope, upload_id)
    try:
        for chunk in buffers:
            upload.add(index, chunk)
    except BaseException:
        take_upload(scope, upload_id).discard()
        raise


def _upload_progress(scope, client, upload_id):
    return sum(_upload_of(scope, upload_id).received)


def take_upload(scope: SessionScope, upload_id) -> _Upload:
    """The upload ``upload_id`` of this session, no longer pending (``.complete()`` lists its
    files, ``.discard()`` removes them); the caller stores what it needs, then discards it."""
    upload = _upload_of(scope, upload_id)
    with _uploads_lock:
        _uploads.pop(upload_id, None)
    return upload


def _store_upload(scope, client, upload_id):
    upload = take_upload(scope, upload_id)
    try:
        return client.log_artifact_files(scope.writable(upload.run_id, "log_artifact"), upload.complete())
    finally:
        upload.discard()


_OPERATIONS = {
    "read": _read, "ensure_experiment": _ensure_experiment, "create_run": _create_run, "resume_run": _resume_run,
    "end_run": _end_run, "require_writable": _require_writable, "log_params": _log_params, "set_tags": _set_tags,
    "delete_tag": _delete_tag, "log_points": _log_points, "log_dataset_record": _log_dataset_record,
    "begin_upload": _begin_upload, "upload_chunk": _upload_chunk, "upload_progress": _upload_progress,
    "store_upload": _store_upload,
}


def handle_relay_call(data: dict, buffers: list):
    """Notebook side: run a call a GPU session relayed, if its scope allows it (see the module
    docstring); the answer goes back to the session, as does the error."""
    method = data.get("method")
    operation = _OPERATIONS.get(method)
    if operation is None:
        raise PermissionDeniedError(f"{method!r} is not something a GPU session can ask of the notebook's tracking")
    args, kwargs = data.get("args") or [], data.get("kwargs") or {}
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        raise InvalidArgumentError("a relayed call has a list of args and a dict of kwargs")
    if method == "upload_chunk":
        kwargs = {**kwargs, "buffers": buffers}
    scope = current_scope()
    try:
        inspect.signature(operation).bind(scope, None, *args, **kwargs)
    except TypeError as exc:
        raise InvalidArgumentError(f"{method}: {exc}") from None
    return operation(scope, _notebook_client(), *args, **kwargs)


def notebook_context() -> dict | None:
    """What a remote cell should know of the notebook's tracking (the compute plane's cell-context
    provider ``tracking``): its active run, if any."""
    registry = sys.modules.get("podstack_jupyter.tracking.registry")
    active = getattr(registry, "active_run", None)
    run = active() if active is not None else None
    if run is None:
        return None
    return {"run_id": run.id, "experiment_id": run.experiment_id, "name": run.name}
