"""Inline widgets: live metric charts, the runs table, the lineage graph, the artifact browser
and the session panel (anywidget; the front end is bundled into the package, works offline).

In a notebook::

    import podstack
    podstack.show_metrics([run.id])          # live chart: panels per metric, step/time, log y, smoothing
    podstack.show_runs("sentiment")          # params and latest metrics as columns; select -> chart
    podstack.show_lineage("sentiment-bert")  # datasets -> runs -> model versions
    podstack.show_artifacts(run.id)          # tree, type badges, sizes, download, preview
    podstack.show_sessions()                 # GPU sessions with stop / restart

Each returns its widget, which the notebook draws when it is the cell's value (``display(w)``
otherwise). ``%%track`` draws the live chart under its cell; runs, models, lineages and metric
histories display as these widgets, and as readable text in a terminal.
"""

from __future__ import annotations

import importlib

__all__ = ["show_metrics", "show_runs", "show_lineage", "show_artifacts", "show_sessions", "mimebundle",
           "MetricsChart", "RunsTable", "RunsExplorer", "LineageGraph", "ArtifactBrowser", "SessionPanel",
           "GPUStatusLine", "gpu_status", "live_chart", "live_sender", "can_show_widgets"]

_PUBLIC = {
    "MetricsChart": "metrics", "RunsTable": "runs", "RunsExplorer": "runs", "LineageGraph": "lineage",
    "ArtifactBrowser": "artifacts", "SessionPanel": "sessions", "GPUStatusLine": "sessions",
    "gpu_status": "sessions", "live_sender": "_base", "can_show_widgets": "_base",
}


def __getattr__(name):
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def show_metrics(run_ids, keys=None, *, layout: str = "panels", x_axis: str = "step", y_scale: str = "linear",
                 smoothing: float = 0.0, live: bool = True):
    """A chart of the metrics of one or more runs (ids or :class:`Run` objects), updated live
    while they log. ``keys``: only these metrics. ``layout``: ``"panels"`` (one per metric) or
    ``"overlay"``; ``x_axis``: ``"step"`` or ``"time"``; ``y_scale``: ``"linear"`` or ``"log"``;
    ``smoothing``: 0 to 0.99. Returns the :class:`MetricsChart`."""
    from .metrics import MetricsChart

    return MetricsChart(run_ids, keys, layout=layout, x_axis=x_axis, y_scale=y_scale, smoothing=smoothing, live=live)


def show_runs(experiment=None, **search):
    """The runs of an experiment (name, id or :class:`Experiment`; default: every run) as a table
    with params and latest metrics as columns; sort, filter, and select rows to draw them in the
    chart below. Keyword arguments narrow it as ``registry.search_runs`` does (``status=``,
    ``filter=``...). Returns a :class:`RunsExplorer` (``.table``, ``.chart``)."""
    from .runs import RunsExplorer, RunsTable

    return RunsExplorer(RunsTable(experiment, **search))


def show_lineage(model):
    """The lineage graph of a registered model (name, id, :class:`RegisteredModel`,
    :class:`ModelVersion` or a ``get_model_lineage`` dict): datasets -> runs -> versions, with
    stages and aliases. Returns the :class:`LineageGraph`."""
    from .lineage import LineageGraph

    return LineageGraph(model)


def show_artifacts(run_id, *, download_dir=None):
    """The artifacts of a run as a tree with type, size and upload time; download into the working
    folder (or ``download_dir``); preview images and text. Returns the :class:`ArtifactBrowser`."""
    from .artifacts import ArtifactBrowser

    return ArtifactBrowser(run_id, download_dir=download_dir)


def show_sessions():
    """The notebook's GPU sessions with stop and restart buttons. Returns the :class:`SessionPanel`."""
    from .sessions import SessionPanel

    return SessionPanel()


def mimebundle(obj, include=None, exclude=None):
    """What a tracking object (run, metric history, model, version, lineage) shows in a notebook:
    its widget where widgets can be drawn, with readable text beside it (the only part a terminal
    shows). The tracking objects' ``_repr_mimebundle_`` calls this."""
    from . import _display

    return _display.mimebundle(obj, include, exclude)


def live_chart(shell, cell: str, run_cell):
    """Wrap a ``%%track`` cell runner so the active run's live chart shows under the cell while it
    runs (nothing is drawn where widgets cannot be). ``run_cell`` is ``None`` for a plain cell."""
    from . import _display

    return _display.live_chart(shell, cell, run_cell)


def __dir__():
    return sorted(set(globals()) | set(__all__))
