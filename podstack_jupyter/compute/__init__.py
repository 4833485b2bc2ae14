"""The compute plane: GPU sessions that run notebook cells and functions remotely.

Public face: :class:`gpu` (decorator / context manager), :func:`run_on_gpu`,
:class:`GPUSpec`, and ``sessions`` (the notebook's live sessions); for a caller that holds its
own :class:`GPUSession` (the team server), :func:`run_code` with an :class:`OutputSink`. Other planes
plug in through :mod:`.hooks`. Imported lazily: ``import podstack_jupyter.compute.hooks``
does not start ZMQ or load cloudpickle.
"""

import importlib

_PUBLIC = {
    "gpu": "api", "run_on_gpu": "api", "GPURunResult": "api", "current_spec": "api",
    "run_cell": "runner", "run_code": "runner", "RemoteResult": "runner",
    "GPUSession": "session", "OutputSink": "session", "SessionManager": "session", "sessions": "session",
    "GPUSpec": "spec", "GPU_TYPES": "spec", "ENV_PRESETS": "spec",
}
__all__ = list(_PUBLIC)


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
