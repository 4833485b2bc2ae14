"""The session panel (the notebook's GPU sessions, with stop and restart) and the compact
status line ``%%gpu`` shows under its cell.

Both follow ``session.state`` events; the panel also re-reads the sessions after each of
its own actions, and the views count uptime and elapsed time themselves between updates.
"""

from __future__ import annotations

import contextlib
import time

import traitlets

from ..errors import InvalidArgumentError
from ._base import PodstackWidget, can_show_widgets, live_sender

__all__ = ["SessionPanel", "GPUStatusLine", "gpu_status"]


def _sessions():
    from ..compute import sessions

    return sessions


class SessionPanel(PodstackWidget):
    """``podstack.show_sessions()``: the live GPU sessions (spec, backend, GPUs, state, uptime,
    bytes moved) with stop and restart buttons. ``sessions`` holds their ``info()`` plus ``at``
    (when it was read); sessions stopped from the panel stay listed as ``stopped``."""

    _kind = traitlets.Unicode("sessions").tag(sync=True)
    sessions = traitlets.List().tag(sync=True)

    def __init__(self, *, live: bool = True):
        super().__init__()
        self._stopped: dict[str, dict] = {}
        if live:
            self._subscribe("session.state", "_on_session_event")
        self.refresh()

    def refresh(self) -> None:
        """Read the sessions again."""
        now = time.time()
        live = [{**info, "at": now} for info in _sessions().list()]
        ids = {s["id"] for s in live}
        gone = [s for sid, s in self._stopped.items() if sid not in ids]
        self.sessions = live + gone

    def _summary(self) -> str:
        if not self.sessions:
            return "no GPU sessions"
        return "\n" + "\n".join(f"  {s['id']}  {s['spec']}  {s['backend']}  {s['state']}  up {s['uptime_s']} s"
                                for s in self.sessions)

    def _find(self, session_id):
        if not isinstance(session_id, str) or not session_id:
            raise InvalidArgumentError(f"a session id is a non-empty string, got {session_id!r}")
        found = [s for s in _sessions().find("all") if s.id == session_id]
        if not found:
            self.refresh()
            raise InvalidArgumentError(f"session {session_id} is not running any more")
        return found[0]

    def stop(self, session_id: str) -> None:
        """Stop one session (its remote state is lost)."""
        session = self._find(session_id)
        info = session.info()
        _sessions().stop(session_id)
        self._stopped[session_id] = {**info, "state": "stopped", "at": time.time()}
        self.status = f"stopped session {session_id} ({info['spec']})"
        self.refresh()

    def restart(self, session_id: str) -> None:
        """Replace one session with a fresh kernel of the same spec (its remote state is lost)."""
        session = self._find(session_id)
        self.status = f"restarting session {session_id} ({session.spec.describe()})…"
        fresh = _sessions().get(session.spec, fresh=True, progress=lambda text: setattr(self, "status", text))
        self.status = f"restarted {session.spec.describe()}: new session {fresh.id}, remote state reset"
        self.refresh()

    def _on_view_stop(self, content, _buffers) -> None:
        self.stop(content.get("id"))

    def _on_view_restart(self, content, _buffers) -> None:
        self.restart(content.get("id"))

    def _on_view_refresh(self, _content, _buffers) -> None:
        self.refresh()

    def _on_session_event(self, _event) -> None:
        live_sender.mark(self)

    def _flush_live(self) -> None:
        self.refresh()


class GPUStatusLine(PodstackWidget):
    """One line under a ``%%gpu`` cell: the spec, what the session is doing (starting, building
    its environment, running with the elapsed time) and how the cell ended."""

    _kind = traitlets.Unicode("gpu-status").tag(sync=True)
    spec = traitlets.Unicode("").tag(sync=True)
    state = traitlets.Unicode("starting").tag(sync=True)
    detail = traitlets.Unicode("").tag(sync=True)
    started = traitlets.Float(0.0).tag(sync=True)
    finished = traitlets.Float(0.0).tag(sync=True)
    session = traitlets.Unicode("").tag(sync=True)

    def __init__(self, spec: str, *, live: bool = True):
        super().__init__(spec=spec, started=time.time())
        self._last_info: dict = {}
        warm = [s for s in _sessions().list() if s["spec"] == spec and s["state"] != "dead"]
        if warm:
            self._show(warm[0], "running")
        if live:
            self._subscribe("session.state", "_on_session_event")

    def _summary(self) -> str:
        return f"{self.spec} {self.state} {self.detail}".strip()

    def _show(self, info: dict, state: str) -> None:
        self._last_info = info
        with self.hold_sync():
            self.session = info.get("id", self.session)
            self.state = {"busy": "running"}.get(state, state)

    def _on_session_event(self, event) -> None:
        info = event.data.get("session") or {}
        if info.get("spec") != self.spec or self.finished:
            return
        self._show(info, event.data.get("state") or info.get("state") or self.state)

    def finish(self, error: BaseException | None = None) -> None:
        info = next((s for s in _sessions().list() if s["id"] == self.session or s["spec"] == self.spec), self._last_info)
        moved = ""
        if info:
            moved = f"sent {_size(info.get('bytes_sent', 0))} · received {_size(info.get('bytes_received', 0))}"
        with self.hold_sync():
            self.session = (info or {}).get("id", self.session)
            self.finished = time.time()
            if error is None:
                self.state, self.detail = "done", moved
            else:
                self.state = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
                self.detail = f"{type(error).__name__}: {str(error)[:200]}"


def _size(count: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if count < 1024 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count} B"


@contextlib.contextmanager
def gpu_status(spec):
    """Show a :class:`GPUStatusLine` for ``spec`` while the block runs (only where widgets can be
    shown: in a terminal nothing is drawn). ``%%gpu`` runs its cell inside this."""
    if not can_show_widgets():
        yield None
        return
    from IPython.display import display

    line = GPUStatusLine(spec.describe())
    display(line)
    try:
        yield line
    except BaseException as exc:
        line.finish(exc)
        raise
    line.finish()
