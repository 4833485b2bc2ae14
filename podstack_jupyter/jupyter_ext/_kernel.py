"""The notebook kernel's half of the lab extension: a comm (target ``podstack.lab``) that tells
the sidebar and the status bar what this kernel holds, and carries their Stop / Restart back.

The GPU sessions live in the notebook's kernel process, so only the kernel can say what they are
doing. The bridge follows ``session.state``, ``run`` and ``model`` events (not ``metrics.logged``,
so a metric loop pays nothing for it: while a run is active the sidebar is told to re-read runs
every ``RUN_POLL`` seconds instead) and sends a whole state message (never a diff: a front end
that missed one is right again with the next), at most ``RATE`` times a second, from one thread:

``{"type": "state", "sessions": [GPUSession.info() + "at", "since"], "run": {id, name, experiment_id}
or null, "experiment_id": the experiment of the newest run this kernel started, "store": the
store URL (password hidden), "changed": {"runs": n, "models": n}}``

``changed`` counts run and model events (and ticks while a run is active): the sidebar re-reads
runs or models from the server extension when its number moves. The front end opens the comm
when it connects to a kernel that already has the bridge; ``attach`` opens one when
``%load_ext podstack`` runs.

Messages from the front end (handled in the kernel's shell thread, so while a cell runs they
wait for it): ``{"action": "refresh"}``, ``{"action": "stop", "id": ...}``,
``{"action": "restart", "id": ...}``; each is answered with ``{"type": "reply", "action", "ok",
"message"}`` and a fresh state.
"""

from __future__ import annotations

import logging
import threading
import time

from .. import events
from . import COMM_TARGET

log = logging.getLogger("podstack.lab")

RATE = 4.0  # state messages a second, at most
# While a run started here is active, the sidebar re-reads runs this often (seconds) for their latest
# metrics. Listening to ``metrics.logged`` instead would put an event on every log_metrics call
# (about a third more per call: bench/bench_labext.py measured it before this choice).
RUN_POLL = 2.0


def _sessions():
    from ..compute import sessions

    return sessions


class LabBridge:
    def __init__(self, shell):
        self.shell = shell
        self._comms: dict[str, object] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closed = threading.Event()
        self._since: dict[str, float] = {}      # session id -> when it entered its state
        self._stopped: dict[str, dict] = {}     # sessions stopped or dead, shown until the next start
        self._runs: list[dict] = []             # runs started here and not ended, newest last
        self._experiment_id: str | None = None
        self._changed = {"runs": 0, "models": 0}
        self._subscriptions = [
            events.subscribe("session.state", self._on_session),
            events.subscribe("run", self._on_run),
            events.subscribe("model", self._on_model),
        ]
        self._thread = threading.Thread(target=self._loop, name="podstack-lab-bridge", daemon=True)
        self._thread.start()

    # -- comms ---------------------------------------------------------------------------------
    def open_comm(self) -> None:
        """Open a comm to the front end (it registers the target ``podstack.lab`` on every kernel)."""
        from comm import create_comm

        comm = create_comm(target_name=COMM_TARGET, data=self.state())
        self._adopt(comm)

    def on_front_end_open(self, comm, _msg) -> None:
        self._adopt(comm)
        comm.send(self.state())

    def _adopt(self, comm) -> None:
        with self._lock:
            self._comms[comm.comm_id] = comm
        comm.on_msg(self._on_msg)
        comm.on_close(lambda _msg, comm_id=comm.comm_id: self._forget(comm_id))

    def _forget(self, comm_id: str) -> None:
        with self._lock:
            self._comms.pop(comm_id, None)

    def _on_msg(self, msg) -> None:
        data = (msg.get("content") or {}).get("data") or {}
        action = data.get("action")
        ok, message = True, ""
        try:
            if action == "refresh":
                pass
            elif action == "stop":
                info = self._find(data.get("id")).info()
                _sessions().stop(info["id"])
                message = f"stopped session {info['id']} ({info['spec']})"
            elif action == "restart":
                session = self._find(data.get("id"))
                fresh = _sessions().get(session.spec, fresh=True, progress=lambda _text: None)
                message = f"restarted {session.spec.describe()}: new session {fresh.id}, remote state reset"
            else:
                ok, message = False, f"unknown action {action!r}"
        except Exception as exc:  # noqa: BLE001 - the user sees why, in the sidebar
            ok, message = False, f"{type(exc).__name__}: {exc}"
        self._broadcast({"type": "reply", "action": action, "ok": ok, "message": message})
        self._broadcast(self.state())

    def _find(self, session_id):
        found = [s for s in _sessions().find("all") if s.id == session_id]
        if not found:
            raise LookupError(f"session {session_id!r} is not running any more")
        return found[0]

    # -- state -------------------------------------------------------------------------------
    def state(self) -> dict:
        from .. import config
        from ._app import public_url

        now = time.time()
        # min: a state change may land between reading the clock and reading the sessions
        live = [{**info, "at": now, "since": min(self._since.get(info["id"], now), now)} for info in _sessions().list()]
        ids = {s["id"] for s in live}
        with self._lock:
            gone = [s for sid, s in self._stopped.items() if sid not in ids]
            run = self._runs[-1] if self._runs else None
            experiment_id, changed = self._experiment_id, dict(self._changed)
        try:
            store = public_url(config.settings().tracking_url)
        except Exception:  # noqa: BLE001 - a broken setting is shown by %podstack; the sidebar goes on
            store = None
        return {"type": "state", "sessions": live + gone, "run": run, "experiment_id": experiment_id,
                "store": store, "changed": changed}

    def _on_session(self, event) -> None:
        info = event.data.get("session") or {}
        state = event.data.get("state") or info.get("state")
        with self._lock:
            if info.get("id"):
                self._since[info["id"]] = event.time
                if state in ("stopped", "dead"):
                    self._stopped[info["id"]] = {**info, "state": state, "at": event.time, "since": event.time}
                elif state == "starting":
                    self._stopped = {k: v for k, v in self._stopped.items() if v.get("spec") != info.get("spec")}
        self._wake.set()

    def _on_run(self, event) -> None:
        with self._lock:
            if event.topic == "run.started":
                run = event.data.get("run") or {}
                self._runs.append({"id": run.get("id"), "name": run.get("name") or (run.get("id") or "")[:8],
                                   "experiment_id": run.get("experiment_id")})
                self._experiment_id = run.get("experiment_id") or self._experiment_id
            elif event.topic == "run.ended":
                self._runs = [r for r in self._runs if r["id"] != event.data.get("run_id")]
            self._changed["runs"] += 1
        self._wake.set()

    def _on_model(self, _event) -> None:
        with self._lock:
            self._changed["models"] += 1
        self._wake.set()

    def _broadcast(self, data: dict) -> None:
        with self._lock:
            comms = list(self._comms.values())
        for comm in comms:
            try:
                comm.send(data)
            except Exception:  # noqa: BLE001 - a closed front end must not stop the others
                log.debug("podstack: could not send to the lab front end", exc_info=True)

    def _loop(self) -> None:
        while not self._closed.is_set():
            woken = self._wake.wait(RUN_POLL if self._runs else None)
            self._wake.clear()
            if self._closed.is_set():
                return
            if not woken:  # a run is active: its metrics moved on, most likely (see RUN_POLL)
                with self._lock:
                    self._changed["runs"] += 1
            started = time.monotonic()
            if self._comms:
                try:
                    self._broadcast(self.state())
                except Exception:  # noqa: BLE001 - keep the bridge alive; the next event tries again
                    log.exception("podstack: the lab bridge could not read the state")
            time.sleep(max(0.0, 1.0 / RATE - (time.monotonic() - started)))

    def close(self) -> None:
        for subscription in self._subscriptions:
            subscription.close()
        self._closed.set()
        self._wake.set()
        with self._lock:
            comms, self._comms = list(self._comms.values()), {}
        for comm in comms:
            try:
                comm.close()
            except Exception:  # noqa: BLE001 - the front end may be gone already
                pass


_bridge: LabBridge | None = None


def attach(shell) -> None:
    global _bridge
    kernel = getattr(shell, "kernel", None)
    if kernel is None or _bridge is not None:
        return
    from comm import get_comm_manager

    _bridge = LabBridge(shell)
    get_comm_manager().register_target(COMM_TARGET, _bridge.on_front_end_open)
    _bridge.open_comm()


def detach(shell) -> None:
    global _bridge
    if _bridge is None:
        return
    from comm import get_comm_manager

    get_comm_manager().unregister_target(COMM_TARGET, _bridge.on_front_end_open)
    _bridge.close()
    _bridge = None
