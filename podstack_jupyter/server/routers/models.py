"""The model registry: models, versions, stages (with their transitions), aliases, lineage.

A model is named in paths by its id or its name. A version registered by the official SDK
names its source as a folder of the client's machine; the server keeps the artifact path the
run recorded instead (``_model.artifact_path`` / ``podstack.model.artifact_path``).
"""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query

from ...errors import InvalidArgumentError, ModelNotFoundError
from ...models.client import ARTIFACT_PATH_PARAM, FRAMEWORK_PARAM
from ...tracking import _validate as V
from ...tracking.client import clean_artifact_path
from ...tracking.store import MODEL_STAGES
from ..deps import project
from ..state import ProjectContext
from ..wire import (JSON, AliasIn, ModelIn, ModelUpdate, PageIn, StageIn, VersionIn, VersionUpdate, alias_json,
                    model_json, transition_json, version_json)

__all__ = ["router"]

router = APIRouter(tags=["models"])

_SDK_ARTIFACT_PATH, _SDK_FRAMEWORK = "_model.artifact_path", "_model.framework"


def lookup(by: str = Query("any", pattern="^(any|id|name)$",
                          description="how {model} names the model: `any` (its id, else its name), `id`, `name`")):
    return by


def _model(ctx: ProjectContext, name_or_id: str, by: str = "any") -> dict:
    name_or_id = V.name("model name or id", name_or_id)
    record = ctx.store.get_registered_model(model_id=name_or_id) if by != "name" else None
    if record is None and by != "id":
        record = ctx.store.get_registered_model(name=name_or_id)
    if record is None:
        raise ModelNotFoundError(f"no registered model {name_or_id!r}")
    return record


def _version(model: dict, version: int) -> dict:
    found = next((v for v in model["versions"] if v["version"] == version), None)
    if found is None:
        raise ModelNotFoundError(f"model {model['name']!r} has no version {version}; "
                                 f"versions: {[v['version'] for v in model['versions']]}")
    return found


@router.post("/models", status_code=201, summary="Register a model")
def create_model(body: ModelIn, ctx: ProjectContext = Depends(project)):
    """`{"model": RegisteredModel}`. A name already taken is refused with "already exists" (400),
    unless `if_exists` is `"return"`."""
    if body.if_exists not in (None, "error", "return"):
        raise InvalidArgumentError(f'if_exists must be "error" or "return", got {body.if_exists!r}')
    if body.if_exists == "return":
        model = ctx.models.ensure_registered_model(body.name, body.description)
    else:
        model = ctx.models.create_registered_model(body.name, body.description)
    return JSON({"model": model_json(_model(ctx, model.id), ctx.project_id)}, status_code=201)


@router.get("/models/name/{name:text}", summary="A model by name")
def get_model_by_name(name: str, ctx: ProjectContext = Depends(project)):
    """`{"model": RegisteredModel}` (with `versions` and `aliases`)."""
    record = ctx.store.get_registered_model(name=V.name("model name", name))
    if record is None:
        raise ModelNotFoundError(f"no registered model named {name!r}")
    return JSON({"model": model_json(record, ctx.project_id)})


@router.get("/models", summary="List models")
def list_models(limit: int = Query(20, ge=0, le=100_000), offset: int = Query(0, ge=0, le=2 ** 62),
                ctx: ProjectContext = Depends(project)):
    """`{"models": [RegisteredModel]}`, by name."""
    records = ctx.store.list_registered_models()[offset:offset + limit]
    return JSON({"models": [model_json(r, ctx.project_id) for r in records]})


@router.get("/models/{model}", summary="A model by id (or name)")
def get_model(model: str, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """`{"model": RegisteredModel}` (with `versions` and `aliases`)."""
    return JSON({"model": model_json(_model(ctx, model, by), ctx.project_id)})


@router.delete("/models/{model}", summary="Delete a model with its versions and aliases")
def delete_model(model: str, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """Removes the model, its versions and aliases (the runs and their artifacts stay): `{"deleted": id}`."""
    record = _model(ctx, model, by)
    ctx.store.delete_registered_model(record["id"])
    return JSON({"deleted": record["id"]})


@router.patch("/models/{model}", summary="Describe a model (this project's REST store)")
def update_model(model: str, body: ModelUpdate, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """Set the fields given of `description`, `owner`, `category`, `tags`, `state` (LIVE/ARCHIVED),
    `properties`; `latest_version` pins `latest`, `unpin_latest` unpins it. `{"model": RegisteredModel}`."""
    record = _model(ctx, model, by)
    given = body.model_fields_set
    fields = ctx.models._model_fields(**{("metadata" if k == "properties" else k): getattr(body, k)
                                         for k in ("description", "owner", "category", "tags", "state", "properties")
                                         if k in given})
    if "latest_version" in given and body.latest_version is not None:
        fields["latest_version"] = _version(record, body.latest_version)["version"]
    elif body.unpin_latest:
        fields["latest_version"] = None
    if fields:
        ctx.store.update_registered_model(record["id"], fields, time.time())
    return JSON({"model": model_json(_model(ctx, record["id"]), ctx.project_id)})


@router.post("/models/page", summary="A page of models (this project's REST store)")
def page_models(body: PageIn, ctx: ProjectContext = Depends(project)):
    """`{"models": [RegisteredModel]}`: up to `limit`, ordered by `order_by` (created_at, updated_at, id), after
    `after` (`[value, id]` of the previous page's last)."""
    records = ctx.store.page_registered_models(body.order_by, body.ascending, body.limit, body.after)
    return JSON({"models": [model_json(r, ctx.project_id) for r in records]})


@router.post("/models/{model}/versions/page", summary="A page of a model's versions (this project's REST store)")
def page_versions(model: str, body: PageIn, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """`{"versions": [ModelVersion]}`, paged as `POST /models/page`."""
    record = _model(ctx, model, by)
    versions = ctx.store.page_model_versions(record["id"], body.order_by, body.ascending, body.limit, body.after)
    return JSON({"versions": [version_json(v, ctx.project_id) for v in versions]})


@router.delete("/models/{model}/versions/{version}", summary="Delete one version")
def delete_version(model: str, version: int, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """Removes the version and the aliases pointing at it: `{"deleted": version}`."""
    record = _model(ctx, model, by)
    _version(record, version)
    ctx.store.delete_model_version(record["id"], version)
    return JSON({"deleted": version})


@router.post("/models/{model}/versions", status_code=201, summary="Register a new version")
def create_version(model: str, body: VersionIn, by: str = Depends(lookup),
                   ctx: ProjectContext = Depends(project)):
    """The next version (1, 2, 3...) of the model, in stage `development`: `{"version": ModelVersion}`.
    With `id` (the client's own), sending the request again answers with the version already made."""
    record = _model(ctx, model, by)
    if body.id is not None:
        existing = next((v for v in record["versions"] if v["id"] == body.id), None)
        if existing is not None:
            return JSON({"version": version_json(existing, ctx.project_id)}, status_code=201)
    source, framework = body.source, body.framework
    if source is not None:
        try:
            source = clean_artifact_path(source, "source") or None
        except InvalidArgumentError:
            source = None  # the SDK sends its own machine's folder: not a place in the run
    if body.run_id is not None and (source is None or framework is None):
        params = ctx.tracking.get_run(body.run_id)["params"]
        if source is None:
            source = params.get(ARTIFACT_PATH_PARAM) or params.get(_SDK_ARTIFACT_PATH)
        if framework is None:
            framework = params.get(FRAMEWORK_PARAM) or params.get(_SDK_FRAMEWORK)
    made = ctx.models.create_model_version(record["id"], run_id=body.run_id, source=source, framework=framework,
                                           description=body.description, version_id=body.id, version=body.name,
                                           uri=body.uri, model_format_name=body.model_format_name,
                                           model_format_version=body.model_format_version,
                                           storage_key=body.storage_key, storage_path=body.storage_path,
                                           author=body.author, metadata=body.properties)
    return JSON({"version": version_json(_version(_model(ctx, record["id"]), made.version), ctx.project_id)},
                status_code=201)


@router.get("/models/{model}/versions", summary="List a model's versions")
def list_versions(model: str, limit: int = Query(20, ge=0, le=100_000), offset: int = Query(0, ge=0, le=2 ** 62),
                  ctx: ProjectContext = Depends(project)):
    """`{"versions": [ModelVersion]}`, oldest first."""
    record = _model(ctx, model)
    return JSON({"versions": [version_json(v, ctx.project_id) for v in record["versions"][offset:offset + limit]]})


@router.get("/models/{model}/versions/{version}", summary="One version")
def get_version(model: str, version: int, ctx: ProjectContext = Depends(project)):
    """`{"version": ModelVersion}`."""
    return JSON({"version": version_json(_version(_model(ctx, model), version), ctx.project_id)})


@router.patch("/models/{model}/versions/{version}", summary="Describe a version")
def update_version(model: str, version: int, body: VersionUpdate, by: str = Depends(lookup),
                   ctx: ProjectContext = Depends(project)):
    """Set the fields given of a version's `description`, `uri`, `model_format_name`,
    `model_format_version`, `storage_key`, `storage_path`, `author`, `properties`: `{"version": ModelVersion}`."""
    record = _model(ctx, model, by)
    _version(record, version)
    given = {("metadata" if k == "properties" else k): getattr(body, k) for k in body.model_fields_set}
    fields = ctx.models._version_fields(**given)
    if fields:
        ctx.store.update_model_version(record["id"], version, fields, time.time())
    return JSON({"version": version_json(_version(_model(ctx, record["id"]), version), ctx.project_id)})


@router.put("/models/{model}/versions/{version}/stage", summary="Move a version to a stage")
def set_stage(model: str, version: int, body: StageIn, by: str = Depends(lookup),
              ctx: ProjectContext = Depends(project)):
    """Move the version to `stage` (development, staging, production, archived); with
    `archive_existing`, the versions already there move to `archived`. The transition is recorded
    (with `comment`). `{"version": ModelVersion}`."""
    record = _model(ctx, model, by)
    before = {v["version"]: v for v in record["versions"]}
    comment = V.optional_text("comment", body.comment)
    ctx.models.set_model_stage(record["id"], version, body.stage, archive_existing=body.archive_existing)
    after = _model(ctx, record["id"])
    for v in after["versions"]:
        old = before.get(v["version"])
        if old is not None and (old["stage"] != v["stage"] or v["version"] == version):
            ctx.state.add_transition(ctx.project_id, record["id"], v, old["stage"], v["stage"],
                                     comment if v["version"] == version else "archived by a newer version's move",
                                     ctx.principal.who)
    return JSON({"version": version_json(_version(after, version), ctx.project_id)})


@router.get("/models/{model}/stage/{stage}", summary="The version in a stage")
def version_in_stage(model: str, stage: str, ctx: ProjectContext = Depends(project)):
    """`{"version": ModelVersion}`: the newest version in `stage` (404 if none)."""
    if stage not in MODEL_STAGES:
        raise InvalidArgumentError(f"stage {stage!r} is not valid; valid stages: {list(MODEL_STAGES)}")
    record = _model(ctx, model)
    chosen = ctx.models.get_model_version(record["id"], stage=stage)
    return JSON({"version": version_json(_version(record, chosen.version), ctx.project_id)})


@router.post("/models/{model}/aliases", status_code=201, summary="Point an alias at a version")
def set_alias(model: str, body: AliasIn, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """`{"alias": ModelAlias}`."""
    record = _model(ctx, model, by)
    ctx.models.set_model_alias(record["id"], body.alias, body.version)
    return JSON({"alias": alias_json(record, body.alias, body.version, ctx.project_id)}, status_code=201)


@router.get("/models/{model}/aliases", summary="A model's aliases")
def list_aliases(model: str, ctx: ProjectContext = Depends(project)):
    """`{"aliases": [ModelAlias]}`."""
    record = _model(ctx, model)
    return JSON({"aliases": [alias_json(record, a, v, ctx.project_id) for a, v in sorted(record["aliases"].items())]})


@router.delete("/models/{model}/aliases/{alias}", summary="Remove an alias")
def delete_alias(model: str, alias: str, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """Remove the alias (404 if the model has none by that name)."""
    ctx.models.delete_model_alias(_model(ctx, model, by)["id"], alias)
    return JSON({})


@router.get("/models/{model}/alias/{alias}", summary="The version an alias points at")
def version_by_alias(model: str, alias: str, ctx: ProjectContext = Depends(project)):
    """`{"version": ModelVersion}`."""
    record = _model(ctx, model)
    chosen = ctx.models.get_model_version(record["id"], alias=alias)
    return JSON({"version": version_json(_version(record, chosen.version), ctx.project_id)})


@router.get("/models/{model}/transitions", summary="Stage transitions of a model")
def model_transitions(model: str, ctx: ProjectContext = Depends(project)):
    """`{"transitions": [StageTransition]}`, oldest first."""
    record = _model(ctx, model)
    return JSON({"transitions": [transition_json(t) for t in ctx.state.transitions(ctx.project_id, record["id"])]})


@router.get("/models/{model}/versions/{version}/transitions", summary="Stage transitions of a version")
def version_transitions(model: str, version: int, ctx: ProjectContext = Depends(project)):
    """`{"transitions": [StageTransition]}` of one version, oldest first."""
    record = _model(ctx, model)
    _version(record, version)
    rows = ctx.state.transitions(ctx.project_id, record["id"], version)
    return JSON({"transitions": [transition_json(t) for t in rows]})


@router.get("/models/{model}/lineage", summary="Which datasets trained each version")
def lineage(model: str, by: str = Depends(lookup), ctx: ProjectContext = Depends(project)):
    """`{"model_id", "versions": [{version, stage, run_id, run_name, datasets: [Dataset]}]}`, newest first."""
    result = ctx.models.get_model_lineage(_model(ctx, model, by)["id"])
    for version in result["versions"]:
        for dataset in version["datasets"]:
            dataset["project_id"] = ctx.project_id
    return JSON(result)
