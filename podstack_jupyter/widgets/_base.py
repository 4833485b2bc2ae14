"""What every podstack widget shares: the bundled front end, live subscriptions that end with
the widget, the throttled sender thread, and a record of the messages sent to the views.

The front end is one ESM file built from the TypeScript beside these modules (``npm run build``,
run by the package's build hook on install) into ``static/``; anywidget hands it to the browser
as text, so nothing is fetched at run time. Each widget class names its view with ``_kind``.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
import weakref
from pathlib import Path

import anywidget
import traitlets

from .. import events
from ..errors import PodstackError

__all__ = ["PodstackWidget", "bundle_text", "can_show_widgets", "live_sender"]

log = logging.getLogger("podstack.widgets")

_STATIC = Path(__file__).with_name("static")
_RECORD_BYTES = 1 << 20
_bundle_cache: dict[str, str] = {}


def bundle_text(name: str) -> str:
    """The built front-end file ``static/<name>`` as text; a clear error if it was never built."""
    text = _bundle_cache.get(name)
    if text is None:
        path = _STATIC / name
        if not path.is_file():
            raise PodstackError(
                f"the widgets' front end is not built ({path} is missing). In a source checkout run "
                "`npm ci && npm run build` (Node 18+), or reinstall with `pip install .`, whose build hook "
                "runs it; an installed wheel already contains it.")
        text = _bundle_cache[name] = path.read_text(encoding="utf-8")
    return text


class _BundleFile:
    """``_esm`` / ``_css``: read from the built bundle when a widget is created (not at import,
    so ``import podstack_jupyter.widgets`` works before the front end is built)."""

    def __init__(self, name: str):
        self.name = name

    def __get__(self, instance, owner):
        if instance is None:
            return self
        return bundle_text(self.name)


def can_show_widgets() -> bool:
    """Whether the current IPython can display widgets (a kernel with a front end, not a terminal)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


class PodstackWidget(anywidget.AnyWidget):
    """Base of the podstack widgets: one bundled view chosen by ``_kind``; events it subscribed
    to stop when it is closed; ``sent`` keeps the last custom messages sent to its views."""

    _esm = _BundleFile("widgets.js")
    _css = _BundleFile("widgets.css")
    _kind = traitlets.Unicode("").tag(sync=True)
    # a line for the user under the widget (what an action did, or why it could not)
    status = traitlets.Unicode("").tag(sync=True)

    def __init__(self, **kwargs):
        # set before the comm opens: opening it reads the state
        self._lock = threading.RLock()
        self._subscriptions: list[events.Subscription] = []
        self.sent: collections.deque = collections.deque(maxlen=200)
        self.sent_count = 0  # every custom message sent, also those ``sent`` no longer holds
        super().__init__(**kwargs)
        self.on_msg(self._dispatch_view_message)

    def __repr__(self):
        # what a front end without widgets shows (text/plain)
        return f"{type(self).__name__}: {self._summary()}"

    def _summary(self) -> str:
        return ""

    # -- messages to and from the views ---------------------------------------------------------
    def send(self, content, buffers=None):
        """Send a custom message to every view (recorded in ``sent``, newest last)."""
        # large buffers (an image preview) are recorded by size only, so the record stays small
        self.sent.append((content, [bytes(b) if len(b) <= _RECORD_BYTES else f"<{len(b)} bytes>" for b in buffers]
                          if buffers else []))
        self.sent_count += 1
        super().send(content, buffers)

    def _dispatch_view_message(self, _widget, content, buffers):
        action = content.get("action") if isinstance(content, dict) else None
        handler = getattr(self, f"_on_view_{action}", None) if isinstance(action, str) else None
        if handler is None:
            log.warning("podstack widget %s: unknown message from the view: %r", type(self).__name__, content)
            return
        try:
            handler(content, buffers)
        except PodstackError as exc:
            self.status = f"⚠ {exc}"
        except Exception as exc:  # noqa: BLE001 - shown to the user under the widget, not lost in a log
            log.exception("podstack widget %s: %s failed", type(self).__name__, action)
            self.status = f"⚠ {action} failed: {type(exc).__name__}: {exc}"

    # -- events ---------------------------------------------------------------------------------
    def _subscribe(self, topic: str, method_name: str) -> None:
        """Call ``self.<method_name>(event)`` for ``topic`` while the widget lives (held weakly:
        a widget nobody holds does not stay alive for its subscription)."""
        ref = weakref.WeakMethod(getattr(self, method_name))

        def handler(event, ref=ref):
            method = ref()
            if method is not None:
                method(event)

        self._subscriptions.append(events.subscribe(topic, handler))

    def close(self):
        for subscription in self._subscriptions:
            subscription.close()
        self._subscriptions.clear()
        live_sender.forget(self)
        super().close()

    def _flush_live(self) -> None:
        """Send what the event handlers collected (called by the sender thread, throttled)."""


class _LiveSender:
    """One background thread that sends the widgets' collected live updates, at most
    ``rate`` times a second per widget, so a run logging thousands of points a second costs
    the notebook one small binary message per tick (the first point goes out at once)."""

    rate = 10.0

    def __init__(self):
        self._dirty: dict[int, PodstackWidget] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def mark(self, widget: PodstackWidget) -> None:
        with self._lock:
            self._dirty[id(widget)] = widget
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._loop, name="podstack-widgets", daemon=True)
                self._thread.start()
        self._wake.set()

    def forget(self, widget: PodstackWidget) -> None:
        with self._lock:
            self._dirty.pop(id(widget), None)

    def _loop(self):
        while True:
            self._wake.wait()
            self._wake.clear()
            started = time.monotonic()
            with self._lock:
                todo, self._dirty = list(self._dirty.values()), {}
            for widget in todo:
                try:
                    widget._flush_live()
                except Exception:  # noqa: BLE001 - one widget's failure must not stop the others' updates
                    log.exception("podstack: live update of %s failed", type(widget).__name__)
            time.sleep(max(0.0, 1.0 / self.rate - (time.monotonic() - started)))

    def drain(self, timeout: float = 5.0) -> None:
        """Wait until every collected update was sent (tests, benchmarks, a cell's end)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                idle = not self._dirty
            if idle and not self._wake.is_set():
                # the loop may be mid-flush of the last batch: flush once more ourselves is not safe,
                # so wait one tick for it to finish
                time.sleep(1.0 / self.rate)
                with self._lock:
                    if not self._dirty:
                        return
            time.sleep(0.005)


live_sender = _LiveSender()
