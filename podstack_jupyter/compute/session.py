"""GPU sessions: live remote Jupyter kernels, kept warm and shared by cells with the same spec.

A cell is one *step* (see :mod:`.runner` for the sequence and :mod:`.agent` for
the remote side): one ``exec`` comm message carries the code and the pushed
values; while the cell runs, its output (stdout, displays, widgets, errors) is
relayed live, registry calls it makes are answered, and ``input()`` is
forwarded; one ``done`` message brings back what it changed. Large buffers do
not go through the socket when the session is on this machine: this process
copies them straight into, or out of, the session's memory.

This module is the transport and the message loop; what the notebook and the
session agree they both hold is :class:`SyncState`.
"""

from __future__ import annotations

import atexit
import json
import os
import sys
import threading
import time
import uuid
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import config, events
from ..errors import ExecutionTimeoutError, PodstackError, SessionDiedError
from . import hooks, wire
from .agent import RPC_PROMPT
from .backends import Allocation, Backend, Connection, Environment, get_backend
from .spec import GPUSpec

__all__ = ["GPUSession", "SessionManager", "StepResult", "SyncState", "OutputSink", "CapturingSink", "sessions"]

_SOURCES = {name: (Path(__file__).with_name(f"{module}.py")).read_text()
            for name, module in (("_podstack_wire", "wire"), ("_podstack_agent", "agent"))}
# Run in every new kernel, whatever the backend: mark it as a podstack session (tracking there logs
# through the notebook, e.g.), then load the agent. Kernels never inherit the notebook's PODSTACK_* settings.
_BOOTSTRAP = """
def _podstack_bootstrap(sources, marks):
    import os, sys, types
    os.environ.update(marks)
    for name, source in sources.items():
        module = types.ModuleType(name)
        module.__file__ = "<" + name + ">"
        sys.modules[name] = module
        exec(compile(source, module.__file__, "exec"), module.__dict__)
    sys.modules["_podstack_agent"].install(get_ipython())
_podstack_bootstrap({sources!r}, {marks!r})
del _podstack_bootstrap
"""
_START_TIMEOUT = 60.0  # seconds for a started kernel to answer and load the agent
_ALIVE_CHECK_INTERVAL = 0.5
_INTERRUPT_GRACE = 0.8  # seconds to let an interrupted remote report back before we give up waiting
_HANDLER_POLL = 0.05  # how often the deadline and interrupts are looked at while a handler runs
_SETTLE_GRACE = 5.0  # seconds the next cell waits for an interrupted one to report back
_OFFER_LIMIT = 64 << 20  # results larger than this are offered first, so the notebook can say it has no room


class OutputSink:
    """Where a remote execution's iopub output goes. The default relays it into the
    current IPython cell; :class:`CapturingSink` collects it as text."""

    def stream(self, name: str, text: str) -> None:
        target = sys.stderr if name == "stderr" else sys.stdout
        target.write(text)
        target.flush()

    def display(self, content: dict, update: bool = False) -> None:
        from IPython.display import publish_display_data

        publish_display_data(data=content.get("data", {}), metadata=content.get("metadata", {}),
                             transient=content.get("transient"), **({"update": True} if update else {}))

    def clear(self, wait: bool) -> None:
        from IPython.display import clear_output

        clear_output(wait=wait)


class CapturingSink(OutputSink):
    def __init__(self):
        self.parts: list[str] = []

    def stream(self, name, text):
        self.parts.append(text)

    def display(self, content, update=False):
        text = content.get("data", {}).get("text/plain")
        if text:
            self.parts.append(text + "\n")

    def clear(self, wait):
        pass

    @property
    def text(self) -> str:
        return "".join(self.parts)


@dataclass
class StepResult:
    """The session's answer to one step: its ``done`` message, the frames it carried,
    the rich result of the cell's last expression and the error shown, if any."""

    step_id: str
    reply: dict = field(default_factory=dict)
    frames: list = field(default_factory=list)
    result: dict | None = None  # the execute_result bundle
    error: dict | None = None  # the error message the remote IPython showed
    duration: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def status(self) -> str:
        return self.reply.get("status", "lost")


class SyncState:
    """What the notebook and one session agree they both hold.

    ``synced`` maps a name to the fingerprint of the value both hold; a value
    whose fingerprint is unchanged is not sent. After a failed cell, ``diverged``
    names are sent again (the session's copy may be changed) before anything
    else; ``left_remote`` names hold a newer value in the session that could not
    come back (the notebook keeps its own and does not overwrite the session's).
    """

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.codec = wire.Codec(+1, namespace)
        self.synced: dict[str, str] = {}
        self._objects: dict[str, object] = {}
        self.diverged: set[str] = set()
        self.left_remote: set[str] = set()
        self.acks: list[str] = []
        self.nacks: dict[str, list] = {}
        self.reset_held = False
        self.inflight: dict[str, dict] = {}
        self.together: set[tuple[str, str]] = set()  # (holder, held): sent as one batch, one object there
        self.call_shapes: dict[str, str | None] = {}  # @gpu site -> structure of the arguments the session holds

    def agree(self, name: str, value, fingerprint: str):
        self.synced[name] = fingerprint
        self.diverged.discard(name)
        self.left_remote.discard(name)
        try:
            self._objects[name] = weakref.ref(value)
        except TypeError:  # lists, dicts, ints, strings: held (the namespace holds them anyway)
            self._objects[name] = value

    def forget(self, name: str):
        self.synced.pop(name, None)
        self._objects.pop(name, None)
        self.diverged.discard(name)
        self.left_remote.discard(name)

    @property
    def kept(self) -> dict:
        """The values held here by name (strong references), for counting who else refers to them."""
        return self._objects

    def is_synced_obj(self, name: str, value) -> bool:
        held = self._objects.get(name, wire.MISSING)
        if isinstance(held, weakref.ref):
            held = held()
        return held is value

    def prune(self, namespace: dict):
        """Drop the strong references kept for names rebound here since (they may be large)."""
        for name, held in list(self._objects.items()):
            if held is not None and not isinstance(held, weakref.ref) and not name.startswith("@") \
                    and namespace.get(name, wire.MISSING) is not held:
                self._objects[name] = None

    def outgoing(self) -> dict:
        """Confirmations and bookkeeping every message to the agent carries."""
        data = {"acks": self.acks, "nacks": self.nacks, "forgotten": self.codec.table.take_forgotten(),
                "hash": self.codec.hash_name}
        if self.reset_held:
            data["reset_held"] = True
        self.acks, self.nacks, self.reset_held = [], {}, False
        return data

    def incoming(self, data: dict):
        """Bookkeeping every message from the agent carries."""
        self.codec.forget(data.get("forgotten", ()))
        theirs = data.get("hash")
        if theirs and theirs != self.codec.hash_name:  # it cannot use ours: use what it can
            self.codec.hash_name = theirs

    def resolve(self, step_id: str, reply: dict | None):
        """What a step's reply means for what both hold: pushed values that landed are agreed;
        after a failure, what the session changed is sent again next time."""
        step = self.inflight.pop(step_id, None)
        if step is None:
            return
        status = (reply or {}).get("status", "lost")
        if status in ("ok", "error"):
            landed = set(reply.get("landed", ()))
            for name, (value, fp) in step["pushed"].items():
                if name in landed and fp is not None:
                    self.agree(name, value, fp)
            self.together |= {pair for pair in step.get("together", ()) if landed.issuperset(pair)}
            if step["packet"] is not None and landed:
                self.codec.commit_sent(step["packet"])
                self.codec.sources_sent.update(step["packet"].sources)
            for name in step["dropped"]:
                self.forget(name)
        if status == "error":
            for name in reply.get("diverged", ()):
                self.synced.pop(name, None)
                self.diverged.add(name)
            self.codec.forget(reply.get("diverged_keys", ()))
        elif status in ("failed", "lost") and (reply or {}).get("stage") != "push":
            self.lose(step_id, step["names"])

    def lose(self, step_id: str, names):
        """Where a step left both sides is unknown (it failed midway, or its results were not taken
        in here): everything it touched is sent again, in full."""
        self.inflight.pop(step_id, None)
        for name in names:
            if name in self.synced:
                self.synced.pop(name, None)
                self.diverged.add(name)
        self.codec.table.held.clear()
        self.reset_held = True


class GPUSession:
    """One live remote kernel with the GPUs of its :class:`GPUSpec`.

    Its ``state`` (published as ``session.state`` events on :mod:`podstack_jupyter.events`) is one of
    ``starting``, ``building`` (its environment), ``idle``, ``busy`` (running a cell), ``dead`` (the
    kernel died; ``dead_reason`` says why) and ``stopped``.
    """

    def __init__(self, spec: GPUSpec, backend: Backend):
        self.id = uuid.uuid4().hex[:8]
        self.spec = spec
        self.backend = backend
        self.allocation: Allocation | None = None
        self.environment: Environment | None = None
        self.kernel: Connection | None = None  # the connection to the remote kernel, once started
        self.started_at = time.time()
        self.last_active = time.monotonic()
        self.state = "new"  # until open()
        self._dead_reason: str | None = None
        self.remote_pid: int | None = None
        self.remote_python: tuple | None = None
        self.sync: SyncState | None = None  # what this session and the notebook agree they both hold
        self.relay = CommRelay(self)
        self.pool = wire.BufferPool(tracker=wire.write_tracker())  # memory large results are copied into, reused
        self.cell_context: dict = {}  # what the notebook sent with the running (or last) cell: hooks.event_origin()
        self._comm_id = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._pending: str | None = None  # an interrupted step the remote may still be finishing
        self._late: dict[str, dict] = {}  # replies to steps we stopped waiting for
        self._rpc_answers: dict[str, dict] = {}  # request id -> answer, for agent.call()
        self._rpc_prompts: dict[str, dict] = {}  # request id -> the input_request waiting for it
        self._handlers: _HandlerThread | None = None  # where agent-event handlers run

    def sync_state(self, namespace: dict) -> SyncState:
        """What this session and ``namespace`` agree they both hold (made on first use)."""
        if self.sync is None:
            self.sync = SyncState(namespace)
            self.sync.codec.tracker = self.pool.tracker  # pulled arrays still unwritten are not hashed again
            # marshal carries plain builtins fast, but its format is only shared by the same Python
            self.sync.codec.marshal_ok = self.remote_python == tuple(sys.version_info[:2])
        return self.sync

    @property
    def same_host(self) -> bool:
        """Whether large buffers may be copied straight between the two processes' memory."""
        return bool(getattr(self.kernel, "same_host", False)) and self.remote_pid is not None \
            and sys.platform.startswith("linux")

    # -- state -------------------------------------------------------------
    def _set_state(self, state: str) -> None:
        if state == self.state:
            return
        self.state = state
        if events.has_subscribers("session.state"):
            events.publish("session.state", session=self.info(), state=state)

    @property
    def busy(self) -> bool:
        """Whether a cell is running; setting it moves the state between ``busy`` and ``idle``."""
        return self.state == "busy"

    @busy.setter
    def busy(self, value: bool) -> None:
        if self.state in ("idle", "busy"):
            self._set_state("busy" if value else "idle")

    @property
    def dead_reason(self) -> str | None:
        """Why the kernel is gone (None while it lives); setting it marks the session ``dead``."""
        return self._dead_reason

    @dead_reason.setter
    def dead_reason(self, reason: str | None) -> None:
        self._dead_reason = reason
        if reason is not None and self.state != "stopped":
            self._set_state("dead")

    # -- start -------------------------------------------------------------
    def open(self, progress: Callable[[str], None] = print) -> "GPUSession":
        """Reserve GPUs, prepare the environment, start the kernel and load the agent.

        A kernel that dies while starting raises SessionDiedError with what it printed. If
        that happens in an environment the backend had built earlier, it is rebuilt once.
        On any failure everything reserved or started is given back.
        """
        self._set_state("starting")
        try:
            self.backend.validate(self.spec)
            self.allocation = self.backend.allocate(self.spec)
            if self.spec.needs_environment:
                self._set_state("building")
            self.environment = self.backend.prepare(self.spec, progress)
            try:
                self._start_kernel()
            except SessionDiedError as exc:
                if not self.environment.reused:
                    raise
                progress(f"[podstack] a kernel cannot start in the cached environment {self.environment.name} "
                         f"({exc.message}); rebuilding it")
                self._set_state("building")
                self.environment = self.backend.prepare(self.spec, progress, rebuild=True)
                self._start_kernel()
        except BaseException:
            self.stop(reason="it could not start")
            raise
        self.started_at, self.last_active = time.time(), time.monotonic()  # uptime counts from here
        self._set_state("idle")
        return self

    def _start_kernel(self) -> None:
        if self.kernel is not None:  # a failed try
            self.kernel.shutdown()
        self._dead_reason = None
        self._set_state("starting")
        self.kernel = self.backend.start_kernel(self.spec, self.allocation, self.environment)
        deadline = time.monotonic() + _START_TIMEOUT
        try:
            self._wait_ready(deadline)
            self._bootstrap(deadline)
        except SessionDiedError:
            raise SessionDiedError(f"the GPU session ({self.spec.describe()}) could not start: "
                                   f"{self.dead_reason}") from None

    def _marks(self) -> dict[str, str]:
        """What the kernel knows of itself (os.environ there): that it is a session, and its GPUs."""
        allocation = self.allocation or Allocation()
        return {"PODSTACK_SESSION": "1", "PODSTACK_SESSION_ID": self.id, "PODSTACK_BACKEND": self.backend.name,
                "PODSTACK_GPU_TYPE": allocation.gpu_type or "cpu", "PODSTACK_GPU_COUNT": str(len(allocation.gpus)),
                "PODSTACK_GPU_FRACTION": str(allocation.fraction)}

    def _bootstrap(self, deadline: float) -> None:
        code = _BOOTSTRAP.format(sources=_SOURCES, marks=self._marks())
        msg_id = self._send("shell", "execute_request", {
            "code": code, "silent": True, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": False})
        reply = self._until(lambda ch, m: ch == "shell" and _parent(m) == msg_id, deadline, "start the agent")
        if reply["content"]["status"] != "ok":
            c = reply["content"]
            raise PodstackError(f"the podstack agent failed to start in the session: {c.get('ename')}: "
                                f"{c.get('evalue')}. Is cloudpickle installed in the session's environment?")
        self._send("shell", "comm_open", {"comm_id": self._comm_id, "target_name": "podstack.agent",
                                          "data": {}})
        self._until(lambda ch, m: _agent_op(m, self._comm_id) == "ready", deadline, "open the agent channel")

    def _wait_ready(self, deadline: float):
        # kernel_info until its status arrives on iopub: then our subscription is live
        while True:
            msg_id = self._send("shell", "kernel_info_request", {})
            step = min(deadline, time.monotonic() + 1.0)
            try:
                self._until(lambda ch, m: ch == "iopub" and _parent(m) == msg_id, step, "start")
                return
            except ExecutionTimeoutError:
                if time.monotonic() >= deadline:
                    raise

    def _until(self, match, deadline: float, doing: str) -> dict:
        """Receive until ``match(channel, msg)``; fail if the kernel dies or the deadline passes."""
        last_check = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                raise ExecutionTimeoutError(f"the GPU session did not {doing} in time")
            got = self._recv(min(0.2, deadline - now))
            if got is not None and match(*got):
                return got[1]
            if time.monotonic() - last_check > _ALIVE_CHECK_INTERVAL:
                last_check = time.monotonic()
                self._check_alive()

    def _recv(self, timeout: float):
        """The next message, after handing agent events and widget messages to their handlers."""
        got = self.kernel.recv(timeout)
        if got is not None and got[0] == "iopub" and self._handle_side_message(got[1]):
            return None
        return got

    def _check_alive(self):
        if not self.kernel.is_alive():
            self.dead_reason = self.kernel.death_reason()
            raise SessionDiedError(
                f"the GPU session ({self.spec.describe()}) died: {self.dead_reason}. Its variables are lost; "
                f"the next %%gpu cell starts a fresh session.")

    @property
    def alive(self) -> bool:
        return self.dead_reason is None and self.kernel is not None and self.kernel.is_alive()


    # -- one step ------------------------------------------------------------
    def run_step(self, data: dict, packet: "wire.Packet | None", *, sink: OutputSink | None = None,
                 timeout: float | None = None, names: list = ()) -> StepResult:
        """Send one ``exec`` step with its pushed ``packet`` and relay everything the session
        sends until its ``done``. ``names`` are every name the step may touch (for recovery).

        Raises ExecutionTimeoutError (the remote is interrupted), KeyboardInterrupt (the remote
        is interrupted too) or SessionDiedError. What a failed step changed is recorded in
        :attr:`sync` either way, so the next step repairs it first.
        """
        sink = sink or OutputSink()
        timeout = timeout or self.spec.timeout
        with self._lock:
            self._settle_pending()
            self.busy = True
            started = time.monotonic()
            sent_before, received_before = self.kernel.bytes_sent, self.kernel.bytes_received
            step_id = data["id"] = data.get("id") or uuid.uuid4().hex
            if data.get("kind") in ("cell", "call", "await"):  # the last cell's, until the next one starts
                self.cell_context = data.get("context") or {}
            try:
                result = self._run_step(data, packet, sink, started + timeout, timeout, names)
            finally:
                self.busy = False
                self.last_active = time.monotonic()
            result.duration = time.monotonic() - started
            result.bytes_sent = self.kernel.bytes_sent - sent_before
            result.bytes_received = self.kernel.bytes_received - received_before
            return result

    def _run_step(self, data, packet, sink, deadline, timeout, names) -> StepResult:
        state = self.sync
        step_id = data["id"]
        parts, inline, large = [], [], []
        if packet is not None:  # part 0 is the pickle stream, the rest its out-of-band buffers
            for index, part in enumerate((memoryview(packet.stream), *packet.buffers)):
                if self.same_host and part.nbytes >= wire.INLINE_LIMIT:
                    parts.append({"n": part.nbytes})  # copied into the session's memory once it has set it aside
                    large.append((index, part))
                else:
                    parts.append({"i": len(inline)})
                    inline.append(part)
            data["push"]["parts"] = parts
        data["same_host"] = self.same_host
        data["offer_limit"] = _OFFER_LIMIT
        result = StepResult(step_id)
        awaits = data.get("kind") == "await"
        if awaits:  # top-level await: the values land first, then ipykernel runs the cell on its loop
            data = dict(data, kind="sync", id=step_id + ":push", inputs=[], binds=[], pull=[], drop_after=[])
        ours: set[str] = set()
        try:
            with wire.interrupts_held():  # the step and the acknowledgements it carries: sent whole, or not at all
                data.update(state.outgoing())
                ours.add(self._comm_msg(data, inline))
            while True:
                msg = self._next_for(data["id"], ours, deadline, sink, result)
                op = msg["content"]["data"].get("op")
                content = msg["content"]["data"]
                if op == "alloc":
                    ours.add(self._fill(data["id"], content, large))
                    continue
                result.reply = content
                result.frames = list(msg["buffers"])
                if awaits and content.get("status") == "ok":
                    return self._run_awaiting(step_id, result, ours, deadline, sink)
                return result
        except (ExecutionTimeoutError, KeyboardInterrupt, _InputFailed) as exc:
            if not ours:  # stopped before anything was sent: the session never saw this step
                state.inflight.pop(step_id, None)
                raise
            late = self._interrupt_and_settle(step_id, ours, sink, result)
            reply = late["content"]["data"] if late is not None else None
            if reply is not None and reply.get("status") == "ok" and not isinstance(exc, _InputFailed) \
                    and data["id"] == step_id:  # it ended before the interrupt reached it: it lands whole
                result.reply, result.frames = reply, list(late["buffers"])
                return result
            state.resolve(step_id, reply)
            if isinstance(exc, _InputFailed):
                raise PodstackError(
                    f"input() in the %%gpu cell could not be answered here ({exc}), so the cell was interrupted "
                    f"and changed nothing here. Run it where the notebook can type an answer, or pass the value "
                    f"in a variable instead of input().") from None
            if isinstance(exc, ExecutionTimeoutError):
                raise ExecutionTimeoutError(
                    f"execution {step_id} ran longer than its timeout of {timeout:g}s and was interrupted. "
                    f"Raise it with --timeout SECONDS.", execution_id=step_id, timeout=timeout) from None
            raise _interrupted(result, reply) from None
        except SessionDiedError:
            state.inflight.pop(step_id, None)
            raise

    def _run_awaiting(self, step_id, result, ours, deadline, sink) -> StepResult:
        """Run a cell with top-level await as an ordinary execute_request; the agent answers from
        IPython's post_run_cell. If the kernel ends the request without that (e.g. the awaited
        task was cancelled), the step counts as lost: everything it touched is sent again."""
        landed = result.reply.get("landed", [])
        meta = self._inflight_meta(step_id)
        msg_id = self._send("shell", "execute_request", {
            "code": meta.pop("code"), "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": bool(meta.get("allow_stdin")), "stop_on_error": False}, metadata={"podstack": meta})
        ours.add(msg_id)
        try:
            msg = self._next_for(step_id, ours, deadline, sink, result, reply_grace=1.0)
        except _NoAgentReply:
            result.reply = {"id": step_id, "status": "failed", "stage": "unknown",
                            "error": {"ename": "Error", "evalue": "the cell ended without its results"}}
            result.frames = []
            return result
        result.reply = dict(msg["content"]["data"], landed=landed)
        result.frames = list(msg["buffers"])
        return result

    def _inflight_meta(self, step_id):
        step = self.sync.inflight[step_id]
        return dict(step["request"])

    def _fill(self, step_id: str, content: dict, large: list) -> str:
        """Copy the step's large buffers into the memory the session set aside for them."""
        addresses = content["addresses"]
        try:
            for index, buf in large:
                wire.vm_write(self.remote_pid, buf, addresses[str(index)])
                self.kernel.bytes_sent += buf.nbytes  # moved, if not through the socket
        except OSError:  # not allowed here (e.g. a hardened kernel): send them through the socket
            self.kernel.same_host = False
            mapping = {str(index): k for k, (index, _) in enumerate(large)}
            return self._comm_msg({"op": "filled", "id": step_id, "inline": mapping}, [part for _, part in large])
        return self._comm_msg({"op": "filled", "id": step_id})

    def _next_for(self, step_id: str, ours: set, deadline: float, sink: OutputSink,
                  result: StepResult | None, reply_grace: float | None = None) -> dict:
        """Relay messages until the agent's next reply (done, alloc, frames) about ``step_id``:
        output parented to one of ``ours`` goes to ``sink``, agent events and widget messages
        to their handlers, input requests are answered."""
        last_check = time.monotonic()
        while True:
            now = time.monotonic()
            if now >= deadline:
                if reply_grace == -1.0:
                    raise _NoAgentReply
                raise ExecutionTimeoutError("timeout")
            got = self.kernel.recv(min(0.2, deadline - now))
            if got is None or time.monotonic() - last_check > _ALIVE_CHECK_INTERVAL:
                last_check = time.monotonic()
                self._check_alive()
            if got is None:
                continue
            channel, msg = got
            if channel == "stdin":
                self._answer_input(msg)
                continue
            if channel == "shell" and reply_grace is not None and _parent(msg) in ours:
                deadline = min(deadline, time.monotonic() + reply_grace)  # the agent answers right after
                reply_grace = -1.0
                continue
            if channel != "iopub":
                continue
            if msg["msg_type"] == "comm_msg" and msg["content"].get("comm_id") == self._comm_id:
                data = msg["content"]["data"]
                op = data.get("op")
                if op in ("done", "alloc", "frames"):
                    self.sync.incoming(data)
                    self.remote_pid = data.get("pid", self.remote_pid)
                    if data.get("id") == step_id:
                        return msg
                    if op == "done":
                        self._late[data.get("id")] = msg
                    continue
            if self._handle_side_message(msg, deadline):
                continue
            if _parent(msg) in ours:
                self._relay_output(msg, sink, result)

    def _relay_output(self, msg, sink: OutputSink, result: StepResult | None):
        kind, content = msg["msg_type"], msg["content"]
        if kind == "stream":
            sink.stream(content["name"], content["text"])
        elif kind in ("display_data", "update_display_data"):
            sink.display(content, update=kind == "update_display_data")
        elif kind == "clear_output":
            sink.clear(content.get("wait", False))
        elif kind == "execute_result" and result is not None:
            result.result = content
        elif kind == "error" and result is not None:
            result.error = content

    def _handle_side_message(self, msg, deadline: float | None = None) -> bool:
        """Agent events (answered now) and comms the session opened (widgets): True if handled.
        A handler runs on the session's handler thread while this one keeps watching ``deadline``,
        the kernel's life and interrupts (see :class:`_HandlerThread`)."""
        kind = msg["msg_type"]
        if kind not in ("comm_msg", "comm_open", "comm_close"):
            return False
        content = msg["content"]
        if content.get("comm_id") != self._comm_id:
            if content.get("target_name") == "podstack.agent":
                return True
            self.relay.from_remote(msg)
            return True
        if kind != "comm_msg":
            return True
        data = content.get("data") or {}
        op = data.get("op")
        if op == "ready":  # start() waits for it
            self.remote_pid = data.get("pid")
            self.remote_python = tuple(int(p) for p in str(data.get("python", "")).split(".")[:2] if p.isdigit())
            return False
        if op in ("done", "alloc", "frames"):
            return False
        handler = hooks.agent_event_handler(op)
        if handler is None:
            answer = {"error": f"the notebook has no handler for {op!r}", "type": "PodstackError"}
            if not data.get("reply"):
                return True
        else:
            job = self._call_handler(handler, data, msg["buffers"], deadline)
            if job.error is None:
                answer = {"result": job.result}
            elif isinstance(job.error, Exception):  # reported to the remote caller, or printed
                exc = job.error
                answer = {"error": str(exc), "type": type(exc).__name__}
                if not data.get("reply"):
                    print(f"[podstack] {op} from the GPU session failed: {exc}", file=sys.stderr)
            else:
                raise job.error
        if data.get("reply"):
            prompt = self._rpc_prompts.pop(data.get("id"), None)
            if prompt is not None:
                self._send_input_reply(answer, prompt)
            else:
                self._rpc_answers[data["id"]] = answer
        return True

    def _call_handler(self, handler, data: dict, buffers: list, deadline: float | None) -> "_Job":
        """Run ``handler(data, buffers)`` on the handler thread and wait for it here; the finished
        job holds its result or error. A slow handler (a registry call answered over the network)
        must not hold back the step's timeout, Ctrl-C (which reaches this thread) or noticing that
        the kernel died. A handler given up on that way finishes on its own, its answer dropped;
        later events get a new thread. Messages stay in order: nothing else is read meanwhile."""
        worker = self._handlers
        if worker is None or worker.stuck:
            worker = self._handlers = _HandlerThread()
        job = worker.submit(handler, data, buffers, self.id, dict(self.cell_context))
        last_check = time.monotonic()
        try:
            while not job.done.wait(_HANDLER_POLL):
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    raise ExecutionTimeoutError("timeout")
                if now - last_check > _ALIVE_CHECK_INTERVAL:
                    last_check = now
                    self._check_alive()
        except BaseException:
            worker.retire()  # it is still busy with this job: the next event gets another thread
            raise
        return job

    def _answer_input(self, msg):
        content = msg["content"]
        prompt = content.get("prompt", "")
        if prompt.startswith(RPC_PROMPT):
            # the request itself travels on iopub, maybe behind this prompt: answer when both are here
            request_id = prompt[len(RPC_PROMPT):]
            answer = self._rpc_answers.pop(request_id, None)
            if answer is None:
                self._rpc_prompts[request_id] = msg
            else:
                self._send_input_reply(answer, msg)
            return
        try:
            if content.get("password"):
                import getpass

                value = getpass.getpass(prompt)
            else:
                value = input(prompt)
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # never answer '' for the user: the cell is interrupted and says why
            raise _InputFailed(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        self._send("stdin", "input_reply", {"value": value}, parent=msg)

    def _send_input_reply(self, answer: dict, prompt_msg: dict):
        self._send("stdin", "input_reply", {"value": json.dumps(answer, default=str)}, parent=prompt_msg)

    # -- results -------------------------------------------------------------
    def fetch(self, result: StepResult, *, full_keys: list | None = None, split: bool = False) -> tuple:
        """The pickled results of a step: (stream, buffers). Large buffers are copied out of the
        session's memory when it is on this machine; results offered first are asked for only if
        this process has room for them (else MemoryError, and they stay in the session)."""
        with self._lock:
            reply = result.reply
            pull = reply["pull"]
            step_id = reply["id"]
            if full_keys is not None or split:
                return self._ask_again(step_id, {"full": True, "keys": list(full_keys or ())} if not split
                                       else {"split": True})
            total = pull.get("bytes", 0)
            if reply.get("offer"):
                _check_room(total)
                return self._ask_again(step_id, {})
            parts, copied = [], False
            large = sum(part.get("n", 0) for part in pull["parts"])
            if large:
                _check_room(large)
            try:
                for part in pull["parts"]:
                    if "a" in part:  # copied straight out of the session's memory
                        parts.append(wire.vm_read(reply["pid"], part["a"], part["n"], self.pool))
                        self.kernel.bytes_received += part["n"]
                        copied = True
                    else:
                        parts.append(result.frames[part["i"]])
            except OSError:
                self.kernel.same_host = False
                return self._ask_again(step_id, {})
            if copied:
                self._comm_msg({"op": "release", "id": step_id})
            return parts[0], parts[1:], pull.get("format", "pickle")

    def _ask_again(self, step_id: str, options: dict) -> tuple:
        msg_id = self._comm_msg(dict(options, op="resend", id=step_id))
        msg = self._next_for(step_id, {msg_id}, time.monotonic() + self.spec.timeout, OutputSink(), None)
        data = msg["content"]["data"]
        if data.get("status") == "failed":
            raise PodstackError(f"the session could not send its results again: {data['error']['evalue']}")
        buffers = list(msg["buffers"])
        if options.get("split"):
            return data, buffers, None
        return buffers[0], buffers[1:], data.get("format", "pickle")

    def _forward_comm(self, msg_type: str, comm_id: str, msg: dict):
        """A message from the notebook's front end to a comm (widget) that lives in the session."""
        with self._lock:
            self._send("shell", msg_type, {"comm_id": comm_id, "data": msg["content"].get("data")},
                             metadata=msg.get("metadata"), buffers=list(msg.get("buffers") or []) or None)

    def _comm_msg(self, data: dict, buffers: list | None = None) -> str:
        return self._send("shell", "comm_msg", {"comm_id": self._comm_id, "data": data}, buffers=buffers)

    def _send(self, channel: str, msg_type: str, content: dict, **kwargs) -> str:
        with wire.interrupts_held():
            return self.kernel.send(channel, msg_type, content, **kwargs)

    def interrupt(self):
        self.kernel.interrupt()

    def _interrupt_and_settle(self, step_id: str, ours: set, sink: OutputSink, result: StepResult) -> dict | None:
        """Interrupt the remote and give it a moment to report back (its ``done`` message, or None),
        so the next cell starts clean."""
        self.kernel.interrupt()
        try:
            msg = self._next_for(step_id, ours, time.monotonic() + _INTERRUPT_GRACE, sink, result)
            while msg["content"]["data"].get("op") != "done":  # e.g. it was still setting memory aside
                msg = self._next_for(step_id, ours, time.monotonic() + _INTERRUPT_GRACE, sink, result)
            return msg
        except (ExecutionTimeoutError, KeyboardInterrupt):
            self._pending = step_id  # the next step waits for its done; the agent answers for a lost one
            self._comm_msg({"op": "settle", "id": step_id})
            return None

    def _settle_pending(self):
        """Before a new step: wait for the step we stopped waiting for, and count what it changed."""
        if self._pending is None:
            return
        step_id = self._pending
        late = self._late.pop(step_id, None)
        if late is None:
            try:
                late = self._next_for(step_id, set(), time.monotonic() + _SETTLE_GRACE, _Discard(), None)
            except ExecutionTimeoutError:
                self._check_alive()
                raise PodstackError("the GPU session is still busy with an interrupted cell; wait, interrupt "
                                    "again, or run %gpu restart to start it afresh") from None
        self._pending = None
        reply = late["content"]["data"]
        if reply.get("status") == "ok":  # it finished after all, but was reported interrupted here: undo it there
            self.sync.nacks[step_id] = []
            reply = dict(reply, status="lost")
        self.sync.resolve(step_id, reply)

    # -- lifetime ----------------------------------------------------------
    def stop(self, reason: str = "stopped"):
        """Shut the kernel down and give its GPUs back (safe to call twice)."""
        if self.state == "stopped":
            return
        self.relay.close_all()
        self.pool.clear()
        if self._handlers is not None:
            self._handlers.retire()
        try:
            if self.kernel is not None:
                self.kernel.shutdown()
        finally:
            if self.allocation is not None:
                self.backend.release(self.allocation)
            self._dead_reason = self._dead_reason or reason
            self._set_state("stopped")

    def info(self) -> dict:
        """What a session panel shows: id, state, spec, backend, GPUs, environment, uptime, bytes moved,
        and why it is dead or stopped (``reason``)."""
        kernel = self.kernel
        return {
            "id": self.id, "state": self.state, "spec": self.spec.describe(), "backend": self.backend.name,
            "gpus": self.allocation.describe() if self.allocation is not None else "-",
            "gpu_type": self.allocation.gpu_type if self.allocation is not None else None,
            "devices": list(self.allocation.gpus) if self.allocation is not None else [],
            "environment": self.environment.name if self.environment is not None else None,
            "uptime_s": round(time.time() - self.started_at, 1),
            "bytes_sent": kernel.bytes_sent if kernel is not None else 0,
            "bytes_received": kernel.bytes_received if kernel is not None else 0,
            "reason": self._dead_reason,
        }


class _Job:
    __slots__ = ("handler", "data", "buffers", "session_id", "context", "done", "result", "error")

    def __init__(self, handler, data, buffers, session_id, context):
        self.handler, self.data, self.buffers = handler, data, buffers
        self.session_id, self.context = session_id, context
        self.done = threading.Event()
        self.result = self.error = None


class _HandlerThread:
    """One daemon thread that runs a session's agent-event handlers in the order they came,
    inside ``hooks.dispatching`` (so ``event_origin()`` answers there). ``stuck``: the session
    stopped waiting for its current job; it ends after that job and a new one takes over."""

    def __init__(self):
        import queue

        self.stuck = False
        self._jobs: "queue.SimpleQueue[_Job]" = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="podstack-agent-events", daemon=True)
        self._thread.start()

    def submit(self, handler, data, buffers, session_id, context) -> _Job:
        job = _Job(handler, data, buffers, session_id, context)
        self._jobs.put(job)
        return job

    def retire(self):
        """End after the job it is running (the session no longer waits for it)."""
        self.stuck = True
        self._jobs.put(None)

    def _run(self):
        while True:
            job = self._jobs.get()
            if job is None:
                return
            try:
                with hooks.dispatching(job.session_id, job.context):
                    job.result = job.handler(job.data, job.buffers)
            except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
                job.error = exc
            finally:
                job.done.set()
            del job


class _NoAgentReply(Exception):
    pass


class _InputFailed(Exception):
    """This notebook could not answer the session's input() (it was said to have stdin)."""


def _interrupted(result: StepResult, reply: dict | None) -> KeyboardInterrupt:
    """The interrupt, shown in IPython as where the session stopped (not this module's frames)."""
    lines = (result.error or {}).get("traceback") or ((reply or {}).get("error") or {}).get("traceback") or []
    interrupt = KeyboardInterrupt()
    if lines:
        interrupt._render_traceback_ = lambda: list(lines)
    return interrupt


class _Discard(OutputSink):
    def stream(self, name, text):
        pass

    def display(self, content, update=False):
        pass

    def clear(self, wait):
        pass


def _check_room(nbytes: int):
    """Raise MemoryError if this process cannot take ``nbytes`` more (free memory, cgroup and
    address-space limits), before anything is allocated."""
    free = _free_memory()
    if free is not None and nbytes > free:
        raise MemoryError(f"{nbytes / 1e6:,.0f} MB are needed and this notebook has {free / 1e6:,.0f} MB free")


def _free_memory() -> int | None:
    limits = []
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    limits.append(int(line.split()[1]) * 1024)
                    break
    except OSError:
        pass
    try:
        maximum = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if maximum != "max":
            limits.append(int(maximum) - int(Path("/sys/fs/cgroup/memory.current").read_text()))
    except (OSError, ValueError):
        pass
    try:
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft != resource.RLIM_INFINITY:
            with open("/proc/self/statm") as f:
                used = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
            limits.append(soft - used)
    except (ImportError, OSError, ValueError):
        pass
    return min(limits) if limits else None


class CommRelay:
    """Comms the session's kernel opens (widgets: ``tqdm.auto`` bars, sliders) mirrored in the
    notebook's kernel, so its front end draws them live; messages from the front end go back."""

    def __init__(self, session: GPUSession):
        self._session = weakref.ref(session)
        self.proxies: dict[str, object] = {}
        self._pump: threading.Thread | None = None

    def from_remote(self, msg: dict):
        kind, content = msg["msg_type"], msg["content"]
        comm_id = content.get("comm_id")
        buffers = list(msg.get("buffers") or [])
        if kind == "comm_open":
            proxy = self._open_local(comm_id, content, msg.get("metadata") or {}, buffers)
            if proxy is not None:
                self.proxies[comm_id] = proxy
                self._ensure_pump()
        elif kind == "comm_msg":
            proxy = self.proxies.get(comm_id)
            if proxy is not None:
                proxy.send(content.get("data"), metadata=msg.get("metadata") or None, buffers=buffers or None)
        elif kind == "comm_close":
            proxy = self.proxies.pop(comm_id, None)
            if proxy is not None:
                proxy._closed = False
                proxy.close(content.get("data"), deleting=False)

    def _open_local(self, comm_id, content, metadata, buffers):
        try:
            from comm import create_comm
        except ImportError:  # pragma: no cover - ipykernel depends on comm
            return None
        proxy = create_comm(comm_id=comm_id, target_name=content.get("target_name"), data=content.get("data"),
                            metadata=metadata, buffers=buffers or None,
                            target_module=content.get("target_module"))
        session_ref = self._session

        def forward(msg, comm_id=comm_id):
            session = session_ref()
            if session is not None and session.alive:
                session._forward_comm("comm_msg", comm_id, msg)

        def closed(msg, comm_id=comm_id):
            session = session_ref()
            if self.proxies.pop(comm_id, None) is not None and session is not None and session.alive:
                session._forward_comm("comm_close", comm_id, msg)

        proxy.on_msg(forward)
        proxy.on_close(closed)
        return proxy

    def _ensure_pump(self):
        if self._pump is None or not self._pump.is_alive():
            self._pump = threading.Thread(target=self._run_pump, name="podstack-comm-relay", daemon=True)
            self._pump.start()

    def _run_pump(self):
        """Between cells, keep widgets live: relay what the session sends while no step reads it."""
        while self.proxies:
            session = self._session()
            if session is None or not session.alive:
                return
            if session._lock.acquire(timeout=0.05):
                try:
                    got = session.kernel.recv(0.02)
                    if got is not None and got[0] == "iopub":
                        msg = got[1]
                        if not session._handle_side_message(msg) and msg["msg_type"] == "comm_msg" \
                                and msg["content"]["data"].get("op") == "done":
                            session._late[msg["content"]["data"].get("id")] = msg
                except Exception:  # the session is shutting down under us
                    return
                finally:
                    session._lock.release()
            del session
            time.sleep(0.03)

    def close_all(self):
        self.proxies.clear()


def _parent(msg: dict) -> str | None:
    return (msg.get("parent_header") or {}).get("msg_id")


def _agent_op(msg: dict, comm_id: str, request_id: str | None = None) -> str | None:
    if msg.get("msg_type") != "comm_msg" or msg["content"].get("comm_id") != comm_id:
        return None
    data = msg["content"].get("data") or {}
    if request_id is not None and data.get("id") != request_id:
        return None
    return data.get("op")


class SessionManager:
    """The notebook's GPU sessions, one per spec, kept warm between cells."""

    def __init__(self):
        self._sessions: dict[GPUSpec, GPUSession] = {}
        self._starting: dict[GPUSpec, tuple[GPUSession, threading.Event]] = {}
        self._lost: dict[GPUSpec, str] = {}
        self._lock = threading.RLock()
        self._reaper: threading.Thread | None = None
        self._wake = threading.Event()
        atexit.register(self.stop_all)

    def get(self, spec: GPUSpec, *, fresh: bool = False, progress: Callable[[str], None] = print) -> GPUSession:
        """The warm session for ``spec``, starting one if needed (``fresh``: always a new one).

        While a session starts (an environment build can take minutes) the others stay usable;
        a second caller asking for the same spec waits for it instead of starting another.
        """
        while True:
            with self._lock:
                session = self._sessions.get(spec)
                if session is not None and (fresh or not session.alive):
                    if not session.alive and not fresh:
                        session.dead_reason = session.dead_reason or session.kernel.death_reason()
                        self._lost[spec] = session.dead_reason
                    self._discard(spec)
                    session = None
                if session is not None:
                    session.last_active = time.monotonic()  # handed out: not idle (the reaper checks under this lock)
                    return session
                starting = self._starting.get(spec)
                if starting is None:
                    session, opened = GPUSession(spec, get_backend(config.settings().backend)), threading.Event()
                    self._starting[spec] = (session, opened)
                    lost = self._lost.pop(spec, None)
                    break
            starting[1].wait()  # another thread is starting this spec's session: use it (or try again)
            fresh = False
        try:
            if lost:
                progress(f"[podstack] the previous {spec.describe()} session died ({lost}); "
                         f"its remote state was lost. Starting a fresh session.")
            session.open(progress)
            with self._lock:
                session.last_active = time.monotonic()
                self._sessions[spec] = session
                self._ensure_reaper()
            return session
        finally:
            with self._lock:
                self._starting.pop(spec, None)
            opened.set()

    def died(self, session: GPUSession):
        """Forget a session whose kernel died; the next cell with its spec says state was lost."""
        with self._lock:
            if self._sessions.get(session.spec) is session:
                self._lost[session.spec] = session.dead_reason or "it died"
                self._discard(session.spec)

    def _discard(self, spec: GPUSpec):
        session = self._sessions.pop(spec, None)
        if session is not None:
            session.stop()

    def find(self, selector: str | None = None) -> list[GPUSession]:
        """Live sessions matching ``selector``: ``None``/``"all"``, a GPU type (``L40S``, ``cpu``), or a session id."""
        with self._lock:
            found = list(self._sessions.values())
        if selector in (None, "all"):
            return found
        key = selector.upper()
        return [s for s in found if s.id == selector or (s.allocation.gpu_type or "CPU").upper() == key
                or (s.spec.type or "").upper() == key]

    def stop(self, selector: str | None = "all") -> int:
        """Stop the sessions ``selector`` matches (see :meth:`find`); returns how many."""
        if selector in (None, "all"):
            with self._lock:
                self._lost.clear()  # stopped on purpose: no "the previous session died" notice later
        stopped = 0
        for session in self.find(selector):
            with self._lock:
                self._sessions.pop(session.spec, None)
            session.stop()
            stopped += 1
        return stopped

    def stop_all(self):
        self.stop("all")

    def list(self) -> list[dict]:
        """``info()`` of every session, those still starting included."""
        with self._lock:
            starting = [session for session, _ in self._starting.values()]
        return [s.info() for s in [*self.find("all"), *starting]]

    def _ensure_reaper(self):
        self._wake.set()  # re-read the idle timeout now: it may have changed since the last check
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(target=self._reap_idle, name="podstack-idle-reaper", daemon=True)
            self._reaper.start()

    def _reap_idle(self):
        while True:
            timeout = config.settings().idle_timeout
            self._wake.wait(min(30.0, timeout / 4) if timeout else 30.0)
            self._wake.clear()
            timeout = config.settings().idle_timeout
            if not timeout:
                continue
            for session in self.find("all"):
                if not session._lock.acquire(blocking=False):  # a cell is running in it
                    continue
                try:
                    if time.monotonic() - session.last_active <= timeout:
                        continue
                    with self._lock:
                        if self._sessions.get(session.spec) is not session \
                                or time.monotonic() - session.last_active <= timeout:
                            continue
                        self._sessions.pop(session.spec)
                    session.stop(reason=f"idle for more than {timeout:g}s (PODSTACK_IDLE_TIMEOUT)")
                finally:
                    session._lock.release()


sessions = SessionManager()
