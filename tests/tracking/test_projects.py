"""Projects: two views of one database see nothing of each other (what the team server relies on)."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa

from podstack_jupyter.artifacts import open_repository
from podstack_jupyter.errors import ExperimentNotFoundError, ModelNotFoundError, RunNotFoundError
from podstack_jupyter.tracking import TrackingClient
from podstack_jupyter.tracking.store.sql import SQLStore


@pytest.fixture
def two_projects(store_url, tmp_path):
    store = SQLStore(store_url)
    a, b = store.for_project("project-a"), store.for_project("project-b")
    yield (TrackingClient(a, open_repository(tmp_path / "a")), TrackingClient(b, open_repository(tmp_path / "b")))
    a.close()
    b.close()
    store.close()


def test_names_are_per_project_and_nothing_of_one_project_is_seen_from_the_other(two_projects, tmp_path):
    a, b = two_projects
    exp_a, exp_b = a.ensure_experiment("sweep"), b.ensure_experiment("sweep")
    assert exp_a.id != exp_b.id
    run = a.create_run(exp_a.id, name="only-a", tags={"t": "1"})
    a.log_params(run["id"], {"lr": 0.1})
    a.log_metrics(run["id"], {"loss": 0.5})
    (tmp_path / "f.txt").write_text("data")
    a.log_artifact(run["id"], tmp_path / "f.txt")
    a.log_dataset(run["id"], "ds", path=str(tmp_path / "f.txt"))

    assert [e.name for e in b.list_experiments()] == ["sweep"] and b.get_experiment_by_name("sweep").id == exp_b.id
    with pytest.raises(ExperimentNotFoundError):
        b.get_experiment(exp_a.id)
    with pytest.raises(ExperimentNotFoundError):
        b.create_run(exp_a.id)
    with pytest.raises(RunNotFoundError):
        b.create_run(exp_b.id, parent_run_id=run["id"])
    assert b.search_runs() == [] and b.store.get_runs([run["id"]]) == [] and not b.store.has_run(run["id"])
    for call in (lambda: b.get_run(run["id"]), lambda: b.log_params(run["id"], {"x": 1}),
                 lambda: b.set_tags(run["id"], {"x": 1}), lambda: b.delete_tag(run["id"], "t"),
                 lambda: b.end_run(run["id"]), lambda: b.log_metrics(run["id"], {"loss": 1.0}),
                 lambda: b.get_metric_history(run["id"], "loss"), lambda: b.list_artifacts(run["id"]),
                 lambda: b.get_run_datasets(run["id"]), lambda: b.log_dataset(run["id"], "ds", path="s3://b/x"),
                 lambda: b.store.log_metrics([(run["id"], "loss", 1.0, 5, time.time())]),
                 lambda: b.store.get_metric_history(run["id"], "loss"), lambda: b.store.list_artifacts(run["id"]),
                 lambda: b.store.log_artifacts(run["id"], [{"path": "x", "digest": "0" * 64, "size": 1,
                                                            "created_at": 1.0}])):
        with pytest.raises(RunNotFoundError):
            call()
    # the run of project A is as it was
    stored = a.get_run(run["id"])
    assert stored["status"] == "running" and stored["params"] == {"lr": "0.1"} and stored["tags"] == {"t": "1"}
    assert stored["metrics"] == {"loss": 0.5} and len(a.get_metric_history(run["id"], "loss")) == 1
    # the same file logged in both projects: one dataset record per project
    run_b = b.create_run(exp_b.id)
    ds_a = a.get_run_datasets(run["id"])[0]
    ds_b = b.log_dataset(run_b["id"], "ds", path=str(tmp_path / "f.txt"))
    assert ds_a.digest == ds_b.digest and ds_a.id != ds_b.id


def test_models_are_per_project(two_projects):
    a, b = two_projects
    sa_, sb = a.store, b.store
    model_a = sa_.ensure_registered_model(str(uuid.uuid4()), "clf", time.time())
    model_b = sb.ensure_registered_model(str(uuid.uuid4()), "clf", time.time())
    assert model_a["id"] != model_b["id"]
    sa_.create_model_version({"id": str(uuid.uuid4()), "model_id": model_a["id"], "created_at": time.time()})
    assert sb.get_registered_model(model_id=model_a["id"]) is None
    assert [m["id"] for m in sb.list_registered_models()] == [model_b["id"]]
    assert sb.get_model_lineage(model_a["id"]) is None
    for call in (lambda: sb.create_model_version({"id": str(uuid.uuid4()), "model_id": model_a["id"],
                                                  "created_at": time.time()}),
                 lambda: sb.update_model_version(model_a["id"], 1, {"stage": "production"}, time.time()),
                 lambda: sb.set_model_alias(model_a["id"], "champion", 1),
                 lambda: sb.delete_model_alias(model_a["id"], "champion")):
        with pytest.raises(ModelNotFoundError):
            call()
    assert sa_.get_registered_model(name="clf")["versions"][0]["stage"] == "development"


def test_metric_batches_with_an_id_are_stored_once(two_projects):
    a, _ = two_projects
    run = a.create_run(a.ensure_experiment("e").id)
    points = [(run["id"], "loss", 0.5, 0, 1.0), (run["id"], "loss", 0.25, 1, 2.0)]
    assert a.store.log_metrics(points, batch_id="batch-1") is True
    assert a.store.log_metrics(points, batch_id="batch-1") is False
    assert a.store.log_metrics(points[:1], batch_id="batch-2") is True
    assert [p.step for p in a.get_metric_history(run["id"], "loss")] == [0, 0, 1]


def test_writes_naming_a_run_not_of_the_project_are_refused_whole(two_projects):
    """Params or a metric batch naming a run of another project, or no run at all: RunNotFoundError
    naming it, and nothing of the call is written (a refused batch id is not taken either)."""
    a, b = two_projects
    run = a.create_run(a.ensure_experiment("e").id)["id"]
    foreign, ghost = b.create_run(b.ensure_experiment("e").id)["id"], str(uuid.uuid4())
    batch = uuid.uuid4().hex
    for missing in (foreign, ghost):
        series = [(run, "loss", [0], [0.5], [1.0]), (missing, "loss", [0], [0.5], [1.0])]
        with pytest.raises(RunNotFoundError, match=missing):
            a.store.log_metric_series(series, batch_id=batch)
        with pytest.raises(RunNotFoundError, match=missing):
            a.store.log_params(missing, {"lr": "0.1"})
    assert a.get_metric_history(run, "loss") == [] and a.get_run(run)["metrics"] == {}
    assert b.get_run(foreign)["params"] == {} and b.get_run(foreign)["metrics"] == {}
    assert a.store.log_metric_series([(run, "loss", [0], [0.5], [1.0])], batch_id=batch) is True
    assert [p.value for p in a.get_metric_history(run, "loss")] == [0.5]


def test_a_database_from_before_projects_is_the_default_project(store_url, podstack_home, request):
    """A 0002 database (before both the richer model registry, 0003m, and projects, 0003) upgrades
    through both: its records are the project ``default``'s, its versions get their automatic names."""
    import uuid

    from alembic import command

    if store_url.startswith("postgresql"):  # the suite's databases are copies of a migrated one: start empty
        server = request.getfixturevalue("postgres_server")
        name = f"empty_{uuid.uuid4().hex[:8]}"
        server.admin(f"CREATE DATABASE {name}")
        store_url = server.url(name)

    from podstack_jupyter.tracking.store.sql import _alembic_config, _engine_for

    engine = _engine_for(store_url)
    with engine.begin() as conn:
        command.upgrade(_alembic_config(conn), "0002")
        conn.execute(sa.text("INSERT INTO experiments (id, name, tags, created_at) VALUES ('e1', 'old', '{}', 1.0)"))
        conn.execute(sa.text("INSERT INTO runs (id, experiment_id, name, status, start_time) "
                             "VALUES ('r1', 'e1', 'old-run', 'completed', 1.0)"))
        conn.execute(sa.text("INSERT INTO registered_models (id, name, tags, created_at, updated_at) "
                             "VALUES ('m1', 'old-model', '{}', 1.0, 1.0)"))
        conn.execute(sa.text("INSERT INTO model_versions (id, model_id, version, run_id, stage, created_at, updated_at) "
                             "VALUES ('v1', 'm1', 1, 'r1', 'production', 1.0, 1.0)"))
    engine.dispose()
    store = SQLStore(store_url)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0004"
    assert store.get_experiment_by_name("old")["id"] == "e1" and store.get_run("r1")["name"] == "old-run"
    model = store.get_registered_model(name="old-model")
    assert model["id"] == "m1" and model["last_version"] == 1
    assert [(v["version"], v["name"], v["stage"]) for v in model["versions"]] == [(1, "_v1", "production")]
    store.create_artifact_tag("release", "r1", 3.0)
    other = store.for_project("p2")
    assert other.get_experiment_by_name("old") is None and other.get_registered_model(name="old-model") is None
    assert other.get_artifact_tag("release") is None and other.page_registered_models("id", True, 10, None) == []
    assert other.ensure_experiment("e2", "old", 2.0)["id"] == "e2"  # the same name in another project
    assert store.get_artifact_tag("release")["run_id"] == "r1"
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT name FROM projects")).scalars().all() == ["default"]
    store.close()
