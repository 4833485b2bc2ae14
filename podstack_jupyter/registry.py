"""``podstack.registry``: experiment tracking and the model registry (the API of the Podstack SDK).

::

    from podstack import registry

    registry.set_experiment("sentiment-analysis")
    with registry.start_run("bert-finetune-v3") as run:
        run.log_dataset("imdb-train", path="data/train.csv", df=train_df, context="training")
        registry.log_params({"lr": 2e-5, "epochs": 3})
        for epoch in range(3):
            registry.log_metrics({"loss": loss, "accuracy": acc}, step=epoch)
        registry.log_model(model, artifact_path="model")

    registry.register_model("sentiment-bert", run_id=run.id)          # -> version 1, 2, 3...
    registry.set_model_stage("sentiment-bert", version=1, stage="production")
    lineage = registry.get_model_lineage(registry.get_model("sentiment-bert").id)
    model = registry.load_model("sentiment-bert", stage="production")

One face over two planes: tracking (:mod:`podstack_jupyter.tracking.registry`: experiments,
runs, params, metrics, tags, datasets, artifacts, search) and the model registry
(:mod:`podstack_jupyter.models.registry`: ``log_model``, ``load_model``, ``register_model``,
stages, aliases, lineage). Both keep only the notebook's state and call the stateless clients
(``registry.client()``: a :class:`~podstack_jupyter.tracking.TrackingClient`;
``registry.model_client()``: a :class:`~podstack_jupyter.models.ModelRegistryClient`).
"""

from __future__ import annotations

from .models import registry as _models
from .models.registry import *  # noqa: F401,F403 - the public face re-exports both halves
from .tracking import registry as _tracking
from .tracking.registry import *  # noqa: F401,F403

__all__ = [*_tracking.__all__, *_models.__all__]


def __getattr__(name):
    # the notebook state's own helpers (``_reset_store``, ``_target_run``...) live in the tracking half
    if name.startswith("_") and not name.startswith("__"):
        return getattr(_tracking, name)
    raise AttributeError(f"module 'podstack.registry' has no attribute {name!r}")
