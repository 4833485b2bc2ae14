"""Runs through ``podstack.registry``: lifecycle, nesting, params, tags, metrics."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import pytest

import podstack
from podstack_jupyter.errors import (ExperimentNotFoundError, InvalidArgumentError, PodstackError,
                                     RunNotFoundError)
from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.runs import metric_buffer


def test_a_run_block_records_status_times_params_tags_and_metrics():
    exp = registry.set_experiment("my-experiment")
    with registry.start_run(name="training-v1", tags={"team": "nlp"}) as run:
        assert registry.active_run() is run and run.status == "running"
        registry.log_params({"learning_rate": 0.001, "batch_size": 32, "optimizer": "adam"})
        registry.log_param("epochs", 10)
        for epoch in range(3):
            registry.log_metrics({"loss": 1.0 / (epoch + 1), "accuracy": 0.5 + epoch / 10}, step=epoch)
        registry.set_tag("framework", "pytorch")
        registry.set_tags({"a": 1, "b": "two"})
    assert registry.active_run() is None
    assert run.status == "completed" and run.end_time is not None and run.duration >= 0
    stored = registry.get_run(run.id)
    assert stored.experiment_id == exp.id and stored.name == "training-v1" and stored.status == "completed"
    assert stored.params == {"learning_rate": "0.001", "batch_size": "32", "optimizer": "adam", "epochs": "10"}
    assert stored.tags == {"team": "nlp", "framework": "pytorch", "a": "1", "b": "two"}
    assert stored.metrics == {"loss": pytest.approx(1 / 3), "accuracy": pytest.approx(0.7)}
    assert stored.start_time.endswith("+00:00") and stored.info.id == run.id
    # the run object itself holds what was stored once the block ended
    assert (run.params, run.tags, run.metrics, run.end_time) == (stored.params, stored.tags, stored.metrics,
                                                                 stored.end_time)


def test_run_status_follows_how_the_block_ends():
    with pytest.raises(ZeroDivisionError):
        with registry.start_run("boom") as failed:
            registry.log_metric("x", 1.0)
            1 / 0
    with pytest.raises(KeyboardInterrupt):
        with registry.start_run("interrupted") as killed:
            raise KeyboardInterrupt
    assert registry.get_run(failed.id).status == "failed" and failed.status == "failed"
    assert registry.get_run(killed.id).status == "killed"
    assert registry.get_run(failed.id).metrics == {"x": 1.0}  # logged before the failure: kept


def test_starting_a_second_run_needs_nested_and_nested_runs_link_to_their_parent():
    registry.set_experiment("tuning")
    with registry.start_run("parent") as parent:
        with pytest.raises(InvalidArgumentError, match="already active.*nested=True"):
            registry.start_run("oops")
        children = []
        for lr in (0.001, 0.01):
            with registry.start_run(f"child-lr-{lr}", nested=True) as child:
                child.log_param("learning_rate", lr)
                child.log_metric("accuracy", lr * 10)
                assert registry.active_run() is child
            children.append(child)
        assert registry.active_run() is parent
    for child in children:
        stored = registry.get_run(child.id)
        assert stored.parent_run_id == parent.id and stored.experiment_id == parent.experiment_id
    found = registry.search_runs(parent_run_id=parent.id, order_by="params.learning_rate")
    assert [r.name for r in found] == ["child-lr-0.001", "child-lr-0.01"]


def test_end_run_without_a_block_and_ending_a_parent_ends_its_children():
    parent = registry.start_run("p")
    child = registry.start_run("c", nested=True)
    registry.end_run(run_id=parent.id)
    assert registry.active_run() is None
    assert registry.get_run(child.id).status == "completed" and registry.get_run(parent.id).status == "completed"
    registry.end_run()  # nothing active: nothing to do
    run = registry.start_run()
    assert run.name.startswith("run-")
    registry.end_run(status="killed")
    assert registry.get_run(run.id).status == "killed"
    with pytest.raises(InvalidArgumentError, match="status 'done'"):
        registry.end_run(status="done")


def test_resuming_a_run_by_id():
    with registry.start_run("resumable") as run:
        run.log_metric("loss", 1.0, step=0)
    with registry.start_run(run_id=run.id) as again:
        assert again.status == "running" and again.name == "resumable"
        again.log_metric("loss", 0.5, step=1)
    assert [p.value for p in registry.get_metric_history(run.id, "loss")] == [1.0, 0.5]
    assert registry.get_run(run.id).status == "completed"


def test_logging_without_a_run_or_into_an_unknown_run_says_what_to_do():
    with pytest.raises(InvalidArgumentError, match="no active run. Start one with registry.start_run"):
        registry.log_metrics({"loss": 1.0})
    with pytest.raises(InvalidArgumentError, match="no active run"):
        registry.log_params({"a": 1})
    with pytest.raises(RunNotFoundError, match="no run with id 'nope'"):
        registry.log_metric("x", 1.0, run_id="nope")
    with pytest.raises(RunNotFoundError):
        registry.get_run("nope")
    with pytest.raises(ExperimentNotFoundError):
        registry.start_run(experiment_id="missing")


def test_bad_metric_values_and_names_are_refused_at_the_call():
    with registry.start_run("r") as run:
        with pytest.raises(InvalidArgumentError, match="metric 'loss': value 'low'"):
            registry.log_metrics({"loss": "low"})
        with pytest.raises(InvalidArgumentError, match="non-empty strings"):
            registry.log_metrics({"": 1.0})
        with pytest.raises(InvalidArgumentError, match="dict of name -> number"):
            registry.log_metrics([("loss", 1.0)])
        with pytest.raises(InvalidArgumentError, match="step must be an integer"):
            registry.log_metrics({"loss": 1.0}, step=1.5)
        with pytest.raises(InvalidArgumentError, match="params cannot change"):
            registry.log_params({"lr": 1})
            registry.log_params({"lr": 2})
        np = pytest.importorskip("numpy")
        registry.log_metrics({"np": np.float32(0.5), "int": np.int64(3)}, step=np.int64(4))
    history = registry.get_metric_history(run.id, "np")
    assert [(p.step, p.value) for p in history] == [(4, 0.5)]
    assert registry.get_metric_history(run.id, "never-logged") == []


def test_steps_are_numbered_automatically_when_not_given():
    with registry.start_run("auto") as run:
        for value in (3.0, 2.0, 1.0):
            registry.log_metrics({"loss": value})
        registry.log_metric("loss", 0.5, step=10)
        registry.log_metric("loss", 0.25)
    history = registry.get_metric_history(run.id, "loss")
    assert [(p.step, p.value) for p in history] == [(0, 3.0), (1, 2.0), (2, 1.0), (10, 0.5), (11, 0.25)]
    assert all(p.timestamp == pytest.approx(time.time(), abs=60) for p in history)
    assert history.to_pandas()["value"].tolist() == [3.0, 2.0, 1.0, 0.5, 0.25]


def test_metrics_reach_the_store_in_the_background_while_the_run_is_still_going():
    with registry.start_run("live") as run:
        registry.log_metrics({"loss": 1.0}, step=0)
        deadline = time.time() + 10
        while time.time() < deadline and metric_buffer.pending():
            time.sleep(0.05)
        # read the store directly: no flush on this path
        assert registry._store().get_run(run.id)["metrics"] == {"loss": 1.0}


def test_a_store_error_keeps_the_points_and_the_next_flush_reports_it():
    import sqlalchemy as sa

    with registry.start_run("r") as run:
        engine = registry._store()._engine
        with engine.begin() as conn:  # the database refuses metric writes for a while
            conn.execute(sa.text("ALTER TABLE metric_chunks RENAME TO metric_chunks_away"))
        registry.log_metrics({"loss": 1.0}, step=0)
        with pytest.raises(PodstackError, match="could not write 1 metric points"):
            registry.flush()
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE metric_chunks_away RENAME TO metric_chunks"))
        registry.flush()
    assert registry.get_run(run.id).metrics == {"loss": 1.0}


def test_points_still_buffered_at_interpreter_exit_are_written(podstack_home, store_url):
    script = textwrap.dedent("""
        from podstack_jupyter.tracking import registry
        from podstack_jupyter.tracking.runs import metric_buffer
        metric_buffer.interval = 3600  # the background thread will not get to it
        run = registry.start_run("never-ended")
        for i in range(1000):
            registry.log_metrics({"loss": float(i)}, step=i)
        print(run.id)
    """)
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home), "PODSTACK_TRACKING_URI": store_url}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    run = registry.get_run(out.stdout.strip())
    assert run.status == "completed" and run.metrics == {"loss": 999.0}
    assert len(registry.get_metric_history(run.id, "loss")) == 1000


def test_experiments_are_created_once_and_listed():
    first = registry.set_experiment("a")
    assert registry.set_experiment("a").id == first.id
    registry.set_experiment("b")
    with registry.start_run() as run:
        pass
    assert [e.name for e in registry.list_experiments()] == ["a", "b"]
    assert registry.get_run(run.id).experiment_id == registry.get_experiment_by_name("b").id
    assert registry.get_experiment(first.id).name == "a"
    with pytest.raises(ExperimentNotFoundError, match="set_experiment"):
        registry.get_experiment_by_name("c")
    with pytest.raises(InvalidArgumentError):
        registry.set_experiment("")


def test_runs_without_an_experiment_go_to_default():
    with registry.start_run() as run:
        pass
    assert registry.get_experiment(run.experiment_id).name == "Default"


def test_init_switches_the_store(tmp_path, store_url):
    with registry.start_run("before") as first:
        pass
    podstack.init(home=str(tmp_path / "other-home"), tracking_uri=f"sqlite:///{tmp_path / 'other.db'}")
    try:
        with pytest.raises(RunNotFoundError):
            registry.get_run(first.id)
        with registry.start_run("after") as second:
            pass
        assert registry.get_run(second.id).name == "after"
        assert (tmp_path / "other.db").exists()
    finally:
        from podstack_jupyter import config

        config.reset()
        registry._reset_store()
    assert registry.get_run(first.id).name == "before"


def test_use_store_sends_every_call_to_another_store(tmp_path):
    from podstack_jupyter.tracking import SQLStore, current_store, use_store

    other = SQLStore(f"sqlite:///{tmp_path / 'relay.db'}")
    use_store(other)
    try:
        assert current_store() is other
        with registry.start_run("relayed") as run:
            registry.log_metric("x", 1.0)
        assert other.get_run(run.id)["metrics"] == {"x": 1.0}
    finally:
        use_store(None)
    assert current_store() is not other
    with pytest.raises(RunNotFoundError):
        registry.get_run(run.id)
    with pytest.raises(InvalidArgumentError):
        use_store("not a store")
