"""podstack.experiment / podstack.run decorators and context managers, and %%track's run_tracked_cell."""

from __future__ import annotations

import pytest

import podstack
from podstack_jupyter.errors import InvalidArgumentError
from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.cell import run_tracked_cell


def test_stacked_decorators_track_each_call():
    @podstack.experiment(name="my-experiment")
    @podstack.run(name="training-v1", track_gpu=True, tags={"variant": "no-dropout"})
    def train():
        podstack.registry.log_params({"lr": 0.001, "batch_size": 32})
        for epoch in range(10):
            podstack.registry.log_metrics({"loss": 1.0 / (epoch + 1)}, step=epoch)
        return registry.active_run()

    run = train()
    stored = registry.get_run(run.id)
    assert stored.name == "training-v1" and stored.status == "completed"
    assert registry.get_experiment(stored.experiment_id).name == "my-experiment"
    assert stored.tags["variant"] == "no-dropout"
    assert stored.tags["gpu"] and stored.tags["gpu.count"].isdigit()  # "cpu" / "0" on a machine without GPUs
    assert stored.gpu["source"] in ("nvml", "nvidia-smi", "env", "cpu")
    assert "def train():" in stored.source and stored.duration >= 0
    assert len(registry.get_metric_history(run.id, "loss")) == 10
    assert train().id != run.id  # each call is a new run
    assert registry.active_run() is None


def test_a_failing_decorated_function_fails_its_run():
    @podstack.run()
    def broken():
        raise ValueError("bad data")

    with pytest.raises(ValueError, match="bad data"):
        broken()
    found = registry.search_runs(filter="name = 'broken'")
    assert [r.status for r in found] == ["failed"]


def test_context_managers_give_the_experiment_and_the_run():
    registry.set_experiment("outer")
    with podstack.experiment(name="transformer-experiments") as exp:
        assert exp.name == "transformer-experiments" and exp.id
        with podstack.run(name="training-v1") as run:
            podstack.registry.log_params({"lr": 0.001})
            podstack.registry.log_metrics({"loss": 0.5}, step=1)
            with podstack.run(name="inner") as inner:  # nested automatically inside an active run
                pass
    assert registry.get_run(run.id).experiment_id == exp.id
    assert registry.get_run(inner.id).parent_run_id == run.id
    with registry.start_run("after") as after:  # the previous current experiment is back
        pass
    assert registry.get_experiment(after.experiment_id).name == "outer"
    with pytest.raises(InvalidArgumentError):
        podstack.experiment(name="")
    with pytest.raises(InvalidArgumentError):
        podstack.run(tags=["x"])


def test_run_tracked_cell_logs_params_source_status_and_returns_the_value(ip):
    ip.user_ns["lr"] = 0.01
    cell = "epochs = 3\nfrom podstack import registry\nregistry.log_metric('loss', 0.1)\nlr * epochs"
    value = run_tracked_cell(ip, cell, name="cell-run", experiment="cells", tags={"k": "v"},
                             param_names=["lr", "epochs"])
    assert value == pytest.approx(0.03) and ip.user_ns["epochs"] == 3
    run = registry.search_runs(filter="name = 'cell-run'")[0]
    assert run.status == "completed" and run.params == {"lr": "0.01", "epochs": "3"}
    assert run.source == cell and run.tags == {"k": "v"} and run.metrics == {"loss": 0.1}
    assert registry.get_experiment(run.experiment_id).name == "cells"
    with registry.start_run("not-in-cells") as other:  # --experiment applied to the cell's run only
        pass
    assert registry.get_experiment(other.experiment_id).name == "Default"


def test_a_failing_cell_fails_its_run_and_raises(ip):
    with pytest.raises(ZeroDivisionError):
        run_tracked_cell(ip, "x = 1\n1 / 0", name="bad-cell", param_names=["x"])
    run = registry.search_runs(filter="name = 'bad-cell'")[0]
    assert run.status == "failed" and run.params == {"x": "1"}
    with pytest.raises(KeyboardInterrupt):
        run_tracked_cell(ip, "raise KeyboardInterrupt", name="stopped")
    assert registry.search_runs(filter="name = 'stopped'")[0].status == "killed"
    assert registry.active_run() is None


def test_run_cell_callable_executes_instead(ip):
    calls = []

    def remote():
        calls.append(registry.active_run().name)
        registry.set_tag("podstack.gpu", "L40S x1")
        return 42

    assert run_tracked_cell(ip, "%%gpu L40S\nprint('hi')", name="stacked", run_cell=remote) == 42
    run = registry.search_runs(filter="name = 'stacked'")[0]
    assert calls == ["stacked"] and run.tags == {"podstack.gpu": "L40S x1"} and run.status == "completed"


def test_track_magic_end_to_end(ip):
    ip.user_ns["batch"] = 64
    ip.run_cell_magic("track", "--name magic-run --params batch --tag team=nlp",
                      "from podstack import registry\nregistry.log_metric('acc', 0.9)")
    run = registry.search_runs(filter="name = 'magic-run'")[0]
    assert run.params == {"batch": "64"} and run.tags == {"team": "nlp"} and run.metrics == {"acc": 0.9}
