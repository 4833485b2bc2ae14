"""How tracking objects display (``_repr_mimebundle_``) and the ``%%track`` live chart."""

from __future__ import annotations

import logging

from . import _text
from ._base import can_show_widgets

__all__ = ["mimebundle", "widget_for", "describe", "live_chart"]

log = logging.getLogger("podstack.widgets")


def _kind(obj) -> str:
    name = type(obj).__name__
    if name == "Run" or (hasattr(obj, "experiment_id") and hasattr(obj, "metrics")):
        return "run"
    if name == "MetricHistory":
        return "history"
    if name == "RegisteredModel":
        return "model"
    if name == "ModelVersion":
        return "version"
    if isinstance(obj, dict) and "model_id" in obj and "versions" in obj:
        return "lineage"
    raise TypeError(f"podstack widgets draw runs, metric histories, models, versions and lineages, not {name}")


def describe(obj) -> str:
    """Readable text for ``obj`` (what a terminal shows)."""
    return {"run": _text.run_text, "history": _text.history_text, "model": _text.model_text,
            "version": _text.version_text, "lineage": _text.lineage_text}[_kind(obj)](obj)


def widget_for(obj):
    """The widget that draws ``obj``."""
    kind = _kind(obj)
    if kind == "run":
        from .metrics import MetricsChart

        return MetricsChart([obj.id], title=_text.run_text(obj).splitlines()[0])
    if kind == "history":
        from .metrics import MetricsChart

        return MetricsChart.from_history(obj)
    from .lineage import LineageGraph

    return LineageGraph(obj)


def mimebundle(obj, include=None, exclude=None):
    text = describe(obj)
    if not can_show_widgets():
        return {"text/plain": text}
    try:
        data, metadata = widget_for(obj)._repr_mimebundle_()
    except Exception as exc:  # noqa: BLE001 - the text still shows; say why the widget does not
        log.warning("podstack: could not draw %s as a widget: %s", type(obj).__name__, exc)
        return {"text/plain": f"{text}\n(widget not drawn: {exc})"}
    data["text/plain"] = text
    return data, metadata


def live_chart(shell, cell: str, run_cell):
    """``%%track``'s cell runner, drawing the active run's live chart above the cell's output and
    sending the exact final chart when the cell ends."""
    from .._shell import run_in_shell

    def run():
        if not can_show_widgets():
            return run_cell() if run_cell is not None else run_in_shell(shell, cell, "<tracked cell>")
        from IPython.display import display

        from .. import registry
        from .metrics import MetricsChart

        chart = None
        active = registry.active_run()
        if active is not None:
            chart = MetricsChart([active.id], title=active.name or "")
            display(chart)
        try:
            return run_cell() if run_cell is not None else run_in_shell(shell, cell, "<tracked cell>")
        finally:
            if chart is not None:
                try:
                    chart.finish()
                except Exception as exc:  # noqa: BLE001 - never mask the cell's own result or error
                    log.warning("podstack: the live chart could not be finished: %s", exc)

    return run
