"""Tracking tried the way a new user tries it: a training script, a notebook, a DataFrame, a sklearn model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from nbclient import NotebookClient
from nbformat.v4 import new_code_cell, new_notebook

from podstack_jupyter import registry
from podstack_jupyter.errors import ExperimentNotFoundError

pytest.importorskip("pandas")
pytest.importorskip("sklearn")

_SCRIPT = textwrap.dedent("""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import SGDClassifier
    from podstack import registry

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"x1": rng.normal(size=400), "x2": rng.normal(size=400)})
    df["label"] = (df.x1 + 0.5 * df.x2 > 0).astype(int)
    train, test = df.iloc[:300], df.iloc[300:]
    train.to_csv("train.csv", index=False)

    registry.set_experiment("new-user")
    with registry.start_run("sgd-baseline", tags={"owner": "me"}) as run:
        registry.log_dataset("toy", path="train.csv", df=train, context="training")
        registry.log_dataset("toy-test", df=test, context="test")
        registry.log_params({"alpha": np.float64(1e-4), "epochs": np.int64(20), "classes": [0, 1]})
        clf = SGDClassifier(alpha=1e-4, loss="log_loss", random_state=0)
        for epoch in range(20):
            clf.partial_fit(train[["x1", "x2"]], train.label, classes=[0, 1])
            registry.log_metrics({"accuracy": clf.score(test[["x1", "x2"]], test.label)}, step=epoch)
        registry.log_metric("final_accuracy", np.float32(clf.score(test[["x1", "x2"]], test.label)))
        registry.log_model(clf, artifact_path="model")
    version = registry.register_model("toy-clf", run_id=run.id)
    registry.set_model_stage("toy-clf", version.version, "production")
    print(run.id, clf.score(test[["x1", "x2"]], test.label))
""")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_training_script_then_its_model_and_runs_from_elsewhere(store_url, podstack_home, tmp_path):
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    done = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    run_id, accuracy = done.stdout.split()
    run = registry.get_run(run_id)
    assert run.status == "completed" and run.tags == {"owner": "me"}
    assert run.params["alpha"] == "0.0001" and run.params["epochs"] == "20" and run.params["classes"] == "[0, 1]"
    assert run.metrics["accuracy"] == float(accuracy) and len(registry.get_metric_history(run_id, "accuracy")) == 20
    datasets = {d.name: d for d in registry.get_run_datasets(run_id)}
    assert datasets["toy"].profile["num_rows"] == 300 and datasets["toy-test"].schema["label"] == "int64"
    model = registry.load_model("toy-clf", stage="production")  # another process, another place
    assert type(model).__name__ == "SGDClassifier" and model.n_features_in_ == 2
    frame = registry.search_runs(filter="metrics.accuracy > 0.5", output="pandas")
    assert frame[["name", "params.alpha"]].values.tolist() == [["sgd-baseline", "0.0001"]]
    with pytest.raises(ExperimentNotFoundError, match="is the name of experiment .*pass its id"):
        registry.search_runs(experiment_id="new-user")  # a name where an id goes: said, not an empty list
    podstack = shutil.which("podstack", path=str(Path(sys.executable).parent))
    shown = subprocess.run([podstack, "runs", "show", run_id[:8], "--json"], env=env, capture_output=True, text=True,
                           timeout=60)
    assert json.loads(shown.stdout)["metrics"]["final_accuracy"] == pytest.approx(float(accuracy), rel=1e-6)


_CELLS = [
    "%load_ext podstack\n%podstack",
    """from podstack import registry, events
import pandas as pd
seen, ended = [], []
events.subscribe("metrics.logged", lambda e: seen.append((e.data["key"], e.data["steps"], e.data["values"])))
events.subscribe("run.ended", lambda e: ended.append(e.data["status"]))
lr = 0.05
df = pd.DataFrame({"a": range(10), "b": [x * 2.0 for x in range(10)]})""",
    """%%track --name nb-run --params lr --tag source=notebook
registry.log_dataset("frame", df=df)
for step in range(5):
    registry.log_metrics({"loss": 1 / (step + 1)}, step=step)
registry.log_metric("lr_used", lr)""",
    "print(sorted(seen), ended)",
    """frame = registry.search_runs(output="pandas")
print(frame[["name", "status", "params.lr", "metrics.loss", "tags.source"]].values.tolist())""",
    """try:
    registry.init(api_key="my-key", project_id="p")
except Exception as exc:
    print(type(exc).__name__)""",
    """%%track --name will-fail
registry.log_param("x", 1)
raise ValueError("bad epoch")""",
    """print(registry.search_runs(filter="name = 'will-fail'")[0].status, ended)""",
]


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_notebook_tracks_cells_and_hears_every_point(store_url, podstack_home, tmp_path):
    nb = new_notebook(cells=[new_code_cell(c) for c in _CELLS])
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    NotebookClient(nb, kernel_name="python3", timeout=120, allow_errors=True,
                   resources={"metadata": {"path": str(tmp_path)}}).execute(env=env)
    text = ["".join(o.get("text", "") for o in c.outputs if o.output_type == "stream") for c in nb.cells]
    assert f"store:     sqlite:///{podstack_home / 'podstack.db'}" in text[0]
    assert text[3].strip() == ("[('loss', [0, 1, 2, 3, 4], [1.0, 0.5, 0.3333333333333333, 0.25, 0.2]), "
                               "('lr_used', [0], [0.05])] ['completed']")
    assert text[4].strip() == "[['nb-run', 'completed', '0.05', 0.2, 'notebook']]"
    assert text[5].strip() == "ConfigurationError"
    assert [o.ename for o in nb.cells[6].outputs if o.output_type == "error"] == ["ValueError"]
    assert text[7].strip() == "failed ['completed', 'failed']"
    (run,) = registry.search_runs(filter="name = 'nb-run'")
    assert registry.get_run_datasets(run.id)[0].profile == {"num_rows": 10, "num_features": 2}
