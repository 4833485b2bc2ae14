"""The widgets tour notebook, executed headless in a real kernel (no browser): every widget cell
produces a widget view and readable text, and nothing fails. ``test_browser.py`` looks at them."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "examples" / "notebooks" / "widgets_tour.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.mark.slow
def test_widgets_tour_runs_and_every_widget_cell_shows_a_widget(podstack_home, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    code = [c for c in nb.cells if c.cell_type == "code"]
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0]["traceback"]
    shown = {c.source.splitlines()[-1]: [o for o in c.outputs if WIDGET in o.get("data", {})] for c in code}
    for call in ("podstack.show_metrics([r.id for r in runs], smoothing=0.6)", 'podstack.show_runs("digits")',
                 'podstack.show_lineage("digits-mlp")', "podstack.show_artifacts(best.id)",
                 "podstack.show_metrics([long_run.id])", "podstack.show_sessions()"):
        assert shown[call], f"{call} drew no widget"
    texts = {call: out[0]["data"]["text/plain"] for call, out in shown.items() if out}
    assert "3 run(s)" in texts["podstack.show_metrics([r.id for r in runs], smoothing=0.6)"]
    assert "1,000,000 points" in texts["podstack.show_metrics([long_run.id])"]
    assert "2 dataset(s) -> 3 run(s) -> 3 version(s)" in texts['podstack.show_lineage("digits-mlp")']
    track = next(c for c in code if c.source.startswith("%%track"))
    assert any(WIDGET in o.get("data", {}) for o in track.outputs), "%%track drew no live chart"
    gpu = next(c for c in code if c.source.startswith("%%gpu"))
    assert any(WIDGET in o.get("data", {}) for o in gpu.outputs) and "ran in process" in "".join(
        o.get("text", "") for o in gpu.outputs)
