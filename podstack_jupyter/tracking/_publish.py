"""``metrics.logged`` events: the points a store has just written, one event per run and key."""

from __future__ import annotations

from .. import events

__all__ = ["publish_points", "publish_series"]

TOPIC = "metrics.logged"


def publish_points(points) -> None:
    """Publish written points ``(run_id, key, value, step, timestamp)`` as ``metrics.logged``
    events (``run_id``, ``key``, ``steps``, ``values``, ``timestamps``: lists in writing order).
    Costs one check when nobody listens."""
    if not events.has_subscribers(TOPIC):
        return
    groups: dict = {}
    for run_id, key, value, step, timestamp in points:
        group = groups.get((run_id, key))
        if group is None:
            group = groups[(run_id, key)] = ([], [], [])
        group[0].append(step)
        group[1].append(value)
        group[2].append(timestamp)
    for (run_id, key), (steps, values, stamps) in groups.items():
        events.publish(TOPIC, run_id=run_id, key=key, steps=steps, values=values, timestamps=stamps)


def publish_series(series) -> None:
    """The same for points written per metric, ``(run_id, key, steps, values, timestamps)``."""
    if not events.has_subscribers(TOPIC):
        return
    for run_id, key, steps, values, stamps in series:
        if steps:
            events.publish(TOPIC, run_id=run_id, key=key, steps=list(steps), values=list(values),
                           timestamps=list(stamps))
