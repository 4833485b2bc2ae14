"""``ModelRegistryClient``: every rule of the model registry, by explicit name or id.

Like the :class:`~podstack_jupyter.tracking.TrackingClient` it builds on, it keeps no state:
each call names the model it is about, is validated (:mod:`._rules`), runs against the
tracking client's store, and publishes what happened. The three faces of the registry
(``podstack.registry``, :class:`~podstack_jupyter.models.ModelRegistry`,
:class:`~podstack_jupyter.models.ModelManager`) all call it::

    models = ModelRegistryClient(tracking_client)
    version = models.register_model("sentiment-bert", run_id=run_id)      # version 1, 2, 3...
    models.set_model_stage("sentiment-bert", version.version, "production")
    model = models.load_model("sentiment-bert", stage="production", cache_dir="/tmp/models")
    models.register_model("fraud", uri="s3://models/fraud/model.onnx", version="1.0.0",
                          model_format_name="onnx", model_format_version="1", metadata={"accuracy": 0.95})
    models.upload_model("demo", "./my_models/v2", version=None, tags=["experimental"])    # -> _v2
    models.download_model_version("demo", "./downloads/latest")

A model is named by its name or its id (``name_or_id``); a version by its number (``1``) or its
name (``"1.0.0"``, ``"_v2"``). Every version has both: the name given at registration, or the
automatic ``_v<number>``. Numbers are never reused, even after a delete.

Where a version's files are: a run's artifacts (``run_id`` + ``source``: registered from a run,
or uploaded, in which case the registry made a run to hold them in the experiment
:data:`UPLOADS_EXPERIMENT`), or only a ``uri`` (registered by URI, or uploaded to an S3 bucket
of the user's): ``download_model_version`` and ``load_model`` fetch either.

``latest``: the version ``set_latest_version`` pinned, else the newest; registering a version
makes it the latest. ``get_model_version(name)``, ``load_model(name)`` and
``download_model_version(name, dest)`` with no version use it.

Events published: ``model.version_created`` (``model``, ``version``), ``model.stage_changed``
(``model``, ``version``, ``stage``; also for versions archived by ``archive_existing``),
``model.alias_changed`` (``model``, ``alias``, ``version``: ``None`` when removed),
``model.latest_changed`` (``model``, ``version``), ``model.version_deleted`` (``model``,
``version``) and ``model.deleted`` (``model``).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
from pathlib import Path

from .. import events
from ..config import private_folder
from ..errors import (ArtifactNotFoundError, DuplicateError, InvalidArgumentError, ModelNotFoundError,
                      ModelSourceError, PodstackError)
from ..tracking import TrackingClient
from ..tracking import _validate as V
from ..tracking._entities import Dataset, ModelLineage, ModelVersion, RegisteredModel
from ..tracking.client import clean_artifact_path, new_id
from ..tracking.store import MODEL_STAGES
from . import _rules as R

__all__ = ["ModelRegistryClient", "FRAMEWORK_PARAM", "ARTIFACT_PATH_PARAM", "UPLOADS_EXPERIMENT", "SOURCE_TYPES",
           "ORDER_BY"]

#: run params ``log_model`` records, which ``register_model`` reads to find the run's model
FRAMEWORK_PARAM = "podstack.model.framework"
ARTIFACT_PATH_PARAM = "podstack.model.artifact_path"
_FOLDER_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")  # a model id as a cache folder name (ids are uuids)
#: the experiment that holds the runs the registry makes to keep uploaded model files
UPLOADS_EXPERIMENT = "Model uploads"
#: where ``upload_model`` takes a model's files from
SOURCE_TYPES = ("local", "s3", "hf")
#: what pages of models and versions are ordered by
ORDER_BY = ("created_at", "updated_at", "id")
_UNSET = object()
_VERSION_FILE_FIELDS = ("uri", "model_format_name", "model_format_version", "storage_key", "storage_path")


def _version_number(version) -> int:
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= 2 ** 31 - 1:
        raise InvalidArgumentError(f"version must be a version number (1, 2, 3...), got {version!r}")
    return version


def _stage(stage) -> str:
    if stage not in MODEL_STAGES:
        raise InvalidArgumentError(f"stage {stage!r} is not valid; valid stages: {list(MODEL_STAGES)}")
    return stage


def _optional_name(what: str, value) -> str | None:
    return None if value is None else V.name(what, value)


def _shown_versions(model: dict) -> str:
    versions = model["versions"][-20:]
    return (f"{[v['version'] for v in versions]}, named {[v.get('name') or '_v' + str(v['version']) for v in versions]}"
            if versions else "none yet")


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
    def _find(self, name_or_id, by_id_first: bool = False) -> dict | None:
        name_or_id = V.name("model name or id", name_or_id)
        lookups = ("model_id", "name") if by_id_first else ("name", "model_id")
        for field in lookups:
            record = self.store.get_registered_model(**{field: name_or_id})
            if record is not None:
                return record
        return None

    def _record(self, name_or_id, by_id_first: bool = False) -> dict:
        record = self._find(name_or_id, by_id_first)
        if record is not None:
            return record
        names = [m["name"] for m in self.store.list_registered_models()]
        hint = f"registered models: {names[:20]}" if names else "no model is registered yet"
        raise ModelNotFoundError(f"no registered model {name_or_id!r}; {hint}")

    def ensure_registered_model(self, name: str, description: str | None = None) -> RegisteredModel:
        """The model called ``name``, registered (with no versions) if there is none."""
        name = V.name("model name", name)
        description = V.optional_text("model description", description)
        existing = self.store.get_registered_model(name=name)
        if existing is not None:
            return RegisteredModel.from_record(existing)
        R.new_model_name(name)
        return RegisteredModel.from_record(self.store.ensure_registered_model(new_id(), name, time.time(), description))

    def create_registered_model(self, name: str, description: str | None = None, *, owner: str | None = None,
                                category: str | None = None, tags=None, metadata: dict | None = None
                                ) -> RegisteredModel:
        """A new model called ``name`` (``DuplicateError``, "already exists", if there is one)."""
        name = R.new_model_name(name)
        fields = self._model_fields(owner=owner, category=category, tags=tags, metadata=metadata)
        if self.store.get_registered_model(name=name) is not None:
            raise DuplicateError(f"registered model {name!r} already exists")
        model = self.ensure_registered_model(name, description)
        if fields:
            self.store.update_registered_model(model.id, fields, time.time())
        return self.get_registered_model(model.id)

    def get_registered_model(self, name_or_id: str) -> RegisteredModel:
        """A registered model with its ``versions`` and ``aliases`` (``ModelNotFoundError`` if none)."""
        return RegisteredModel.from_record(self._record(name_or_id))

    def find_registered_model(self, name_or_id: str) -> RegisteredModel | None:
        """The registered model, or ``None`` if there is none by that name or id."""
        record = self._find(name_or_id)
        return None if record is None else RegisteredModel.from_record(record)

    def list_registered_models(self) -> list[RegisteredModel]:
        """Every registered model, by name."""
        return [RegisteredModel.from_record(r) for r in self.store.list_registered_models()]

    @staticmethod
    def _model_fields(description=_UNSET, owner=_UNSET, category=_UNSET, tags=_UNSET, state=_UNSET,
                      metadata=_UNSET) -> dict:
        """The store fields of a model, checked (``None`` for owner/category/tags/metadata: unchanged)."""
        fields = {}
        if description is not _UNSET:
            fields["description"] = V.optional_text("model description", description)
        if owner is not _UNSET and owner is not None:
            fields["owner"] = V.name("owner", owner)
        if category is not _UNSET and category is not None:
            fields["category"] = R.category(category)
        if tags is not _UNSET and tags is not None:
            fields["tags"] = R.model_tags(tags)
        if state is not _UNSET:
            fields["state"] = R.state(state)
        if metadata is not _UNSET and metadata is not None:
            fields["properties"] = R.metadata("model metadata", metadata)
        return fields

    def update_registered_model(self, name_or_id: str, *, description=_UNSET, owner=_UNSET, category=_UNSET,
                                tags=_UNSET, state=_UNSET, metadata=_UNSET) -> RegisteredModel:
        """Change a model's ``description``, ``owner``, ``category``, ``tags`` (replaced: a list of
        labels or a dict), ``state`` (``LIVE``/``ARCHIVED``) or ``metadata`` (replaced)."""
        record = self._record(name_or_id)
        fields = self._model_fields(description, owner, category, tags, state, metadata)
        if fields:
            self.store.update_registered_model(record["id"], fields, time.time())
        return self.get_registered_model(record["id"])

    # -- versions ------------------------------------------------------------------------------
    @staticmethod
    def _locate(model: dict, version) -> dict | None:
        ref = R.version_ref(version)
        key = "version" if isinstance(ref, int) else "name"
        return next((v for v in model["versions"] if v.get(key) == ref), None)

    def _version_record(self, model: dict, version) -> dict:
        found = self._locate(model, version)
        if found is None:
            raise ModelNotFoundError(f"model {model['name']!r} has no version {version!r}; versions: "
                                     f"{_shown_versions(model)}")
        return found

    def _version_fields(self, *, description=_UNSET, author=_UNSET, metadata=_UNSET, **files) -> dict:
        fields = {}
        if description is not _UNSET:
            fields["description"] = V.optional_text("version description", description)
        if author is not _UNSET:
            fields["author"] = _optional_name("author", author)
        if metadata is not _UNSET:
            fields["properties"] = R.metadata("version metadata", metadata)
        for name, value in files.items():
            if value is _UNSET:
                continue
            limit = V.MAX_TEXT if name in ("uri", "storage_path") else V.MAX_NAME
            fields[name] = V.optional_text(name, value, limit)
            if name == "uri" and value is not None and not value.strip():
                raise InvalidArgumentError("uri must name where the model's files are, got an empty string")
        return fields

    def create_model_version(self, name_or_id: str, run_id: str | None = None, source: str | None = None,
                             framework: str | None = None, description: str | None = None, *,
                             version: str | None = None, uri: str | None = None, model_format_name: str | None = None,
                             model_format_version: str | None = None, storage_key: str | None = None,
                             storage_path: str | None = None, author: str | None = None,
                             metadata: dict | None = None) -> ModelVersion:
        """Add the next version of a model, in stage ``development``, named ``version`` (``None``:
        ``_v<number>``; ``DuplicateError`` if the model has a version of that name). ``run_id``: the
        run that produced it; ``source``: the model's folder among that run's artifacts. ``uri`` and
        the format and storage fields say where its files are when no run holds them."""
        model = self._record(name_or_id)
        name = R.version_name(version)
        if run_id is not None:
            self.tracking.require_run(V.identifier("run_id", run_id))
            if uri is not None:
                raise InvalidArgumentError("a version's files are either a run's (run_id=) or at a uri (uri=), not "
                                           "both")
        if source is not None:
            if run_id is None:
                raise InvalidArgumentError("a model version's source is an artifact path of its run: give run_id= too")
            source = clean_artifact_path(source, "source")
        framework = V.optional_text("framework", framework, V.MAX_NAME)
        fields = self._version_fields(description=description, author=author, metadata=metadata, uri=uri,
                                      model_format_name=model_format_name, model_format_version=model_format_version,
                                      storage_key=storage_key, storage_path=storage_path)
        if name is not None and self._locate(model, name) is not None:
            raise DuplicateError(f"model {model['name']!r} already has a version named {name!r}; version names are "
                                 "unique (pass version=None for the next automatic one)")
        record = self.store.create_model_version({
            "id": new_id(), "model_id": model["id"], "run_id": run_id, "stage": "development", "source": source,
            "framework": framework, "created_at": time.time(), "name": name, **fields})
        if events.has_subscribers("model.version_created"):
            events.publish("model.version_created", model=model["name"], version=record["version"])
        return ModelVersion.from_record(record, model["name"], owner=model.get("owner"))

    def _check_new_version(self, name, version) -> tuple[str, dict | None]:
        """Before anything is uploaded or written: the model's name (a new model's is checked against
        the reserved prefixes) and a given version name, free in that model. Returns the name and
        the model's record (``None``: a new model)."""
        name = V.name("model name", name)
        existing = self._find(name)
        if existing is None:
            R.new_model_name(name)
        R.version_name(version)
        if existing is not None and version is not None and self._locate(existing, version) is not None:
            raise DuplicateError(f"model {name!r} already has a version named {version!r}; version names are "
                                 "unique (pass version=None for the next automatic one)")
        return name, existing

    def register_model(self, name: str, run_id: str | None = None, description: str | None = None, *,
                       artifact_path: str | None = None, version: str | None = None, uri: str | None = None,
                       model_format_name: str | None = None, model_format_version: str | None = None,
                       storage_key: str | None = None, storage_path: str | None = None, author: str | None = None,
                       owner: str | None = None, category: str | None = None, tags=None,
                       metadata: dict | None = None, version_description=_UNSET) -> ModelVersion:
        """Register a new version of ``name`` (the model is created if needed).

        From a run: the version points at the model the run logged with ``log_model`` (or at
        ``artifact_path`` among its artifacts). By URI: ``uri`` says where the files are; nothing
        is uploaded. ``version`` names it (``None``: the next automatic ``_v<number>``).
        ``description`` describes the version and, while it has none, the model;
        ``version_description`` the version alone. ``owner``, ``category`` and ``tags`` (added
        to the model's) describe the model; ``author`` and ``metadata`` the version.
        """
        name, existing = self._check_new_version(name, version)
        framework = source = None
        if run_id is not None:
            if uri is not None:
                raise InvalidArgumentError("register_model: give run_id= (the run's files) or uri= (files elsewhere), "
                                           "not both")
            params = self.tracking.get_run(run_id)["params"]
            framework = params.get(FRAMEWORK_PARAM)
            source = artifact_path or params.get(ARTIFACT_PATH_PARAM) or ("model" if framework else None)
        elif artifact_path is not None:
            raise InvalidArgumentError("register_model: artifact_path= needs run_id= (or an active run)")
        model_fields = self._model_fields(owner=owner, category=category, tags=tags)
        self._version_fields(description=description, author=author, metadata=metadata, uri=uri,
                             model_format_name=model_format_name, model_format_version=model_format_version,
                             storage_key=storage_key, storage_path=storage_path)
        model = RegisteredModel.from_record(existing) if existing else self.ensure_registered_model(name, description)
        if existing is not None and "tags" in model_fields:
            model_fields["tags"] = {**model.tags, **model_fields["tags"]}
        if model_fields:
            self.store.update_registered_model(model.id, model_fields, time.time())
        return self.create_model_version(
            model.id, run_id=run_id, source=source, framework=framework,
            description=description if version_description is _UNSET else version_description, version=version,
            uri=uri, model_format_name=model_format_name, model_format_version=model_format_version,
            storage_key=storage_key, storage_path=storage_path, author=author, metadata=metadata)

    def get_model_version(self, name_or_id: str, version=None, stage: str | None = None,
                          alias: str | None = None) -> ModelVersion:
        """One version: by number or name, by ``stage`` (the newest version in it), by ``alias``, or
        the latest (``alias="latest"`` too) when none is given (``ModelNotFoundError`` if there is
        no such version)."""
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
        if alias is not None and V.name("alias", alias) != "latest":
            if alias not in model.aliases:
                raise ModelNotFoundError(f"model {model.name!r} has no alias {alias!r}; aliases: {sorted(model.aliases)}")
            return model.get_version(model.aliases[alias])
        if model.latest_version is None:
            raise ModelNotFoundError(f"model {model.name!r} has no versions yet")
        return model.latest_version

    def find_model_version(self, name_or_id: str, version) -> ModelVersion | None:
        """A version by number or name, or ``None`` if the model has none such
        (``ModelNotFoundError`` if there is no such model)."""
        record = self._record(name_or_id)
        found = self._locate(record, version)
        return None if found is None else RegisteredModel.from_record(record).get_version(found["version"])

    def update_model_version(self, name_or_id: str, version, *, description=_UNSET, author=_UNSET,
                             metadata=_UNSET, stage=_UNSET, uri=_UNSET, model_format_name=_UNSET,
                             model_format_version=_UNSET, storage_key=_UNSET, storage_path=_UNSET) -> ModelVersion:
        """Change a version's ``description``, ``author``, ``metadata`` (replaced), ``stage`` or where
        and in which format its files are (``uri``, ``model_format_*``, ``storage_*``; not for a
        version whose files are a run's)."""
        record = self._record(name_or_id)
        found = self._version_record(record, version)
        fields = self._version_fields(description=description, author=author, metadata=metadata, uri=uri,
                                      model_format_name=model_format_name, model_format_version=model_format_version,
                                      storage_key=storage_key, storage_path=storage_path)
        if "uri" in fields and found.get("run_id"):
            raise InvalidArgumentError(f"{record['name']} version {found['name']!r} holds the files of run "
                                       f"{found['run_id']}; its uri cannot point elsewhere (register a new version)")
        if stage is not _UNSET:
            fields["stage"] = _stage(stage)
        if fields:
            self.store.update_model_version(record["id"], found["version"], fields, time.time())
            if "stage" in fields and events.has_subscribers("model.stage_changed"):
                events.publish("model.stage_changed", model=record["name"], version=found["version"],
                               stage=fields["stage"])
        return self.get_model_version(record["id"], version=found["version"])

    def set_model_stage(self, name_or_id: str, version, stage: str, archive_existing: bool = False) -> ModelVersion:
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

    def set_model_alias(self, name_or_id: str, alias: str, version) -> None:
        """Point ``alias`` (e.g. ``"champion"``) at a version."""
        alias = V.name("alias", alias)
        if alias.isdigit():
            raise InvalidArgumentError(f"alias {alias!r} looks like a version number; use a word like 'champion'")
        if alias == "latest":
            raise InvalidArgumentError("'latest' is the model's latest pointer, not an alias: use "
                                       "set_latest_version(name, version)")
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

    def set_latest_version(self, name_or_id: str, version) -> ModelVersion:
        """Point the model's ``latest`` at a version (files and other versions untouched). The next
        version registered becomes the latest again."""
        record = self._record(name_or_id)
        number = self._version_record(record, version)["version"]
        self.store.update_registered_model(record["id"], {"latest_version": number}, time.time())
        if events.has_subscribers("model.latest_changed"):
            events.publish("model.latest_changed", model=record["name"], version=number)
        return self.get_model_version(record["id"], version=number)

    def delete_model(self, name_or_id: str, version=None) -> dict:
        """Delete one version (and the model with it when it was the last one), or with
        ``version=None`` the whole model. Returns ``{"model", "versions": [numbers deleted],
        "model_deleted": bool}``. Registry records go; files a run holds stay that run's artifacts."""
        record = self._record(name_or_id)
        if version is None:
            numbers = [v["version"] for v in record["versions"]]
            self.store.delete_registered_model(record["id"])
            deleted_model = True
        else:
            numbers = [self._version_record(record, version)["version"]]
            self.store.delete_model_version(record["id"], numbers[0])
            deleted_model = len(record["versions"]) == 1
            if deleted_model:
                self.store.delete_registered_model(record["id"])
        if events.has_subscribers("model"):
            for number in numbers:
                events.publish("model.version_deleted", model=record["name"], version=number)
            if deleted_model:
                events.publish("model.deleted", model=record["name"])
        return {"model": record["name"], "versions": numbers, "model_deleted": deleted_model}

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

    # -- pages ---------------------------------------------------------------------------------
    @staticmethod
    def _page_args(order_by, page_size) -> None:
        if order_by not in ORDER_BY:
            raise InvalidArgumentError(f"order_by must be one of {list(ORDER_BY)}, got {order_by!r}")
        if isinstance(page_size, bool) or not isinstance(page_size, int) or not 1 <= page_size <= 10_000:
            raise InvalidArgumentError(f"page_size must be an integer from 1 to 10,000, got {page_size!r}")

    @staticmethod
    def _after(record: dict | None, order_by: str) -> list | None:
        return None if record is None else [record[order_by], record["id"]]

    def page_registered_models(self, page_size: int = 100, order_by: str = "created_at", ascending: bool = True,
                               after: list | None = None) -> tuple[list[RegisteredModel], list | None]:
        """One page of models and the ``after`` that continues it (``None`` when it was the last)."""
        self._page_args(order_by, page_size)
        records = self.store.page_registered_models(order_by, bool(ascending), page_size, after)
        more = self._after(records[-1], order_by) if len(records) == page_size else None
        return [RegisteredModel.from_record(r) for r in records], more

    def page_model_versions(self, name_or_id: str, page_size: int = 100, order_by: str = "created_at",
                            ascending: bool = True, after: list | None = None) -> tuple[list[ModelVersion], list | None]:
        """One page of a model's versions and the ``after`` that continues it."""
        self._page_args(order_by, page_size)
        model = self._record(name_or_id)
        records = self.store.page_model_versions(model["id"], order_by, bool(ascending), page_size, after)
        more = self._after(records[-1], order_by) if len(records) == page_size else None
        aliases: dict[int, list] = {}
        for alias, number in model["aliases"].items():
            aliases.setdefault(number, []).append(alias)
        return [ModelVersion.from_record(r, model["name"], sorted(aliases.get(r["version"], ())), model.get("owner"))
                for r in records], more

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
        self.tracking.require_writable(run_id)  # before serializing anything
        with tempfile.TemporaryDirectory(prefix="podstack-model-") as tmp:
            folder = Path(tmp) / "model"
            folder.mkdir()
            save_model(model, str(folder), framework=framework)
            return self.log_model_folder(run_id, folder, destination, params)

    def log_model_folder(self, run_id: str, folder, artifact_path: str = "model", metadata: dict | None = None) -> dict:
        """Store a folder :func:`~podstack_jupyter.models.save_model` wrote as the run's model (what
        ``log_model`` does after serializing); returns what ``log_model`` returns."""
        from ._flavors import read_manifest

        destination = clean_artifact_path(artifact_path)
        used = read_manifest(folder)["framework"]
        params = V.string_dict("log_model: metadata", metadata or {})
        files = self.tracking.log_artifact(run_id, folder, destination)
        params = self.tracking.log_params(run_id, {FRAMEWORK_PARAM: used, ARTIFACT_PATH_PARAM: destination, **params})
        return {"run_id": run_id, "artifact_path": destination, "framework": used,
                "files": [f["path"] for f in files], "params": params}

    def version_files(self, version: ModelVersion) -> list[dict] | None:
        """The stored files of a version held by a run (``path`` relative to the model's folder,
        ``size``, ``digest``); ``None`` for a version known only by its uri."""
        if not version.run_id:
            return None
        source = version.source or "model"
        try:
            entries, single = self.tracking.select_artifacts(version.run_id, source)
        except ArtifactNotFoundError as exc:
            raise ArtifactNotFoundError(f"{version.name} version {version.version_name!r}: {exc.message}") from None
        offset = 0 if single else len(clean_artifact_path(source)) + 1
        return [{**e, "stored_path": e["path"], "path": e["path"].rsplit("/", 1)[-1] if single else e["path"][offset:]}
                for e in entries]

    def _fetch_files(self, version: ModelVersion, folder: Path) -> None:
        """Put a version's files into ``folder``: a run's artifacts verified against their digests
        (files already there with the right content are kept), or what its uri names."""
        files = self.version_files(version)
        if files is not None:
            relative = {f["stored_path"]: f["path"] for f in files}
            self.tracking.fetch([{**f, "path": f["stored_path"]} for f in files],
                                lambda e: folder.joinpath(*relative[e["path"]].split("/")),
                                f"fetching {version.name} {version.version_name}", within=folder,
                                run_id=version.run_id)
            return
        if not version.uri:
            raise ModelNotFoundError(f"{version.name} version {version.version_name!r} has no files: it is linked to "
                                     "no run and has no uri")
        from ._sources import download_uri

        download_uri(version.uri, folder)

    def download_model_version(self, name_or_id: str, local_dest, version=None) -> str:
        """Copy a version's files (the latest when ``version`` is ``None``) into the folder
        ``local_dest``; files there by the same names are replaced. Returns its absolute path."""
        if not isinstance(local_dest, (str, os.PathLike)):
            raise InvalidArgumentError(f"local_dest must be a folder path, got {type(local_dest).__name__}")
        destination = Path(local_dest).expanduser().resolve()
        if destination.exists() and not destination.is_dir():
            raise InvalidArgumentError(f"local_dest {os.fspath(local_dest)!r} is a file; give a folder to put the "
                                       "model's files in")
        chosen = self.get_model_version(name_or_id, version=version)
        destination.mkdir(parents=True, exist_ok=True)
        self._fetch_files(chosen, destination)
        return str(destination)

    def load_model(self, name_or_id: str, version=None, stage: str | None = None, alias: str | None = None,
                   framework: str | None = None, *, cache_dir, trusted: bool = False) -> object:
        """Load a registered model's files into ``cache_dir/<model id>/<version>`` (files of a run
        already there with the right digest are kept; nothing is written outside that folder,
        whatever the store's rows say), verify them and deserialize them with ``framework``
        (default: the one ``log_model`` recorded). A format whose loading runs code needs a
        manifest signed on this machine, unless ``trusted=True`` (see
        :func:`~podstack_jupyter.models.load_model_from_dir`)."""
        if version is not None and stage is not None:
            raise InvalidArgumentError("load_model: version= and stage= are mutually exclusive; give one")
        chosen = self.get_model_version(name_or_id, version=version, stage=stage, alias=alias)
        model_folder = chosen.model_id
        if not (isinstance(model_folder, str) and _FOLDER_NAME.fullmatch(model_folder) and model_folder.strip(".")):
            raise ModelNotFoundError(f"{chosen.name} v{chosen.version}: the store gives it the id {model_folder!r}, "
                                     "which podstack never makes; refusing to use it as a folder name")
        cache = Path(cache_dir) / model_folder / str(_version_number(chosen.version))
        if not chosen.run_id:
            if not chosen.uri:
                raise ModelNotFoundError(f"{chosen.name} v{chosen.version} is not linked to a run and has no uri, so "
                                         "it has no files to load")
            shutil.rmtree(cache, ignore_errors=True)  # files at a uri carry no digest: fetch them afresh
        private_folder(cache, tighten=False)
        self._fetch_files(chosen, cache)
        if framework is None and chosen.run_id:
            framework = chosen.framework or self.tracking.get_run(chosen.run_id)["params"].get(FRAMEWORK_PARAM)
        from ._flavors import load_model_from_dir

        return load_model_from_dir(str(cache), framework=framework or chosen.framework, trusted=trusted)

    # -- registering files from a source -------------------------------------------------------
    def upload_model(self, name: str, source_path, *, source_type: str = "local", version: str | None = None,
                     code_path=None, description: str | None = None, author: str | None = None,
                     owner: str | None = None, category: str | None = None, tags=None, metadata: dict | None = None,
                     model_format_name: str | None = None, model_format_version: str | None = None,
                     revision: str | None = None, hf_endpoint: str | None = None, progress=None) -> ModelVersion:
        """Copy a model's files into the artifact store and register them as a new version.

        ``source_type``: ``"local"`` (``source_path`` is a file or a folder), ``"s3"``
        (``s3://bucket/prefix``, or a key in the bucket of an ``s3://`` artifact root) or ``"hf"``
        (``source_path`` is a Hugging Face repo id; ``revision`` defaults to ``main``).
        ``code_path``: a file or folder of the code that made it, kept beside the model. The files
        are held by a run the registry makes in the experiment :data:`UPLOADS_EXPERIMENT`
        (``code/`` and ``model/``). ``progress(text)`` hears each step.
        """
        from ._sources import copy_local, download_s3, hf_snapshot, staging_folder

        say = progress or (lambda text: None)
        if source_type not in SOURCE_TYPES:
            raise InvalidArgumentError(f"source_type must be one of {list(SOURCE_TYPES)}, got {source_type!r}")
        if not isinstance(source_path, (str, os.PathLike)) or not os.fspath(source_path):
            raise InvalidArgumentError(f"source_path must name the model's files, got {source_path!r}")
        if revision is not None and source_type != "hf":
            raise InvalidArgumentError("revision= is for source_type='hf' (a Hugging Face repo)")
        source_text = os.fspath(source_path)
        name, _ = self._check_new_version(name, version)
        self._model_fields(owner=owner, category=category, tags=tags)
        self._version_fields(description=description, author=author, metadata=metadata)
        code = None
        if code_path is not None:
            code = Path(code_path).expanduser()
            if not code.exists():
                raise InvalidArgumentError(f"code_path {os.fspath(code_path)!r} does not exist")
        origin = {"source_type": source_type, "source_uri": source_text}
        with staging_folder() as staging:
            if source_type == "local":
                folder = Path(source_text).expanduser()
                if not folder.exists():
                    raise InvalidArgumentError(f"source_path {source_text!r} does not exist")
            elif source_type == "s3":
                uri = self._s3_source(source_text)
                origin["source_uri"] = uri
                say(f"downloading {uri}")
                folder = Path(staging) / "model"
                try:
                    download_s3(uri, folder)
                except ArtifactNotFoundError as exc:
                    raise ModelSourceError(exc.message) from None
            else:
                repo = V.name("Hugging Face repo id", source_text)
                say(f"fetching {repo}@{revision or 'main'} from the Hugging Face hub")
                snapshot = hf_snapshot(repo, revision or "main", hf_endpoint)
                folder = Path(staging) / "model"
                copy_local(snapshot, folder)  # the cache's files are links into its blob store
                origin.update(hf_revision=revision or "main", hf_commit=snapshot.name)
            if folder.is_dir() and not any(p.is_file() for p in folder.rglob("*")):
                raise InvalidArgumentError(f"{source_text!r} holds no files")
            framework = self._saved_framework(folder)
            tracking = self.tracking
            experiment = tracking.ensure_experiment(UPLOADS_EXPERIMENT,
                                                    description="runs holding the files of uploaded model versions")
            run = tracking.create_run(experiment.id, name=f"upload {name}",
                                      tags={"podstack.model": name, "podstack.model.source_type": source_type,
                                            "podstack.model.source": origin["source_uri"][:V.MAX_VALUE]})
            try:
                say(f"storing the files of {source_text} in {run['id']}")
                tracking.log_artifact(run["id"], folder, "model/" if folder.is_file() else "model")
                if code is not None:
                    tracking.log_artifact(run["id"], code, "code/" if code.is_file() else f"code/{code.name}")
                if framework is not None:
                    tracking.log_params(run["id"], {FRAMEWORK_PARAM: framework, ARTIFACT_PATH_PARAM: "model"})
                chosen = self.register_model(
                    name, run_id=run["id"], artifact_path="model", description=description, version=version,
                    author=author, owner=owner, category=category, tags=tags, metadata={**origin, **(metadata or {})},
                    model_format_name=model_format_name or framework, model_format_version=model_format_version)
            except BaseException:
                tracking.end_run(run["id"], "failed")
                raise
            tracking.end_run(run["id"], "completed")
        say(f"registered {name} version {chosen.version_name!r} (number {chosen.version})")
        return chosen

    def _s3_source(self, source: str) -> str:
        """An S3 source as a full URI: a key alone is in the bucket of the ``s3://`` artifact root."""
        if source.lower().startswith("s3://"):
            return source
        store = self.tracking.artifacts
        bucket = getattr(store, "bucket", None)
        if bucket is None:
            raise InvalidArgumentError(f"source_path {source!r} is not an s3:// URI, and the artifact store is not on "
                                       "S3 to take it as a key of; give s3://bucket/prefix")
        return f"s3://{bucket}/{source.strip('/')}"

    @staticmethod
    def _saved_framework(folder: Path) -> str | None:
        """The framework of a folder ``save_model`` wrote (its manifest says), else ``None``."""
        from ._flavors import MANIFEST, read_manifest

        if folder.is_dir() and (folder / MANIFEST).is_file():
            try:
                return read_manifest(folder)["framework"]
            except PodstackError:
                return None
        return None

    def register_hf_model(self, repo: str, path: str, *, version: str, model_format_name: str | None = None,
                          model_format_version: str | None = None, author: str | None = None,
                          owner: str | None = None, model_name: str | None = None, description: str | None = None,
                          git_ref: str = "main", endpoint: str | None = None) -> ModelVersion:
        """Register a file (or a folder) of a Hugging Face model repo by its hub address, without
        downloading it. The hub is asked that the repo, the revision ``git_ref`` and ``path``
        exist (offline, ``HF_HUB_OFFLINE=1``: the local cache is); the version's metadata records
        the repo, the revision, its commit and the author."""
        from ._sources import hf_repo_info, hf_uri

        repo = V.name("repo", repo)
        path = V.text("path", path, V.MAX_TEXT).strip("/")
        git_ref = V.name("git_ref", git_ref)
        name, _ = self._check_new_version(model_name if model_name is not None else repo, version)
        info = hf_repo_info(repo, git_ref, endpoint)
        folder = bool(path) and path not in info["files"]
        if folder and not any(f.startswith(path + "/") for f in info["files"]):
            shown = ", ".join(info["files"][:20]) or "none"
            raise ModelSourceError(f"{repo}@{git_ref} has no file or folder {path!r}"
                                   f"{' in the local cache' if info['offline'] else ''}; files: {shown}")
        metadata = {"hf_repo": repo, "hf_path": path, "hf_revision": git_ref, "model_origin": "huggingface_hub"}
        metadata.update({k: v for k, v in (("hf_commit", info["sha"]), ("model_author", info["author"]),
                                           ("model_last_modified", info["last_modified"]),
                                           ("license", info["license"])) if v})
        return self.register_model(name, uri=hf_uri(repo, path, git_ref, endpoint, folder=folder or not path),
                                   version=version, model_format_name=model_format_name,
                                   model_format_version=model_format_version,
                                   author=author or info["author"] or None, owner=owner,
                                   version_description=description, metadata=metadata)

    def upload_to_s3_and_register(self, name: str, model_files_path, params, *, version: str,
                                  model_format_name: str | None = None, model_format_version: str | None = None,
                                  author: str | None = None, owner: str | None = None, description: str | None = None,
                                  storage_key: str | None = None, metadata: dict | None = None) -> ModelVersion:
        """Copy a model's files to ``s3://params.bucket_name/params.s3_prefix/`` (an S3-compatible
        server: ``params.endpoint_url``) and register that location as a new version."""
        from ._sources import S3Params, upload_to_s3

        if not isinstance(params, S3Params):
            raise InvalidArgumentError(f"upload_params must be S3Params(bucket_name=..., s3_prefix=...), got "
                                       f"{type(params).__name__} (OCI registries are not supported here)")
        name, _ = self._check_new_version(name, version)
        self._version_fields(description=description, author=author, metadata=metadata)
        uri = upload_to_s3(model_files_path, params)
        return self.register_model(name, uri=uri, version=version, model_format_name=model_format_name,
                                   model_format_version=model_format_version, storage_key=storage_key,
                                   storage_path=params.s3_prefix.strip("/"), author=author, owner=owner,
                                   version_description=description, metadata=metadata)
