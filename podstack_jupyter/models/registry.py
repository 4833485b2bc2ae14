"""The model-registry half of ``podstack.registry``, over a :class:`ModelRegistryClient`::

    from podstack import registry

    with registry.start_run("train") as run:
        registry.log_model(model, artifact_path="model")           # pytorch, sklearn, huggingface, keras, pickle
    registry.register_model("sentiment-bert", run_id=run.id)       # -> version 1, 2, 3...
    registry.set_model_stage("sentiment-bert", version=1, stage="production")
    registry.set_model_alias("sentiment-bert", alias="champion", version=1)
    lineage = registry.get_model_lineage(registry.get_model("sentiment-bert").id)
    model = registry.load_model("sentiment-bert", stage="production")

The notebook state it uses (the active run, the store in use) is the tracking registry's.
"""

from __future__ import annotations

from ..tracking import registry as _tracking
from ..tracking._entities import ModelVersion, RegisteredModel
from ..tracking.runs import active_runs
from .client import ModelRegistryClient

__all__ = ["model_client", "log_model", "load_model", "register_model", "set_model_stage", "set_model_alias",
           "delete_model_alias", "get_model", "get_model_version", "list_models", "get_model_lineage",
           "set_latest_version", "delete_model"]

_cache: ModelRegistryClient | None = None


def model_client() -> ModelRegistryClient:
    """The :class:`ModelRegistryClient` of the store this notebook uses now."""
    global _cache
    tracking = _tracking.client()
    cached = _cache
    if cached is None or cached.tracking is not tracking:
        from ._relay import client_for

        cached = _cache = client_for(tracking)  # in a GPU session: writes ask the notebook
    return cached


def log_model(model, artifact_path: str = "model", framework: str | None = None, metadata: dict | None = None,
              *, run_id: str | None = None) -> dict:
    """Serialize ``model`` and store its files as artifacts of the active run under ``artifact_path``.

    ``framework``: ``"pytorch"``, ``"tensorflow"``, ``"sklearn"``, ``"huggingface"`` or ``"pickle"``
    (auto-detected when ``None``); it is recorded as the run param ``podstack.model.framework``,
    and ``metadata`` as run params. Returns ``{"run_id", "artifact_path", "framework", "files"}``.
    ``register_model(name, run_id=run.id)`` then makes it a model version.
    """
    target = _tracking._target_run(run_id, "log_model")
    logged = model_client().log_model(target, model, artifact_path=artifact_path, framework=framework,
                                      metadata=metadata)
    live = active_runs.find(target)
    if live is not None:
        live.params.update(logged["params"])
    return {k: logged[k] for k in ("run_id", "artifact_path", "framework", "files")}


def load_model(model_name: str, version: int | None = None, stage: str | None = None, alias: str | None = None,
               framework: str | None = None, *, trusted: bool = False):
    """Load a registered model: by ``version`` (number or name), ``stage`` or ``alias`` (one of
    them; the latest version when none). Its files are fetched from the artifact store into a cache under the
    podstack home (files already there with the right digest are kept), verified, then
    deserialized with ``framework`` (default: the one recorded by ``log_model``).

    Formats whose loading runs code (pickle, sklearn, a whole torch module) load only when the
    model's manifest is signed by this machine's key, which every ``log_model`` here (and in
    this notebook's GPU sessions) does; a model logged on another machine, or rows and files
    written into the store by anything else, are refused with ``ArtifactIntegrityError``.
    ``trusted=True`` loads it anyway: pass it only for a model whose origin you trust."""
    from ..config import settings

    return model_client().load_model(model_name, version=version, stage=stage, alias=alias, framework=framework,
                                     cache_dir=settings().home / "model-cache", trusted=trusted)


def register_model(name: str, run_id: str | None = None, description: str | None = None, *,
                   artifact_path: str | None = None) -> ModelVersion:
    """Register the model a run produced as the next version (1, 2, 3...) of ``name``, in stage
    ``development``. ``run_id`` defaults to the active run. The version points at the model the
    run logged with ``log_model`` (or at ``artifact_path`` inside the run's artifacts)."""
    if run_id is None and active_runs.top() is not None:
        run_id = active_runs.top().id
    return model_client().register_model(name, run_id=run_id, description=description, artifact_path=artifact_path)


def set_model_stage(name: str, version: int, stage: str, archive_existing: bool = False) -> ModelVersion:
    """Move a version to ``stage``: ``development``, ``staging``, ``production`` or ``archived``.
    With ``archive_existing=True`` the versions already in that stage move to ``archived``."""
    return model_client().set_model_stage(name, version, stage, archive_existing=archive_existing)


def set_model_alias(name: str, alias: str, version: int) -> None:
    """Point ``alias`` (e.g. ``"champion"``) at a version; ``load_model(name, alias=...)`` follows it."""
    model_client().set_model_alias(name, alias, version)


def delete_model_alias(name: str, alias: str) -> None:
    """Remove an alias of a model."""
    model_client().delete_model_alias(name, alias)


def get_model(name: str) -> RegisteredModel:
    """A registered model with ``.id``, ``.name``, ``.versions``, ``.aliases``, ``.latest_version``."""
    return model_client().get_registered_model(name)


def list_models() -> list[RegisteredModel]:
    """Every registered model, by name."""
    return model_client().list_registered_models()


def get_model_version(name: str, version: int | str | None = None, stage: str | None = None,
                      alias: str | None = None) -> ModelVersion:
    """One version of a model: by number (``1``) or name (``"v1.0"``), by ``stage`` (the newest
    version in it), by ``alias``, or the latest version when none is given."""
    return model_client().get_model_version(name, version=version, stage=stage, alias=alias)


def set_latest_version(name: str, version: int | str) -> ModelVersion:
    """Point the model's ``latest`` (what ``load_model(name)`` loads) at a version; no file is
    touched. Registering a new version makes it the latest again."""
    return model_client().set_latest_version(name, version)


def delete_model(name: str, version: int | str | None = None) -> dict:
    """Delete one version of a model (and the model with its last version), or with no
    ``version`` the whole model. The files of runs stay with their runs. Returns
    ``{"model", "versions", "model_deleted"}``."""
    return model_client().delete_model(name, version)


def get_model_lineage(model_id: str) -> dict:
    """Which datasets trained each version of a model, via which run::

        {"model_id": str,
         "versions": [{"version": int, "stage": str, "run_id": str, "run_name": str,
                       "datasets": [{"id", "name", "digest", "source_type", "source",
                                     "schema", "profile", "tags", "created_at"}, ...]}, ...]}

    Newest version first; ``run_id``/``run_name`` are ``""`` for a version without a run.
    ``model_id`` is the model's id (its name is accepted too).
    """
    return model_client().get_model_lineage(model_id)
