"""Executions of ``podstack server``: code submitted by the official SDK's ``run_on_gpu`` /
``@podstack.gpu``, each run in a GPU session of the server's compute backend.

One execution is one fresh session (:class:`~podstack_jupyter.compute.GPUSession` of the backend
``podstack server --backend`` names, ``local`` by default): its kernel starts, the code runs as
one cell, its output is recorded as it is printed, and the session is stopped, so nothing one
execution leaves behind (variables, GPU memory) is seen by the next, whichever project it is of.
The GPUs are the spec's of the code's ``#@podstack`` line (:mod:`.annotation`), placed by the
backend (the local one: its ``PODSTACK_LOCAL_GPUS`` or NVML devices, pinned through
``CUDA_VISIBLE_DEVICES``).

Statuses, as the SDK reads them: ``pending`` (accepted) → ``queued`` (waiting for a free slot,
``--max-executions``, or for GPUs that are busy now but exist, without holding a slot) → ``provisioning`` (the session
starts; its environment is built if it asks for packages) → ``running`` → one of ``completed``,
``failed`` (the code raised: ``error`` holds its traceback; or the session could not be had:
``error`` says why), ``timeout`` (it ran past the line's ``timeout=``; interrupted) and
``cancelled`` (``cancel``, or the server shut down).

Each execution keeps an ordered log of events (:class:`EventLog`): status changes and output
(``stdout``, ``stderr``, ``output`` for displayed values), which the server-sent-event stream
relays as they happen and ``result`` joins. Executions live in the server's memory: a restart
forgets them (their ids then answer 404), and finished ones are forgotten after ``keep`` seconds
(or beyond the newest 10,000).

Code submitted here runs with the server's own rights on the local backend (it is a process of
the server's user, as a notebook's kernel is the user's): give keys only to people who may run
code on the server's machine, or pick a backend whose nodes are elsewhere (``--backend ray``).
"""

from __future__ import annotations

import asyncio
import collections
import ctypes
import dataclasses
import logging
import re
import threading
import time
import uuid

from ..compute import GPUSession, GPUSpec, OutputSink, hooks, run_code
from ..compute.backends import get_backend
from ..errors import (ExecutionTimeoutError, GPUNotAvailableError, InvalidArgumentError, NotFoundError,
                      PodstackError, RemoteExecutionError)

__all__ = ["ExecutionManager", "Execution", "EventLog", "TERMINAL", "STATUSES"]

log = logging.getLogger("podstack.server")

STATUSES = ("pending", "queued", "provisioning", "running", "completed", "failed", "timeout", "cancelled")
TERMINAL = frozenset({"completed", "failed", "timeout", "cancelled"})
OUTPUT_TYPES = ("stdout", "stderr", "output")
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_KEPT_AT_MOST = 10_000  # ended executions kept (with their output) at most
_GPU_RETRY = 1.0  # seconds between tries of an execution waiting for busy GPUs (sooner when one ends)


class EventLog:
    """The ordered events of one execution, each with a sequence number (``seq``, from 1).

    Output beyond ``limit`` bytes is not all kept: the first half of the limit and the newest
    half stay, with one ``stderr`` event saying how much was left out between them (the end of
    the output, where ``@podstack.gpu`` prints its result, is never the part dropped).
    Readers wait for new events with :meth:`wait` (threads) or :meth:`wait_async` (the server's loop).
    """

    def __init__(self, limit: int = 64 << 20):
        self.limit = max(1024, int(limit))
        self._head: list[dict] = []
        self._head_bytes = 0
        self._tail: collections.deque[dict] = collections.deque()
        self._tail_bytes = 0
        self._dropped = 0
        self._gap: dict | None = None
        self._seq = 0
        self._cond = threading.Condition()
        self._waiters: set[tuple[asyncio.AbstractEventLoop, asyncio.Event]] = set()

    @property
    def last_seq(self) -> int:
        return self._seq

    def append(self, event: dict) -> dict:
        with self._cond:
            self._seq += 1
            event = dict(event, seq=self._seq)
            size = len(event.get("content") or "")
            if self._gap is None and self._head_bytes + size <= self.limit // 2:
                self._head.append(event)
                self._head_bytes += size
            else:
                self._tail.append(event)
                self._tail_bytes += size
                self._trim()
            self._cond.notify_all()
            waiters = list(self._waiters)
        for loop, flag in waiters:
            loop.call_soon_threadsafe(flag.set)
        return event

    def _trim(self) -> None:
        """Drop the oldest output of the tail until it fits in its half of the limit (status
        events are small and kept); the note of what was dropped takes their place."""
        room = self.limit - self.limit // 2
        while self._tail_bytes > room:
            old = next((e for e in self._tail if e.get("type") in OUTPUT_TYPES), None)
            if old is None:
                return
            content = old.get("content") or ""
            index = self._tail.index(old)
            if index == len(self._tail) - 1 or self._tail_bytes - len(content) < room // 2:
                cut = min(len(content), self._tail_bytes - room)  # one large piece: keep its end
                self._tail[index] = dict(old, content=content[cut:])
                gap_seq = old["seq"] - 1
            else:
                cut = len(content)
                del self._tail[index]
                gap_seq = old["seq"]
            self._tail_bytes -= cut
            self._dropped += cut
            self._gap = {"type": "stderr", "seq": gap_seq, "gap": True,
                         "timestamp": old.get("timestamp"),
                         "content": f"\n[podstack server: {self._dropped:,} characters of output were not kept here "
                                    f"(more than {self.limit:,} in all)]\n"}

    def events(self, after: int = 0) -> list[dict]:
        """The kept events with ``seq > after``, in order (the note of dropped output in its place)."""
        with self._cond:
            kept = [*self._head, *([self._gap] if self._gap is not None else []), *self._tail]
        return [e for e in kept if e["seq"] > after]

    def text(self) -> str:
        """The output, joined as it was printed (what ``result`` answers with)."""
        return "".join(e.get("content") or "" for e in self.events() if e.get("type") in OUTPUT_TYPES)

    def wait(self, after: int, timeout: float) -> bool:
        """Wait until there is an event with ``seq > after`` (True) or ``timeout`` passes (False)."""
        with self._cond:
            return self._cond.wait_for(lambda: self._seq > after, timeout)

    async def wait_async(self, after: int, timeout: float) -> bool:
        """:meth:`wait` for coroutines: the server's event loop is never blocked."""
        loop = asyncio.get_running_loop()
        flag = asyncio.Event()
        waiter = (loop, flag)
        with self._cond:
            if self._seq > after:
                return True
            self._waiters.add(waiter)
        try:
            await asyncio.wait_for(flag.wait(), timeout)
            return True
        except asyncio.TimeoutError:
            return self._seq > after
        finally:
            with self._cond:
                self._waiters.discard(waiter)


@dataclasses.dataclass(eq=False)
class Execution:
    """One submitted piece of code, of one project."""

    id: str
    project_id: str
    code: str
    spec: GPUSpec
    options: dict
    log: EventLog
    status: str = "pending"
    created_at: float = dataclasses.field(default_factory=time.time)
    started_at: float | None = None  # when the code began to run
    ended_at: float | None = None
    error: str | None = None
    gpu_type: str | None = None  # what the backend placed it on ("cpu": no GPU)
    gpu_devices: list = dataclasses.field(default_factory=list)
    gpu_fraction: int = 100
    session: GPUSession | None = None
    cancel_reason: str | None = None  # set once a cancel was asked for
    queue_position: int | None = None
    thread: threading.Thread | None = None
    in_code: bool = False  # its code runs: a cancel interrupts it

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def gpu_count(self) -> int:
        return len(self.gpu_devices) if self.gpu_type is not None else self.spec.count

    @property
    def gpu_seconds(self) -> float:
        """Seconds the code held its GPUs, times their number and share (0 on the CPU)."""
        if self.started_at is None or not self.gpu_devices:
            return 0.0
        end = self.ended_at or time.time()
        return round((end - self.started_at) * len(self.gpu_devices) * self.gpu_fraction / 100, 3)

    def facts(self) -> dict:
        """What ``status`` answers, and what each status event of the stream carries."""
        return {"execution_id": self.id, "status": self.status, "queue_position": self.queue_position,
                "gpu_type": self.gpu_type or self.spec.type, "gpu_count": self.gpu_count,
                "gpu_fraction": self.gpu_fraction if self.gpu_type else self.spec.fraction,
                "created_at": _iso(self.created_at), "started_at": _iso(self.started_at),
                "completed_at": _iso(self.ended_at), "gpu_seconds": self.gpu_seconds, "cost_cents": 0,
                "error": self.error}

    def result(self) -> dict:
        """What ``result`` answers: the facts, the output as it was printed, and the timing."""
        duration = (self.ended_at or time.time()) - self.started_at if self.started_at else 0.0
        return dict(self.facts(), output=self.log.text(), duration_seconds=round(duration, 3),
                    timeout_seconds=self.spec.timeout)


def _iso(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


class _EventSink(OutputSink):
    """Where the session's output goes: the execution's log, as it arrives."""

    def __init__(self, execution: Execution):
        self.execution = execution

    def _add(self, kind: str, text: str) -> None:
        if text and not self.execution.terminal:  # nothing after its last status
            self.execution.log.append({"type": kind, "content": text, "execution_id": self.execution.id,
                                       "timestamp": time.time()})

    def stream(self, name, text):
        self._add("stderr" if name == "stderr" else "stdout", text)

    def display(self, content, update=False):
        text = (content.get("data") or {}).get("text/plain")
        if text:
            self._add("output", text + "\n")

    def clear(self, wait):
        pass


def _refuse_relay(data, buffers):
    raise PodstackError("tracking from code run by a podstack server goes through the server's API, not the "
                        "server's own process: call podstack.init(registry_url=..., api_key=..., project_id=...) "
                        "in the code (or log from the submitting notebook)")


class ExecutionManager:
    """The executions of one server: submitted, queued, run (``max_running`` at a time), cancelled,
    kept ``keep`` seconds after they end. :meth:`close` (server shutdown) cancels what still runs."""

    def __init__(self, backend: str | None = None, *, max_running: int = 4, keep: float = 24 * 3600,
                 output_limit: int = 64 << 20, requirements_folder=None):
        from .. import config

        self.backend_name = backend or config.settings().backend
        self.backend = get_backend(self.backend_name)  # an unknown backend fails at start-up, not per call
        self.max_running = max(1, int(max_running))
        self.keep = keep
        self.output_limit = output_limit
        self.requirements_folder = requirements_folder
        self._executions: dict[str, Execution] = {}
        self._waiting: collections.deque[Execution] = collections.deque()
        self._running: set[Execution] = set()
        self._gpu_waiters: list[Execution] = []  # waiting for GPUs that exist but are busy (no slot held)
        self._lock = threading.Condition()  # notified when an execution ends (GPUs may be free)
        self._closed = False
        self._relay_ops = ("tracking.relay", "models.relay")
        for op in self._relay_ops:  # the server's process is nobody's notebook
            hooks.on_agent_event(op, _refuse_relay)

    # -- requests ----------------------------------------------------------------------------------
    def validate(self, spec: GPUSpec) -> None:
        """Refuse now what the backend can never serve (e.g. conda packages on the local backend)."""
        self.backend.validate(spec)

    def submit(self, project_id: str, code: str, spec: GPUSpec, options: dict | None = None) -> Execution:
        if self._closed:
            raise PodstackError("the server is shutting down; submit again once it is back")
        self.validate(spec)
        execution = Execution(uuid.uuid4().hex, project_id, code, spec, dict(options or {}),
                              EventLog(self.output_limit))
        never = self._never_fits(spec)
        with self._lock:
            self._sweep()
            self._executions[execution.id] = execution
            self._status(execution, "pending")
            if never:  # no waiting for GPUs that do not exist
                self._finish(execution, "failed", never)
            else:
                self._waiting.append(execution)
                self._dispatch()
        return execution

    def get(self, project_id: str, execution_id: str) -> Execution:
        """The execution of this project with this id (another project's is not found, as a missing one)."""
        execution = self._executions.get(execution_id)
        if execution is None or execution.project_id != project_id:
            raise NotFoundError(f"no execution {execution_id!r} in this project (executions are kept "
                                f"{self.keep / 3600:g} h after they end, and not across server restarts)")
        return execution

    def list(self, project_id: str, status: str | None = None) -> list[Execution]:
        """This project's executions (those in ``status``), newest first."""
        if status is not None and status not in STATUSES:
            raise InvalidArgumentError(f"unknown status {status!r}; one of: {', '.join(STATUSES)}")
        found = [e for e in list(self._executions.values())
                 if e.project_id == project_id and (status is None or e.status == status)]
        return sorted(found, key=lambda e: e.created_at, reverse=True)

    def cancel(self, execution: Execution, reason: str = "cancelled on request") -> None:
        """Stop ``execution``: taken out of the queue, ended at once while its session starts (no code
        of it ran), or its code interrupted (its kernel shut down if it does not stop at once).
        Nothing happens to one that has ended, or is being cancelled already."""
        with self._lock:
            if execution.terminal or execution.cancel_reason is not None:
                return
            execution.cancel_reason = reason
            if execution in self._waiting:
                self._waiting.remove(execution)
                self._finish(execution, "cancelled", reason)
                self._dispatch()
                return
            if not execution.in_code:  # still starting its session: no code of it has run; it ends now
                self._finish(execution, "cancelled", reason)
                return
            # Ctrl-C in the thread that waits for the code, as in a notebook: the session layer interrupts
            # the kernel, and the worker shuts it down (from its own thread: a connection is one thread's)
            # if the code does not stop
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(execution.thread.ident),
                                                       ctypes.py_object(KeyboardInterrupt))

    def close(self) -> None:
        """Server shutdown: cancel everything queued or running, stop every session, wait for the workers."""
        with self._lock:
            self._closed = True
            live = [e for e in self._executions.values() if not e.terminal]
        for execution in live:
            self.cancel(execution, "the podstack server shut down while it ran")
        for execution in live:
            if execution.thread is not None:
                execution.thread.join(10)
        for op in self._relay_ops:
            hooks.on_agent_event(op, None)

    # -- the queue -------------------------------------------------------------------------------------
    def _status(self, execution: Execution, status: str) -> None:
        execution.status = status
        execution.log.append(dict(execution.facts(), type="status", timestamp=time.time()))

    def _finish(self, execution: Execution, status: str, error: str | None = None) -> None:
        """Called under the lock: the execution's last status (once)."""
        if execution.terminal:
            return
        execution.ended_at = time.time()
        execution.error = error
        execution.queue_position = None
        self._status(execution, status)

    def _dispatch(self) -> None:
        """Under the lock: start what fits, and tell the waiting where they stand."""
        while self._waiting and len(self._running) < self.max_running and not self._closed:
            execution = self._waiting.popleft()
            self._running.add(execution)
            execution.queue_position = None
            execution.thread = threading.Thread(target=self._work, args=(execution,), daemon=True,
                                                name=f"podstack-execution-{execution.id[:8]}")
            execution.thread.start()
        for position, execution in enumerate(self._waiting, 1):
            if execution.queue_position != position or execution.status != "queued":
                execution.queue_position = position
                self._status(execution, "queued")

    def _sweep(self) -> None:
        """Forget executions that ended more than ``keep`` seconds ago, and the oldest ended ones
        beyond ``_KEPT_AT_MOST`` (their output is held in memory)."""
        horizon = time.time() - self.keep
        ended = sorted((e for e in self._executions.values() if e.terminal), key=lambda e: e.ended_at or 0)
        surplus = len(ended) - _KEPT_AT_MOST
        for index, execution in enumerate(ended):
            if index < surplus or (execution.ended_at or 0) < horizon:
                del self._executions[execution.id]

    # -- one execution -----------------------------------------------------------------------------------
    def _work(self, execution: Execution) -> None:
        session = None
        try:
            session = self._open(execution)
            if session is not None:
                self._run(execution, session)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the execution ends with a reason
            if not execution.cancel_reason:
                log.exception("podstack server: execution %s failed", execution.id)
            with self._lock:
                self._finish(execution, "cancelled" if execution.cancel_reason else "failed",
                             execution.cancel_reason or f"{type(exc).__name__}: {exc}")
        finally:
            if session is not None:
                try:
                    session.stop(reason="its execution ended")
                except Exception:  # noqa: BLE001 - already gone
                    log.warning("podstack server: stopping the session of execution %s failed", execution.id,
                                exc_info=True)
            with self._lock:
                self._running.discard(execution)
                self._leave_gpu_line(execution)
                self._dispatch()
                self._lock.notify_all()

    def _leave_gpu_line(self, execution: Execution) -> None:
        """Under the lock: ``execution`` waits for GPUs no more; those behind it move up."""
        if execution in self._gpu_waiters:
            self._gpu_waiters.remove(execution)
            for position, waiter in enumerate(self._gpu_waiters, 1):
                waiter.queue_position = position

    def _progress(self, execution: Execution):
        def say(text: str) -> None:
            if not execution.terminal:
                execution.log.append({"type": "stderr", "content": str(text).rstrip("\n") + "\n",
                                      "execution_id": execution.id, "timestamp": time.time()})
        return say

    def _open(self, execution: Execution) -> GPUSession | None:
        """A started session for the execution, waiting while the GPUs it asks for are busy; None
        if it ended meanwhile (cancelled, or its GPUs do not exist)."""
        spec = execution.spec
        while True:
            with self._lock:
                if execution.terminal:
                    return None
                if execution.status != "provisioning" and execution not in self._gpu_waiters:
                    self._status(execution, "provisioning")
            session = GPUSession(spec, self.backend)
            execution.session = session
            try:
                session.open(self._progress(execution))
            except GPUNotAvailableError as exc:
                execution.session = None
                if self._never_fits(spec):
                    with self._lock:
                        self._finish(execution, "failed", f"GPUs not available: {exc.message}")
                    return None
                with self._lock:  # busy now, but they exist: wait for an execution to give them back,
                    if execution.terminal:  # leaving its slot to those that need no busy GPUs
                        return None
                    self._running.discard(execution)
                    if execution not in self._gpu_waiters:
                        self._gpu_waiters.append(execution)
                        execution.queue_position = len(self._gpu_waiters)
                        self._status(execution, "queued")
                    self._dispatch()
                    self._lock.wait(_GPU_RETRY)
                    if execution.terminal:
                        return None
                    self._running.add(execution)  # trying again; one holding GPUs may exceed --max-executions
                continue
            except Exception as exc:  # noqa: BLE001 - the session could not start: say why
                execution.session = None
                with self._lock:
                    self._finish(execution, "cancelled" if execution.cancel_reason else "failed",
                                 execution.cancel_reason or f"the GPU session could not start: "
                                                            f"{getattr(exc, 'message', None) or exc}")
                return None
            with self._lock:
                self._leave_gpu_line(execution)
                if execution.terminal:  # cancelled while it started
                    return session
                execution.queue_position = None
                allocation = session.allocation
                execution.gpu_devices = list(allocation.gpus) if allocation is not None else []
                execution.gpu_type = (allocation.gpu_type if allocation is not None and allocation.gpus else "cpu")
                execution.gpu_fraction = allocation.fraction if allocation is not None else 100
                execution.started_at = time.time()
                self._status(execution, "running")
            return session

    def _never_fits(self, spec: GPUSpec) -> str | None:
        """Why the backend can never place ``spec`` (it has too few GPUs of its type, busy or not), or None."""
        if spec.type is None:
            return None
        try:
            devices = self.backend.inventory()
        except Exception:  # noqa: BLE001 - cannot tell now: the placement itself will say
            return None
        matching = [d for d in devices if d.get("type") == spec.type]
        if len(matching) >= spec.count:
            return None
        have = sorted({d.get("type") or d.get("name") for d in devices})
        there = f"{len(matching)} {spec.type} GPU(s)" if matching else f"no {spec.type} GPU"
        return (f"GPUs not available: the server's {self.backend_name} backend has {there} "
                f"({', '.join(have) or 'no GPUs, CPU only'}); {spec.count} x {spec.type} were asked for. "
                f"Ask for what it has (gpu=, count=), or run the server on a backend with more.")

    def _run(self, execution: Execution, session: GPUSession) -> None:
        if execution.terminal:
            return
        sink = _EventSink(execution)
        try:
            with self._lock:
                if execution.terminal:
                    return
                execution.in_code = True
            try:
                landed = run_code(session, execution.code, timeout=execution.spec.timeout, sink=sink)
            finally:
                with self._lock:
                    execution.in_code = False
        except RemoteExecutionError as exc:
            text = _ANSI.sub("", "\n".join(exc.traceback)) if exc.traceback else exc.message
            status, error = "failed", text or exc.message
            if execution.cancel_reason and exc.ename == "KeyboardInterrupt":
                status, error = "cancelled", execution.cancel_reason
        except ExecutionTimeoutError:
            status = "timeout"
            error = f"the code ran longer than its timeout of {execution.spec.timeout:g} s and was interrupted " \
                    f"(raise it with timeout= in run_on_gpu / @podstack.gpu)"
        except KeyboardInterrupt:
            status = "cancelled" if execution.cancel_reason else "failed"
            error = execution.cancel_reason or "KeyboardInterrupt: the code was interrupted"
        except Exception as exc:  # noqa: BLE001 - the session died, or was stopped by a cancel
            if execution.cancel_reason:
                status, error = "cancelled", execution.cancel_reason
            else:
                status, error = "failed", getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
        else:
            if landed.result:
                sink.display(landed.result)
            status, error = "completed", None
        with self._lock:
            self._finish(execution, status, error)
