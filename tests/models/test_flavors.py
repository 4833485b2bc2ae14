"""Real serialization of small models each test builds, through log_model / load_model."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from podstack import registry
from podstack_jupyter.errors import ArtifactIntegrityError, InvalidArgumentError
from podstack_jupyter.models import MANIFEST, detect_framework, load_model_from_dir, save_model


class Scaler:
    """A plain Python model: the pickle fallback."""

    def __init__(self, factor):
        self.factor = factor

    def predict(self, x):
        return [v * self.factor for v in x]


def round_trip(model, tmp_path, **kw):
    framework = save_model(model, tmp_path / "saved", **kw)
    return framework, load_model_from_dir(tmp_path / "saved")


def test_pickle_fallback_and_manifest(tmp_path):
    framework, loaded = round_trip(Scaler(3), tmp_path)
    assert framework == "pickle" and loaded.predict([1, 2]) == [3, 6]
    manifest = json.loads((tmp_path / "saved" / MANIFEST).read_text())
    assert set(manifest["files"]) == {"model.pkl"} and manifest["class"].endswith("Scaler")


def test_sklearn_round_trip(tmp_path):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x = np.arange(20, dtype=float).reshape(-1, 1)
    model = sklearn.LinearRegression().fit(x, 2 * x.ravel() + 1)
    framework, loaded = round_trip(model, tmp_path)
    assert framework == "sklearn" and np.allclose(loaded.predict([[10.0]]), [21.0])


def test_pytorch_module_and_state_dict(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 1))
    framework, loaded = round_trip(net, tmp_path)
    probe = torch.ones(2, 4)
    assert framework == "pytorch" and torch.equal(loaded(probe), net(probe))
    assert {"model.pt", "state_dict.pt"} <= {p.name for p in (tmp_path / "saved").iterdir()}
    shutil.rmtree(tmp_path / "saved")
    framework, weights = round_trip(net.state_dict(), tmp_path)
    assert framework == "pytorch" and torch.equal(weights["0.weight"], net[0].weight)


def test_huggingface_model_saved_and_loaded_offline(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = pytest.importorskip("torch")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=37, vocab_size=100)
    model = transformers.BertModel(config).eval()
    framework, loaded = round_trip(model, tmp_path)
    ids = torch.tensor([[1, 5, 7, 2]])
    assert framework == "huggingface" and type(loaded).__name__ == "BertModel"
    with torch.no_grad():
        assert torch.allclose(loaded.eval()(ids).last_hidden_state, model(ids).last_hidden_state)


def test_tampered_pickle_is_refused_without_running_it(tmp_path):
    save_model(Scaler(2), tmp_path / "saved")
    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    import pickle

    (tmp_path / "saved" / "model.pkl").write_bytes(pickle.dumps(Exploit()))
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        load_model_from_dir(tmp_path / "saved")
    assert not marker.exists()


def test_unknown_framework_names_the_valid_ones(tmp_path):
    with pytest.raises(InvalidArgumentError, match="valid frameworks are: pytorch, tensorflow, sklearn"):
        save_model(Scaler(1), tmp_path, framework="caffe")
    assert detect_framework({"not": "tensors"}) == "pickle"


def test_log_register_and_load_from_another_machine(tmp_path, podstack_home):
    sklearn = pytest.importorskip("sklearn.linear_model")
    x = np.arange(10, dtype=float).reshape(-1, 1)
    model = sklearn.LinearRegression().fit(x, 3 * x.ravel())
    with registry.start_run("train") as run:
        logged = registry.log_model(model, metadata={"dataset": "synthetic"})
    assert logged["framework"] == "sklearn"
    assert {a["path"] for a in registry.list_artifacts(run.id)} == {"model/model.pkl", f"model/{MANIFEST}"}
    version = registry.register_model("regressor", run_id=run.id, description="3x")
    registry.set_model_stage("regressor", version.version, "production")
    shutil.rmtree(podstack_home / "model-cache", ignore_errors=True)  # a machine that never saw the files
    loaded = registry.load_model("regressor", stage="production")
    assert np.allclose(loaded.predict([[4.0]]), [12.0])
    assert registry.get_run(run.id).params["dataset"] == "synthetic"
