"""Metrics: the SDK's one-request-per-call logging and history, and the packed batches this
project's REST store sends (many runs and keys in one transaction, stored once per batch id)."""

from __future__ import annotations

import array
import base64
import binascii
import sys
import time

from fastapi import APIRouter, Depends, Query

from ...errors import InvalidArgumentError
from ...tracking import _validate as V
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON, MetricBatchIn, MetricsIn, metric_json

__all__ = ["router", "unpack"]

router = APIRouter(tags=["metrics"])

_BIG_ENDIAN = sys.byteorder == "big"


def unpack(typecode: str, text: str, count: int, what: str) -> array.array:
    """A base64 little-endian array of ``count`` items (``InvalidArgumentError`` naming ``what``)."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgumentError(f"{what} is not base64") from None
    items = array.array(typecode)
    if len(raw) != count * items.itemsize:
        raise InvalidArgumentError(f"{what} holds {len(raw)} bytes, not the {count * items.itemsize} of {count} "
                                   f"{'int64' if typecode == 'q' else 'float64'} values")
    items.frombytes(raw)
    if _BIG_ENDIAN:
        items.byteswap()
    return items


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
    series = []
    for s in body.series:
        if s.encoding != "base64-le":
            raise InvalidArgumentError(f"series encoding must be 'base64-le', got {s.encoding!r}")
        if s.count < 0:
            raise InvalidArgumentError(f"series count must be >= 0, got {s.count}")
        where = f"metric {s.key!r} of run {s.run_id!r}"
        series.append((s.run_id, s.key, unpack("q", s.steps, s.count, f"{where}: steps"),
                       unpack("d", s.values, s.count, f"{where}: values"),
                       unpack("d", s.timestamps, s.count, f"{where}: timestamps")))
    return JSON({"stored": ctx.tracking.log_series(series, batch_id=body.batch_id)})


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
