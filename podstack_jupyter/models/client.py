"""``ModelRegistryClient``: registered models, versions, stages, aliases and lineage, by explicit name or id.

Like the :class:`~podstack_jupyter.tracking.TrackingClient` it builds on, it keeps no state:
each call names the model it is about, is validated, runs against the tracking client's
store, and publishes what happened::

    models = ModelRegistryClient(tracking_client)
    version = models.register_model("sentiment-bert", run_id=run_id)      # version 1, 2, 3...
    models.set_model_stage("sentiment-bert", version.version, "production")
    model = models.load_model("sentiment-bert", stage="production", cache_dir="/tmp/models")

A model is named by its name or its id (``name_or_id``). Events published:
``model.version_created`` (``model``, ``version``), ``model.stage_changed`` (``model``,
``version``, ``stage``; also for versions archived by ``archive_existing``) and
``model.alias_changed`` (``model``, ``alias``, ``version``: ``None`` when removed).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from .. import events
from ..errors import ArtifactNotFoundError, InvalidArgumentError, ModelNotFoundError
from ..tracking import TrackingClient
from ..tracking import _validate as V
from ..tracking.client import clean_artifact_path, new_id
from ..tracking.store import MODEL_STAGES
from ..tracking._entities import Dataset, ModelLineage, ModelVersion, RegisteredModel

__all__ = ["ModelRegistryClient", "FRAMEWORK_PARAM", "ARTIFACT_PATH_PARAM"]

#: run params ``log_model`` records, which ``register_model`` reads to find the run's model
FRAMEWORK_PARAM = "podstack.model.framework"
ARTIFACT_PATH_PARAM = "podstack.model.artifact_path"


def _version_number(version) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 2 ** 31 - 1:
        raise InvalidArgumentError(f"version must be a version number (1, 2, 3...), got {version!r}")
    return version


def _stage(stage) -> str:
    if stage not in MODEL_STAGES:
        raise InvalidArgumentError(f"stage {stage!r} is not valid; valid stages: {list(MODEL_STAGES)}")
    return stage


class ModelRegistryClient:
    """The model registry over ``tracking`` (a :class:`TrackingClient`): see the module docstring."""

    def __init__(self, tracking: TrackingClient):
        if not isinstance(tracking, TrackingClient):
            raise InvalidArgumentError(f"ModelRegistryClient needs a TrackingClient, got {type(tracking).__name__}")
        self.tracking = tracking
        self.store = tracking.store

    def __repr__(self):
        return f"ModelRegistryClient({self.store!r})"

    # -- models --------------------------------------------------------------------------------
    def _record(self, name_or_id, by_id_first: bool = False) -> dict:
        name_or_id = V.name("model name or id", name_or_id)
        lookups = ("model_id", "name") if by_id_first else ("name", "model_id")
        for field in lookups:
            record = self.store.get_registered_model(**{field: name_or_id})
            if record is not None:
                return record
        names = [m["name"] for m in self.store.list_registered_models()]
        hint = f"registered models: {names[:20]}" if names else "no model is registered yet"
        raise ModelNotFoundError(f"no registered model {name_or_id!r}; {hint}")

    def ensure_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        """The model called ``name``, registered (with no versions) if there is none."""
        name = V.name("model name", name)
        description = V.optional_text("model description", description)
        return RegisteredModel.from_record(self.store.ensure_registered_model(new_id(), name, time.time(), description))

    def create_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        """A new model called ``name``; ``InvalidArgumentError`` (``already exists``) if there is one."""
        name = V.name("model name", name)
        if self.store.get_registered_model(name=name) is not None:
            raise InvalidArgumentError(f"registered model {name!r} already exists")
        return self.ensure_registered_model(name, description)

    def get_registered_model(self, name_or_id: str) -> RegisteredModel:
        """A registered model with its ``versions`` and ``aliases`` (``ModelNotFoundError`` if none)."""
        return RegisteredModel.from_record(self._record(name_or_id))

    def list_registered_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        return [RegisteredModel.from_record(r) for r in self.store.list_registered_models()]

    # -- versions ------------------------------------------------------------------------------
    def create_model_version(self, name_or_id: str, run_id: str | None = None, source: str | None = None,
                             framework: str | None = None, description: str | None = None, *,
                             version_id: str | None = None) -> ModelVersion:
        """Add the next version (1, 2, 3...) of a model, in stage ``development``. ``run_id``:
        the run that produced it; ``source``: the model's folder among that run's artifacts;
        ``version_id``: the new version's id when the caller must know it first (default: ``new_id()``)."""
        if version_id is not None and len(V.identifier("version_id", version_id)) > 36:
            raise InvalidArgumentError(f"a version's id has at most 36 characters (a uuid), got {version_id!r}")
        model = self._record(name_or_id)
        if run_id is not None:
            self.tracking.require_run(V.identifier("run_id", run_id))
        if source is not None:
            if run_id is None:
                raise InvalidArgumentError("a model version's source is an artifact path of its run: give run_id= too")
            source = clean_artifact_path(source, "source")
        framework = V.optional_text("framework", framework, V.MAX_NAME)
        description = V.optional_text("version description", description)
        record = self.store.create_model_version({
            "id": version_id or new_id(), "model_id": model["id"], "run_id": run_id, "stage": "development", "source": source,
            "framework": framework, "description": description, "created_at": time.time()})
        if events.has_subscribers("model.version_created"):
            events.publish("model.version_created", model=model["name"], version=record["version"])
        return ModelVersion.from_record(record, model["name"])

    def register_model(self, name: str, run_id: str | None = None, description: str | None = None, *,
                       artifact_path: str | None = None) -> ModelVersion:
        """Register the model a run produced as the next version of ``name`` (the model is created
        if needed). The version points at the model the run logged with ``log_model`` (or at
        ``artifact_path`` among its artifacts)."""
        name = V.name("model name", name)
        framework = source = None
        if run_id is not None:
            params = self.tracking.get_run(run_id)["params"]
            framework = params.get(FRAMEWORK_PARAM)
            source = artifact_path or params.get(ARTIFACT_PATH_PARAM) or ("model" if framework else None)
        elif artifact_path is not None:
            raise InvalidArgumentError("register_model: artifact_path= needs run_id= (or an active run)")
        model = self.ensure_registered_model(name, description)
        return self.create_model_version(model.id, run_id=run_id, source=source, framework=framework,
                                         description=description)

    def _version_record(self, model: dict, version) -> dict:
        version = _version_number(version)
        found = next((v for v in model["versions"] if v["version"] == version), None)
        if found is None:
            have = [v["version"] for v in model["versions"]]
            raise ModelNotFoundError(f"model {model['name']!r} has no version {version}; versions: {have}")
        return found

    def get_model_version(self, name_or_id: str, version: int | None = None, stage: str | None = None,
                          alias: str | None = None) -> ModelVersion:
        """One version: by number, by ``stage`` (the newest version in it), by ``alias``, or the
        latest when none is given (``ModelNotFoundError`` if there is no such version)."""
        if sum(x is not None for x in (version, stage, alias)) > 1:
            raise InvalidArgumentError("give only one of version=, stage= and alias=")
        record = self._record(name_or_id)
        model = RegisteredModel.from_record(record)
        if version is not None:
            return model.get_version(self._version_record(record, version)["version"])
        if stage is not None:
            found = [v for v in model.versions if v.stage == _stage(stage)]
            if not found:
                stages = {v.version: v.stage for v in model.versions}
                raise ModelNotFoundError(f"model {model.name!r} has no version in stage {stage!r}; stages: {stages}")
            return found[-1]
        if alias is not None:
            alias = V.name("alias", alias)
            if alias not in model.aliases:
                raise ModelNotFoundError(f"model {model.name!r} has no alias {alias!r}; aliases: {sorted(model.aliases)}")
            return model.get_version(model.aliases[alias])
        if model.latest_version is None:
            raise ModelNotFoundError(f"model {model.name!r} has no versions yet")
        return model.latest_version

    def set_model_stage(self, name_or_id: str, version: int, stage: str,
                        archive_existing: bool = False) -> ModelVersion:
        """Move a version to ``stage``; with ``archive_existing`` the versions already in that
        stage move to ``archived``. Returns the version as it is now."""
        _stage(stage)
        record = self._record(name_or_id)
        version = self._version_record(record, version)["version"]
        archived = [v["version"] for v in record["versions"]
                    if archive_existing and v["stage"] == stage and v["version"] != version]
        self.store.update_model_version(record["id"], version, {"stage": stage,
                                                                "archive_others_in_stage": bool(archive_existing)},
                                        time.time())
        if events.has_subscribers("model.stage_changed"):
            for number in archived:
                events.publish("model.stage_changed", model=record["name"], version=number, stage="archived")
            events.publish("model.stage_changed", model=record["name"], version=version, stage=stage)
        return self.get_model_version(record["id"], version=version)

    def set_model_alias(self, name_or_id: str, alias: str, version: int) -> None:
        """Point ``alias`` (e.g. ``"champion"``) at a version."""
        alias = V.name("alias", alias)
        if alias.isdigit():
            raise InvalidArgumentError(f"alias {alias!r} looks like a version number; use a word like 'champion'")
        record = self._record(name_or_id)
        version = self._version_record(record, version)["version"]
        self.store.set_model_alias(record["id"], alias, version)
        if events.has_subscribers("model.alias_changed"):
            events.publish("model.alias_changed", model=record["name"], alias=alias, version=version)

    def delete_model_alias(self, name_or_id: str, alias: str) -> None:
        """Remove an alias of a model (``ModelNotFoundError`` if it has none by that name)."""
        alias = V.name("alias", alias)
        record = self._record(name_or_id)
        if alias not in record["aliases"]:
            raise ModelNotFoundError(f"model {record['name']!r} has no alias {alias!r}; "
                                     f"aliases: {sorted(record['aliases'])}")
        self.store.delete_model_alias(record["id"], alias)
        if events.has_subscribers("model.alias_changed"):
            events.publish("model.alias_changed", model=record["name"], alias=alias, version=None)

    def get_model_lineage(self, name_or_id: str) -> dict:
        """Which datasets trained each version, via which run (newest version first); see
        ``registry.get_model_lineage`` for the shape."""
        record = self._record(name_or_id, by_id_first=True)
        lineage = self.store.get_model_lineage(record["id"])
        if lineage is None:  # removed meanwhile
            raise ModelNotFoundError(f"no registered model {name_or_id!r}")
        for version in lineage["versions"]:
            version["datasets"] = [Dataset.from_record(d).to_dict() for d in version["datasets"]]
        return ModelLineage(lineage)

    # -- model files ---------------------------------------------------------------------------
    def log_model(self, run_id: str, model, artifact_path: str = "model", framework: str | None = None,
                  metadata: dict | None = None) -> dict:
        """Serialize ``model`` (see :func:`~podstack_jupyter.models.save_model`) and store its files
        as artifacts of the run under ``artifact_path``; the framework and ``metadata`` become run
        params. Returns ``{"run_id", "artifact_path", "framework", "files", "params"}``."""
        from ._flavors import save_model

        run_id = V.identifier("run_id", run_id)
        destination = clean_artifact_path(artifact_path)
        if not destination:
            raise InvalidArgumentError("log_model: artifact_path must name a folder, e.g. 'model'")
        if metadata is not None and not isinstance(metadata, dict):
            raise InvalidArgumentError(f"log_model: metadata must be a dict, got {type(metadata).__name__}")
        params = V.string_dict("log_model: metadata", metadata or {})
        self.tracking.require_run(run_id)  # before serializing anything
        with tempfile.TemporaryDirectory(prefix="podstack-model-") as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            used = save_model(model, str(folder), framework=framework)
            files = self.tracking.log_artifact(run_id, folder, destination)
        params = self.tracking.log_params(run_id, {FRAMEWORK_PARAM: used, ARTIFACT_PATH_PARAM: destination, **params})
        return {"run_id": run_id, "artifact_path": destination, "framework": used,
                "files": [f["path"] for f in files], "params": params}

    def load_model(self, name_or_id: str, version: int | None = None, stage: str | None = None,
                   alias: str | None = None, framework: str | None = None, *, cache_dir) -> object:
        """Load a registered model's files into ``cache_dir/<model id>/<version>`` (files already
        there with the right digest are kept), verify them and deserialize them with
        ``framework`` (default: the one ``log_model`` recorded)."""
        if version is not None and stage is not None:
            raise InvalidArgumentError("load_model: version= and stage= are mutually exclusive; give one")
        chosen = self.get_model_version(name_or_id, version=version, stage=stage, alias=alias)
        if not chosen.run_id:
            raise ModelNotFoundError(f"{chosen.name} v{chosen.version} is not linked to a run, so it has no files "
                                     "to load")
        source = chosen.source or "model"
        try:
            entries, single = self.tracking.select_artifacts(chosen.run_id, source)
        except ArtifactNotFoundError as exc:
            raise ArtifactNotFoundError(f"{chosen.name} v{chosen.version}: {exc.message}") from None
        cache = Path(cache_dir) / chosen.model_id / str(chosen.version)
        offset = 0 if single else len(clean_artifact_path(source)) + 1
        self.tracking.fetch(entries, lambda e: cache.joinpath(*(e["path"].rsplit("/", 1)[-1] if single
                                                                else e["path"][offset:]).split("/")),
                            f"fetching {chosen.name} v{chosen.version}")
        framework = framework or chosen.framework or self.tracking.get_run(chosen.run_id)["params"].get(FRAMEWORK_PARAM)
        from ._flavors import load_model_from_dir

        return load_model_from_dir(str(cache), framework=framework)
