"""Runs: the ``Run`` handle, each thread's stack of active runs, and the metric buffer.

``log_metrics`` checks its points (a point the store could not hold is refused at the
call, naming it) and appends them to this process's metric journal (``journal.py``): a
file mapped into memory, so a point survives the death of the process as soon as the
call returns, at a cost of a few hundred nanoseconds. A background thread writes the
journal to the store in batches, one transaction per batch, every half second or sooner
when it grows; also when a run ends, when the store changes and at exit. If the store
cannot be written, the points stay in the journal and are retried; if it refuses some
points, only those are set aside (``rejected.jsonl`` beside the journals) and the others
are written. Either is raised by the next ``flush()`` that is waited for (ending a run,
``registry.flush()``, ``get_run``).

Active runs are per thread, as in MLflow's fluent API: ``start_run`` pushes onto the
calling thread's stack, ``nested=True`` takes its parent from that stack, and a worker
thread logs into a run it is handed with ``run_id=`` or ``run.log_metrics``.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time

from ..errors import InvalidArgumentError, PodstackError
from ._entities import _rich_display, iso
from . import _validate as V
from ..events import has_subscribers
from ._publish import TOPIC, publish_series
from .journal import Journal, WriteOutcome, durable_url, journal_directory, reason, recover, set_aside, write_series

__all__ = ["Run", "active_runs", "metric_buffer", "clean_metrics"]

log = logging.getLogger("podstack.tracking")


class Run:
    """A run: ``id``, ``name``, ``experiment_id``, ``status`` (``running``/``completed``/``failed``/
    ``killed``), ``start_time``/``end_time`` (ISO 8601), ``duration`` (seconds), ``parent_run_id``,
    ``params``, ``metrics`` (latest value per key), ``tags``, ``source`` (code text), ``gpu``.

    The one ``registry.start_run()`` returns is also the way to log into it
    (``run.log_params``, ``run.log_metrics``, ``run.log_dataset``, ``run.log_artifact``...;
    a model: ``registry.log_model(model)`` inside the run), from any thread, and a context
    manager that ends it: ``completed`` when the block ends normally (or by ``sys.exit(0)``),
    ``failed`` on an exception, ``killed`` on KeyboardInterrupt.
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
        if exc_type is None or (issubclass(exc_type, SystemExit) and getattr(exc, "code", None) in (None, 0)):
            status = "completed"
        elif issubclass(exc_type, KeyboardInterrupt):
            status = "killed"
        else:
            status = "failed"
        self.end(status)
        return False


class _ThreadRuns(threading.local):
    def __init__(self, owner: "_ActiveRuns"):
        self.runs: list[Run] = []
        owner._register(self.runs)


class _ActiveRuns:
    """The runs started and not yet ended in this process: one stack per thread, innermost last.

    ``top()`` is the calling thread's innermost run, or ``fallback()`` when it has none (inside a
    GPU session: the notebook's ``%%track`` run, for every thread of the session's kernel).
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._stacks: dict = {}  # id(stack) -> (thread, stack): every thread's stack, for all() and exit
        self._by_id: dict = {}   # run id -> Run, every thread's (a run is active in one thread at most)
        self._local = _ThreadRuns(self)
        # () -> Run | None: a run active elsewhere that this process logs into when it has none
        # of its own (inside a GPU session: the notebook's %%track run)
        self.fallback = None

    def _register(self, stack: list) -> None:
        thread = threading.current_thread()
        with self._lock:
            for key, (other, runs) in list(self._stacks.items()):
                if not runs and not other.is_alive():
                    del self._stacks[key]
            self._stacks[id(stack)] = (thread, stack)

    def top(self) -> Run | None:
        runs = self._local.runs
        if runs:
            return runs[-1]
        fallback = self.fallback
        return fallback() if fallback is not None else None

    def mine(self) -> list[Run]:
        """The calling thread's active runs, outermost first."""
        return list(self._local.runs)

    def push(self, run: Run) -> None:
        from . import _exit

        run._pid = os.getpid()  # only this process ends it at exit (not a forked child)
        runs = self._local.runs  # (outside the lock: a thread's first access registers its stack under it)
        with self._lock:
            runs.append(run)
            self._by_id[run.id] = run
        _exit.install()

    def _all_stacks(self) -> list:
        with self._lock:
            return [stack for _, stack in self._stacks.values()]

    def pop_through(self, run_id: str) -> list[Run]:
        """Remove the run ``run_id`` and every run nested above it in its thread's stack (the
        calling thread's first); innermost first."""
        mine = self._local.runs
        for stack in [mine] + [s for s in self._all_stacks() if s is not mine]:
            with self._lock:
                for i, run in enumerate(stack):
                    if run.id == run_id:
                        removed = stack[i:][::-1]
                        del stack[i:]
                        for gone in removed:
                            self._by_id.pop(gone.id, None)
                        return removed
        return []

    def find(self, run_id: str) -> Run | None:
        """The active ``Run`` with this id, in this thread or another."""
        return self._by_id.get(run_id)

    def all(self) -> list[Run]:
        """Every thread's active runs (each thread's outermost first)."""
        return [run for stack in self._all_stacks() for run in list(stack)]

    def elsewhere(self) -> list[tuple[str, Run]]:
        """``(thread name, innermost run)`` of the other threads that have an active run."""
        mine = self._local.runs
        with self._lock:
            return [(thread.name, stack[-1]) for thread, stack in self._stacks.values() if stack and stack is not mine]

    def clear(self) -> None:
        for stack in self._all_stacks():
            with self._lock:
                stack.clear()
        self._by_id.clear()

    def _after_fork(self) -> None:
        self._lock = threading.Lock()
        mine = self._local.runs
        self._stacks = {id(mine): (threading.current_thread(), mine)}
        self._by_id = {run.id: run for run in mine}


active_runs = _ActiveRuns()

_checked_keys: set = set()  # metric names already found valid (so a training loop checks each once)


def _check_key(key) -> str:
    if not isinstance(key, str) or not key:
        raise InvalidArgumentError(f"metric names are non-empty strings, got {key!r}")
    key = V.key("metric name", key)  # the limits every store holds (255 characters, no NUL, valid Unicode)
    if len(_checked_keys) > 100_000:
        _checked_keys.clear()
    _checked_keys.add(key)
    return key


def _as_float(key, value) -> float:
    try:
        return float(value)  # numpy scalars, 0-d tensors, Decimal...
    except (TypeError, ValueError):
        raise InvalidArgumentError(
            f"metric {key!r}: value {value!r} ({type(value).__name__}) is not a number; "
            "metrics are numbers (log text as a tag or a param)") from None
    except OverflowError:
        raise InvalidArgumentError(
            f"metric {key!r}: value {_short(value)} is too large for a 64-bit float (the largest is about "
            "1.8e308); log its logarithm, or a scaled value") from None


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...{text[-10:]} ({len(text)} digits)"


def clean_metrics(metrics) -> dict:
    """``metrics`` as ``{str: float}``, or ``InvalidArgumentError`` naming the bad entry: a name
    that is not a non-empty string of at most 255 characters, or holds NUL or a lone surrogate
    (no database can store those, and the same limits hold on SQLite and PostgreSQL); a value
    that is not a number, or too large for a float."""
    checked = _checked_keys
    if type(metrics) is dict:
        for key, value in metrics.items():
            if type(value) is not float or type(key) is not str or key not in checked:
                break
        else:
            return metrics  # already clean: the journal copies the points before log_metrics returns
    try:
        items = metrics.items()
    except AttributeError:
        raise InvalidArgumentError(
            f"log_metrics() takes a dict of name -> number, got {type(metrics).__name__}") from None
    clean = {}
    for key, value in items:
        if type(key) is not str or key not in checked:
            key = _check_key(key)
        clean[key] = value if type(value) is float else _as_float(key, value)
    return clean


class _MetricBuffer:
    """Metric points on their way to the store; see the module docstring."""

    interval = 0.5            # seconds between background flushes (sooner each time a journal segment fills)
    live_interval = 0.1       # ... while something shows metrics live (a chart subscribed to metrics.logged)
    block_at = 2_000_000      # pending points beyond which log_metrics flushes itself (back-pressure)
    batch_points = 200_000    # points per store transaction
    recover_every = 10.0      # seconds between looks for journals of dead processes (e.g. forked workers)
    durable = True            # journal to disk (False: in memory only, as before the journal; for comparison)

    def __init__(self):
        self._lock = threading.RLock()       # attaching a store, opening the journal
        self._flush_lock = threading.Lock()  # one writer to the store at a time
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None
        self._journal: Journal | None = None
        self._store = None
        self._store_dir = None
        self._flushed = 0                    # records of the journal handled (written or set aside)
        self._down: BaseException | None = None   # why the store takes nothing now
        self._rejected: list = []                 # (point, error) set aside, not reported yet
        self._rejected_at: str | None = None
        self._recovered_at = 0.0
        self.store_for = None  # set by the registry: () -> Store (attaches it)

    @property
    def store(self):
        """The store the journal's points go to."""
        return self._store

    @property
    def journal(self) -> Journal | None:
        return self._journal

    # -- logging (any thread) --------------------------------------------------------------------
    def add(self, run_id: str, metrics: dict, step, timestamp: float) -> None:
        """Journal one point per metric (``metrics`` cleaned by ``clean_metrics``, ``step`` an int64
        or ``None``); once this returns the points survive the death of the process.

        While a journal is open, ``add`` is the journal's own ``log`` (one call less on the hot
        path); this method opens it."""
        journal = self._journal or self._open()
        journal.log(run_id, metrics, step, timestamp)

    def _open(self) -> Journal:
        with self._lock:
            if self._journal is None:
                store = self.store_for()  # the registry's store accessor attaches it
                if store is not self._store:
                    self.attach(store)
                journal = self._new_journal()
                journal.reroute = self._reroute
                journal.on_roll = self._on_roll
                self._journal = journal
                self._flushed = 0
                if self._thread is None:
                    self._start()
                self.add = journal.log
            return self._journal

    def _reroute(self, run_id, metrics, step, timestamp):
        # the journal closed (the store changed) while this thread was logging into it
        return _MetricBuffer.add(self, run_id, metrics, step, timestamp)

    def _on_roll(self, journal: Journal) -> None:
        self._wake.set()
        if self._down is None and journal.pending() >= self.block_at:
            self.flush(raise_errors=False)  # the flusher cannot keep up: this thread helps (back-pressure)

    def _new_journal(self) -> Journal:
        if self.durable and self._store_dir is not None:
            try:
                return Journal.create(self._store_dir, about={"store": repr(self._store)})
            except OSError as exc:
                log.error("podstack: cannot create a metric journal in %s (%s); metric points are kept in "
                          "memory until written, and would be lost if this process were killed",
                          self._store_dir, exc)
        return Journal.in_memory()

    def run_started(self, run_id: str) -> None:
        """Note a run started here (before it is created): recovery ends it ``killed`` if this
        process dies with it still running."""
        (self._journal or self._open()).run_started(run_id)

    def run_ended(self, run_id: str) -> None:
        """Note a run ended here, and drop its automatic step counters."""
        journal = self._journal
        if journal is not None:
            journal.run_ended(run_id)

    forget_run = run_ended

    def _start(self):
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="podstack-metrics", daemon=True)
                self._thread.start()

    def _loop(self):
        wait = self.interval
        while True:
            self._wake.wait(wait)
            self._wake.clear()
            try:
                self.flush(raise_errors=False)
                if self._down is not None:
                    wait = min(max(wait, self.interval) * 2, 30.0)
                else:
                    wait = self.live_interval if has_subscribers(TOPIC) else self.interval
                if time.monotonic() - self._recovered_at > self.recover_every:
                    self.recover_dead()
            except Exception:  # noqa: BLE001 - the flusher must survive; errors surface at the next flush()
                log.exception("podstack: writing metrics failed; they are kept and retried")

    # -- the store ------------------------------------------------------------------------------
    def attach(self, store) -> None:
        """Send points to ``store`` from now on. Points logged for the previous store are written to
        it first (or, if it cannot take them, left in their journal for the next process that opens
        it); journals that dead processes left for ``store`` are recovered into it."""
        with self._lock:
            if store is self._store:
                return
            self._detach_locked()
            self._store = store
            url = getattr(store, "url", None)
            self._store_dir = None
            if durable_url(url):
                from ..config import settings

                self._store_dir = journal_directory(settings().home, url)
            self.recover_dead()

    def detach(self) -> None:
        """Write what was logged to the store and close the journal (``podstack.init``, ``use_store``)."""
        with self._lock:
            self._detach_locked()
            self._store = self._store_dir = None

    close = detach  # at exit

    def _detach_locked(self) -> None:
        journal = self._journal
        if journal is None:
            return
        self._journal = None
        self.__dict__.pop("add", None)  # logging opens the next journal
        with self._flush_lock:
            try:
                self._drain(journal)
            except Exception as exc:  # noqa: BLE001 - reported below; the journal keeps the points
                self._down = exc
            left = journal.pending()
            journal.close()
            self._flushed = 0
        if left:
            if journal.durable:
                log.error("podstack: %d metric points could not be written to %r (%s); they are kept in %s and "
                          "written by the next process that opens this store", left, self._store,
                          reason(self._down) if self._down else "", journal.folder)
            else:
                log.error("podstack: %d metric points could not be written to %r and are lost: %s",
                          left, self._store, reason(self._down) if self._down else "")
        self._down = None

    def recover_dead(self) -> dict | None:
        """Recover into the store the journals that dead processes left for it (see ``journal.recover``)."""
        self._recovered_at = time.monotonic()
        store, folder = self._store, self._store_dir
        if store is None or folder is None:
            return None
        return recover(store, folder, batch_points=self.batch_points)

    # -- writing ---------------------------------------------------------------------------------
    def pending(self) -> int:
        """Points logged and not yet written to the store."""
        journal = self._journal
        return journal.pending() if journal is not None else 0

    def flush(self, raise_errors: bool = True, last=None) -> None:
        """Write every point logged so far to the store now. With ``raise_errors``, raise what went
        wrong since the last such call: the store cannot be written (the points stay journaled and
        are retried), or it refused some points (set aside; every other point was written).

        ``last(series)``, if given, writes the last batch instead (ending a run with its last points
        in one request); when it raises, the batch is written as any other."""
        journal = self._journal
        if journal is not None:
            with self._flush_lock:
                if journal is self._journal:
                    self._drain(journal, last)
        if raise_errors:
            self._raise_problems()

    def _drain(self, journal: Journal, last=None) -> None:
        store = self._store
        target = journal.written()  # what was logged when the flush began (a busy logger cannot hold it forever)
        while self._flushed < target:
            batch = journal.next_batch(self.batch_points)
            if batch is None:
                break
            batch.segment.mark_attempted(batch.end)
            outcome = None
            if last is not None and self._flushed + batch.count >= target:
                try:
                    last(batch.series)
                    outcome = WriteOutcome()
                except Exception:  # noqa: BLE001 - written the usual way below (which says what went wrong)
                    pass
            if outcome is None:
                outcome = write_series(store, batch.series)
            if outcome.down is not None:
                self._down = outcome.down
                journal.sync()  # they wait here: keep them through a machine crash too
                return
            self._down = None
            if outcome.rejected:
                self._rejected_at = set_aside(self._store_dir, outcome.rejected, store)
                self._rejected += outcome.rejected
            journal.committed(batch)
            self._flushed += batch.count
            publish_series(_written(batch.series, outcome.rejected))
        self._down = None

    def _raise_problems(self) -> None:
        down = self._down
        if down is not None:
            journal = self._journal
            where = (f"kept in the journal {journal.folder} and retried (if this process ends first, the next "
                     "one that opens this store writes them)" if journal is not None and journal.durable
                     else "kept in memory and retried")
            raise PodstackError(f"could not write {self.pending()} metric points to {self._store!r}: "
                                f"{reason(down)}. They are {where}.") from down
        if self._rejected:
            rejected, self._rejected = self._rejected, []
            shown = "; ".join(f"run {run_id} {key!r} step {step}: {reason(exc)}"
                              for (run_id, key, _, step, _), exc in rejected[:3])
            more = f" (and {len(rejected) - 3} more)" if len(rejected) > 3 else ""
            raise PodstackError(
                f"the store refused {len(rejected)} metric point(s), set aside in {self._rejected_at}: "
                f"{shown}{more}. Every other point was written.", rejected=[p for p, _ in rejected])

    def _after_fork(self) -> None:
        # The child starts its own flusher and journal; the parent's journal is the parent's alone.
        if self._journal is not None:
            self._journal.abandon_after_fork()
        self._journal = None
        self.__dict__.pop("add", None)
        self._thread = None
        self._lock = threading.RLock()
        self._flush_lock = threading.Lock()
        self._wake = threading.Event()
        self._flushed = 0
        self._rejected = []


def _written(series: list, rejected: list) -> list:
    """``series`` without the points the store refused."""
    if not rejected:
        return series
    refused = {(p[0], p[1], p[3], p[4]) for p, _ in rejected}
    kept = []
    for run_id, key, steps, values, stamps in series:
        points = [(s, v, t) for s, v, t in zip(steps, values, stamps) if (run_id, key, s, t) not in refused]
        if points:
            kept.append((run_id, key, *(list(column) for column in zip(*points))))
    return kept


metric_buffer = _MetricBuffer()


def _after_fork_in_child():
    metric_buffer._after_fork()
    active_runs._after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)


@atexit.register
def _close_at_exit():
    # Runs still open were ended by _exit's handler (registered later, so it ran first).
    try:
        metric_buffer.close()
    except Exception as exc:  # noqa: BLE001 - the interpreter is going away; say what is kept
        log.error("podstack: metric points could not be written at exit: %s", exc)
