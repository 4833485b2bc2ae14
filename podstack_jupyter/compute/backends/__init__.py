"""Compute backends: each obtains a live Jupyter kernel on a node with the GPUs a spec asks for.

Backends are found by name through the entry-point group ``podstack.backends``
(as ipyparallel finds its launchers); ``PODSTACK_BACKEND`` or
``podstack.init(backend=...)`` picks one, ``local`` by default. The contract a
backend implements (:class:`Backend`, :class:`Connection`) is documented in
:mod:`._base`. The magics and ``@gpu`` never know which backend they use.

* ``local`` (default): an ipykernel subprocess on this machine.
* ``ray``: a Ray actor on a cluster node that holds the GPUs, which starts the kernel there
  (``pip install "podstack-jupyter[ray]"``; :mod:`.ray`).
* ``jupyter``: a kernel of any Jupyter Server, Kernel Gateway or Enterprise Gateway, over its
  REST API and websocket (``pip install "podstack-jupyter[jupyter]"``; :mod:`.jupyter`).
* ``team``: a session handed out by a ``podstack server`` on its own compute backend, relayed over
  its websocket: notebooks need only the server's URL and an API key (:mod:`.team`).
"""

from __future__ import annotations

import threading

from ...errors import ConfigurationError
from ._base import Allocation, Backend, Connection, Environment, Progress, kernel_environ

__all__ = ["Allocation", "Backend", "Connection", "Environment", "Progress", "kernel_environ", "get_backend",
           "available_backends", "ENTRY_POINT_GROUP"]

ENTRY_POINT_GROUP = "podstack.backends"
# The embedded default also works from a source tree that was never installed (no entry points).
_BUILT_IN = {"local": "podstack_jupyter.compute.backends.local:LocalBackend",
             "ray": "podstack_jupyter.compute.backends.ray:RayBackend",
             "jupyter": "podstack_jupyter.compute.backends.jupyter:JupyterBackend",
             "team": "podstack_jupyter.compute.backends.team:TeamBackend"}

_lock = threading.Lock()
_instances: dict[str, Backend] = {}


def _declared() -> dict[str, object]:
    from importlib.metadata import EntryPoint, entry_points

    found: dict[str, object] = {name: EntryPoint(name, value, ENTRY_POINT_GROUP) for name, value in _BUILT_IN.items()}
    found.update({ep.name: ep for ep in entry_points(group=ENTRY_POINT_GROUP)})
    return found


def available_backends() -> list[str]:
    """The names of the installed backends."""
    return sorted(_declared())


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one instance per process: it holds the GPU accounting).

    Raises ConfigurationError naming the installed backends when there is none by that name,
    or when it cannot be loaded (e.g. its optional dependencies are missing).
    """
    with _lock:
        backend = _instances.get(name)
        if backend is not None:
            return backend
        declared = _declared()
        entry = declared.get(name)
        if entry is None:
            raise ConfigurationError(
                f"unknown compute backend {name!r} (PODSTACK_BACKEND or podstack.init(backend=...)); installed: "
                f"{', '.join(sorted(declared))}. A backend registers itself under the entry-point group "
                f"{ENTRY_POINT_GROUP!r}; install the package (or extra) that provides it.")
        try:
            cls = entry.load()
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a configuration problem to report
            raise ConfigurationError(
                f"the compute backend {name!r} ({entry.value}) cannot be loaded: {type(exc).__name__}: {exc}. "
                f"Install what it needs, or pick another of: {', '.join(sorted(declared))}") from exc
        if not (isinstance(cls, type) and issubclass(cls, Backend)):
            raise ConfigurationError(f"the compute backend {name!r} ({entry.value}) is not a podstack Backend class")
        backend = _instances[name] = cls()
        return backend
