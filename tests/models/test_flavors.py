"""Real serialization of small models each test builds: save_model / load_model_from_dir and
registry.log_model / load_model."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from podstack import registry
from podstack_jupyter.errors import (ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError,
                                     SerializationError)
from podstack_jupyter.models import MANIFEST, detect_framework, load_model_from_dir, read_manifest, save_model


class Scaler:
    """A plain Python model: the pickle fallback."""

    def __init__(self, factor):
        self.factor = factor

    def predict(self, x):
        return [v * self.factor for v in x]


class Exploit:
    """Unpickling this creates ``path``: proof that a pickle was executed."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def round_trip(model, tmp_path, **kw):
    framework = save_model(model, tmp_path / "saved", **kw)
    return framework, load_model_from_dir(tmp_path / "saved")


def manifest_of(folder):
    return json.loads((folder / MANIFEST).read_text())


# -- pickle ---------------------------------------------------------------------------------------
def test_pickle_fallback_and_its_manifest(tmp_path):
    framework, loaded = round_trip(Scaler(3), tmp_path)
    assert framework == "pickle" and loaded.predict([1, 2]) == [3, 6]
    manifest = manifest_of(tmp_path / "saved")
    pkl = (tmp_path / "saved" / "model.pkl").read_bytes()
    assert manifest["files"] == {"model.pkl": {"sha256": hashlib.sha256(pkl).hexdigest(), "size": len(pkl)}}
    assert manifest["framework"] == "pickle" and manifest["class"] == f"{__name__}.Scaler"
    assert manifest["python"] == ".".join(map(str, sys.version_info[:3]))
    assert "cloudpickle" in manifest["libraries"] and manifest["created_at"].endswith("+00:00")
    assert read_manifest(tmp_path / "saved") == manifest


def test_a_model_that_cannot_be_pickled_leaves_nothing_behind(tmp_path):
    with pytest.raises(SerializationError, match="cannot save builtins.dict as 'pickle'.*_thread.lock.*Nothing was written"):
        save_model({"lock": threading.Lock()}, tmp_path / "saved")
    assert not (tmp_path / "saved").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(SerializationError):
        save_model(threading.Lock(), tmp_path / "empty")
    assert list((tmp_path / "empty").iterdir()) == []


def test_save_refuses_a_folder_that_already_holds_files(tmp_path):
    save_model(Scaler(1), tmp_path / "saved")
    with pytest.raises(InvalidArgumentError, match="not an empty folder"):
        save_model(Scaler(2), tmp_path / "saved")
    assert load_model_from_dir(tmp_path / "saved").factor == 1


# -- sklearn --------------------------------------------------------------------------------------
def test_sklearn_round_trip(tmp_path):
    linear_model = pytest.importorskip("sklearn.linear_model")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x @ [1.0, -2.0, 0.5] > 0).astype(int)
    model = linear_model.LogisticRegression().fit(x, y)
    framework, loaded = round_trip(model, tmp_path)
    assert framework == "sklearn" and type(loaded) is type(model)
    assert np.array_equal(loaded.predict_proba(x), model.predict_proba(x))
    assert manifest_of(tmp_path / "saved")["libraries"]["sklearn"] == __import__("sklearn").__version__


# -- pytorch --------------------------------------------------------------------------------------
def _torch():
    return pytest.importorskip("torch")


def make_net(torch):
    class TwoLayer(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.hidden, self.out = torch.nn.Linear(4, 3), torch.nn.Linear(3, 1)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x)))

    torch.manual_seed(0)
    return TwoLayer


def test_pytorch_module_saved_as_state_dict_and_whole_module(tmp_path):
    torch = _torch()
    TwoLayer = make_net(torch)
    net = TwoLayer()
    framework, loaded = round_trip(net, tmp_path)
    probe = torch.randn(5, 4)
    assert framework == "pytorch" and type(loaded).__name__ == "TwoLayer"
    assert torch.equal(loaded(probe), net(probe))
    saved = tmp_path / "saved"
    assert set(manifest_of(saved)["files"]) == {"model.pt", "module.pt"}
    # model.pt is the portable copy: a plain state_dict your own code can load safely
    rebuilt = TwoLayer()
    rebuilt.load_state_dict(torch.load(saved / "model.pt", weights_only=True))
    assert torch.equal(rebuilt(probe), net(probe))
    # module.pt rebuilds it in a process that has never seen the class's code (defined here, in a test)
    torch.save(probe, tmp_path / "probe.pt")
    script = ("import torch\nfrom podstack_jupyter.models import load_model_from_dir\n"
              f"net = load_model_from_dir({str(saved)!r})\n"
              f"torch.save(net(torch.load({str(tmp_path / 'probe.pt')!r})), {str(tmp_path / 'out.pt')!r})\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=300, cwd=tmp_path)
    assert torch.equal(torch.load(tmp_path / "out.pt"), net(probe))


def test_pytorch_state_dict(tmp_path):
    torch = _torch()
    net = torch.nn.Linear(4, 2)
    framework, weights = round_trip(net.state_dict(), tmp_path)
    assert framework == "pytorch" and isinstance(weights, dict)
    assert torch.equal(weights["weight"], net.weight) and set(manifest_of(tmp_path / "saved")["files"]) == {"model.pt"}


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")  # deprecated, yet users still have such models
def test_pytorch_torchscript_module(tmp_path):
    torch = _torch()
    net = torch.nn.Linear(4, 2)
    scripted = torch.jit.script(net)
    framework = save_model(scripted, tmp_path / "scripted")
    loaded = load_model_from_dir(tmp_path / "scripted")
    probe = torch.randn(3, 4)
    assert framework == "pytorch" and torch.equal(loaded(probe), net(probe))


def test_tampered_torch_module_is_refused_without_running_it(tmp_path):
    torch = _torch()
    save_model(torch.nn.Linear(2, 2), tmp_path / "saved")
    marker = tmp_path / "pwned"
    torch.save(Exploit(marker), tmp_path / "saved" / "module.pt")
    with pytest.raises(ArtifactIntegrityError, match="'module.pt'.*does not match"):
        load_model_from_dir(tmp_path / "saved")
    assert not marker.exists()
    torch.load(tmp_path / "saved" / "module.pt", weights_only=False)  # what loading it blindly would do
    assert marker.exists()


# -- huggingface ----------------------------------------------------------------------------------
def tiny_bert(transformers, cls_name="BertModel", **extra):
    config = transformers.BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=37, vocab_size=100, **extra)
    return getattr(transformers, cls_name)(config).eval()


def tiny_tokenizer(transformers):
    tokens = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "gpu", "cell", "notebook"]
    return transformers.BertTokenizer(vocab={t: i for i, t in enumerate(tokens)})


def test_huggingface_model_saved_and_loaded_offline(tmp_path, monkeypatch):
    transformers = pytest.importorskip("transformers")
    torch = _torch()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    model = tiny_bert(transformers)
    framework, loaded = round_trip(model, tmp_path)
    ids = torch.tensor([[1, 5, 7, 2]])
    assert framework == "huggingface" and type(loaded).__name__ == "BertModel"
    with torch.no_grad():
        assert torch.allclose(loaded(ids).last_hidden_state, model(ids).last_hidden_state)
    assert "model.safetensors" in manifest_of(tmp_path / "saved")["files"]


def test_huggingface_model_with_its_tokenizer(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch = _torch()
    model = tiny_bert(transformers, "BertForSequenceClassification", num_labels=3)
    tokenizer = tiny_tokenizer(transformers)
    assert detect_framework((model, tokenizer)) == "huggingface"
    framework, (loaded, loaded_tok) = round_trip((model, tokenizer), tmp_path)
    text = "gpu notebook cell"
    assert type(loaded).__name__ == "BertForSequenceClassification"
    assert loaded_tok(text)["input_ids"] == tokenizer(text)["input_ids"] == [2, 5, 7, 6, 3]
    batch = loaded_tok(text, return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(loaded(**batch).logits, model(**batch).logits)
    save_model({"model": model, "tokenizer": tokenizer}, tmp_path / "as-dict")
    assert set(load_model_from_dir(tmp_path / "as-dict")) == {"model", "tokenizer"}


# -- tensorflow / keras ---------------------------------------------------------------------------
@pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")  # numpy vs keras-on-torch
def test_keras_model_round_trip_and_load_in_a_fresh_process(tmp_path, monkeypatch):
    if "keras" not in sys.modules and not os.environ.get("KERAS_BACKEND"):
        try:  # the test runs wherever Keras has a backend: TensorFlow, or torch
            import tensorflow  # noqa: F401
        except ImportError:
            monkeypatch.setenv("KERAS_BACKEND", "torch")
    keras = pytest.importorskip("keras")
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="relu"), keras.layers.Dense(1)])
    x = np.random.default_rng(1).normal(size=(6, 4)).astype("float32")
    framework, loaded = round_trip(model, tmp_path)
    assert framework == "tensorflow"  # even on the torch backend, where it is also an nn.Module
    expected = np.asarray(model.predict(x, verbose=0))
    assert np.allclose(np.asarray(loaded.predict(x, verbose=0)), expected)
    np.save(tmp_path / "x.npy", x)
    # a process that never imported Keras and has no KERAS_BACKEND loads it with the backend it was saved on
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    script = ("import sys, numpy as np, warnings; warnings.simplefilter('ignore')\n"
              "from podstack_jupyter.models import load_model_from_dir\n"
              f"m = load_model_from_dir({str(tmp_path / 'saved')!r})\n"
              f"np.save({str(tmp_path / 'y.npy')!r}, np.asarray(m.predict(np.load({str(tmp_path / 'x.npy')!r}), verbose=0)))\n")
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=300)
    assert np.allclose(np.load(tmp_path / "y.npy"), expected)


# -- integrity and bad input ----------------------------------------------------------------------
def test_tampered_pickle_is_refused_without_running_it(tmp_path):
    save_model(Scaler(2), tmp_path / "saved")
    marker = tmp_path / "pwned"
    (tmp_path / "saved" / "model.pkl").write_bytes(pickle.dumps(Exploit(marker)))
    with pytest.raises(ArtifactIntegrityError, match="does not match"):
        load_model_from_dir(tmp_path / "saved")
    assert not marker.exists()
    with pytest.raises(ArtifactIntegrityError):  # nor with a framework override
        load_model_from_dir(tmp_path / "saved", framework="sklearn")
    assert not marker.exists()
    pickle.loads((tmp_path / "saved" / "model.pkl").read_bytes())  # the file really is an exploit
    assert marker.exists()


def test_missing_extra_and_damaged_files_are_refused(tmp_path):
    saved = tmp_path / "saved"
    save_model(Scaler(2), saved)
    (saved / "pytorch_model.bin").write_bytes(b"slipped in later")
    with pytest.raises(ArtifactIntegrityError, match="not recorded.*pytorch_model.bin"):
        load_model_from_dir(saved)
    (saved / "pytorch_model.bin").unlink()
    manifest = manifest_of(saved)
    (saved / "model.pkl").rename(tmp_path / "moved.pkl")
    with pytest.raises(ArtifactIntegrityError, match="'model.pkl'.* is missing"):
        load_model_from_dir(saved)
    (tmp_path / "moved.pkl").rename(saved / "model.pkl")
    (saved / MANIFEST).write_text("{not json")
    with pytest.raises(ArtifactIntegrityError, match="damaged"):
        load_model_from_dir(saved)
    manifest["files"]["../../outside.pkl"] = {"sha256": "0" * 64}
    (saved / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ArtifactIntegrityError, match="outside the model folder"):
        load_model_from_dir(saved)
    (saved / MANIFEST).unlink()
    with pytest.raises(InvalidArgumentError, match="holds no podstack_model.json.*model.pkl"):
        load_model_from_dir(saved)
    with pytest.raises(ArtifactNotFoundError, match="does not exist"):
        load_model_from_dir(tmp_path / "nowhere")


def test_unknown_or_mismatched_framework_names_the_valid_ones(tmp_path):
    with pytest.raises(InvalidArgumentError, match="valid frameworks are: pytorch, tensorflow, sklearn, huggingface, pickle"):
        save_model(Scaler(1), tmp_path / "a", framework="caffe")
    assert not (tmp_path / "a").exists()
    save_model(Scaler(1), tmp_path / "b")
    with pytest.raises(InvalidArgumentError, match="valid frameworks are"):
        load_model_from_dir(tmp_path / "b", framework="onnx")
    with pytest.raises(InvalidArgumentError, match="saved as 'pickle'.*cannot be loaded as 'pytorch'"):
        load_model_from_dir(tmp_path / "b", framework="pytorch")
    assert load_model_from_dir(tmp_path / "b", framework="sklearn").factor == 1  # the same file format
    with pytest.raises(InvalidArgumentError, match="framework='huggingface' needs a transformers model.*'pickle'"):
        save_model(Scaler(1), tmp_path / "c", framework="huggingface")
    assert not (tmp_path / "c").exists()
    with pytest.raises(InvalidArgumentError, match="directory must be a folder path"):
        save_model(Scaler(1), 42)


def test_detection_never_imports_a_framework():
    script = ("import sys\nfrom podstack_jupyter.models import detect_framework, save_model, load_model_from_dir\n"
              "assert detect_framework(object()) == 'pickle'\nassert detect_framework({'w': [1.0]}) == 'pickle'\n"
              "heavy = {'torch', 'transformers', 'tensorflow', 'keras', 'sklearn'} & set(sys.modules)\n"
              "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)


# -- through the registry -------------------------------------------------------------------------
def test_log_register_and_load_from_another_machine(tmp_path, podstack_home):
    linear_model = pytest.importorskip("sklearn.linear_model")
    x = np.arange(10, dtype=float).reshape(-1, 1)
    model = linear_model.LinearRegression().fit(x, 3 * x.ravel())
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


def test_pytorch_model_through_the_registry_and_a_corrupted_store(tmp_path, podstack_home):
    torch = _torch()
    net = torch.nn.Linear(3, 2)
    with registry.start_run("torch-train") as run:
        registry.log_model(net)
    registry.register_model("linear", run_id=run.id)
    probe = torch.randn(4, 3)
    assert torch.equal(registry.load_model("linear")(probe), net(probe))
    module = next(a for a in registry.list_artifacts(run.id) if a["path"] == "model/module.pt")
    blob = podstack_home / "artifacts" / "blobs" / module["etag"][:2] / module["etag"][2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"corrupted on disk")
    shutil.rmtree(podstack_home / "model-cache")
    with pytest.raises(ArtifactIntegrityError, match="corrupt"):
        registry.load_model("linear")
