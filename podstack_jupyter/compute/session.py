"""GPU sessions: live remote Jupyter kernels, kept warm and shared by cells with the same spec.

A cell runs as *push* (the values the remote lacks, as one comm message whose
binary frames are the out-of-band buffers) -> *execute* (an ordinary
``execute_request``: stdout, displays, errors and interrupts are native Jupyter,
relayed live) -> *pull* (the agent answers, in the same round trip, with the
names the cell bound and the inputs it changed) -> the caller applies them.
"""

from __future__ import annotations

import atexit
import json
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from .. import config, events
from ..errors import (ExecutionTimeoutError, PodstackError, RemoteExecutionError, SerializationError,
                      SessionDiedError)
from . import hooks, wire
from .agent import RPC_PROMPT
from .backends import Allocation, Backend, Connection, Environment, get_backend
from .spec import GPUSpec

__all__ = ["GPUSession", "SessionManager", "ExecutionOutcome", "OutputSink", "sessions"]

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


class OutputSink:
    """Where a remote execution's iopub output goes. The default relays it into the
    current IPython cell; :class:`CapturingSink` collects it as text."""

    def stream(self, name: str, text: str) -> None:
        import sys

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
class ExecutionOutcome:
    """What a remote execution produced, decoded but not yet applied anywhere."""

    execution_id: str
    values: dict = field(default_factory=dict)        # name -> value, to apply all at once
    fingerprints: dict = field(default_factory=dict)  # name -> local fingerprint of that value
    absent: list = field(default_factory=list)        # asked-for names the remote does not have
    left_remote: dict = field(default_factory=dict)   # name -> why it could not come back
    result: dict | None = None                        # the execute_result bundle, if any
    duration: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0


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
        # name -> fingerprint (computed here) of the value the remote holds for that name
        self.remote_fingerprints: dict[str, str] = {}
        self.rpc_answers: dict[str, dict] = {}  # request id -> answer, for agent.call()
        self.cell_context: dict = {}  # what the notebook sent with the running (or last) cell: hooks.event_origin()
        self._comm_id = uuid.uuid4().hex
        self._lock = threading.RLock()
        self._pending: str | None = None  # an interrupted execution the remote may still be finishing

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
        msg_id = self.kernel.send("shell", "execute_request", {
            "code": code, "silent": True, "store_history": False, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": False})
        reply = self._until(lambda ch, m: ch == "shell" and _parent(m) == msg_id, deadline, "start the agent")
        if reply["content"]["status"] != "ok":
            c = reply["content"]
            raise PodstackError(f"the podstack agent failed to start in the session: {c.get('ename')}: "
                                f"{c.get('evalue')}. Is cloudpickle installed in the session's environment?")
        self.kernel.send("shell", "comm_open", {"comm_id": self._comm_id, "target_name": "podstack.agent",
                                                "data": {}})
        self._until(lambda ch, m: _agent_op(m, self._comm_id) == "ready", deadline, "open the agent channel")

    def _wait_ready(self, deadline: float):
        # kernel_info until its status arrives on iopub: then our subscription is live
        while True:
            msg_id = self.kernel.send("shell", "kernel_info_request", {})
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
        """The next message, after handing agent events to their handlers."""
        got = self.kernel.recv(timeout)
        if got is not None and got[0] == "iopub":
            msg = got[1]
            if msg["msg_type"] == "comm_msg" and msg["content"].get("comm_id") == self._comm_id:
                data = msg["content"]["data"]
                handler = hooks.agent_event_handler(data.get("op"))
                if handler is not None:
                    try:
                        with hooks.dispatching(self.id, self.cell_context):
                            answer = {"result": handler(data, msg["buffers"])}
                    except Exception as exc:  # reported to the remote caller, or printed
                        answer = {"error": str(exc), "type": type(exc).__name__}
                        if not data.get("reply"):
                            print(f"[podstack] {data.get('op')} from the GPU session failed: {exc}", file=sys.stderr)
                    if data.get("reply"):
                        self.rpc_answers[data["id"]] = answer
                    return None
                if data.get("reply") and "id" in data:  # a call nobody here answers: fail it now, not in 10 minutes
                    self.rpc_answers[data["id"]] = {"error": f"the notebook has no handler for {data.get('op')!r}",
                                                    "type": "PodstackError"}
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

    # -- push / pull -------------------------------------------------------
    def push(self, values: dict[str, wire.Encoded], timeout: float = 3600.0) -> int:
        """Send encoded values; returns bytes sent. All are applied remotely, or none."""
        if not values:
            return 0
        with self._lock:
            manifest, frames = wire.pack(values)
            request_id = uuid.uuid4().hex
            before = self.kernel.bytes_sent
            self._comm_msg({"op": "push", "id": request_id, "manifest": manifest}, frames)
            reply = self._until(lambda ch, m: _agent_op(m, self._comm_id, request_id) == "pushed",
                                time.monotonic() + timeout, "receive the pushed variables")
            data = reply["content"]["data"]
            if data["status"] != "ok":
                name = data.get("name")
                raise SerializationError(
                    f"the session could not rebuild variable {name!r}: {data.get('error')}. "
                    f"Is the package that defines it installed there (use --pip)?", name=name)
            for name, enc in values.items():
                self.remote_fingerprints[name] = enc.fingerprint
            return self.kernel.bytes_sent - before

    def pull(self, names: list[str], timeout: float = 3600.0) -> ExecutionOutcome:
        """Fetch named values from the remote namespace (decoded, not applied)."""
        with self._lock:
            request_id = uuid.uuid4().hex
            outcome = ExecutionOutcome(request_id)
            self._comm_msg({"op": "pull", "id": request_id, "names": list(names)})
            reply = self._until(lambda ch, m: _agent_op(m, self._comm_id, request_id) == "result",
                                time.monotonic() + timeout, "send the variables")
            self._decode_result(reply, outcome)
            return outcome

    def _comm_msg(self, data: dict, buffers: list | None = None):
        self.kernel.send("shell", "comm_msg", {"comm_id": self._comm_id, "data": data}, buffers=buffers)

    # -- execute -----------------------------------------------------------
    def execute(self, code: str, *, inputs: list[str] = (), binds: list[str] = (), timeout: float | None = None,
                sink: OutputSink | None = None, line_offset: int = 0, drop: list[str] = (),
                context: dict | None = None) -> ExecutionOutcome:
        """Run ``code`` remotely, relaying output to ``sink`` as it arrives.

        ``binds`` come back if the remote has them; ``inputs`` come back only if
        their content changed; ``drop`` names are deleted remotely afterwards; ``context``
        (JSON) is what the remote agent sees of the notebook while the cell runs. Raises RemoteExecutionError (the remote raised),
        ExecutionTimeoutError (``timeout`` passed; the remote is interrupted),
        SessionDiedError, or KeyboardInterrupt (the remote is interrupted too).
        """
        sink = sink or OutputSink()
        timeout = timeout or self.spec.timeout
        with self._lock:
            self._settle_pending()
            self.busy = True
            started = time.monotonic()
            sent_before, received_before = self.kernel.bytes_sent, self.kernel.bytes_received
            try:
                request_id = uuid.uuid4().hex
                self.cell_context = context or hooks.cell_context()
                msg_id = self.kernel.send("shell", "execute_request", {
                    # "#" lines keep the cell's line numbers (IPython strips leading blank lines)
                    "code": "#\n" * line_offset + code, "silent": False, "store_history": True,
                    "user_expressions": {}, "allow_stdin": True, "stop_on_error": False,
                }, metadata={"podstack": {"id": request_id, "binds": list(binds), "inputs": list(inputs),
                                        "drop": list(drop), "context": self.cell_context}})
                outcome = ExecutionOutcome(msg_id)
                self._relay_until_done(msg_id, request_id, started + timeout, timeout, sink, outcome)
            finally:
                self.busy = False
                self.last_active = time.monotonic()
            outcome.duration = time.monotonic() - started
            outcome.bytes_sent = self.kernel.bytes_sent - sent_before
            outcome.bytes_received = self.kernel.bytes_received - received_before
            return outcome

    def _relay_until_done(self, msg_id, request_id, deadline, timeout, sink, outcome):
        reply = result = error = None
        idle = False
        last_check = time.monotonic()
        while not (idle and reply is not None):
            now = time.monotonic()
            if now >= deadline:
                self._interrupt_and_settle(msg_id, sink)
                raise ExecutionTimeoutError(
                    f"execution {msg_id} ran longer than its timeout of {timeout:g}s and was interrupted. "
                    f"Raise it with --timeout SECONDS.", execution_id=msg_id, timeout=timeout)
            try:
                got = self._recv(min(0.2, deadline - now))
                if got is None or time.monotonic() - last_check > _ALIVE_CHECK_INTERVAL:
                    last_check = time.monotonic()
                    self._check_alive()
                if got is None:
                    continue
            except KeyboardInterrupt:
                self._interrupt_and_settle(msg_id, sink)
                raise
            channel, msg = got
            if channel == "stdin":
                self._answer_input(msg)
                continue
            if _parent(msg) != msg_id:
                continue
            if channel == "shell":
                reply = msg
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "status":
                idle = content["execution_state"] == "idle"
            elif kind == "stream":
                sink.stream(content["name"], content["text"])
            elif kind in ("display_data", "update_display_data"):
                sink.display(content, update=kind == "update_display_data")
            elif kind == "clear_output":
                sink.clear(content.get("wait", False))
            elif kind == "execute_result":
                outcome.result = content
            elif kind == "error":
                error = content
            elif kind == "comm_msg" and content.get("comm_id") == self._comm_id:
                data = content["data"]
                if data.get("op") == "result" and data.get("id") == request_id:
                    result = msg
        status = reply["content"]["status"]
        if status != "ok":
            error = error or reply["content"]
            raise RemoteExecutionError(error.get("ename", "Error"), error.get("evalue", ""),
                                       error.get("traceback"), execution_id=msg_id)
        if result is None:
            raise PodstackError("the session's agent sent no results for this cell; run %gpu restart")
        self._decode_result(result, outcome)

    def _decode_result(self, msg: dict, outcome: ExecutionOutcome):
        data = msg["content"]["data"]
        if data.get("status") != "ok":
            raise PodstackError(f"the session could not send the variables back: {data.get('error')}")
        outcome.absent = data.get("absent", [])
        outcome.left_remote = dict(data.get("unsendable", {}))
        for name, _remote_fp, frames in wire.unpack(data["manifest"], msg["buffers"]):
            try:
                value = wire.decode(frames)
                outcome.fingerprints[name] = wire.encode(value).fingerprint
            except Exception as exc:  # e.g. a CUDA tensor on a machine without CUDA
                outcome.left_remote[name] = f"cannot be rebuilt here: {type(exc).__name__}: {exc}"
                continue
            outcome.values[name] = value

    def _answer_input(self, msg):
        content = msg["content"]
        prompt = content.get("prompt", "")
        if prompt.startswith(RPC_PROMPT):
            request_id = prompt[len(RPC_PROMPT):]
            # the request itself travels on iopub ahead of this prompt; keep reading until it is answered
            deadline = time.monotonic() + 600
            while request_id not in self.rpc_answers and time.monotonic() < deadline:
                self._recv(0.1)
            answer = self.rpc_answers.pop(request_id, {"error": "the request never arrived", "type": None})
            self.kernel.send("stdin", "input_reply", {"value": json.dumps(answer, default=str)}, parent=msg)
            return
        try:
            if content.get("password"):
                import getpass

                value = getpass.getpass(content.get("prompt", ""))
            else:
                value = input(content.get("prompt", ""))
        except Exception:  # this kernel cannot ask either (e.g. a headless run)
            value = ""
        self.kernel.send("stdin", "input_reply", {"value": value}, parent=msg)

    def interrupt(self):
        self.kernel.interrupt()

    def _interrupt_and_settle(self, msg_id: str, sink: OutputSink):
        """Interrupt the remote and give it a moment to finish the cell, so the next one starts clean."""
        self.kernel.interrupt()
        self._pending = msg_id
        self._settle_pending(_INTERRUPT_GRACE, sink, quiet=True)

    def _settle_pending(self, grace: float = 5.0, sink: OutputSink | None = None, quiet: bool = False):
        if self._pending is None:
            return
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline:
            got = self._recv(min(0.1, deadline - time.monotonic()))
            if got is None:
                if not self.kernel.is_alive():
                    break
                continue
            channel, msg = got
            if _parent(msg) == self._pending and msg["msg_type"] == "status" \
                    and msg["content"]["execution_state"] == "idle":
                self._pending = None
                return
            if sink is not None and channel == "iopub" and msg["msg_type"] == "stream" \
                    and _parent(msg) == self._pending:
                sink.stream(msg["content"]["name"], msg["content"]["text"])
        if not quiet:
            self._check_alive()
            raise PodstackError("the GPU session is still busy with an interrupted cell; wait, interrupt "
                                "again, or run %gpu restart to start it afresh")

    # -- lifetime ----------------------------------------------------------
    def stop(self, reason: str = "stopped"):
        """Shut the kernel down and give its GPUs back (safe to call twice)."""
        if self.state == "stopped":
            return
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
                        if self._sessions.get(session.spec) is session:
                            self._sessions.pop(session.spec)
                    session.stop(reason=f"idle for more than {timeout:g}s (PODSTACK_IDLE_TIMEOUT)")
                finally:
                    session._lock.release()


sessions = SessionManager()
