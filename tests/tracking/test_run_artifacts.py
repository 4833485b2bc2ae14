"""Artifacts and models through the registry, on the real artifact store and model flavors."""

from __future__ import annotations

import hashlib
import os

import pytest

from podstack_jupyter.errors import ArtifactNotFoundError, InvalidArgumentError
from podstack_jupyter import registry


def _require(module_name, attribute):
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ImportError:
        module = None
    if module is None or not hasattr(module, attribute):
        pytest.skip(f"{module_name}.{attribute} is not available yet")


@pytest.fixture(autouse=True)
def artifact_store():
    _require("podstack_jupyter.artifacts", "open_store")


@pytest.fixture
def files(tmp_path):
    (tmp_path / "model.pt").write_bytes(b"weights" * 100)
    plots = tmp_path / "plots"
    (plots / "deep").mkdir(parents=True)
    (plots / "curves.png").write_bytes(b"png")
    (plots / "deep" / "notes.txt").write_text("notes")
    return tmp_path


def test_log_list_and_download_artifacts(files, tmp_path):
    with registry.start_run("art") as run:
        registry.log_artifact(str(files / "model.pt"))
        run.log_artifact(files / "model.pt", artifact_path="weights/best.pt")
        registry.log_artifact(files / "plots")
        registry.log_artifact(files / "plots" / "curves.png", artifact_path="figures/")
    listed = registry.list_artifacts(run.id)
    assert [a["path"] for a in listed] == ["figures/curves.png", "model.pt", "plots/curves.png",
                                          "plots/deep/notes.txt", "weights/best.pt"]
    model_pt = next(a for a in listed if a["path"] == "model.pt")
    assert model_pt["size"] == 700 and model_pt["etag"] == hashlib.sha256(b"weights" * 100).hexdigest()
    assert model_pt["last_modified"].endswith("+00:00")
    assert [a["path"] for a in registry.list_artifacts(run.id, path="plots")] == ["plots/curves.png",
                                                                                 "plots/deep/notes.txt"]
    out = tmp_path / "downloads"
    single = registry.download_artifact(run.id, "weights/best.pt", str(out))
    assert single == str((out / "best.pt").resolve()) and (out / "best.pt").read_bytes() == b"weights" * 100
    folder = registry.download_artifact(run.id, "plots", out)
    assert folder == str((out / "plots").resolve()) and (out / "plots" / "deep" / "notes.txt").read_text() == "notes"
    with pytest.raises(ArtifactNotFoundError, match="no artifact 'missing'"):
        registry.download_artifact(run.id, "missing", out)


def test_bad_artifact_arguments(files):
    with registry.start_run("art"):
        with pytest.raises(InvalidArgumentError, match="does not exist"):
            registry.log_artifact(files / "nope.bin")
        with pytest.raises(InvalidArgumentError, match="relative path inside the run"):
            registry.log_artifact(files / "model.pt", artifact_path="../escape.pt")
    with pytest.raises(InvalidArgumentError, match="no active run"):
        registry.log_artifact(files / "model.pt")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_large_transfers_show_progress(store_url, tmp_path, capsys):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.write(os.urandom(1024) * (51 * 1024))
    with registry.start_run("big") as run:
        registry.log_artifact(big)
    assert "uploading" in capsys.readouterr().err
    registry.download_artifact(run.id, "big.bin", tmp_path / "out")
    assert "downloading" in capsys.readouterr().err
    assert (tmp_path / "out" / "big.bin").stat().st_size == big.stat().st_size


def test_log_model_register_and_load_from_the_registry():
    _require("podstack_jupyter.models", "save_model")
    model = {"weights": [1.0, 2.0, 3.0], "name": "tiny"}
    with registry.start_run("train") as run:
        info = registry.log_model(model, artifact_path="model", framework="pickle", metadata={"accuracy": 0.93})
    assert info["framework"] == "pickle" and info["files"] and all(f.startswith("model/") for f in info["files"])
    stored = registry.get_run(run.id)
    assert stored.params["podstack.model.framework"] == "pickle" and stored.params["accuracy"] == "0.93"
    version = registry.register_model("tiny", run_id=run.id, description="a tiny model")
    assert (version.version, version.source, version.framework) == (1, "model", "pickle")
    registry.set_model_stage("tiny", version=1, stage="production")
    registry.set_model_alias("tiny", alias="champion", version=1)
    assert registry.load_model("tiny", stage="production") == model
    assert registry.load_model("tiny", alias="champion") == model
    assert registry.load_model("tiny") == model  # from the cache this time
    with pytest.raises(InvalidArgumentError, match="mutually exclusive"):
        registry.load_model("tiny", version=1, stage="production")
