"""search_runs filters and ordering, compare_runs."""

from __future__ import annotations

import pytest

from podstack_jupyter.errors import ExperimentNotFoundError, InvalidArgumentError, RunNotFoundError
from podstack_jupyter.tracking import registry


@pytest.fixture
def runs():
    """Five finished runs in experiment 'search' and one running elsewhere."""
    exp = registry.set_experiment("search")
    made = {}
    for i, (lr, opt, acc) in enumerate([(0.1, "sgd", 0.80), (0.01, "adam", 0.91), (0.001, "adam", 0.95),
                                        (0.0001, "sgd", 0.85), (0.05, "adamw", 0.93)]):
        with registry.start_run(f"run-{i}", tags={"variant": "dropout" if i % 2 else "baseline"}) as run:
            run.log_params({"lr": lr, "optimizer": opt})
            run.log_metrics({"accuracy": acc - 0.2, "loss": 1 - acc}, step=0)
            run.log_metrics({"accuracy": acc, "loss": 1 - acc - 0.01}, step=1)  # latest counts
        made[f"run-{i}"] = run
    with pytest.raises(ZeroDivisionError):
        with registry.start_run("run-failed") as failed:
            failed.log_metric("accuracy", 0.99)
            1 / 0
    made["run-failed"] = failed
    registry.set_experiment("elsewhere")
    made["other"] = registry.start_run("other")
    made["other"].log_metric("accuracy", 0.97)
    registry.end_run()
    return exp, made


def names(found):
    return sorted(r.name for r in found)


def test_search_by_experiment_status_and_max_results(runs):
    exp, made = runs
    assert names(registry.search_runs(experiment_id=exp.id)) == \
        ["run-0", "run-1", "run-2", "run-3", "run-4", "run-failed"]
    assert names(registry.search_runs(experiment_id=exp.id, status="completed")) == \
        ["run-0", "run-1", "run-2", "run-3", "run-4"]
    assert names(registry.search_runs(status=["failed", "running"])) == ["run-failed"]
    newest_two = registry.search_runs(experiment_id=exp, max_results=2)
    assert [r.name for r in newest_two] == ["run-failed", "run-4"]  # newest first by default


def test_an_unknown_experiment_is_named_not_an_empty_result(runs):
    exp, _ = runs
    with pytest.raises(ExperimentNotFoundError, match="no experiment with id 'e-nowhere'"):
        registry.search_runs(experiment_id=[exp.id, "e-nowhere"])
    with pytest.raises(ExperimentNotFoundError, match=f"is the name of experiment '{exp.id}'"):
        registry.search_runs(experiment_id=exp.name)


def test_metric_thresholds_as_dicts_and_as_a_filter_string(runs):
    exp, _ = runs
    assert names(registry.search_runs(experiment_id=exp.id, metrics={"accuracy": (">", 0.9)})) == \
        ["run-1", "run-2", "run-4", "run-failed"]
    assert names(registry.search_runs(experiment_id=exp.id, status="completed",
                                      filter="metrics.accuracy > 0.9")) == ["run-1", "run-2", "run-4"]
    assert names(registry.search_runs(metrics={"accuracy": [(">=", 0.85), ("<", 0.93)]})) == ["run-1", "run-3"]
    assert names(registry.search_runs(metrics={"accuracy": "> 0.96"})) == ["other", "run-failed"]
    assert names(registry.search_runs(filter="metrics.loss < 0.07 AND metrics.accuracy >= 0.93")) == \
        ["run-2", "run-4"]


def test_params_compare_as_numbers_or_text_and_tags_as_text(runs):
    assert names(registry.search_runs(params={"optimizer": "adam"})) == ["run-1", "run-2"]
    assert names(registry.search_runs(filter="params.lr < 0.01")) == ["run-2", "run-3"]
    assert names(registry.search_runs(params={"lr": 0.01})) == ["run-1"]
    assert names(registry.search_runs(filter="params.optimizer LIKE 'adam%' and tags.variant = 'baseline'")) == \
        ["run-2", "run-4"]
    assert names(registry.search_runs(tags={"variant": "dropout"})) == ["run-1", "run-3"]
    assert names(registry.search_runs(filter="params.optimizer IN ('sgd', 'adamw')")) == ["run-0", "run-3", "run-4"]
    assert names(registry.search_runs(filter="params.optimizer NOT IN ('sgd', 'adamw')")) == ["run-1", "run-2"]
    assert names(registry.search_runs(filter="name = 'run-3'")) == ["run-3"]
    assert names(registry.search_runs(filter="attributes.status != 'completed'")) == ["run-failed"]
    assert names(registry.search_runs(filter="start_time >= '2000-01-01T00:00:00'", max_results=3)) != []


def test_order_by_metric_param_and_attribute(runs):
    exp, _ = runs
    best = registry.search_runs(experiment_id=exp.id, status="completed", order_by="metrics.accuracy DESC")
    assert [r.name for r in best] == ["run-2", "run-4", "run-1", "run-3", "run-0"]
    by_lr = registry.search_runs(experiment_id=exp.id, status="completed", order_by=["params.lr ASC"])
    assert [r.params["lr"] for r in by_lr] == ["0.0001", "0.001", "0.01", "0.05", "0.1"]
    by_name = registry.search_runs(experiment_id=exp.id, order_by="name")
    assert [r.name for r in by_name][:2] == ["run-0", "run-1"]


def test_pandas_output_has_one_row_per_run_with_prefixed_columns(runs):
    exp, _ = runs
    df = registry.search_runs(experiment_id=exp.id, status="completed", order_by="metrics.accuracy DESC",
                              output="pandas")
    assert list(df["name"]) == ["run-2", "run-4", "run-1", "run-3", "run-0"]
    assert {"metrics.accuracy", "metrics.loss", "params.lr", "params.optimizer", "tags.variant",
            "status", "start_time"} <= set(df.columns)
    assert df["metrics.accuracy"].iloc[0] == pytest.approx(0.95)


@pytest.mark.parametrize("bad, message", [
    ("metrics.accuracy >", "expected a number or a quoted string"),
    ("accuracy > 0.9", "not a run attribute"),
    ("metrics.a > 1 or metrics.b > 2", "only AND is supported"),
    ("metrics.a LIKE 'x'", "takes"),
    ("metrics.a > 'high'", "compares with numbers"),
    ("foo.a = 1", "unknown prefix 'foo'"),
    ("status = 'done'", "status 'done' is not one of"),
    ("metrics.a > 1 and", "ends with AND"),
    ("metrics.a @ 1", "cannot read"),
])
def test_bad_filters_say_what_is_wrong(bad, message):
    with pytest.raises(InvalidArgumentError, match=message):
        registry.search_runs(filter=bad)


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(InvalidArgumentError, match="status 'done'"):
        registry.search_runs(status="done")
    with pytest.raises(InvalidArgumentError, match="max_results"):
        registry.search_runs(max_results=0)
    with pytest.raises(InvalidArgumentError, match='output must be "list" or "pandas"'):
        registry.search_runs(output="csv")
    with pytest.raises(InvalidArgumentError, match=r"write \(op, value\)"):
        registry.search_runs(metrics={"a": (">", 1, 2)})
    with pytest.raises(InvalidArgumentError, match="cannot order by"):
        registry.search_runs(order_by="datasets.name")


def test_compare_runs_side_by_side(runs):
    _, made = runs
    ids = [made["run-0"].id, made["run-2"].id, made["other"].id]
    rows = registry.compare_runs(run_ids=ids, metric_keys=["loss", "accuracy"])
    assert [r["name"] for r in rows] == ["run-0", "run-2", "other"]
    assert rows[1]["metrics"] == {"loss": pytest.approx(0.04), "accuracy": pytest.approx(0.95)}
    assert rows[2]["metrics"] == {"loss": None, "accuracy": pytest.approx(0.97)}
    assert rows[0]["params"] == {"lr": "0.1", "optimizer": "sgd"}
    df = registry.compare_runs(ids, ["accuracy"], output="pandas")
    assert list(df["metrics.accuracy"].round(2)) == [0.8, 0.95, 0.97]
    with pytest.raises(RunNotFoundError, match="no run with id 'missing'"):
        registry.compare_runs([made["run-0"].id, "missing"], ["loss"])


def test_search_by_dataset_used(runs, tmp_path):
    data = tmp_path / "train.csv"
    data.write_text("x\n1\n")
    with registry.start_run("with-data") as run:
        run.log_dataset("imdb-train", path=str(data))
    assert [r.id for r in registry.search_runs(filter="datasets.name = 'imdb-train'")] == [run.id]
    assert [r.id for r in registry.search_runs(filter="datasets.context = 'training'")] == [run.id]
