"""The ModelRegistryClient (stateless, by name or id), its events, and the planes leaning one way.

Runs on SQLite and on the PostgreSQL server of the tracking suite (its fixtures, loaded here).
"""

from __future__ import annotations

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from podstack_jupyter import events, registry
from podstack_jupyter.artifacts import open_repository
from podstack_jupyter.errors import InvalidArgumentError, ModelNotFoundError, RunNotFoundError
from podstack_jupyter.models import ModelRegistryClient
from podstack_jupyter.tracking import TrackingClient, open_store

_spec = importlib.util.spec_from_file_location("_tracking_fixtures", Path(__file__).parents[1] / "tracking" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
store_url = _fixtures.store_url  # every test here: both databases (postgres_server: tests/conftest.py)

PACKAGE = Path(__file__).parents[2] / "podstack_jupyter"


@pytest.fixture
def clients(store_url, tmp_path):
    store = open_store(store_url)
    tracking = TrackingClient(store, open_repository(tmp_path / "artifacts"))
    yield tracking, ModelRegistryClient(tracking)
    store.close()


@pytest.fixture
def heard():
    seen = []
    with events.subscribe("model", lambda e: seen.append((e.topic, e.data))):
        yield seen


def test_versions_stages_and_aliases_by_name_or_id(clients, heard):
    tracking, models = clients
    experiment = tracking.ensure_experiment("e")
    runs = [tracking.create_run(experiment.id, name=f"train-{n}") for n in range(3)]
    created = models.create_registered_model("clf", description="a classifier")
    with pytest.raises(InvalidArgumentError, match="already exists"):
        models.create_registered_model("clf")
    assert models.ensure_registered_model("clf").id == created.id
    for run in runs:
        models.register_model("clf", run_id=run["id"])
    assert [v.version for v in models.get_registered_model(created.id).versions] == [1, 2, 3]
    models.set_model_stage("clf", 1, "production")
    now = models.set_model_stage(created.id, 2, "production", archive_existing=True)
    assert now.stage == "production" and models.get_model_version("clf", version=1).stage == "archived"
    models.set_model_alias("clf", "champion", 2)
    assert models.get_model_version("clf", alias="champion").run_id == runs[1]["id"]
    assert models.get_model_version("clf", stage="production").version == 2
    assert models.get_model_version("clf").version == 3
    models.delete_model_alias("clf", "champion")
    assert [(t, d) for t, d in heard] == [
        ("model.version_created", {"model": "clf", "version": 1}),
        ("model.version_created", {"model": "clf", "version": 2}),
        ("model.version_created", {"model": "clf", "version": 3}),
        ("model.stage_changed", {"model": "clf", "version": 1, "stage": "production"}),
        ("model.stage_changed", {"model": "clf", "version": 1, "stage": "archived"}),
        ("model.stage_changed", {"model": "clf", "version": 2, "stage": "production"}),
        ("model.alias_changed", {"model": "clf", "alias": "champion", "version": 2}),
        ("model.alias_changed", {"model": "clf", "alias": "champion", "version": None}),
    ]
    lineage = models.get_model_lineage("clf")
    assert [(v["version"], v["run_name"]) for v in lineage["versions"]] == [(3, "train-2"), (2, "train-1"),
                                                                         (1, "train-0")]


def test_what_does_not_exist_is_refused_and_nothing_changes(clients, heard):
    tracking, models = clients
    with pytest.raises(ModelNotFoundError, match="no model is registered yet"):
        models.get_registered_model("ghost")
    with pytest.raises(RunNotFoundError):
        models.register_model("clf", run_id="no-such-run")
    assert models.list_registered_models() == []  # the refused version did not leave a model behind
    models.create_model_version(models.ensure_registered_model("clf").id)
    for call, error in [(lambda: models.set_model_stage("clf", 2, "staging"), "no version 2"),
                        (lambda: models.set_model_stage("clf", 1, "live"), "stage 'live' is not valid"),
                        (lambda: models.set_model_alias("clf", "7", 1), "looks like a version number"),
                        (lambda: models.set_model_alias("clf", "best", 10 ** 20), "version must be a version number"),
                        (lambda: models.delete_model_alias("clf", "best"), "has no alias 'best'"),
                        (lambda: models.create_model_version("clf", source="model"), "give run_id= too")]:
        with pytest.raises((InvalidArgumentError, ModelNotFoundError), match=error):
            call()
    model = models.get_registered_model("clf")
    assert [(v.version, v.stage) for v in model.versions] == [(1, "development")] and model.aliases == {}
    assert [t for t, _ in heard] == ["model.version_created"]


def test_log_and_load_a_model_through_the_clients(clients, tmp_path):
    tracking, models = clients
    run = tracking.create_run(tracking.ensure_experiment("e").id)
    logged = models.log_model(run["id"], {"weights": [1, 2]}, framework="pickle", metadata={"acc": 0.9})
    assert logged["params"] == {"podstack.model.framework": "pickle", "podstack.model.artifact_path": "model",
                                "acc": "0.9"}
    version = models.register_model("tiny", run_id=run["id"])
    assert (version.source, version.framework) == ("model", "pickle")
    assert models.load_model("tiny", version=1, cache_dir=tmp_path / "cache") == {"weights": [1, 2]}
    assert (tmp_path / "cache" / version.model_id / "1" / "podstack_model.json").is_file()


def test_the_notebook_registry_uses_the_same_rules(heard):
    with registry.start_run("train") as run:
        registry.log_model({"w": 1}, framework="pickle")
        assert run.params["podstack.model.framework"] == "pickle"  # the live run sees what log_model recorded
        version = registry.register_model("m")  # the active run's model
    assert version.run_id == run.id and version.source == "model"
    registry.set_model_stage("m", 1, "staging")
    assert registry.load_model("m", stage="staging") == {"w": 1}
    assert registry.model_client().get_model_version("m").stage == "staging"
    assert [t for t, _ in heard] == ["model.version_created", "model.stage_changed"]


def _imported_modules(path: Path) -> set:
    """Modules a source file imports (absolute names; relative ones resolved against its package)."""
    package = path.relative_to(PACKAGE.parent).with_suffix("").parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = list(package[:len(package) - node.level + 1]) if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            found.add(module)
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_tracking_never_imports_models_and_plugs_into_compute_only_through_its_hooks(store_url):
    for path in sorted((PACKAGE / "tracking").rglob("*.py")):
        imported = _imported_modules(path)
        assert not any(m.startswith("podstack_jupyter.models") for m in imported), f"{path} imports models"
        compute = {m for m in imported if m.startswith("podstack_jupyter.compute")}
        assert compute <= {"podstack_jupyter.compute", "podstack_jupyter.compute.hooks"}, f"{path}: {compute}"
        if "podstack_jupyter.compute" in compute:
            assert "podstack_jupyter.compute.hooks" in compute, f"{path} imports compute beyond its hooks"
    code = ("import sys; import podstack_jupyter.tracking.registry, podstack_jupyter.tracking.client, "
            "podstack_jupyter.tracking._cli; print(sorted(m for m in sys.modules if m.startswith("
            "('podstack_jupyter.models', 'podstack_jupyter.compute.session', 'podstack_jupyter.magics'))))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
