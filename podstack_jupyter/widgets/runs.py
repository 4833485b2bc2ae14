"""The runs table: an experiment's runs with their params and latest metrics as columns.

The whole table travels once as columns (numbers as float64 buffers, text as lists);
the view sorts, filters and draws only the rows in sight, so 10,000 runs scroll
smoothly. Selecting rows sets ``selected``; :class:`RunsExplorer` draws the selected
runs in a :class:`MetricsChart` below the table.
"""

from __future__ import annotations

import time

import ipywidgets
import numpy as np
import traitlets

from ..errors import InvalidArgumentError
from ._base import PodstackWidget, live_sender
from .metrics import MetricsChart, _epoch

__all__ = ["RunsTable", "RunsExplorer"]

_LIVE_RELOAD_MAX_ROWS = 2000  # bigger tables follow runs starting/ending, not every metric point


def _number(text):
    try:
        value = float(text)
    except (TypeError, ValueError):
        return None
    return value


class RunsTable(PodstackWidget):
    """The runs of an experiment as a table (``podstack.show_runs(experiment)``).

    ``columns``: ``{"id", "label", "group" (attribute/param/metric), "type" (text/number/time)}``;
    ``table``: ``{"ids": [...], "cells": {column id: list of text, or float64 buffer}}``;
    ``selected``: the run ids selected in the view (or set here); ``sort`` and ``filter``: the
    view's sort (``{"column", "descending"}``) and filter text (``loss < 0.5``, ``lr = 0.01``,
    or words matched against names, statuses and params).
    """

    _kind = traitlets.Unicode("runs").tag(sync=True)
    experiment = traitlets.Unicode("").tag(sync=True)
    columns = traitlets.List().tag(sync=True)
    table = traitlets.Dict().tag(sync=True)
    selected = traitlets.List(traitlets.Unicode()).tag(sync=True)
    sort = traitlets.Dict({"column": "start_time", "descending": True}).tag(sync=True)
    filter = traitlets.Unicode("").tag(sync=True)
    colors = traitlets.Dict().tag(sync=True)  # run id -> colour of that run in the chart below

    reload_every = 2.0

    def __init__(self, experiment=None, *, max_results: int = 10_000, live: bool = True, **search):
        super().__init__()
        self._experiment_id = None
        self._search = dict(search)
        self._max_results = max_results
        self._loaded_at = 0.0
        self._run_ids: set[str] = set()
        if experiment is not None:
            from .. import registry
            from ..tracking import Experiment

            if isinstance(experiment, Experiment):
                found = experiment
            elif isinstance(experiment, str):
                try:
                    found = registry.get_experiment_by_name(experiment)
                except Exception:  # noqa: BLE001 - an id is accepted too; the error below names both
                    try:
                        found = registry.get_experiment(experiment)
                    except Exception:
                        names = [e.name for e in registry.list_experiments()]
                        raise InvalidArgumentError(
                            f"show_runs: no experiment named (or with id) {experiment!r}; experiments: {names[:20]}"
                        ) from None
            else:
                raise InvalidArgumentError(f"show_runs: experiment is a name, an id or an Experiment, got {experiment!r}")
            self._experiment_id = found.id
            self.experiment = found.name
        if live:
            self._subscribe("run", "_on_run_event")
            self._subscribe("metrics.logged", "_on_metric_event")
        self.reload()

    def reload(self) -> None:
        """Read the runs from the store again."""
        from .. import registry

        runs = registry.search_runs(experiment_id=self._experiment_id, max_results=self._max_results,
                                    **self._search)
        params = sorted({k for r in runs for k in r.params if not k.startswith("podstack.")})
        metrics = sorted({k for r in runs for k in r.metrics})
        columns = [{"id": "name", "label": "run", "group": "attribute", "type": "text"},
                   {"id": "status", "label": "status", "group": "attribute", "type": "text"},
                   {"id": "start_time", "label": "started", "group": "attribute", "type": "time"},
                   {"id": "duration", "label": "duration", "group": "attribute", "type": "number"}]
        cells: dict = {"name": [r.name or r.id[:8] for r in runs], "status": [r.status for r in runs],
                       "start_time": np.array([_epoch(r.start_time) or np.nan for r in runs], dtype=np.float64).tobytes(),
                       "duration": np.array([r.duration if r.duration is not None else np.nan for r in runs],
                                            dtype=np.float64).tobytes()}
        for key in params:
            texts = [r.params.get(key) for r in runs]
            numbers = [_number(t) for t in texts]
            numeric = all(n is not None for t, n in zip(texts, numbers) if t is not None)
            column_id = f"params.{key}"
            columns.append({"id": column_id, "label": key, "group": "param", "type": "number" if numeric else "text"})
            cells[column_id] = (np.array([n if n is not None else np.nan for n in numbers], dtype=np.float64).tobytes()
                                if numeric else [t if t is not None else "" for t in texts])
        for key in metrics:
            column_id = f"metrics.{key}"
            columns.append({"id": column_id, "label": key, "group": "metric", "type": "number"})
            cells[column_id] = np.array([r.metrics.get(key, np.nan) for r in runs], dtype=np.float64).tobytes()
        with self._lock:
            self._run_ids = {r.id for r in runs}
            self._loaded_at = time.monotonic()
            with self.hold_sync():
                self.columns = columns
                self.table = {"ids": [r.id for r in runs], "cells": cells}
                self.selected = [r for r in self.selected if r in self._run_ids]

    @property
    def run_ids(self) -> list[str]:
        return list(self.table.get("ids", []))

    def _summary(self) -> str:
        return (f"{len(self.run_ids):,} runs of {self.experiment or 'every experiment'}; columns "
                f"{', '.join(c['label'] for c in self.columns[4:12])}")

    def column(self, column_id: str) -> list:
        """The values of one column, in table order (numbers as floats, NaN where missing)."""
        value = self.table["cells"][column_id]
        return np.frombuffer(value, dtype=np.float64).tolist() if isinstance(value, (bytes, memoryview)) else list(value)

    @traitlets.validate("selected")
    def _check_selected(self, proposal):
        known = set(self.table.get("ids", []))
        unknown = [r for r in proposal["value"] if r not in known]
        if unknown:
            raise traitlets.TraitError(f"selected: {unknown[0]!r} is not a run in this table")
        return list(dict.fromkeys(proposal["value"]))

    # -- live --------------------------------------------------------------------------------------
    def _on_run_event(self, event) -> None:
        record = event.data.get("run")  # a run record (dict) or a Run
        field = (lambda name: record.get(name)) if isinstance(record, dict) else (lambda name: getattr(record, name, None))
        run_id = event.data.get("run_id") or (field("id") if record is not None else None)
        if record is not None and self._experiment_id is not None and field("experiment_id") != self._experiment_id:
            return
        if record is None and run_id not in self._run_ids:
            return
        live_sender.mark(self)

    def _on_metric_event(self, event) -> None:
        if event.data.get("run_id") in self._run_ids and len(self._run_ids) <= _LIVE_RELOAD_MAX_ROWS:
            live_sender.mark(self)

    def _flush_live(self) -> None:
        if time.monotonic() - self._loaded_at < self.reload_every:
            live_sender.mark(self)  # due later: coalesce a burst of events into one reload
            return
        self.reload()


class RunsExplorer(ipywidgets.VBox):
    """A :class:`RunsTable` over a :class:`MetricsChart`: the runs selected in the table are drawn
    in the chart (``explorer.table``, ``explorer.chart``)."""

    def __init__(self, table: RunsTable, chart: MetricsChart | None = None):
        self.table = table
        self.chart = chart or MetricsChart(title="selected runs")
        super().__init__([table, self.chart])
        table.observe(self._draw_selection, names="selected")

    def __repr__(self):
        return f"RunsExplorer: {self.table._summary()}; {len(self.table.selected)} selected"

    def _draw_selection(self, change) -> None:
        try:
            self.chart.set_runs(change["new"])
        except Exception as exc:  # noqa: BLE001 - shown under the table instead of lost in the kernel log
            self.table.status = f"⚠ could not draw the selected runs: {exc}"
            return
        self.table.colors = {r["id"]: r["color"] for r in self.chart.runs}
        self.table.status = ""

    def close(self):
        self.table.close()
        self.chart.close()
        super().close()
