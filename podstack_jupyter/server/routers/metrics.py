"""Metrics: the SDK's one-request-per-call logging and history, and the packed batches this
project's REST store sends (many runs and keys in one transaction, stored once per batch id)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Depends, Query

from ...tracking import _validate as V
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON, MetricBatchIn, MetricsIn, metric_json, unpack

__all__ = ["router"]

router = APIRouter(tags=["metrics"])


@router.post("/runs/{run_id}/metrics", summary="Log metric points of a run")
def log_metrics(run_id: str, body: MetricsIn, ctx: ProjectContext = Depends(project)):
    """`{"metrics": [{key, value, step, timestamp}]}` (timestamp in epoch milliseconds, default
    now; step default 0), written in one transaction. With `batch_id`, a batch sent again is
    stored once. Answers `{"stored": n}`."""
    now = time.time()
    points = [(run_id, m.key, m.value if m.value is not None else float("nan"), 0 if m.step is None else m.step,
               now if m.timestamp is None else V.number("timestamp", m.timestamp) / 1000.0) for m in body.metrics]
    return JSON({"stored": ctx.tracking.log_points(points, batch_id=body.batch_id)})


@router.post("/metrics/batch", summary="Log packed metric series of several runs (this project's REST store)")
def log_batch(body: MetricBatchIn, ctx: ProjectContext = Depends(project)):
    """Series of points, each `{run_id, key, count, steps, values, timestamps}` with the three
    arrays as base64 of little-endian int64 / float64 / float64 (epoch seconds), written in one
    transaction. A batch sent again with the same `batch_id` is stored once: `{"stored": 0}`."""
    return JSON({"stored": ctx.tracking.log_series(body.columns(), batch_id=body.batch_id)})


@router.get("/runs/{run_id}/metrics/{key:text}/history", summary="Every point of one metric")
def metric_history(run_id: str, key: str, format: str = Query("json", pattern="^(json|packed)$"),
                   ctx: ProjectContext = Depends(project)):
    """`{"metrics": [{key, value, step, timestamp}]}` ordered by step (timestamp in epoch
    milliseconds). `format=packed`: `{"history": {count, encoding, steps, values, timestamps}}`,
    the arrays as base64 little-endian int64 / float64 / float64 (epoch seconds), exact and compact."""
    ctx.tracking.require_run(V.identifier("run_id", run_id))
    packed = ctx.store.get_metric_history(run_id, V.key("metric name", key))
    if format == "packed":
        return JSON({"history": packed})
    steps = unpack("q", packed["steps"], packed["count"], "steps")
    values = unpack("d", packed["values"], packed["count"], "values")
    stamps = unpack("d", packed["timestamps"], packed["count"], "timestamps")
    return JSON({"metrics": [metric_json(key, v, s, t) for s, v, t in zip(steps, values, stamps)]})


@router.get("/runs/{run_id}/metrics", summary="The latest point of each metric of a run")
def latest_metrics(run_id: str, ctx: ProjectContext = Depends(project)):
    """`{"metrics": [{key, value, step, timestamp}]}`: each metric's latest point (highest step, then newest)."""
    ctx.tracking.require_run(V.identifier("run_id", run_id))
    return JSON({"metrics": [metric_json(k, float("nan") if v is None else v, s, t)
                             for k, v, s, t in ctx.state.latest_metrics(run_id)]})
