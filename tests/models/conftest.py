"""Fixtures of the model tests: stateless clients on both databases, a stand-in hub, a local HF cache."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1]))  # tests/_services

_spec = importlib.util.spec_from_file_location("_tracking_fixtures_models",
                                               Path(__file__).parents[1] / "tracking" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
POSTGRES = _fixtures.POSTGRES


@pytest.fixture(params=["sqlite", pytest.param(POSTGRES, marks=pytest.mark.postgres)])
def database(request, tmp_path):
    """A fresh tracking database URL: a SQLite file, or a new database on the PostgreSQL server."""
    if request.param == POSTGRES:
        return request.getfixturevalue("postgres_server").new_database()
    return f"sqlite:///{tmp_path / 'models.db'}"


@pytest.fixture
def clients(database, tmp_path):
    """``(TrackingClient, ModelRegistryClient)`` over ``database`` and a local artifact folder."""
    from podstack_jupyter.artifacts import open_repository
    from podstack_jupyter.models import ModelRegistryClient
    from podstack_jupyter.tracking import TrackingClient, open_store

    store = open_store(database)
    tracking = TrackingClient(store, open_repository(tmp_path / "artifacts"))
    yield tracking, ModelRegistryClient(tracking)
    store.close()


@pytest.fixture
def hf_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache of the test's own (huggingface_hub reads HF_HUB_CACHE at import)."""
    from huggingface_hub import constants

    folder = tmp_path / "hf-cache"
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(folder))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return folder


@pytest.fixture
def hub(hf_cache):
    """A stand-in Hugging Face hub on loopback with two model repos (see tests/_services/hf_hub.py)."""
    from _services.hf_hub import FakeHub

    repos = {"acme/tiny-onnx": {"config.json": b'{"hidden": 8}', "onnx/model.onnx": b"\x08\x07onnx-bytes",
                                "README.md": b"# tiny"},
             "acme/second": {"weights.bin": b"\x00" * 1000}}
    with FakeHub.started(repos) as server:
        yield server
