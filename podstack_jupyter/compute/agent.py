"""The podstack agent: the code that runs inside a GPU session's kernel.

The session ships this file (and :mod:`wire`) as source into the remote
IPython kernel at start, so the remote needs nothing of podstack installed,
only cloudpickle. The agent

* opens a comm target ``podstack.agent`` through which the notebook pushes
  variables (out-of-band buffers ride as the comm message's binary frames);
* lets cells run as ordinary ``execute_request``s, so stdout, displays, errors
  and interrupts stay native Jupyter;
* after a cell that the notebook tagged (``metadata["podstack"]``) finishes
  successfully, sends back in one comm message the names the cell bound, the
  names it was asked for, and every input whose content changed in place.

It keeps a fingerprint for each name it shares with the notebook, computed in
this process, so "did the cell change ``arr``?" compares like with like.
"""

import json
import sys
import threading
import uuid

wire = sys.modules.get("_podstack_wire")
if wire is None:  # imported as part of the package (tests, local debugging)
    from podstack_jupyter.compute import wire

TARGET = "podstack.agent"
_REPLY_OP = {"push": "pushed", "pull": "result"}
RPC_PROMPT = "\x00podstack-rpc:"  # an input_request with this prompt waits for an RPC's answer


class Agent:
    def __init__(self, shell):
        self.shell = shell
        self.kernel = shell.kernel
        self.comm = None
        self.fingerprints = {}  # name -> fingerprint of the value the notebook also holds
        self.context = {}  # the notebook's context for the running cell (e.g. its active tracked run)
        self.on_cell_end = []  # callables run before a cell's results are sent (e.g. flush metrics)
        self.kernel.comm_manager.register_target(TARGET, self._on_open)
        shell.events.register("pre_run_cell", self._pre_run_cell)
        shell.events.register("post_run_cell", self._post_run_cell)

    # -- comm -------------------------------------------------------------
    def _on_open(self, comm, open_msg):
        self.comm = comm
        comm.on_msg(self._on_msg)
        comm.send({"op": "ready", "python": sys.version.split()[0]})

    def _on_msg(self, msg):
        data = msg["content"]["data"]
        op = data.get("op")
        try:
            if op == "push":
                self._receive(data, msg.get("buffers") or [])
            elif op == "pull":
                self._send_values(data["id"], data["names"], ())
            elif op == "forget":
                self.fingerprints.clear()
        except Exception as exc:  # never leave the notebook waiting
            # answer with the op the notebook is waiting for, so it fails at once instead of timing out
            self.comm.send({"op": _REPLY_OP.get(op, op), "id": data.get("id"), "status": "error",
                            "error": f"{type(exc).__name__}: {exc}"})

    def _receive(self, data, buffers):
        decoded = {}
        for name, _fp, frames in wire.unpack(data["manifest"], buffers):
            try:
                decoded[name] = wire.decode(frames)
            except Exception as exc:
                self.comm.send({"op": "pushed", "id": data["id"], "status": "error", "name": name,
                                "error": f"{type(exc).__name__}: {exc}"})
                return
        self.shell.user_ns.update(decoded)  # all names or none
        for name, value in decoded.items():
            self.fingerprints[name] = wire.encode(value).fingerprint
        self.comm.send({"op": "pushed", "id": data["id"], "status": "ok"})

    # -- around each tagged cell ------------------------------------------
    def _meta(self):
        request = self.kernel.get_parent("shell") or {}
        return (request.get("metadata") or {}).get("podstack")

    def _pre_run_cell(self, info):
        self.context = (self._meta() or {}).get("context") or {}

    def _post_run_cell(self, result):
        meta = self._meta()
        if not meta or self.comm is None:
            return
        for callback in list(self.on_cell_end):
            try:
                callback()
            except Exception as exc:  # a failed flush must not lose the cell's results
                print(f"[podstack] {exc}", file=sys.stderr)
        try:
            if not result.success:
                self.comm.send({"op": "result", "id": meta["id"], "status": "failed"})
            else:
                self._send_values(meta["id"], meta.get("binds", []), meta.get("inputs", []))
        finally:
            for name in meta.get("drop", []):  # scratch names of a function call
                self.shell.user_ns.pop(name, None)
                self.fingerprints.pop(name, None)
            self.context = {}

    def _send_values(self, request_id, names, inputs):
        ns = self.shell.user_ns
        encoded, absent, unsendable = {}, [], {}
        wanted = list(dict.fromkeys(names))
        for name in inputs:  # inputs come back only if the cell changed them
            if name not in wanted and name in ns:
                wanted.append(name)
        for name in wanted:
            if name not in ns:
                absent.append(name)
                continue
            try:
                enc = wire.encode(ns[name])
            except Exception as exc:
                if name in names:  # an input that never could travel stays remote without a word
                    unsendable[name] = f"{type(ns[name]).__module__}.{type(ns[name]).__qualname__}: {exc}"
                continue
            if name in inputs and name not in names and self.fingerprints.get(name) == enc.fingerprint:
                continue  # an input the cell left as it was
            encoded[name] = enc
        manifest, frames = wire.pack(encoded)
        self.comm.send({"op": "result", "id": request_id, "status": "ok", "manifest": manifest,
                        "absent": absent, "unsendable": unsendable}, buffers=frames)
        for name, enc in encoded.items():
            self.fingerprints[name] = enc.fingerprint

    def emit(self, op, data, buffers=None):
        """Send a message to the notebook, from any thread; it is handled in order with
        every other message this kernel sends (the notebook's ``on_agent_event`` handlers)."""
        if self.comm is None:
            raise RuntimeError("the notebook has not connected to this session's agent")
        self.comm.send(dict(data, op=op), buffers=buffers)

    def call(self, op, data):
        """Send ``op`` to the notebook and wait for its answer (main thread, inside a cell).

        The request travels in order with everything emitted before it; the answer
        comes back as the reply to an ``input_request``, the one channel a busy
        kernel still reads.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("podstack calls that need an answer from the notebook must run on the "
                               "main thread of the GPU session")
        request_id = uuid.uuid4().hex
        self.emit(op, dict(data, id=request_id, reply=True))
        answer = json.loads(self.kernel.raw_input(RPC_PROMPT + request_id))
        if "error" in answer:
            raise _rebuild_error(answer)
        return answer.get("result")


def _rebuild_error(answer):
    """The notebook's exception type when podstack is importable here, else a RuntimeError."""
    if answer.get("type") is None:
        return RuntimeError(answer["error"])
    try:
        from podstack_jupyter import errors

        cls = getattr(errors, answer["type"], None)
    except ImportError:
        cls = None
    if cls is not None:
        return cls(answer["error"])
    return RuntimeError(f"{answer['type']}: {answer['error']}")


_agent = None


def install(shell=None):
    """Start the agent in this kernel (idempotent)."""
    global _agent
    if _agent is None:
        if shell is None:
            shell = get_ipython()  # noqa: F821 - defined inside IPython kernels
        _agent = Agent(shell)
    return _agent
