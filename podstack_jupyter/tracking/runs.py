"""Runs: the ``Run`` handle, the stack of active runs, and the metric buffer.

``log_metrics`` only appends to an in-memory queue (a few microseconds); a
background thread writes the queue to the store in batches, one transaction per
batch, every half second or sooner when it grows. The queue is also written when
a run ends, when the store changes and at interpreter exit, so nothing logged is
lost. If the store refuses a batch, the points are kept and retried; the next
``flush()`` that is waited for (ending a run, ``registry.flush()``) raises the error.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time

from ..errors import InvalidArgumentError, PodstackError
from ._entities import _rich_display, iso

__all__ = ["Run", "active_runs", "metric_buffer", "clean_metrics"]

log = logging.getLogger("podstack.tracking")


class Run:
    """A run: ``id``, ``name``, ``experiment_id``, ``status`` (``running``/``completed``/``failed``/
    ``killed``), ``start_time``/``end_time`` (ISO 8601), ``duration`` (seconds), ``parent_run_id``,
    ``params``, ``metrics`` (latest value per key), ``tags``, ``source`` (code text), ``gpu``.

    The one ``registry.start_run()`` returns is also the way to log into it
    (``run.log_params``, ``run.log_metrics``, ``run.log_dataset``, ``run.log_artifact``,
    ``run.log_model``...) and a context manager that ends it: ``completed`` when the
    block ends normally, ``failed`` on an exception, ``killed`` on KeyboardInterrupt.
    """

    def __init__(self, record: dict):
        self._apply(record)

    def _apply(self, r: dict):
        self.id: str = r["id"]
        self.name: str | None = r.get("name")
        self.experiment_id: str = r["experiment_id"]
        self.parent_run_id: str | None = r.get("parent_run_id")
        self.status: str = r.get("status", "running")
        self._start, self._end = r.get("start_time"), r.get("end_time")
        self.source: str | None = r.get("source")
        self.gpu: dict | None = r.get("gpu")
        self.params: dict = dict(r.get("params") or {})
        self.tags: dict = dict(r.get("tags") or {})
        self.metrics: dict = dict(r.get("metrics") or {})

    @property
    def info(self) -> "Run":
        """The run itself (``run.info.id``, ``run.info.experiment_id`` read as in other trackers)."""
        return self

    @property
    def start_time(self) -> str | None:
        return iso(self._start)

    @property
    def end_time(self) -> str | None:
        return iso(self._end)

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (to now while running)."""
        if self._start is None:
            return None
        return (self._end if self._end is not None else time.time()) - self._start

    def __repr__(self):
        return f"<Run {self.name!r} id={self.id} status={self.status}>"

    def _repr_mimebundle_(self, include=None, exclude=None):
        return _rich_display(self, include, exclude)

    def to_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "experiment_id": self.experiment_id,
                "parent_run_id": self.parent_run_id, "status": self.status, "start_time": self.start_time,
                "end_time": self.end_time, "duration": self.duration, "params": dict(self.params),
                "metrics": dict(self.metrics), "tags": dict(self.tags), "source": self.source, "gpu": self.gpu}

    # -- logging into this run ------------------------------------------------------------------
    def log_param(self, key: str, value) -> None:
        from . import registry

        registry.log_param(key, value, run_id=self.id)

    def log_params(self, params: dict) -> None:
        from . import registry

        registry.log_params(params, run_id=self.id)

    def log_metric(self, key: str, value, step: int | None = None) -> None:
        from . import registry

        registry.log_metric(key, value, step=step, run_id=self.id)

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        from . import registry

        registry.log_metrics(metrics, step=step, run_id=self.id)

    def set_tag(self, key: str, value) -> None:
        from . import registry

        registry.set_tag(key, value, run_id=self.id)

    def set_tags(self, tags: dict) -> None:
        from . import registry

        registry.set_tags(tags, run_id=self.id)

    def log_dataset(self, name: str, path=None, df=None, context: str = "training", digest: str | None = None,
                    source_type: str | None = None, tags: dict | None = None):
        """Same as ``registry.log_dataset``, for this run."""
        from . import registry

        return registry.log_dataset(name, path=path, df=df, context=context, digest=digest,
                                    source_type=source_type, tags=tags, run_id=self.id)

    def log_artifact(self, local_path, artifact_path: str | None = None) -> list:
        from . import registry

        return registry.log_artifact(local_path, artifact_path, run_id=self.id)

    def log_model(self, model, artifact_path: str = "model", framework: str | None = None,
                  metadata: dict | None = None) -> str:
        from . import registry

        return registry.log_model(model, artifact_path=artifact_path, framework=framework, metadata=metadata,
                                  run_id=self.id)

    def get_metric_history(self, key: str):
        from . import registry

        return registry.get_metric_history(self.id, key)

    def datasets(self) -> list:
        from . import registry

        return registry.get_run_datasets(self.id)

    def artifacts(self) -> list:
        from . import registry

        return registry.list_artifacts(self.id)

    def refresh(self) -> "Run":
        """Re-read this run from the store (after flushing buffered metrics)."""
        from . import registry

        metric_buffer.flush()
        self._apply(registry._store().get_run(self.id) or {"id": self.id, "experiment_id": self.experiment_id})
        return self

    def end(self, status: str = "completed") -> None:
        """End this run (and any run nested in it that is still active)."""
        from . import registry

        registry.end_run(status=status, run_id=self.id)

    def __enter__(self) -> "Run":
        return self

    def __exit__(self, exc_type, exc, tb):
        if self.status != "running":
            return False
        if exc_type is None:
            status = "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "killed"
        else:
            status = "failed"
        self.end(status)
        return False


class _ActiveRuns:
    """The runs started and not yet ended in this process, innermost last (shared by all threads)."""

    def __init__(self):
        self._lock = threading.RLock()
        self._runs: list[Run] = []
        # () -> Run | None: a run active elsewhere that this process logs into when it has none
        # of its own (inside a GPU session: the notebook's %%track run)
        self.fallback = None

    def top(self) -> Run | None:
        runs = self._runs
        if runs:
            return runs[-1]
        return self.fallback() if self.fallback is not None else None

    def push(self, run: Run) -> None:
        with self._lock:
            self._runs.append(run)

    def pop_through(self, run_id: str) -> list[Run]:
        """Remove the run ``run_id`` and every run above it; innermost first."""
        with self._lock:
            for i, run in enumerate(self._runs):
                if run.id == run_id:
                    removed = self._runs[i:][::-1]
                    del self._runs[i:]
                    return removed
            return []

    def find(self, run_id: str) -> Run | None:
        return next((r for r in self._runs if r.id == run_id), None)

    def all(self) -> list[Run]:
        return list(self._runs)

    def clear(self) -> None:
        with self._lock:
            self._runs.clear()


active_runs = _ActiveRuns()


def _as_float(key, value) -> float:
    try:
        return float(value)  # numpy scalars, 0-d tensors, Decimal...
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"metric {key!r}: value {value!r} ({type(value).__name__}) is not a number; "
            "metrics are numbers (log text as a tag or a param)") from None


def clean_metrics(metrics) -> dict:
    """``metrics`` as ``{str: float}``, or ``InvalidArgumentError`` naming the bad entry."""
    try:
        items = metrics.items()
    except AttributeError:
        raise InvalidArgumentError(
            f"log_metrics() takes a dict of name -> number, got {type(metrics).__name__}") from None
    clean = {}
    for key, value in items:
        if type(key) is not str or not key:
            raise InvalidArgumentError(f"metric names are non-empty strings, got {key!r}")
        clean[key] = value if type(value) is float else _as_float(key, value)
    return clean


class _MetricBuffer:
    """Metric points waiting to be written; see the module docstring."""

    interval = 0.5            # seconds between background flushes
    wake_at = 20_000          # queued points that wake the flusher early
    block_at = 1_000_000      # queued points beyond which log_metrics flushes itself (back-pressure)
    batch_points = 200_000    # points per store transaction

    def __init__(self):
        self._queue: collections.deque = collections.deque()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_step: dict = {}
        self._failed: list = []
        self._error: BaseException | None = None
        self.store_for = None  # set by the registry: () -> Store

    def add(self, run_id: str, metrics: dict, step, timestamp: float) -> None:
        queue = self._queue
        append = queue.append
        # one flat tuple of atoms per point: the garbage collector stops tracking them, so a
        # queue of a million points does not make every collection slower (it did: 1.4 us a call)
        for key, value in metrics.items():
            append((run_id, key, value, step, timestamp))
        if self._thread is None:
            self._start()
        if len(queue) >= self.wake_at:
            self._wake.set()
            if len(queue) >= self.block_at:
                self.flush(raise_errors=False)

    def _start(self):
        with self._flush_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="podstack-metrics", daemon=True)
                self._thread.start()

    def _loop(self):
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush(raise_errors=False)
            except Exception:  # noqa: BLE001 - the flusher must survive; the error is kept for flush()
                log.exception("podstack: writing metrics failed; they are kept and retried")

    def pending(self) -> int:
        return len(self._queue) + len(self._failed)

    def _points(self) -> list:
        queue, pop = self._queue, self._queue.popleft
        entries = [pop() for _ in range(len(queue))]
        points = []
        append = points.append
        next_step = self._next_step
        for entry in entries:
            run_id, key, value, step, timestamp = entry
            slot = (run_id, key)
            if step is None:
                s = next_step.get(slot, 0)
                next_step[slot] = s + 1
                append((run_id, key, value, s, timestamp))
            else:
                if step >= next_step.get(slot, 0):
                    next_step[slot] = step + 1
                append(entry)  # already a point: no copy (this loop holds the GIL the logging loop needs)
        return points

    def flush(self, raise_errors: bool = True) -> None:
        """Write every queued point now. With ``raise_errors``, a store error is raised (the
        points stay queued); otherwise it is kept and raised by the next waited-for flush."""
        with self._flush_lock:
            points = self._failed + self._points()
            self._failed = []
            if not points:
                if raise_errors and self._error is not None:
                    error, self._error = self._error, None
                    raise error
                return
            store = self.store_for()
            for i in range(0, len(points), self.batch_points):
                batch = points[i:i + self.batch_points]
                try:
                    store.log_metrics(batch)
                except Exception as exc:
                    self._failed = points[i:]
                    self._error = exc
                    if raise_errors:
                        raise PodstackError(
                            f"could not write {len(self._failed)} metric points to {store!r}: {exc}. "
                            "They are kept in memory and retried.") from exc
                    return
            self._error = None

    def forget_run(self, run_id: str) -> None:
        """Drop the automatic step counters of an ended run."""
        for slot in [s for s in self._next_step if s[0] == run_id]:
            del self._next_step[slot]


metric_buffer = _MetricBuffer()


def _after_fork_in_child():
    # The flusher thread does not survive fork; the child starts its own and does not
    # write the parent's queued points a second time.
    metric_buffer._thread = None
    metric_buffer._queue.clear()
    metric_buffer._failed = []
    metric_buffer._flush_lock = threading.Lock()
    active_runs._lock = threading.RLock()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _flush_at_exit():
    if metric_buffer.pending() and metric_buffer.store_for is not None:
        try:
            metric_buffer.flush()
        except Exception as exc:  # noqa: BLE001 - the interpreter is going away; say what is lost
            log.error("podstack: %d metric points could not be written at exit: %s", metric_buffer.pending(), exc)
