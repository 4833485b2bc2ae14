"""Datasets: logged to a run (or at project level), listed per run. The client computes the digest,
schema and profile (it has the data); the server checks and stores them."""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends

from ...errors import InvalidArgumentError
from ...tracking import _validate as V
from ...tracking import datasets as _datasets
from ...tracking.client import new_id
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON, DatasetIn, dataset_json

__all__ = ["router"]

router = APIRouter(tags=["datasets"])

_CONTEXT_ALIASES = {"train": "training", "val": "validation", "valid": "validation"}
_MAX_DOCUMENT = 1024 * 1024  # characters of a schema or profile, as JSON


def _document(what: str, value) -> dict:
    if value is None:
        return {}
    if isinstance(value, str):  # the SDK allows JSON text
        try:
            value = json.loads(value)
        except ValueError:
            raise InvalidArgumentError(f"log_dataset: {what} must be an object (or its JSON text)") from None
    if not isinstance(value, dict):
        raise InvalidArgumentError(f"log_dataset: {what} must be an object, got {type(value).__name__}")
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(f"log_dataset: {what} must be plain JSON ({exc})") from None
    V.text(f"log_dataset: {what} as JSON", text, _MAX_DOCUMENT)
    return value


def _log(ctx: ProjectContext, run_id: str | None, body: DatasetIn):
    context = _CONTEXT_ALIASES.get(body.context, body.context)
    tags = body.tags
    if isinstance(tags, str):
        tags = _document("tags", tags)
    # the file is on the client: describe() is given no path, only what the client computed
    record = _datasets.describe(body.name, None, None, context, body.digest or None, body.source_type or "local", tags)
    record["source"] = V.text("log_dataset: path", body.source, V.MAX_VALUE) if body.source else ""
    if body.source_type is None:
        record["source_type"] = _datasets.source_type_of(record["source"])
    record["schema"] = {str(k): str(v) for k, v in _document("schema", body.schema_).items()}
    record["profile"] = _document("profile", body.profile)
    if run_id is not None:
        ctx.tracking.require_run(V.identifier("run_id", run_id))
    now = time.time()
    created = now if body.created_at is None else V.timestamp("created_at", body.created_at)
    stored = ctx.store.log_dataset(run_id, {**record, "id": new_id(), "created_at": created}, context, now)
    if run_id is not None:
        stored = {**stored, "context": context}
    return JSON({"dataset": dataset_json(stored, ctx.project_id)}, status_code=201)


@router.post("/runs/{run_id}/datasets", status_code=201, summary="Log a dataset to a run")
def log_dataset(run_id: str, body: DatasetIn, ctx: ProjectContext = Depends(project)):
    """Record a dataset (`name`, `source_type`, `context`, `digest`, `source`, `schema`, `profile`,
    `tags`) and link it to the run: `{"dataset": Dataset}`. The same data (name and digest, or
    name and source) logged again is the same record."""
    return _log(ctx, run_id, body)


@router.post("/datasets", status_code=201, summary="Log a dataset at project level")
def log_project_dataset(body: DatasetIn, ctx: ProjectContext = Depends(project)):
    """The same as logging to a run, without the link: `{"dataset": Dataset}`."""
    return _log(ctx, None, body)


@router.get("/runs/{run_id}/datasets", summary="The datasets of a run")
def run_datasets(run_id: str, ctx: ProjectContext = Depends(project)):
    """`{"datasets": [Dataset]}`, in the order they were logged, each with its `context`."""
    run_id = V.identifier("run_id", run_id)
    ctx.tracking.require_run(run_id)
    return JSON({"datasets": [dataset_json(r, ctx.project_id) for r in ctx.store.get_run_datasets(run_id)]})
