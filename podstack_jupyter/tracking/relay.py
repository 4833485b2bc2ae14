"""Tracking from inside a GPU session, through the session itself.

Code running in a remote kernel (``podstack.registry.log_metrics`` in a training
loop on the GPU node) talks to a :class:`RelayStore`: each store call travels to
the notebook as an agent message and runs there against the notebook's store,
so the GPU node needs no route to the database. Calls on the cell's main thread
wait for their answer (errors are raised remotely, in order with everything
sent before); calls from background threads, such as the metric flusher, are
sent without waiting, so a training loop never blocks on the notebook and its
metrics arrive while the cell is still running.
"""

from __future__ import annotations

import os
import sys
import threading

from ._publish import publish_points
from .store import Store, current_store

__all__ = ["RelayStore", "session_store", "handle_store_call", "notebook_context"]

OP = "tracking.store"


class RelayStore(Store):
    """A :class:`Store` whose every method runs in the notebook that owns this session."""

    def __init__(self, agent):
        self._agent = agent

    def _send(self, method: str, args: tuple, kwargs: dict):
        data = {"method": method, "args": list(args), "kwargs": kwargs}
        if threading.current_thread() is threading.main_thread():
            return self._agent.call(OP, data)
        self._agent.emit(OP, data)  # fire and forget: ordered with everything else this kernel sends
        return None

    def close(self) -> None:
        pass


def _forwarder(name):
    def method(self, *args, **kwargs):
        return self._send(name, args, kwargs)

    method.__name__ = name
    method.__doc__ = getattr(Store, name).__doc__
    return method


for _name in sorted(Store.__abstractmethods__ | {"get_run"}):
    setattr(RelayStore, _name, _forwarder(_name))
RelayStore.__abstractmethods__ = frozenset()


def session_store() -> RelayStore | None:
    """The relay, when this process is a GPU session's kernel with a connected agent.

    Also makes the notebook's active run (``%%track`` around ``%%gpu``) the run that
    registry calls log into here, and writes buffered metrics before each cell's
    results go back, so the notebook sees them when the cell ends.
    """
    if os.environ.get("PODSTACK_SESSION") != "1":
        return None
    agent_module = sys.modules.get("_podstack_agent")
    agent = getattr(agent_module, "_agent", None)
    if agent is None or agent.comm is None:
        return None
    from .runs import Run, active_runs, metric_buffer

    def notebook_run():
        tracking = agent.context.get("tracking")
        if not tracking:
            return None
        return Run({"id": tracking["run_id"], "experiment_id": tracking["experiment_id"],
                    "name": tracking.get("name")})

    active_runs.fallback = notebook_run
    agent.on_cell_end.append(metric_buffer.flush)
    return RelayStore(agent)


def handle_store_call(data: dict, buffers: list):
    """Notebook side: run a relayed store call against the notebook's store."""
    method = data["method"]
    if method.startswith("_") or not hasattr(Store, method):
        raise AttributeError(f"{method!r} is not a Store method")
    result = getattr(current_store(), method)(*data["args"], **data["kwargs"])
    if method == "log_metrics":  # the notebook's widgets hear a session's points as they land
        publish_points(data["args"][0] if data["args"] else data["kwargs"].get("points", ()))
    return result


def notebook_context() -> dict | None:
    """What a remote cell should know of the notebook's tracking (the compute plane's cell-context
    provider ``tracking``): its active run, if any."""
    registry = sys.modules.get("podstack_jupyter.tracking.registry")
    active = getattr(registry, "active_run", None)
    run = active() if active is not None else None
    if run is None:
        return None
    return {"run_id": run.id, "experiment_id": run.experiment_id, "name": run.name}
