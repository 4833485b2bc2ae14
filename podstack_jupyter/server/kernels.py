"""Team mode, the server's half: GPU sessions placed on the server's own compute backend and
relayed to notebooks over a websocket, so notebooks need no cluster credentials and no route
to the GPU nodes.

A notebook with ``PODSTACK_BACKEND=team`` (:mod:`podstack_jupyter.compute.backends.team`)
asks ``POST /api/v1/kernels`` for a session; the server places it on its backend (``podstack
server --backend local|ray|jupyter``; the local one by default), which starts the kernel
where the GPUs are, and keeps the kernel's :class:`~podstack_jupyter.compute.backends.Connection`.
The notebook then opens ``GET /api/v1/kernels/{id}/channels``, a websocket speaking Jupyter's
``v1.kernel.websocket.jupyter.org`` protocol (binary frames: large buffers travel as raw
bytes), and this module relays every message both ways, headers untouched, so the notebook's
session layer runs exactly as it does against a Jupyter server.

Rules:

* a session belongs to the project of the key that made it: any other project's key is
  answered 404, as if it did not exist;
* a session whose websocket is gone longer than the grace period (``--kernel-grace``,
  default 60 s) is stopped and its GPUs given back; one that never attached too;
* a kernel that dies is noticed within about a second: the notebook gets a last ``status``
  message (``execution_state: dead``, ``reason``: why, in words) and the websocket closes;
* every session is stopped when the server stops;
* what the kernel sends while no websocket is attached is kept for the next one, up to 64 MB;
  beyond that the next notebook to attach is told the session is lost (a dropped message may
  be a cell's results), rather than carry on out of step.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
import uuid

import zmq
from jupyter_client.session import json_packer

from ..compute.backends import Allocation, Backend, Connection, get_backend
from ..compute.backends._websocket import encode_v1
from ..compute.backends._zmq import ZMQConnection
from ..compute.spec import GPUSpec
from ..errors import ConfigurationError, InvalidArgumentError, NotFoundError, PodstackError


class ConflictError(PodstackError):
    """The session is already attached to another websocket."""

__all__ = ["TeamKernels", "TeamKernel", "spec_from_request"]

log = logging.getLogger("podstack.server")

_ALIVE_CHECK = 0.5       # seconds between two checks that a kernel lives
_BACKLOG_BYTES = 64 * 2**20  # what is kept for a websocket not attached (yet); beyond it the session is lost
CLOSE = object()         # queued for an attached websocket: close it


def spec_from_request(body: dict) -> GPUSpec:
    """The :class:`GPUSpec` of a ``POST /kernels`` body (``type``, ``count``, ``fraction``).
    Per-session packages are refused: the server builds no environment for a notebook."""
    unknown = set(body) - {"type", "count", "fraction", "env", "pip", "conda", "requirements"}
    if unknown:
        raise InvalidArgumentError(f"unknown field(s) {sorted(unknown)} in the session request; "
                                   "send type, count and fraction")
    if body.get("env") or body.get("pip") or body.get("conda") or body.get("requirements"):
        raise InvalidArgumentError(
            "the team server does not build per-session environments (--pip / --requirements / --env / conda): "
            "sessions run in the server's environment. Ask its admin to install the packages there, or run "
            "this cell with another backend")
    return GPUSpec(type=body.get("type"), count=body.get("count", 1), fraction=body.get("fraction", 100))


def _close_thread_loop() -> None:
    """Close the event loop jupyter_client's blocking calls (a local kernel's ``is_alive``) leave
    in the thread that made them, so a server that runs many sessions does not collect them."""
    import warnings

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            loop = asyncio.get_event_loop_policy().get_event_loop()
    except RuntimeError:  # none in this thread
        return
    if not loop.is_running() and not loop.is_closed():
        loop.close()
    asyncio.set_event_loop(None)


class TeamKernel:
    """One session: its kernel's connection, owner, GPUs and the websocket attached to it (if any)."""

    def __init__(self, kernels: "TeamKernels", project_id: str, owner: str, spec: GPUSpec,
                 allocation: Allocation, connection: Connection):
        self.id = uuid.uuid4().hex
        self.kernels = kernels
        self.project_id = project_id
        self.owner = owner
        self.spec = spec
        self.allocation = allocation
        self.connection = connection
        self.created_at = time.time()
        self.state = "running"
        self.reason: str | None = None
        self.detached_since: float | None = time.monotonic()  # not attached yet: the grace period runs
        self._lock = threading.Lock()
        self._sink: tuple[asyncio.AbstractEventLoop, asyncio.Queue] | None = None
        self._backlog: collections.deque = collections.deque()
        self._backlog_bytes = 0
        self._lost_detached = False  # the backlog overflowed: messages a notebook may wait for are gone
        # A ZMQ connection's sockets belong to one thread: the pump sends too, woken through a pipe.
        self._owned = isinstance(connection, ZMQConnection)
        self._outbox: collections.deque = collections.deque()
        self._wake_r, self._wake_w = os.pipe() if self._owned else (None, None)
        if self._owned:
            os.set_blocking(self._wake_r, False)
            connection.poller.register(self._wake_r, zmq.POLLIN)
        self._stopping = threading.Event()
        self._pump = threading.Thread(target=self._run_pump, name=f"podstack-team-{self.id[:8]}", daemon=True)
        self._pump.start()

    @property
    def relays_on_its_thread(self) -> bool:
        """Whether :meth:`forward` only queues (cheap, never blocks) for the pump's thread."""
        return self._owned

    def describe(self) -> dict:
        return {"id": self.id, "state": self.state, "reason": self.reason, "spec": self.spec.describe(),
                "gpus": self.allocation.gpus, "gpu_type": self.allocation.gpu_type,
                "fraction": self.allocation.fraction, "created_at": self.created_at, "owner": self.owner,
                "attached": self._sink is not None, "backend": self.kernels.backend.name}

    # -- notebook -> kernel ---------------------------------------------------------------------
    def submit(self, action) -> None:
        """Run ``action(connection)`` where the connection may be used: on the pump's thread for a
        ZMQ connection (its sockets are not thread-safe), here for the others."""
        if self.state != "running":
            return
        if not self._owned:
            action(self.connection)
            return
        self._outbox.append(action)
        os.write(self._wake_w, b"x")

    def forward(self, channel: str, msg: dict) -> None:
        self.submit(lambda connection: connection.forward(channel, msg))

    def interrupt(self) -> None:
        self.submit(lambda connection: connection.interrupt())

    # -- kernel -> notebook ---------------------------------------------------------------------
    def attach(self, loop: asyncio.AbstractEventLoop) -> asyncio.Queue:
        """The queue of what the kernel sends (what came while nobody was attached first). One
        websocket at a time: while one is attached another is refused (ConflictError), so no
        second notebook can take a session over, or read its replies."""
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            if self._sink is not None:
                raise ConflictError(f"another notebook is attached to GPU session {self.id}")
            if self._lost_detached:
                # a dropped message may be a cell's results: say so rather than go on out of step
                queue.put_nowait(self._death_frame(
                    f"more than {_BACKLOG_BYTES // 2**20} MB of the session's messages came while no notebook was "
                    f"attached, and were dropped; its state cannot be trusted"))
                queue.put_nowait(CLOSE)
            while self._backlog:
                queue.put_nowait(self._backlog.popleft())
            self._backlog_bytes = 0
            if self.state != "running":
                queue.put_nowait(CLOSE)
            self._sink = (loop, queue)
            self.detached_since = None
        return queue

    def detach(self, queue: asyncio.Queue) -> None:
        """The websocket of ``queue`` is gone (called on its loop): what it had not sent yet is kept
        for the next one, in order."""
        with self._lock:
            if self._sink is not None and self._sink[1] is queue:
                self._sink = None
                self.detached_since = time.monotonic()
                while not queue.empty():
                    item = queue.get_nowait()
                    if item is not CLOSE:
                        self._keep(item)

    def _keep(self, item: bytes) -> None:
        """Keep ``item`` for the next websocket (under the lock)."""
        if self._lost_detached:
            return
        self._backlog.append(item)
        self._backlog_bytes += len(item)
        if self._backlog_bytes > _BACKLOG_BYTES:
            self._lost_detached = True
            self._backlog.clear()
            self._backlog_bytes = 0

    def _put(self, queue: asyncio.Queue, item) -> None:
        """On the websocket's loop: hand ``item`` to its queue, unless that websocket has gone
        meanwhile; then the order of what is kept cannot be vouched for, so the session counts as lost."""
        with self._lock:
            if self._sink is None or self._sink[1] is not queue:
                if item is not CLOSE:
                    self._lost_detached = True
                    self._backlog.clear()
                    self._backlog_bytes = 0
                return
        queue.put_nowait(item)

    def _deliver(self, item) -> None:
        with self._lock:
            if self._sink is None:
                if item is not CLOSE:
                    self._keep(item)
                return
            loop, queue = self._sink
        try:
            loop.call_soon_threadsafe(self._put, queue, item)
        except RuntimeError:  # the websocket's loop is closed: the server is stopping
            pass

    @staticmethod
    def _frame(channel: str, msg: dict) -> bytes:
        parts = [json_packer(msg["header"]), json_packer(msg["parent_header"]), json_packer(msg["metadata"]),
                 json_packer(msg["content"]), *msg.get("buffers", ())]
        return b"".join(encode_v1(channel, parts))

    def _death_frame(self, reason: str) -> bytes:
        """The last message a notebook gets: its connection reads it as the kernel's death, with the reason."""
        return self._frame("iopub", {
            "header": {"msg_id": uuid.uuid4().hex, "msg_type": "status", "session": self.id, "username": "podstack",
                       "date": time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime()), "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": {"execution_state": "dead", "reason": reason}})

    def _run_pump(self) -> None:
        connection, last_check = self.connection, time.monotonic()
        try:
            while not self._stopping.is_set():
                if self._owned:
                    self._run_outbox()
                got = connection.recv(0.25)
                if got is not None:
                    self._deliver(self._frame(*got))
                if time.monotonic() - last_check > _ALIVE_CHECK:
                    last_check = time.monotonic()
                    if not connection.is_alive():
                        self._died(connection.death_reason())
                        return
        except Exception as exc:  # noqa: BLE001 - a broken connection ends the session, with its reason
            if not self._stopping.is_set():
                self._died(f"the server lost the kernel's connection ({type(exc).__name__}: {exc})")
        finally:
            _close_thread_loop()

    def _run_outbox(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._outbox:
            action = self._outbox.popleft()
            action(self.connection)

    def _died(self, reason: str) -> None:
        with self._lock:
            if self.state != "running":
                return
            self.state, self.reason = "dead", reason
        log.info("podstack server: team session %s (project %s) died: %s", self.id, self.project_id, reason)
        self._deliver(self._death_frame(reason))
        self._deliver(CLOSE)
        self.kernels._release(self)

    def stop(self, reason: str) -> None:
        """Stop the kernel and give its GPUs back (safe twice)."""
        with self._lock:
            if self.state == "stopped":
                return
            was_running = self.state == "running"
            self.state, self.reason = "stopped", self.reason or reason
        self._stopping.set()
        if threading.current_thread() is not self._pump:
            self._pump.join(5)
        self._deliver(CLOSE)
        if was_running:
            self.kernels._release(self)
        if self._owned:
            for fd in (self._wake_r, self._wake_w):
                try:
                    os.close(fd)
                except OSError:
                    pass


class TeamKernels:
    """The server's team sessions, by id; a reaper stops those whose notebook is gone."""

    def __init__(self, backend_name: str, grace: float):
        if backend_name == "team":
            raise ConfigurationError("the server places sessions on a compute backend of its own: --backend local, "
                                     "ray or jupyter, not team")
        self.backend: Backend = get_backend(backend_name)
        self.grace = grace
        self._kernels: dict[str, TeamKernel] = {}
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._reaper = threading.Thread(target=self._reap, name="podstack-team-reaper", daemon=True)
        self._reaper.start()

    def start(self, project_id: str, owner: str, spec: GPUSpec) -> TeamKernel:
        """Place and start a session for ``spec`` (GPUNotAvailableError naming what there is)."""
        if self._closed.is_set():
            raise PodstackError("the server is stopping")
        backend = self.backend
        backend.validate(spec)
        allocation = backend.allocate(spec)
        try:
            environment = backend.prepare(spec, lambda line: log.info("podstack server: %s", line))
            connection = backend.start_kernel(spec, allocation, environment)
        except BaseException:
            backend.release(allocation)
            raise
        kernel = TeamKernel(self, project_id, owner, spec, allocation, connection)
        with self._lock:
            self._kernels[kernel.id] = kernel
        log.info("podstack server: team session %s for project %s (%s) on %s: %s", kernel.id, project_id, owner,
                 backend.name, allocation.describe())
        return kernel

    def get(self, kernel_id: str, project_id: str) -> TeamKernel:
        """The session ``kernel_id`` of ``project_id``; another project's is not found (404)."""
        with self._lock:
            kernel = self._kernels.get(kernel_id)
        if kernel is None or kernel.project_id != project_id:
            raise NotFoundError(f"no GPU session {kernel_id!r} in this project (stopped, or never started)")
        return kernel

    def of_project(self, project_id: str) -> list[TeamKernel]:
        with self._lock:
            return [k for k in self._kernels.values() if k.project_id == project_id]

    def delete(self, kernel_id: str, project_id: str) -> None:
        kernel = self.get(kernel_id, project_id)
        with self._lock:
            self._kernels.pop(kernel_id, None)
        kernel.stop("the notebook shut the session down")

    def _release(self, kernel: TeamKernel) -> None:
        """Stop a kernel's process and give its GPUs back (its record stays until deleted or reaped)."""
        try:
            kernel.connection.shutdown()
        except Exception:  # noqa: BLE001 - already gone
            pass
        try:
            self.backend.release(kernel.allocation)
        except Exception:  # noqa: BLE001 - the backend's own accounting; nothing left to do
            log.exception("podstack server: releasing the GPUs of session %s failed", kernel.id)

    def _reap(self) -> None:
        while not self._closed.wait(min(1.0, max(0.1, self.grace / 4))):
            now = time.monotonic()
            with self._lock:
                gone = [k for k in self._kernels.values()
                        if k.detached_since is not None and now - k.detached_since > self.grace]
                for kernel in gone:
                    self._kernels.pop(kernel.id, None)
            for kernel in gone:
                log.info("podstack server: team session %s stopped: no notebook attached for %g s", kernel.id,
                         self.grace)
                kernel.stop(f"no notebook was attached for more than {self.grace:g} s")

    def close(self) -> None:
        """Stop every session (the server is stopping)."""
        self._closed.set()
        with self._lock:
            kernels = list(self._kernels.values())
            self._kernels.clear()
        if kernels:
            log.info("podstack server: stopping %d team session(s)", len(kernels))
        for kernel in kernels:
            kernel.stop("the server stopped")
        self._reaper.join(5)
