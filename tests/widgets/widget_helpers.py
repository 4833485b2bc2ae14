"""Helpers of the widget tests: publish logged points as the tracking plane documents, wait.

The tracking plane publishes ``metrics.logged`` (see ``podstack_jupyter.events``); until it does
in this branch, :func:`log_points` publishes the event itself, exactly as documented, so the
widgets' real subscription path is what the tests exercise. Once the tracking plane publishes,
``TRACKING_PUBLISHES`` is true and nothing is published twice.
"""

from __future__ import annotations

import time
from pathlib import Path

from podstack_jupyter import events

TRACKING_PUBLISHES = any('"metrics.logged"' in p.read_text() for p in
                         (Path(__file__).parents[2] / "podstack_jupyter" / "tracking").rglob("*.py"))


def log_points(run_id: str, key: str, steps, values) -> None:
    """``registry.log_metrics`` for each point, and the ``metrics.logged`` event the tracking
    plane documents (published here only while the tracking plane does not publish it)."""
    from podstack_jupyter import registry
    from podstack_jupyter.tracking.runs import metric_buffer

    now = time.time()
    stamps = [now + i * 1e-6 for i in range(len(values))]
    if TRACKING_PUBLISHES:
        for step, value in zip(steps, values):
            registry.log_metrics({key: value}, step=step, run_id=run_id)
        return
    registry._target_run(run_id, "log_points")  # the checks log_metrics makes
    for step, value, stamp in zip(steps, values, stamps):  # what log_metrics queues, with known timestamps
        metric_buffer.add(run_id, {key: float(value)}, int(step), stamp)
    events.publish("metrics.logged", run_id=run_id, key=key, steps=list(steps), values=list(values),
                   timestamps=stamps)


def wait_for(predicate, timeout: float = 10.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.01)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
