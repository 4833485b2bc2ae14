"""Experiments: get by name or id, create, list (the SDK's ``set_experiment``, ``get_experiment``,
``list_experiments``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query

from ...errors import ExperimentNotFoundError, InvalidArgumentError
from ...tracking import _validate as V
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON, ExperimentIn, experiment_json

__all__ = ["router"]

router = APIRouter(tags=["experiments"])


def _answer(ctx: ProjectContext, record: dict | None, missing: str) -> dict:
    if record is None:
        raise ExperimentNotFoundError(missing)
    return experiment_json(record, ctx.project_id, ctx.state.experiment_stats(ctx.project_id).get(record["id"]))


@router.get("/experiments/name/{name:text}", summary="The experiment called NAME (bare object)")
def get_experiment_by_name(name: str, ctx: ProjectContext = Depends(project)):
    """The experiment of the key's project called `name`, as a bare Experiment object; 404 if none."""
    record = ctx.store.get_experiment_by_name(V.name("experiment name", name))
    return JSON(_answer(ctx, record, f"no experiment named {name!r}"))


@router.post("/experiments", status_code=201, summary="Create an experiment")
def create_experiment(body: ExperimentIn, ctx: ProjectContext = Depends(project)):
    """Create an experiment: `{"experiment": Experiment}`. A name already taken is refused with
    "already exists" (400), unless `if_exists` is `"return"`: then that experiment is the answer."""
    if body.if_exists not in (None, "error", "return"):
        raise InvalidArgumentError(f'if_exists must be "error" or "return", got {body.if_exists!r}')
    make = ctx.tracking.ensure_experiment if body.if_exists == "return" else ctx.tracking.create_experiment
    experiment = make(body.name, body.description or None, body.tags)
    return JSON({"experiment": _answer(ctx, ctx.store.get_experiment(experiment.id), body.name)}, status_code=201)


@router.get("/experiments/{experiment_id}", summary="An experiment by id (bare object)")
def get_experiment(experiment_id: str, ctx: ProjectContext = Depends(project)):
    """The experiment with this id, as a bare Experiment object; 404 if the project has none."""
    record = ctx.store.get_experiment(V.identifier("experiment_id", experiment_id))
    return JSON(_answer(ctx, record, f"no experiment with id {experiment_id!r}"))


@router.get("/experiments", summary="List experiments")
def list_experiments(limit: int = Query(20, ge=0, le=100_000), offset: int = Query(0, ge=0, le=2 ** 62),
                     ctx: ProjectContext = Depends(project)):
    """`{"experiments": [Experiment]}`, oldest first, `limit` of them from `offset`."""
    stats = ctx.state.experiment_stats(ctx.project_id)
    records = ctx.store.list_experiments()[offset:offset + limit]
    return JSON({"experiments": [experiment_json(r, ctx.project_id, stats.get(r["id"])) for r in records]})


@router.delete("/experiments/{experiment_id}", summary="Archive an experiment (not supported)")
def archive_experiment(experiment_id: str, ctx: ProjectContext = Depends(project)):
    """Refused with 400: this server keeps every experiment and run."""
    ctx.tracking.get_experiment(experiment_id)
    raise InvalidArgumentError("this podstack server does not archive or delete experiments; their runs are kept")
