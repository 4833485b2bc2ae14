"""%%track through a real IPython shell, alone and stacked over %%gpu (a real remote kernel)."""

from __future__ import annotations

import threading
import time

import pytest

import podstack
from podstack import registry
from podstack_jupyter.compute import sessions


def run(ip, cell):
    result = ip.run_cell(cell)
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        raise error
    return result.result


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    while registry.active_run() is not None:
        registry.end_run()
    registry._reset_store()


def only_run():
    (found,) = registry.search_runs()
    return found


def test_track_records_params_source_tags_and_status(ip):
    run(ip, "lr = 0.01\nepochs = 3")
    value = run(ip, "%%track --name baseline --experiment magic-exp --tag team=nlp owner=ana --params lr,epochs\n"
                    "from podstack import registry\nregistry.log_metrics({'loss': 0.5}, step=1)\nlr * 100")
    assert value == 1.0
    tracked = only_run()
    assert tracked.name == "baseline" and tracked.status == "completed"
    assert tracked.params == {"lr": "0.01", "epochs": "3"}
    assert tracked.tags["team"] == "nlp" and tracked.tags["owner"] == "ana"
    assert "registry.log_metrics" in tracked.source and tracked.duration >= 0
    assert registry.get_experiment(tracked.experiment_id).name == "magic-exp"
    assert [p.value for p in registry.get_metric_history(tracked.id, "loss")] == [0.5]


def test_failed_cell_marks_the_run_failed_and_raises(ip):
    with pytest.raises(ZeroDivisionError):
        run(ip, "%%track --name broken\n1 / 0")
    assert only_run().status == "failed"


@pytest.mark.parametrize("line, message", [("--tag novalue", "KEY=VALUE"), ("--params missing_name", "not defined")])
def test_bad_track_arguments_are_usage_errors_and_start_no_run(ip, capsys, line, message):
    ip.run_cell(f"%%track {line}\n1")
    assert message in capsys.readouterr().err
    assert registry.search_runs() == []


def test_track_over_gpu_logs_from_the_remote_into_the_notebook_run(ip):
    run(ip, "%%track --name remote-train\n%%gpu\nfrom podstack import registry\nfor step in range(3):\n"
            "    registry.log_metrics({'loss': 1.0 / (step + 1)}, step=step)\nregistry.log_params({'batch': 32})\n"
            "result = 'trained'")
    tracked = only_run()
    assert tracked.status == "completed" and tracked.params == {"batch": "32"}
    assert tracked.tags["podstack.gpu"] == "any"
    assert [(p.step, p.value) for p in registry.get_metric_history(tracked.id, "loss")] == [(0, 1.0), (1, 0.5),
                                                                                              (2, 1 / 3)]
    assert ip.user_ns["result"] == "trained" and "%%gpu" in tracked.source


def test_remote_metrics_arrive_while_the_cell_is_still_running(ip, podstack_home):
    from podstack_jupyter.tracking.store import SQLStore
    from podstack_jupyter.config import settings

    seen_at = []
    stop = threading.Event()

    def watch():
        observer = SQLStore(settings().database_url)
        try:
            while not stop.is_set():
                found = observer.search_runs({"experiment_ids": None, "statuses": None, "clauses": [],
                                              "order_by": [], "max_results": 10})
                if found and found[0]["metrics"].get("loss") is not None:
                    seen_at.append(time.monotonic())
                    return
                time.sleep(0.1)
        finally:
            observer.close()

    registry.list_experiments()  # create the database before the observer opens it
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run(ip, "%%track --name live\n%%gpu\nimport time\nfrom podstack import registry\n"
                "registry.log_metrics({'loss': 0.9}, step=0)\ntime.sleep(3)")
        ended = time.monotonic()
    finally:
        stop.set()
        watcher.join()
    assert seen_at and seen_at[0] < ended - 1.0  # visible in the notebook's store mid-cell


def test_run_decorator_under_gpu_tracks_a_remote_function():
    @podstack.gpu()
    @podstack.experiment(name="remote-exp")
    @podstack.run(name="remote-fn", tags={"variant": "a"})
    def train(lr):
        from podstack import registry as remote_registry

        remote_registry.log_params({"lr": lr})
        remote_registry.log_metrics({"acc": 0.75})
        return remote_registry.active_run().id

    try:
        run_id = train(0.3)
    finally:
        sessions.stop("all")
    tracked = registry.get_run(run_id)
    assert tracked.name == "remote-fn" and tracked.status == "completed"
    assert tracked.params == {"lr": "0.3"} and tracked.metrics == {"acc": 0.75} and tracked.tags["variant"] == "a"
    assert registry.get_experiment(tracked.experiment_id).name == "remote-exp"
