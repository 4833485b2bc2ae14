"""In-process publish/subscribe: what happened in this process, for whoever wants to know.

The planes publish; presentation (widgets, the Jupyter server extension, the team
server) subscribes instead of polling::

    from podstack_jupyter import events

    def on_points(event):
        print(event.topic, event.data["run_id"], len(event.data["values"]))

    subscription = events.subscribe("metrics.logged", on_points)
    ...
    subscription.close()

A topic is a dotted name. ``subscribe("run")`` receives ``run.started`` and
``run.ended``; ``subscribe("*")`` receives everything. Handlers run in the
publisher's thread, synchronously, in the order they subscribed: keep them short
and hand heavy work to a thread of your own. A handler that raises is logged and
does not stop the others or the publisher.

Topics published today (``data`` keys):

=========================  ===================================================================
``metrics.logged``         ``run_id``, ``key``, ``steps``, ``values``, ``timestamps`` (lists)
``run.started``            ``run`` (the run record)
``run.ended``              ``run_id``, ``status``, ``end_time``
``model.version_created``  ``model``, ``version``
``model.stage_changed``    ``model``, ``version``, ``stage``
``model.alias_changed``    ``model``, ``alias``, ``version`` (``None``: removed)
``model.latest_changed``   ``model``, ``version`` (``set_latest_version``)
``model.version_deleted``  ``model``, ``version``
``model.deleted``          ``model``
``session.state``          ``session`` (``GPUSession.info()``), ``state``
=========================  ===================================================================

Publishing to a topic nobody listens to costs one dictionary lookup
(:func:`has_subscribers` lets a hot path skip building the event at all).
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Event", "Subscription", "subscribe", "publish", "has_subscribers"]

log = logging.getLogger("podstack.events")


@dataclass(frozen=True)
class Event:
    """One thing that happened: ``topic``, its ``data`` and the wall-clock ``time`` it was published."""

    topic: str
    data: dict = field(default_factory=dict)
    time: float = field(default_factory=time.time)


class Subscription:
    """Returned by :func:`subscribe`; ``close()`` (or leaving its ``with`` block) stops delivery."""

    def __init__(self, pattern: str, handler: Callable[[Event], Any], order: int):
        self.pattern, self.handler, self._order = pattern, handler, order

    def close(self) -> None:
        with _lock:
            handlers = _by_pattern.get(self.pattern)
            if handlers is not None and self in handlers:
                handlers.remove(self)
                if not handlers:
                    del _by_pattern[self.pattern]
                _matching.clear()

    def __enter__(self) -> "Subscription":
        return self

    def __exit__(self, *exc_info) -> bool:
        self.close()
        return False

    def __repr__(self):
        return f"<Subscription {self.pattern!r} -> {getattr(self.handler, '__qualname__', self.handler)!r}>"


_lock = threading.Lock()
_by_pattern: dict[str, list[Subscription]] = {}
_matching: dict[str, tuple[Subscription, ...]] = {}  # topic -> subscriptions, rebuilt on change
_counter = itertools.count()


def _check_topic(topic: str, what: str) -> None:
    if not isinstance(topic, str) or not topic or topic.startswith(".") or topic.endswith("."):
        raise ValueError(f"events: {what} must be a dotted name such as 'run.ended', got {topic!r}")


def subscribe(pattern: str, handler: Callable[[Event], Any]) -> Subscription:
    """Call ``handler(event)`` for every event whose topic is ``pattern`` or lies under it
    (``"run"`` matches ``run.started``); ``"*"`` matches every topic."""
    if pattern != "*":
        _check_topic(pattern, "the pattern")
    if not callable(handler):
        raise TypeError(f"events.subscribe: handler must be callable, got {type(handler).__name__}")
    subscription = Subscription(pattern, handler, next(_counter))
    with _lock:
        _by_pattern.setdefault(pattern, []).append(subscription)
        _matching.clear()
    return subscription


def _subscribers(topic: str) -> tuple[Subscription, ...]:
    found = _matching.get(topic)
    if found is None:
        with _lock:
            parts = topic.split(".")
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)} | {"*"}
            found = tuple(sorted((s for p in prefixes for s in _by_pattern.get(p, ())), key=lambda s: s._order))
            _matching[topic] = found
    return found


def has_subscribers(topic: str) -> bool:
    """Whether publishing ``topic`` would reach anyone (cheap: lets hot paths skip the work)."""
    return bool(_by_pattern) and bool(_subscribers(topic))


def publish(topic: str, **data) -> Event | None:
    """Deliver an event to the subscribers of ``topic``; returns it (``None`` if nobody listens)."""
    if not _by_pattern:
        return None
    subscribers = _subscribers(topic)
    if not subscribers:
        return None
    event = Event(topic, data)
    for subscription in subscribers:
        try:
            subscription.handler(event)
        except Exception:  # noqa: BLE001 - one bad subscriber must not break the publisher or the others
            log.exception("podstack: event handler %r failed on %s", subscription.handler, topic)
    return event
