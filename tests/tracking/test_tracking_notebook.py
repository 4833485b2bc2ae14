"""The end-to-end tracking example notebook, executed in a real kernel."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).parents[2] / "examples" / "notebooks" / "end_to_end_tracking.ipynb"


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_end_to_end_notebook_shows_the_lineage(store_url, podstack_home, tmp_path):
    pytest.importorskip("pandas")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    NotebookClient(nb, kernel_name="python3", timeout=120,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    code = [c for c in nb.cells if c.cell_type == "code"]
    text = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in code]
    assert "bert-finetune-v3: completed, registered as v3" in text[1]
    lineage = text[3].splitlines()
    assert lineage[0] == "v3 · production" and lineage[1].startswith("  Run: bert-finetune-v3 (")
    assert lineage[2].startswith("  └─ imdb-train  40 rows  sha256:") and lineage[3].startswith("  └─ imdb-val  5 rows")
    assert "v2 · staging" in lineage and "v1 · archived" in lineage
    assert "2 unique dataset(s) across all versions" in text[4]
    assert "Production model trained on approved data: True" in text[4]
    # the notebook wrote to this test's home
    from podstack_jupyter import registry

    assert [v.version for v in registry.get_model("sentiment-bert").versions] == [1, 2, 3]
