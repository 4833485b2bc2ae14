"""The tracking plane: experiments, runs, params, metrics, datasets, artifacts, the model registry.

The user-facing API is the module :mod:`podstack_jupyter.tracking.registry`
(``podstack.registry``) and the decorators / context managers ``experiment`` and
``run`` here (``podstack.experiment``, ``podstack.run``). Records are kept by a
:class:`Store` (``current_store()``; ``use_store()`` swaps it, e.g. for a relay).
"""

from __future__ import annotations

from ._entities import Dataset, Experiment, MetricHistory, MetricPoint, ModelVersion, RegisteredModel
from ._scopes import experiment, run
from .runs import Run
from .store import MODEL_STAGES, RUN_STATUSES, Store, current_store

__all__ = ["experiment", "run", "Run", "Experiment", "Dataset", "MetricPoint", "MetricHistory", "RegisteredModel",
           "ModelVersion", "Store", "SQLStore", "current_store", "use_store", "RUN_STATUSES", "MODEL_STAGES"]


def __getattr__(name):
    if name == "SQLStore":
        from .store.sql import SQLStore

        return SQLStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def use_store(store: Store | None) -> None:
    """Send every tracking call to ``store`` (``None``: back to the configured store).
    Metrics still buffered are written to the previous store first."""
    from . import store as _store
    from .runs import metric_buffer

    if metric_buffer.store_for is not None and metric_buffer.pending():
        metric_buffer.flush()
    _store.use_store(store)
