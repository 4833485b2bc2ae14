"""Compute backends: each obtains a live Jupyter kernel on a node with the GPUs a spec asks for.

A backend hands the session layer a :class:`KernelHandle`: something that
speaks the Jupyter messaging protocol and can be interrupted and shut down.
The magics and ``@gpu`` never know which backend they use.

* ``local`` (default): an ipykernel subprocess on this machine.
"""

from __future__ import annotations

from ._base import Allocation, Backend, KernelHandle
from ...errors import ConfigurationError

__all__ = ["Allocation", "Backend", "KernelHandle", "get_backend", "BACKENDS"]

BACKENDS = ("local",)
_instances: dict[str, Backend] = {}


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one instance per process, it holds the GPU accounting)."""
    if name not in BACKENDS:
        raise ConfigurationError(f"unknown compute backend {name!r}; available: {', '.join(BACKENDS)}")
    if name not in _instances:
        from .local import LocalBackend

        _instances[name] = LocalBackend()
    return _instances[name]
