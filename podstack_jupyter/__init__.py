"""podstack-jupyter: a Jupyter notebook as the front end to GPU compute and to an
experiment tracker and model registry.

In a notebook::

    %load_ext podstack

    %%gpu L40S          # run this cell on a GPU session; its variables travel both ways
    %%track --name v1   # run this cell as a tracked run

In Python (the API of the Podstack SDK)::

    import podstack
    podstack.init()                          # optional: embedded by default

    @podstack.gpu(type="L40S")
    def train(): ...

    from podstack import registry
    with registry.start_run("v1") as run:
        registry.log_metrics({"loss": 0.1}, step=1)

Everything is imported lazily so ``import podstack`` stays fast.
"""

from __future__ import annotations

import importlib
import os

__version__ = "0.1.0"

# public name -> (module, attribute or None for the module itself)
_LAZY = {
    "gpu": ("podstack_jupyter.compute", "gpu"),
    "run_on_gpu": ("podstack_jupyter.compute", "run_on_gpu"),
    "GPURunResult": ("podstack_jupyter.compute", "GPURunResult"),
    "sessions": ("podstack_jupyter.compute", "sessions"),
    "Client": ("podstack_jupyter.client", "Client"),
    "registry": ("podstack_jupyter.registry", None),
    "experiment": ("podstack_jupyter.tracking", "experiment"),
    "run": ("podstack_jupyter.tracking", "run"),
    "model": ("podstack_jupyter.models", "model"),
    "ModelRegistry": ("podstack_jupyter.models", "ModelRegistry"),
    "ModelManager": ("podstack_jupyter.models", "ModelManager"),
    "artifacts": ("podstack_jupyter.artifacts", None),
    "config": ("podstack_jupyter.config", None),
    "events": ("podstack_jupyter.events", None),
    "show_metrics": ("podstack_jupyter.widgets", "show_metrics"),
    "show_runs": ("podstack_jupyter.widgets", "show_runs"),
    "show_lineage": ("podstack_jupyter.widgets", "show_lineage"),
    "show_artifacts": ("podstack_jupyter.widgets", "show_artifacts"),
    "show_sessions": ("podstack_jupyter.widgets", "show_sessions"),
    "errors": ("podstack_jupyter.errors", None),
}
_ERRORS = (
    "PodstackError", "ConfigurationError", "AuthenticationError", "RateLimitError",
    "GPUNotAvailableError", "EnvironmentBuildError", "SerializationError", "ExecutionTimeoutError",
    "RemoteExecutionError", "SessionDiedError", "CellSyntaxError", "StoreError", "PermissionDeniedError",
    "InvalidArgumentError", "DuplicateError", "NotFoundError",
    "ExperimentNotFoundError", "RunNotFoundError", "ModelNotFoundError", "ArtifactNotFoundError",
    "ArtifactIntegrityError", "TreeHashMismatchError", "UnsafeArchiveError", "ArtifactInstallError",
    "ModelSourceError", "ArtifactsUploadError", "ArtifactsDownloadError",
)
_LAZY.update({name: ("podstack_jupyter.errors", name) for name in _ERRORS})

__all__ = ["init", "load_ipython_extension", "unload_ipython_extension", "__version__", *_LAZY]


def __getattr__(name: str):
    try:
        module_name, attribute = _LAZY[name]
    except KeyError:
        raise AttributeError(f"module 'podstack' has no attribute {name!r}") from None
    module = importlib.import_module(module_name)
    value = module if attribute is None else getattr(module, attribute)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))


def init(api_key: str | None = None, project_id: str | None = None, api_url: str | None = None,
         registry_url: str | None = None, **settings):
    """Configure podstack for this process; returns the resolved settings.

    With no arguments (or never called) everything runs embedded: local
    kernels, a SQLite store and an artifact folder under ``~/.podstack``.
    Keyword arguments are fields of :class:`podstack_jupyter.config.Settings`
    (``home``, ``tracking_uri``, ``artifact_root``, ``local_gpus``,
    ``idle_timeout``, ...).

    ``registry_url`` (a ``podstack server``) with its ``api_key`` and
    ``project_id`` is the tracking store when a store serves that URL's scheme;
    this version has none for ``http(s)://``, so they are refused with a
    ``ConfigurationError`` rather than accepted and ignored (and nothing changes).
    """
    from . import config

    result = config.init(api_key=api_key, project_id=project_id, api_url=api_url,
                         registry_url=registry_url, **settings)
    _notify_settings_changed()
    return result


def _notify_settings_changed():
    """Let planes that cache clients (the tracking store) pick up new settings."""
    import sys

    tracking = sys.modules.get("podstack_jupyter.tracking.registry")
    if tracking is not None and hasattr(tracking, "_reset_store"):
        tracking._reset_store()


def load_ipython_extension(ipython):
    """``%load_ext podstack``: register ``%%gpu``, ``%gpu``, ``%%track`` and ``%podstack``."""
    from .magics import load_ipython_extension as load

    load(ipython)


def unload_ipython_extension(ipython):
    from .magics import unload_ipython_extension as unload

    unload(ipython)


if os.environ.get("PODSTACK_AUTO_INIT") == "1":
    init()
