"""The tracking plane: experiments, runs, params, metrics, tags, datasets, artifacts.

Two layers, as MLflow's fluent API over ``MlflowClient``: :class:`TrackingClient`, stateless,
by explicit id, holding every rule and validation; and :mod:`.registry`, the notebook's state
(current experiment, active runs, the metric buffer), which delegates to it and is the
tracking half of ``podstack.registry``. The decorators / context managers ``experiment`` and
``run`` are ``podstack.experiment`` and ``podstack.run``. Records are kept by a :class:`Store`
chosen by its URL's scheme (``open_store(url)``; ``current_store()`` is the notebook's,
``use_store()`` swaps it, e.g. for a relay). The model registry is :mod:`podstack_jupyter.models`,
which uses this plane; this plane does not import it.
"""

from __future__ import annotations

from ._entities import Dataset, Experiment, MetricHistory, MetricPoint, ModelVersion, RegisteredModel
from ._scopes import experiment, run
from .client import TrackingClient
from .runs import Run
from .store import MODEL_STAGES, RUN_STATUSES, Store, current_store, open_store, register_store

__all__ = ["experiment", "run", "TrackingClient", "Run", "Experiment", "Dataset", "MetricPoint", "MetricHistory",
           "RegisteredModel", "ModelVersion", "Store", "SQLStore", "open_store", "register_store", "current_store",
           "use_store", "RUN_STATUSES", "MODEL_STAGES"]


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
