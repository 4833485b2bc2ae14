"""Pickle-based models load only from a manifest signed with this machine's key.

The issue's attack, reproduced: someone who can write the tracking store and the artifact store
(a GPU session could, through the old relay) puts a blob, a manifest with its sha256 and the
rows that point a production model at them; ``load_model`` then unpickled an ``os.system``
payload. Now the manifest must carry a signature only the store owner's key makes.
Runs on SQLite and on the PostgreSQL server of the tracking suite.
"""

from __future__ import annotations

import importlib.util
import json
import os
import stat
import time
from pathlib import Path

import cloudpickle
import pytest

from podstack_jupyter import config, registry
from podstack_jupyter.errors import ArtifactIntegrityError, InvalidArgumentError
from podstack_jupyter.models import MANIFEST, load_model_from_dir, read_manifest, save_model
from podstack_jupyter.models import _signing

_spec = importlib.util.spec_from_file_location("_tracking_fixtures", Path(__file__).parents[1] / "tracking" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
store_url = _fixtures.store_url  # every test here: both databases (postgres_server: tests/conftest.py)


class Payload:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch '{self.marker}'",))


def put(path: Path, content: bytes) -> dict:
    path.write_bytes(content)
    digest, size = registry.client().artifacts.put_file(path)
    return {"digest": digest, "size": size}


def plant(run_id, tmp_path, manifest: dict, pickle_bytes: bytes) -> None:
    """What an attacker with write access to both stores (but not to the key) does."""
    blob = put(tmp_path / "evil.pkl", pickle_bytes)
    manifest = json.loads(json.dumps(manifest))
    manifest["files"] = {"model.pkl": {"sha256": blob["digest"], "size": blob["size"]}}
    listed = put(tmp_path / "evil.json", json.dumps(manifest).encode())
    now = time.time()
    registry.client().store.log_artifacts(run_id, [{"path": "model/model.pkl", **blob, "created_at": now},
                                                   {"path": f"model/{MANIFEST}", **listed, "created_at": now}])


@pytest.fixture
def production(tmp_path):
    """A model logged here and moved to production: the attack's target."""
    with registry.start_run("train") as run:
        registry.log_model({"weights": [1, 2, 3]}, framework="pickle")
    version = registry.register_model("prod", run_id=run.id)
    registry.set_model_stage("prod", version.version, "production")
    assert registry.load_model("prod", stage="production") == {"weights": [1, 2, 3]}
    manifest_row = next(e for e in registry.client().store.list_artifacts(run.id) if e["path"].endswith(MANIFEST))
    with registry.client().artifacts.open_blob(manifest_row["digest"]) as f:
        manifest = json.load(f)
    return run, manifest


def signed_elsewhere(manifest, tmp_path):
    """``manifest`` signed by another machine's key (another podstack home)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PODSTACK_HOME", str(tmp_path / "other-machine"))
        config.reset()
        try:
            return _signing.sign({k: v for k, v in manifest.items() if k != "signature"})
        finally:
            config.reset()


def test_the_planted_pickle_of_the_issue_is_refused_not_run(production, tmp_path):
    run, manifest = production
    marker = tmp_path / "pwned"
    unsigned = {k: v for k, v in manifest.items() if k != "signature"}
    plant(run.id, tmp_path, unsigned, cloudpickle.dumps(Payload(marker)))
    with pytest.raises(ArtifactIntegrityError, match="refusing to load the 'pickle' model .* it is not signed.*"
                                                     "trusted=True"):
        registry.load_model("prod", stage="production")
    assert not marker.exists()


def test_a_manifest_signed_with_another_key_or_changed_after_signing_is_refused(production, tmp_path):
    run, manifest = production
    marker = tmp_path / "pwned"
    plant(run.id, tmp_path, signed_elsewhere(manifest, tmp_path), cloudpickle.dumps(Payload(marker)))
    with pytest.raises(ArtifactIntegrityError, match="signed with another key"):
        registry.load_model("prod", stage="production")
    plant(run.id, tmp_path, manifest, cloudpickle.dumps(Payload(marker)))  # our signature, other files
    with pytest.raises(ArtifactIntegrityError, match="does not match its content"):
        registry.load_model("prod", stage="production")
    assert not marker.exists()


def test_trusted_true_loads_what_you_vouch_for(production, tmp_path):
    run, manifest = production
    plant(run.id, tmp_path, signed_elsewhere(manifest, tmp_path), cloudpickle.dumps({"colleague": 1}))
    with pytest.raises(ArtifactIntegrityError):
        registry.load_model("prod")
    assert registry.load_model("prod", trusted=True) == {"colleague": 1}
    with pytest.raises(InvalidArgumentError, match="trusted must be True or False"):
        registry.load_model("prod", trusted="yes")


def test_the_key_is_random_private_and_stays_out_of_sessions(podstack_home, tmp_path, monkeypatch):
    save_model({"a": 1}, tmp_path / "m")
    key = podstack_home / _signing.KEY_FILE
    assert len(key.read_bytes()) == 32 and stat.S_IMODE(key.stat().st_mode) == 0o600
    signature = read_manifest(tmp_path / "m")["signature"]
    assert key.read_bytes().hex() not in json.dumps(signature)
    monkeypatch.setenv("PODSTACK_SESSION", "1")  # what every session kernel is marked with
    assert _signing.can_sign() is False and _signing._key(create=True) is None
    save_model({"a": 2}, tmp_path / "from-session")
    assert "signature" not in read_manifest(tmp_path / "from-session")
    monkeypatch.delenv("PODSTACK_SESSION")
    with pytest.raises(ArtifactIntegrityError, match="it is not signed"):
        load_model_from_dir(tmp_path / "from-session")
    assert load_model_from_dir(tmp_path / "m") == {"a": 1}


@pytest.mark.parametrize("framework, needs_signature", [("pickle", True), ("sklearn", True), ("torch-module", True),
                                                        ("torch-state-dict", False)])
def test_which_formats_need_a_signature(tmp_path, monkeypatch, framework, needs_signature):
    if framework.startswith("torch"):
        torch = pytest.importorskip("torch")
        model = torch.nn.Linear(2, 2) if framework == "torch-module" else torch.nn.Linear(2, 2).state_dict()
        kind = "pytorch"
    elif framework == "sklearn":
        linear_model = pytest.importorskip("sklearn.linear_model")
        model, kind = linear_model.LinearRegression(), "sklearn"
    else:
        model, kind = {"x": 1}, "pickle"
    monkeypatch.setenv("PODSTACK_SESSION", "1")
    save_model(model, tmp_path / "unsigned", framework=kind)
    monkeypatch.delenv("PODSTACK_SESSION")
    if needs_signature:
        with pytest.raises(ArtifactIntegrityError, match="loading it runs code"):
            load_model_from_dir(tmp_path / "unsigned")
        assert load_model_from_dir(tmp_path / "unsigned", trusted=True) is not None
    else:
        assert load_model_from_dir(tmp_path / "unsigned") is not None  # tensors only: weights_only=True
