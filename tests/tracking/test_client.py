"""The stateless TrackingClient, used as the team server will: explicit ids, one client per store, events."""

from __future__ import annotations

import threading
import time

import pytest

from podstack_jupyter import events
from podstack_jupyter.artifacts import open_repository
from podstack_jupyter.errors import (ExperimentNotFoundError, InvalidArgumentError, PodstackError,
                                     RunNotFoundError)
from podstack_jupyter.tracking import TrackingClient, open_store
from podstack_jupyter.tracking import registry


@pytest.fixture
def client(store_url, tmp_path):
    store = open_store(store_url)
    yield TrackingClient(store, open_repository(tmp_path / "artifacts"))
    store.close()


@pytest.fixture
def heard():
    """Every event published while the test runs, as (topic, data)."""
    seen = []
    subscription = events.subscribe("*", lambda e: seen.append((e.topic, e.data)))
    yield seen
    subscription.close()


def test_a_run_by_explicit_ids_from_start_to_end(client, heard):
    experiment = client.ensure_experiment("sweep", description="lr sweep")
    assert client.ensure_experiment("sweep").id == experiment.id  # get or create
    with pytest.raises(InvalidArgumentError, match="already exists"):
        client.create_experiment("sweep")
    run = client.create_run(experiment.id, name="trial-1", tags={"team": "nlp"}, source="print(1)")
    assert run["status"] == "running" and run["tags"] == {"team": "nlp"} and run["params"] == {}
    child = client.create_run(experiment.id, parent_run_id=run["id"])
    assert child["name"] == f"run-{child['id'][:8]}" and child["parent_run_id"] == run["id"]
    assert client.log_params(run["id"], {"lr": 0.01, "layers": 3}) == {"lr": "0.01", "layers": "3"}
    client.set_tags(run["id"], {"stage": 1})
    client.delete_tag(run["id"], "team")
    client.log_metrics(run["id"], {"loss": 0.5, "acc": 0.7}, step=0)
    client.log_metrics(run["id"], {"loss": 0.25}, step=1, timestamp=1_700_000_000.5)
    client.end_run(run["id"], "completed")
    stored = client.get_run(run["id"])
    assert stored["status"] == "completed" and stored["end_time"] >= stored["start_time"]
    assert stored["params"] == {"lr": "0.01", "layers": "3"} and stored["tags"] == {"stage": "1"}
    assert stored["metrics"] == {"loss": 0.25, "acc": 0.7}
    history = client.get_metric_history(run["id"], "loss")
    assert [(p.step, p.value) for p in history] == [(0, 0.5), (1, 0.25)] and history[1].timestamp == 1_700_000_000.5
    found = client.search_runs(experiment_ids=experiment.id, filter="metrics.loss < 0.3")
    assert [r["id"] for r in found] == [run["id"]]
    assert client.compare_runs([run["id"]], ["loss", "f1"])[0]["metrics"] == {"loss": 0.25, "f1": None}
    # what happened was published, in order
    assert [t for t, _ in heard] == ["run.started", "run.started", "metrics.logged", "metrics.logged",
                                     "metrics.logged", "run.ended"]
    assert heard[0][1]["run"]["id"] == run["id"] and heard[-1][1] == {"run_id": run["id"], "status": "completed",
                                                                      "end_time": stored["end_time"]}
    losses = [d for t, d in heard if t == "metrics.logged" and d["key"] == "loss"]
    assert [(d["steps"], d["values"]) for d in losses] == [([0], [0.5]), ([1], [0.25])]


def test_writes_naming_what_does_not_exist_are_refused_and_write_nothing(client):
    experiment = client.ensure_experiment("e")
    with pytest.raises(ExperimentNotFoundError):
        client.create_run("no-such-experiment")
    with pytest.raises(RunNotFoundError, match="parent run"):
        client.create_run(experiment.id, parent_run_id="no-such-run")
    assert client.search_runs() == []
    for call in (lambda: client.log_params("ghost", {"a": 1}), lambda: client.set_tags("ghost", {"a": 1}),
                 lambda: client.delete_tag("ghost", "a"), lambda: client.end_run("ghost"),
                 lambda: client.log_metrics("ghost", {"loss": 1.0}), lambda: client.get_metric_history("ghost", "x"),
                 lambda: client.log_dataset("ghost", "d", path="s3://bucket/d.csv"),
                 lambda: client.resume_run("ghost")):
        with pytest.raises(RunNotFoundError, match="'ghost'"):
            call()
    with pytest.raises(RunNotFoundError, match="'ghost'"):
        client.log_points([("ghost", "loss", 1.0, 0, time.time())])
    assert client.search_runs() == [] and client.list_experiments() == [experiment]


def test_bad_points_in_a_batch_refuse_the_whole_batch(client):
    run = client.create_run(client.ensure_experiment("e").id)
    now = time.time()
    good = (run["id"], "loss", 0.5, 0, now)
    for bad, named in [((run["id"], "loss", "high", 1, now), "not a number"),
                       ((run["id"], "loss", 0.5, 2 ** 63, now), "out of range"),
                       ((run["id"], "loss", 0.5, 1, float("nan")), "finite"),
                       ((run["id"], "loss", 0.5), "a metric point is")]:
        with pytest.raises(InvalidArgumentError, match=named):
            client.log_points([good, bad])
    assert client.get_metric_history(run["id"], "loss") == []
    assert client.log_points([good]) == 1


def test_two_clients_on_two_stores_share_nothing(client, tmp_path):
    """The server keeps one store per project and makes a client per request."""
    other_store = open_store(f"sqlite:///{tmp_path / 'project-b.db'}")
    other = TrackingClient(other_store, open_repository(tmp_path / "b-artifacts"))
    try:
        a = client.create_run(client.ensure_experiment("shared-name").id, name="a")
        b = other.create_run(other.ensure_experiment("shared-name").id, name="b")
        with pytest.raises(RunNotFoundError):
            other.get_run(a["id"])
        with pytest.raises(RunNotFoundError):
            client.log_params(b["id"], {"x": 1})
        assert [r["name"] for r in other.search_runs()] == ["b"]
    finally:
        other_store.close()


def test_one_client_serves_many_threads(client):
    experiment = client.ensure_experiment("threads")
    errors = []

    def work(n):
        try:
            run = client.create_run(experiment.id, name=f"t{n}")
            for step in range(20):
                client.log_metrics(run["id"], {"loss": 1.0 / (step + 1)}, step=step)
            client.log_params(run["id"], {"n": n})
            client.end_run(run["id"])
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    runs = client.search_runs(experiment_ids=[experiment.id], statuses="completed")
    assert sorted(r["params"]["n"] for r in runs) == [str(n) for n in range(8)]
    assert all(len(client.get_metric_history(r["id"], "loss")) == 20 for r in runs)


def test_artifacts_and_datasets_through_the_client(client, tmp_path):
    run = client.create_run(client.ensure_experiment("e").id)
    weights = tmp_path / "w.bin"
    weights.write_bytes(b"weights")
    [entry] = client.log_artifact(run["id"], weights, "model/")
    assert entry["path"] == "model/w.bin" and entry["size"] == 7
    out = client.download_artifact(run["id"], "model", tmp_path / "out")
    assert (tmp_path / "out" / "model" / "w.bin").read_bytes() == b"weights" and out.endswith("model")
    dataset = client.log_dataset(run["id"], "train", path=str(weights), context="training")
    assert [d.id for d in client.get_run_datasets(run["id"])] == [dataset.id]
    assert client.log_dataset(None, "project-level", path="s3://bucket/x.csv").context is None
    without = TrackingClient(client.store)
    with pytest.raises(PodstackError, match="no artifact store"):
        without.log_artifact(run["id"], weights)


def test_the_notebook_registry_publishes_metric_points_as_they_are_written(heard):
    with registry.start_run("live") as run:
        for step in range(5):
            registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        registry.log_metric("acc", 0.5)  # numbered by the registry: step 0
    points = [d for t, d in heard if t == "metrics.logged"]
    loss = [(s, v) for d in points if d["key"] == "loss" for s, v in zip(d["steps"], d["values"])]
    assert loss == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert [(d["steps"], d["values"]) for d in points if d["key"] == "acc"] == [([0], [0.5])]
    assert all(d["run_id"] == run.id and len(d["timestamps"]) == len(d["steps"]) for d in points)
    assert [t for t, _ in heard if t.startswith("run.")] == ["run.started", "run.ended"]


def test_a_failing_subscriber_loses_no_point(caplog):
    def broken(event):
        raise RuntimeError("widget crashed")

    with events.subscribe("metrics.logged", broken):
        with registry.start_run("r") as run:
            registry.log_metric("loss", 0.5, step=3)
    assert [p.step for p in registry.get_metric_history(run.id, "loss")] == [3]
    assert "widget crashed" in caplog.text


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_points_logged_in_a_gpu_session_are_heard_in_the_notebook(store_url, ip, heard):
    result = ip.run_cell("%%track --name remote\n%%gpu\nfrom podstack import registry\nfor step in range(3):\n"
                         "    registry.log_metrics({'loss': 1.0 / (step + 1)}, step=step)")
    assert result.error_in_exec is None and result.error_before_exec is None
    (run,) = registry.search_runs(filter="name = 'remote'")
    points = [(s, v) for t, d in heard if t == "metrics.logged" and d["run_id"] == run.id
              for s, v in zip(d["steps"], d["values"])]
    assert points == [(0, 1.0), (1, 0.5), (2, 1 / 3)]


def test_a_run_can_be_created_with_an_id_the_caller_chose_first(client):
    experiment = client.ensure_experiment("e")
    chosen = "1b4e28ba-2fa1-11d2-883f-0016d3cca427"
    assert client.create_run(experiment.id, run_id=chosen)["id"] == chosen
    assert client.get_run(chosen)["status"] == "running"
    with pytest.raises(PodstackError):  # the same id twice: refused, the first run untouched
        client.create_run(experiment.id, run_id=chosen, name="again")
    assert client.get_run(chosen)["name"] == f"run-{chosen[:8]}"
    with pytest.raises(InvalidArgumentError, match="at most 36 characters"):
        client.create_run(experiment.id, run_id="x" * 40)
