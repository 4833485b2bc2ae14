"""The metrics chart: one or more runs' metrics, one panel per key or overlaid, updated live.

State the views read (synced): ``runs`` (id, name, status, colour, start time), ``metric_keys``,
``panel_layout`` (``panels``/``overlay``), ``x_axis`` (``step``/``time`` since the run started),
``y_scale`` (``linear``/``log``), ``smoothing`` (0-0.99, exponential moving average),
``hidden_runs`` (legend toggles) and ``snapshot``: every series downsampled to at most
``max_points`` points as float64 buffers, so a view opened later draws everything.

While a run logs, points arrive as ``metrics.logged`` events; they are collected and sent
to the views as binary ``append`` messages (float64 buffers) at most ``live_sender.rate``
times a second, and the snapshot is refreshed every ``snapshot_every`` seconds and when the
run ends (then from the store, so the chart ends exactly as the run was recorded).
"""

from __future__ import annotations

import datetime as _dt
import time

import numpy as np
import traitlets

from ..errors import InvalidArgumentError
from ._base import PodstackWidget, live_sender
from ._series import Series

__all__ = ["MetricsChart", "PALETTE"]

# colour-blind friendly (Okabe-Ito + Tableau), distinct on light and dark themes
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#B8860B", "#7F7F7F",
           "#8C564B", "#17BECF", "#BCBD22", "#9467BD")


def _epoch(iso_text: str | None) -> float | None:
    return _dt.datetime.fromisoformat(iso_text).timestamp() if iso_text else None


def _f64(values) -> bytes:
    return np.ascontiguousarray(values, dtype=np.float64).tobytes()


class MetricsChart(PodstackWidget):
    """Metrics of one or more runs, drawn live. ``podstack.show_metrics(run_ids)`` makes one.

    ``MetricsChart(run_ids, keys=None, layout="panels", x_axis="step", y_scale="linear",
    smoothing=0.0, live=True)``: ``keys`` limits the chart to these metric names (default:
    every metric the runs have, and any they log later). Change any of these on the widget
    (``chart.y_scale = "log"``) or with the controls above the chart.
    """

    _kind = traitlets.Unicode("metrics").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    runs = traitlets.List().tag(sync=True)
    metric_keys = traitlets.List(traitlets.Unicode()).tag(sync=True)
    panel_layout = traitlets.Enum(("panels", "overlay"), "panels").tag(sync=True)
    x_axis = traitlets.Enum(("step", "time"), "step").tag(sync=True)
    y_scale = traitlets.Enum(("linear", "log"), "linear").tag(sync=True)
    smoothing = traitlets.Float(0.0).tag(sync=True)
    hidden_runs = traitlets.List(traitlets.Unicode()).tag(sync=True)
    max_points = traitlets.Int(2000).tag(sync=True)
    snapshot = traitlets.Dict().tag(sync=True)
    live = traitlets.Bool(False).tag(sync=True)

    snapshot_every = 2.0  # seconds between snapshot refreshes while points arrive

    def __init__(self, run_ids=(), keys=None, *, layout: str = "panels", x_axis: str = "step",
                 y_scale: str = "linear", smoothing: float = 0.0, live: bool = True, title: str = "",
                 max_points: int = 2000):
        super().__init__(panel_layout=layout, x_axis=x_axis, y_scale=y_scale, smoothing=smoothing, title=title,
                         max_points=max_points, live=live)
        if keys is not None and (isinstance(keys, str) or not all(isinstance(k, str) for k in keys)):
            raise InvalidArgumentError(f"keys must be a list of metric names, got {keys!r}")
        self._only_keys = list(keys) if keys is not None else None
        self._series: dict[tuple, Series] = {}
        self._pending: list[dict] = []
        self._early: list[dict] | None = None   # events that arrived while histories were loading
        self._reconcile: set[str] = set()       # runs to re-read from the store (they ended)
        self._seq = 0                           # number of the last append message sent
        self._snapshot_seq = -1
        self._snapshot_at = 0.0
        if live:
            self._subscribe("metrics.logged", "_on_points")
            self._subscribe("run.ended", "_on_run_ended")
        if run_ids:
            self.set_runs(run_ids)

    @traitlets.validate("smoothing")
    def _check_smoothing(self, proposal):
        value = proposal["value"]
        if not 0.0 <= value < 1.0:
            raise traitlets.TraitError(f"smoothing is between 0 (none) and 0.99, got {value}")
        return value

    @traitlets.validate("max_points")
    def _check_max_points(self, proposal):
        if proposal["value"] < 16:
            raise traitlets.TraitError(f"max_points must be at least 16, got {proposal['value']}")
        return proposal["value"]

    # -- which runs ------------------------------------------------------------------------------
    @property
    def run_ids(self) -> list[str]:
        return [r["id"] for r in self.runs]

    def set_runs(self, run_ids) -> None:
        """Show these runs (ids, or :class:`Run` objects), reading their metrics from the store."""
        from .. import registry

        if isinstance(run_ids, str) or not hasattr(run_ids, "__iter__"):
            run_ids = [run_ids]
        ids = [getattr(r, "id", r) for r in run_ids]
        bad = [r for r in ids if not isinstance(r, str) or not r]
        if bad:
            raise InvalidArgumentError(f"show_metrics: runs are run ids or Run objects, got {bad[0]!r}")
        ids = list(dict.fromkeys(ids))
        with self._lock:
            self._early = []  # collect live points while reading the store, then merge them without doubles
        try:
            records = [registry.get_run(r) for r in ids]  # RunNotFoundError names a wrong id
            series: dict[tuple, Series] = {}
            for run in records:
                names = self._only_keys if self._only_keys is not None else sorted(run.metrics)
                for key in names:
                    history = registry.get_metric_history(run.id, key)
                    steps, values, times = history.to_numpy()
                    s = Series(run.id, key, max(16, len(values)))
                    s.extend(steps, values, times)
                    series[(run.id, key)] = s
        except BaseException:
            with self._lock:
                self._early = None
            raise
        with self._lock:
            early, self._early = self._early, None
            self._series = series
            self._pending = [d for d in early if d["run_id"] in ids] + self._pending
            self.runs = [self._run_entry(run, i) for i, run in enumerate(records)]
            self.hidden_runs = [r for r in self.hidden_runs if r in ids]
            self._drop_doubles()
            self._apply_pending()
            self.metric_keys = self._key_order()
            self._send_snapshot()

    def _run_entry(self, run, index: int) -> dict:
        return {"id": run.id, "name": run.name or run.id[:8], "status": run.status,
                "color": PALETTE[index % len(PALETTE)], "start": _epoch(run.start_time)}

    def _key_order(self) -> list[str]:
        present = {key for _, key in self._series}
        if self._only_keys is not None:
            return [k for k in self._only_keys if k in present] or list(self._only_keys)
        return sorted(present)

    @classmethod
    def from_history(cls, history, **options) -> "MetricsChart":
        """A chart of exactly the points of a :class:`MetricHistory` (not live: it is a snapshot)."""
        chart = cls(keys=[history.key], live=False, **options)
        name, start, status = history.run_id[:8], None, ""
        try:
            from .. import registry

            run = registry.get_run(history.run_id)
            name, start, status = run.name or name, _epoch(run.start_time), run.status
        except Exception:  # noqa: BLE001 - the points are all here; the run's name is a nicety
            pass
        steps, values, times = history.to_numpy()
        with chart._lock:
            series = chart._series[(history.run_id, history.key)] = Series(history.run_id, history.key,
                                                                           max(16, len(values)))
            series.extend(steps, values, times)
            chart.runs = [{"id": history.run_id, "name": name, "status": status, "color": PALETTE[0], "start": start}]
            chart.metric_keys = [history.key]
            chart._send_snapshot()
        return chart

    # -- live points -----------------------------------------------------------------------------
    def _on_points(self, event) -> None:
        data = event.data
        if self._only_keys is not None and data.get("key") not in self._only_keys:
            return
        with self._lock:
            if self._early is not None:
                self._early.append(data)
                return
            if data.get("run_id") not in {r["id"] for r in self.runs}:
                return
            self._pending.append(data)
        live_sender.mark(self)

    def _on_run_ended(self, event) -> None:
        run_id = event.data.get("run_id")
        with self._lock:
            if run_id not in {r["id"] for r in self.runs}:
                return
            self._reconcile.add(run_id)
        live_sender.mark(self)

    def _drop_doubles(self) -> None:
        """Points that came as events while the store was read may be in both: keep them once."""
        kept = []
        for data in self._pending:
            series = self._series.get((data["run_id"], data["key"]))
            times = np.asarray(data["timestamps"], dtype=np.float64)
            if series is None or not series.n or not len(times):
                kept.append(data)
                continue
            recent = series.times >= times.min()
            known = set(zip(series.steps[recent].tolist(), series.times[recent].tolist()))
            fresh = [i for i, p in enumerate(zip(data["steps"], data["timestamps"])) if (float(p[0]), p[1]) not in known]
            if len(fresh) == len(times):
                kept.append(data)
            elif fresh:
                kept.append({**data, "steps": [data["steps"][i] for i in fresh],
                             "values": [data["values"][i] for i in fresh],
                             "timestamps": [data["timestamps"][i] for i in fresh]})
        self._pending = kept

    def _apply_pending(self) -> list[tuple]:
        """Move pending points into the series; returns ``[(series, first_new_index)]``."""
        touched: dict[tuple, int] = {}
        for data in self._pending:
            slot = (data["run_id"], data["key"])
            series = self._series.get(slot)
            if series is None:
                series = self._series[slot] = Series(*slot)
            touched.setdefault(slot, series.n)
            series.extend(np.asarray(data["steps"], dtype=np.float64), np.asarray(data["values"], dtype=np.float64),
                          np.asarray(data["timestamps"], dtype=np.float64))
        self._pending = []
        return [(self._series[slot], start) for slot, start in touched.items()]

    def _flush_live(self) -> None:
        with self._lock:
            if self._early is not None:
                return  # set_runs is reading the store; it sends everything when done
            reconcile, self._reconcile = self._reconcile, set()
            if self._pending:
                touched = self._apply_pending()
                keys = self._key_order()
                if keys != self.metric_keys:
                    self.metric_keys = keys
                self._seq += 1
                entries, buffers = [], []
                for series, start in touched:
                    entries.append({"run": series.run_id, "key": series.key, "n": series.n - start})
                    buffers += [_f64(series.steps[start:]), _f64(series.values[start:]), _f64(series.times[start:])]
                self.send({"type": "append", "seq": self._seq, "series": entries}, buffers)
            if reconcile:
                self._reload(reconcile)
            # a stream that stops leaves the snapshot behind the appends: a front end asking for
            # the whole state (get_state) or the run's end brings it up to date
            if self._seq > self._snapshot_seq and (reconcile or time.monotonic() - self._snapshot_at >= self.snapshot_every):
                self._send_snapshot()

    def _reload(self, run_ids) -> None:
        """Re-read runs from the store: their status, and every point (what the store holds is the truth)."""
        from .. import registry

        runs = list(self.runs)
        for i, entry in enumerate(runs):
            if entry["id"] not in run_ids:
                continue
            run = registry.get_run(entry["id"])
            runs[i] = {**entry, "status": run.status}
            names = self._only_keys if self._only_keys is not None else sorted(
                set(run.metrics) | {k for r, k in self._series if r == run.id})
            for key in names:
                steps, values, times = registry.get_metric_history(run.id, key).to_numpy()
                series = self._series.setdefault((run.id, key), Series(run.id, key, max(16, len(values))))
                series.replace(steps, values, times)
        self.runs = runs
        self.metric_keys = self._key_order()
        self._seq += 1  # the views' appended points are superseded by this snapshot

    def finish(self) -> None:
        """Send what is pending, re-read the runs from the store and send the exact final snapshot
        (``%%track`` calls this when its cell ends)."""
        from .. import registry

        registry.flush()
        with self._lock:
            self._reconcile.update(self.run_ids)
        self._flush_live()

    # -- snapshot and zoom -----------------------------------------------------------------------
    def _snapshot_value(self) -> dict:
        order = {run_id: i for i, run_id in enumerate(self.run_ids)}
        keys = {k: i for i, k in enumerate(self.metric_keys)}
        entries = []
        for (run_id, key), series in sorted(self._series.items(),
                                            key=lambda item: (order.get(item[0][0], 1 << 30), keys.get(item[0][1], 1 << 30))):
            if run_id not in order:
                continue
            steps, values, times = series.downsampled(self.max_points)
            entries.append({"run": run_id, "key": key, "n": series.n, "shown": len(values),
                            "steps": _f64(steps), "values": _f64(values), "times": _f64(times)})
        return {"seq": self._seq, "series": entries}

    def _send_snapshot(self) -> None:
        self.snapshot = self._snapshot_value()
        self._snapshot_seq = self._seq
        self._snapshot_at = time.monotonic()

    def get_state(self, key=None, drop_defaults=False):
        # a front end asking for the whole state (a page reloaded, a view opened later) gets every
        # point collected so far, not the last periodic snapshot
        if key is None and getattr(self, "_series", None) is not None:
            with self._lock:
                if self._seq > self._snapshot_seq:
                    self._send_snapshot()
        return super().get_state(key=key, drop_defaults=drop_defaults)

    def _on_view_zoom(self, content, _buffers) -> None:
        """The view zoomed into ``[min, max]`` of its x axis: send that range at full detail
        (downsampled again to ``max_points``), so zooming into a million points shows every spike."""
        by = "time" if content.get("by") == "time" else "step"
        low, high = float(content["min"]), float(content["max"])
        starts = {r["id"]: (r.get("start") or 0.0) for r in self.runs}
        entries, buffers = [], []
        with self._lock:
            for (run_id, key), series in self._series.items():
                if run_id not in starts:
                    continue
                offset = starts[run_id] if by == "time" else 0.0
                steps, values, times = series.downsampled(self.max_points, (low + offset, high + offset), by)
                entries.append({"run": run_id, "key": key, "n": len(values)})
                buffers += [_f64(steps), _f64(values), _f64(times)]
        self.send({"type": "detail", "request": content.get("request"), "by": by, "min": low, "max": high,
                   "series": entries}, buffers)

    # -- reading it back (tests, other widgets) --------------------------------------------------
    def points(self, run_id: str, key: str):
        """``(steps, values, timestamps)`` numpy arrays of every point this chart holds for a series."""
        with self._lock:
            series = self._series.get((run_id, key))
            if series is None:
                raise KeyError(f"this chart has no metric {key!r} for run {run_id!r}")
            return series.steps.copy(), series.values.copy(), series.times.copy()

    def _summary(self) -> str:
        names = ", ".join(r["name"] for r in self.runs[:5]) + (", ..." if len(self.runs) > 5 else "")
        points = sum(s.n for s in self._series.values())
        return f"{len(self.runs)} run(s) ({names}); metrics {', '.join(self.metric_keys) or 'none yet'}; {points:,} points"
