"""The example notebooks and the README's first example, executed headless in a real kernel as a user would."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).parent.parent
NOTEBOOKS = ROOT / "examples" / "notebooks"


def execute(name: str | nbformat.NotebookNode) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / name, as_version=4) if isinstance(name, str) else name
    NotebookClient(nb, kernel_name="python3", timeout=300, resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    return nb


def outputs_of(cell) -> tuple[str, list]:
    text = "".join(o.get("text", "") for o in cell.outputs if o.output_type == "stream")
    return text, cell.outputs


def test_quickstart_runs_end_to_end():
    nb = execute("quickstart.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    remote_text, remote_outputs = outputs_of(code[1])
    assert "[0 3 6]" in remote_text and "running in process" in remote_text
    assert any(o.output_type == "execute_result" and "1499998500000" in o.data["text/plain"] for o in remote_outputs)
    assert "y came back: [ 0  3  6  9 12]" in outputs_of(code[2])[0]
    assert "[1 2 3] 500000500000" in outputs_of(code[4])[0]
    assert "1.0" in outputs_of(code[5])[0]
    gpus = [o for o in code[6].outputs if o.output_type == "execute_result"][0].data
    assert "PODSTACK_LOCAL_GPUS" in gpus["text/plain"] or "backend: local" in gpus["text/plain"]
    sessions = [o for o in code[7].outputs if o.output_type == "execute_result"][0].data
    assert "| id | state |" in sessions["text/markdown"] and "idle" in sessions["text/plain"]
    assert "<table" not in str(sessions)


def test_readme_first_example_runs_as_shown():
    """The README's opening cells, verbatim, on the embedded default (no GPU, nothing configured)."""
    readme = (ROOT / "README.md").read_text()
    first, second = re.findall(r"```python\n(.*?)```", readme, flags=re.S)[:2]
    assert first.startswith("%load_ext podstack") and second.startswith("%%gpu\n")
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(first), nbformat.v4.new_code_cell(second)])
    execute(nb)
    text, outputs = outputs_of(nb.cells[1])
    assert "[0 3 6]" in text
    (result,) = [o.data["text/plain"] for o in outputs if o.output_type == "execute_result"]
    assert "1499998500000" in result


def test_gpu_cases_notebook_shows_images_streams_and_errors():
    pytest.importorskip("matplotlib")
    nb = execute("gpu_cases.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    plot = code[1].outputs
    assert any(o.output_type == "display_data" and "image/png" in o.data for o in plot), plot
    streams = code[2].outputs
    streams = [o for o in streams if o.output_type == "stream"]  # %%gpu's status line is a widget output
    assert [o.text for o in streams if o.name == "stdout"] and "step 2" in "".join(
        o.text for o in streams if o.name == "stdout")
    assert "a warning" in "".join(o.text for o in streams if o.name == "stderr")
    assert any("<b>fancy</b>" in o.get("data", {}).get("text/html", "") for o in code[3].outputs)
    error = [o for o in code[5].outputs if o.output_type == "error"]
    assert error and "remote failure" in "".join(error[0].traceback)
    assert "counter is still 0" in outputs_of(code[6])[0]
    missing = [o for o in code[7].outputs if o.output_type == "error"]
    assert missing and "has no H100 GPU; it has: L40S" in "".join(missing[0].traceback)


def test_julia_artifacts_notebook_binds_installs_refuses_and_publishes():
    nb = execute("julia_artifacts.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "git-tree-sha1: " in outputs_of(code[0])[0]
    binding = outputs_of(code[1])[0]
    assert "same archive twice: True" in binding and "[[Iris.download]]" in binding and "lazy = true" in binding
    installed = outputs_of(code[2])[0]
    assert "installed before: False" in installed and "True ['README', 'iris.csv']" in installed
    assert "5.1,setosa" in installed and "Fisher's iris, two rows" in installed
    assert "refused: True | installed: False" in outputs_of(code[3])[0]
    published = outputs_of(code[4])[0]
    assert "['config.json', 'weights.bin'] True" in published and '{"hidden": 8}' in published


def test_models_and_artifacts_notebook_walks_through_every_face_of_one_registry():
    pytest.importorskip("sklearn")
    nb = execute("models_and_artifacts.ipynb")
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert "working in a scratch folder: True" in outputs_of(code[0])[0]
    tagged = outputs_of(code[1])[0]
    assert "'datasets/iris/README', 'datasets/iris/train.csv', 'model/model.pkl'" in tagged
    assert "fetched by tag: ['README', 'train.csv']" in tagged and "refused: upload: tag 'iris-v1' already exists" \
        in tagged
    assert "v1 named '_v1', files of run True: True" in outputs_of(code[2])[0]
    assert "loaded predicts: [0, 1]" in outputs_of(code[2])[0]
    kubeflow = outputs_of(code[3])[0]
    assert "1.0.0 ML Team {'accuracy': 'float', 'calibrated': 'bool', 'dataset': 'str', 'epochs': 'int'}" in kubeflow
    assert "missing: None" in kubeflow and "DuplicateError: model 'fraud-detector' already has a version" in kubeflow
    assert "['fraud-detector', 'iris-classifier']" in kubeflow and "description: Updated description" in kubeflow
    info = outputs_of(code[4])[0]
    assert "Versions:  2 (latest: _v2)" in info and "Web link:  https://models.example.com/models/" in info
    assert "Tags:      base-model, experimental, production" in info
    managed = outputs_of(code[5])[0]
    assert "latest holds: weights two" in managed and "after set_latest_version: weights one" in managed
    assert managed.count("refused:") == 3 and "reserved for automatic versions" in managed
    last = outputs_of(code[6])[0]
    assert "['demo_model_local', 'fraud-detector', 'iris-classifier']" in last
    assert "versions left: ['_v2']" in last and "after deleting fraud-detector: None" in last
