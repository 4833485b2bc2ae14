"""Where other planes plug into the compute plane. Compute knows nothing of them.

Notebook side, for every session of every backend:

* **cell-context providers** -- ``add_cell_context(name, provider)``: before each
  remote cell, ``provider()`` returns JSON-able data the remote code may read
  (``_podstack_agent._agent.context[name]``), e.g. the notebook's active tracked run.
* **agent-event handlers** -- ``on_agent_event(op, handler)``: a running remote
  cell sends ``agent.emit(op, data)`` (from any thread) or asks
  ``agent.call(op, data)`` (main thread; waits for the answer); ``handler(data,
  buffers)`` runs in the notebook and, for calls, its return value is the answer.
  A plane that may not be imported yet when its first event arrives declares its
  handler as an entry point in the group ``podstack.agent_events``
  (``op = "module:function"``); it is imported on the first such event.
  While a handler runs, ``event_origin()`` says which session sent the event and what
  context the notebook gave the cell it came from: a handler that decides what a
  session may do reads it there, never from the event's data (which the remote wrote).

Remote side, the agent offers ``agent.on_cell_end`` (callables run before a cell's
results are sent back, e.g. to flush buffered metrics) and ``agent.context``. Every
session kernel, whatever its backend, is marked by the session layer before the agent
loads: ``os.environ`` there holds ``PODSTACK_SESSION=1``, ``PODSTACK_SESSION_ID``,
``PODSTACK_BACKEND``, ``PODSTACK_GPU_TYPE`` (``cpu`` without one), ``PODSTACK_GPU_COUNT`` and
``PODSTACK_GPU_FRACTION``, and none of the notebook's other ``PODSTACK_*`` settings.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Callable

__all__ = ["add_cell_context", "remove_cell_context", "cell_context", "on_agent_event", "agent_event_handler",
           "event_origin", "dispatching", "ENTRY_POINT_GROUP"]

log = logging.getLogger("podstack.compute")

ENTRY_POINT_GROUP = "podstack.agent_events"

_lock = threading.Lock()
_context_providers: dict[str, Callable[[], dict | None]] = {}
_event_handlers: dict[str, Callable[[dict, list], object]] = {}
_entry_points: dict[str, object] | None = None  # op -> EntryPoint, read once
_origin = threading.local()  # the session whose event is being handled on this thread


def add_cell_context(name: str, provider: Callable[[], dict | None]) -> None:
    """Before each remote cell, put ``provider()`` (JSON-able, or ``None`` for nothing) under
    ``name`` in what the remote agent knows of the notebook."""
    with _lock:
        _context_providers[name] = provider


def remove_cell_context(name: str) -> None:
    with _lock:
        _context_providers.pop(name, None)


def cell_context() -> dict:
    """What a remote cell may know of the notebook now: ``{name: provider()}`` for each provider
    that has something to say. A failing provider is logged and left out."""
    context = {}
    for name, provider in list(_context_providers.items()):
        try:
            value = provider()
        except Exception:  # noqa: BLE001 - a cell must not fail because a plugin did
            log.exception("podstack: cell-context provider %r failed", name)
            continue
        if value:
            context[name] = value
    return context


def on_agent_event(op: str, handler: Callable[[dict, list], object] | None) -> None:
    """Handle agent events ``op`` from every session; ``None`` removes the handler.
    For ``agent.call`` requests, the handler's return value (JSON-able) is the answer."""
    with _lock:
        if handler is None:
            _event_handlers.pop(op, None)
        else:
            _event_handlers[op] = handler


def agent_event_handler(op: str) -> Callable[[dict, list], object] | None:
    """The handler for ``op``: a registered one, else the entry point declared for it (imported now)."""
    handler = _event_handlers.get(op)
    if handler is not None:
        return handler
    entry = _declared().get(op)
    if entry is None:
        return None
    handler = entry.load()
    with _lock:
        return _event_handlers.setdefault(op, handler)


def event_origin() -> dict | None:
    """While an agent-event handler runs: ``{"session_id", "context"}``, the session that sent the
    event and the cell context the notebook sent with that session's running cell (its last cell
    until the next one starts). ``None`` outside a handler."""
    return getattr(_origin, "value", None)


@contextlib.contextmanager
def dispatching(session_id: str, context: dict | None):
    """The session layer wraps each handler call in this, so ``event_origin()`` can answer."""
    previous = getattr(_origin, "value", None)
    _origin.value = {"session_id": session_id, "context": dict(context or {})}
    try:
        yield
    finally:
        _origin.value = previous


def _declared() -> dict:
    global _entry_points
    if _entry_points is None:
        from importlib.metadata import entry_points

        _entry_points = {ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return _entry_points
