"""Runs: create, read, list and search, params, tags, notes, end, compare.

The official SDK keeps tags as params named ``_tag.<key>`` (it has no tags endpoint): those are
stored as the run's tags. Its own bookkeeping params (``_artifact.*``, ``_artifact_store``,
``_model.*``) may be logged again with another value.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ...errors import InvalidArgumentError
from ...tracking import _validate as V
from ...tracking._search import make_clause
from ...tracking.client import ENDED_STATUSES
from ...tracking.store import RUN_STATUSES
from ..deps import project
from ..state import ProjectContext
from ..wire import (JSON, NOTES_TAG, CompareIn, EndIn, LookupIn, NotesIn, ParamsIn, RunIn, RunUpdate, SearchIn,
                    TagsIn, run_json)
from .artifacts import finalize_pending

__all__ = ["router"]

router = APIRouter(tags=["runs"])

_SDK_TAG = "_tag."
_MAX_LIST = 100_000


@router.post("/runs", status_code=201, summary="Start a run")
def create_run(body: RunIn, ctx: ProjectContext = Depends(project)):
    """Start a run in `experiment_id`: `{"run": Run}`. With `id` (the client's own), sending the
    same request again answers with the run already created."""
    if body.id is not None:
        existing = ctx.store.get_run(V.identifier("id", body.id))
        if existing is not None:
            if existing["experiment_id"] != body.experiment_id:
                raise InvalidArgumentError(f"run id {body.id!r} is already used by another experiment's run")
            return JSON({"run": run_json(existing, ctx.project_id)}, status_code=201)
    record = ctx.tracking.create_run(body.experiment_id, body.name, parent_run_id=body.parent_run_id,
                                     tags=body.tags, source=body.source, gpu=body.gpu, run_id=body.id)
    return JSON({"run": run_json(record, ctx.project_id)}, status_code=201)


@router.get("/runs/{run_id}", summary="A run (bare object)")
def get_run(run_id: str, ctx: ProjectContext = Depends(project)):
    """The run with this id (with its params, tags and latest metrics), as a bare Run object."""
    return JSON(run_json(ctx.tracking.get_run(run_id), ctx.project_id))


@router.get("/runs", summary="List runs")
def list_runs(limit: int = Query(20, ge=0, le=_MAX_LIST), offset: int = Query(0, ge=0, le=_MAX_LIST),
              experiment_id: str | None = None, status: str | None = None, ctx: ProjectContext = Depends(project)):
    """`{"runs": [Run]}`, newest first, of one experiment and/or status if given."""
    if limit == 0:
        return JSON({"runs": []})
    records = ctx.tracking.search_runs(experiment_ids=experiment_id, statuses=status, max_results=offset + limit)
    return JSON({"runs": [run_json(r, ctx.project_id) for r in records[offset:]]})


@router.post("/runs/lookup", summary="Several runs by id")
def lookup_runs(body: LookupIn, ctx: ProjectContext = Depends(project)):
    """`{"runs": [Run]}` for the ids that name runs of the project, in the order asked (others left out)."""
    ids = [V.identifier("run id", r) for r in body.run_ids]
    return JSON({"runs": [run_json(r, ctx.project_id) for r in ctx.store.get_runs(ids)]})


def _checked_query(body: SearchIn) -> dict:
    clauses = []
    for clause in body.clauses:
        try:
            kind, key, op, value = clause["kind"], clause["key"], clause["op"], clause["value"]
        except (KeyError, TypeError):
            raise InvalidArgumentError(f"search: a clause is {{kind, key, op, value}}, got {clause!r}") from None
        clauses.append(make_clause(kind, key, op, value))
    order = []
    for item in body.order_by:
        kind, key, ascending = item.get("kind"), item.get("key"), item.get("ascending", True)
        if kind not in ("metric", "param", "tag", "attribute") or not isinstance(ascending, bool):
            raise InvalidArgumentError(f"search: order_by entries are {{kind, key, ascending}}, got {item!r}")
        order.append({"kind": kind, "key": V.key("search: order_by key", key), "ascending": ascending})
    statuses = body.statuses
    if statuses is not None and any(s not in RUN_STATUSES for s in statuses):
        raise InvalidArgumentError(f"search: statuses are {list(RUN_STATUSES)}, got {statuses!r}")
    if body.max_results < 1:
        raise InvalidArgumentError(f"max_results must be a positive integer, got {body.max_results}")
    return {"experiment_ids": [V.identifier("experiment_id", e) for e in body.experiment_ids]
            if body.experiment_ids is not None else None,
            "statuses": statuses, "clauses": clauses, "order_by": order,
            "max_results": min(body.max_results, 2 ** 63 - 1)}


@router.post("/runs/search", summary="Search runs (this project's REST store)")
def search_runs(body: SearchIn, ctx: ProjectContext = Depends(project)):
    """Runs matching every clause (`{kind, key, op, value}`: metric/param/tag/attribute/dataset),
    ordered by `order_by` (`{kind, key, ascending}`), newest first otherwise: `{"runs": [Run]}`."""
    return JSON({"runs": [run_json(r, ctx.project_id) for r in ctx.store.search_runs(_checked_query(body))]})


@router.patch("/runs/{run_id}", summary="Resume, end or rename a run")
def update_run(run_id: str, body: RunUpdate, ctx: ProjectContext = Depends(project)):
    """`status: "running"` resumes an ended run (with `name`, renames it); an ended status
    (`completed`, `failed`, `killed`) ends it at `end_time` (epoch seconds, default now), storing
    `metrics` (a batch as for /metrics/batch) first. Answers the run."""
    record = None
    if body.metrics is not None and body.status not in ENDED_STATUSES:
        raise InvalidArgumentError("metrics go with an ended status only (or to /metrics/batch)")
    if body.status == "running":
        ctx.tracking.resume_run(run_id, name=body.name)
    elif body.status in ENDED_STATUSES:
        if body.name is not None:
            raise InvalidArgumentError("rename a run by resuming it (status 'running' with a name)")
        if body.metrics is not None:  # the run's last points: stored (once per batch id) before it ends
            ctx.tracking.log_series(body.metrics.columns(), batch_id=body.metrics.batch_id)
        finalize_pending(ctx, run_id)
        record = ctx.tracking.end_run(run_id, body.status, body.end_time)
    else:
        raise InvalidArgumentError(f"status must be one of {list(RUN_STATUSES)}, got {body.status!r}")
    return JSON(run_json(record or ctx.tracking.get_run(run_id), ctx.project_id))


@router.post("/runs/{run_id}/end", summary="End a run")
def end_run(run_id: str, body: EndIn, ctx: ProjectContext = Depends(project)):
    """End the run with `status` (`completed`, `failed` or `killed`); uploads still pending are finalized first."""
    finalize_pending(ctx, run_id)
    record = ctx.tracking.end_run(run_id, body.status)
    return JSON({"run": run_json(record or ctx.tracking.get_run(run_id), ctx.project_id)})


@router.post("/runs/{run_id}/params", summary="Log params")
def log_params(run_id: str, body: ParamsIn, ctx: ProjectContext = Depends(project)):
    """Record params (values as text). A param cannot change once logged (400), except the SDK's
    bookkeeping ones; `_tag.<key>` params are the run's tags."""
    if not isinstance(body.params, dict):
        raise InvalidArgumentError("params must be an object of name -> value")
    def sdk_tag(key) -> bool:
        return body.sdk_tags and isinstance(key, str) and key.startswith(_SDK_TAG) and len(key) > len(_SDK_TAG)

    tags = {k[len(_SDK_TAG):]: v for k, v in body.params.items() if sdk_tag(k)}
    params = {k: v for k, v in body.params.items() if not sdk_tag(k)}
    stored = ctx.tracking.log_params(run_id, params) if params or not tags else {}
    if tags:
        ctx.tracking.set_tags(run_id, tags)
    if any(k.startswith("_artifact") for k in params):  # the SDK logs these right after an upload
        finalize_pending(ctx, run_id)
    return JSON({"params": [{"key": k, "value": v} for k, v in stored.items()]})


@router.get("/runs/{run_id}/params", summary="A run's params")
def get_params(run_id: str, ctx: ProjectContext = Depends(project)):
    """`{"params": [{key, value}]}`."""
    params = ctx.tracking.get_run(run_id)["params"]
    return JSON({"params": [{"key": k, "value": v} for k, v in sorted(params.items())]})


@router.post("/runs/{run_id}/tags", summary="Set tags")
def set_tags(run_id: str, body: TagsIn, ctx: ProjectContext = Depends(project)):
    """Set tags (text); a tag set again takes the new value. `{"tags": {key: value}}` as stored."""
    return JSON({"tags": ctx.tracking.set_tags(run_id, body.tags)})


@router.delete("/runs/{run_id}/tags/{key:text}", summary="Remove a tag")
def delete_tag(run_id: str, key: str, ctx: ProjectContext = Depends(project)):
    """Remove a tag of the run (nothing happens if it has none by that name)."""
    ctx.tracking.delete_tag(run_id, key)
    return JSON({})


@router.patch("/runs/{run_id}/notes", summary="Set a run's notes")
def update_notes(run_id: str, body: NotesIn, ctx: ProjectContext = Depends(project)):
    """Free-form notes, kept as the run's tag `podstack.notes`."""
    ctx.tracking.set_tags(run_id, {NOTES_TAG: body.notes})
    return JSON({})


@router.post("/runs/compare", summary="Compare runs")
def compare_runs(body: CompareIn, ctx: ProjectContext = Depends(project)):
    """`{"runs": [{run_id, name, status, experiment_id, params, metrics}]}`: each run's params and
    the latest value of each metric in `metric_keys` (all when absent; null where a run lacks one)."""
    if not body.run_ids:
        raise InvalidArgumentError("run_ids must name at least one run")
    rows = ctx.tracking.compare_runs(body.run_ids, body.metric_keys)
    return JSON({"runs": rows, "metric_keys": body.metric_keys or sorted({k for r in rows for k in r["metrics"]})})

