"""Each thread has its own active runs (MLflow's fluent API is the reference)."""

from __future__ import annotations

import threading

import pytest

from podstack_jupyter.errors import InvalidArgumentError
from podstack_jupyter.tracking import registry


def _in_threads(count: int, target) -> list:
    """Run ``target(index)`` in ``count`` threads at once; returns what each raised (or None)."""
    errors = [None] * count

    def body(index):
        try:
            target(index)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors[index] = exc

    threads = [threading.Thread(target=body, args=(i,), name=f"worker-{i}") for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in threads)
    return errors


@pytest.mark.slow
def test_eight_threads_each_start_two_hundred_runs_and_nest_within_their_own(store_url):
    registry.set_experiment("threads")
    started: list = [[] for _ in range(8)]

    def work(index):
        for i in range(200):
            with registry.start_run(f"t{index}-{i}") as run:
                assert registry.active_run() is run
                registry.log_metric("i", float(i))
                if i % 20 == 0:
                    with registry.start_run(f"t{index}-{i}-child", nested=True) as child:
                        assert child.parent_run_id == run.id and registry.active_run() is child
                        child.log_metric("child", 1.0)
                    assert registry.active_run() is run
                started[index].append((run.id, i))
            assert registry.active_run() is None

    assert _in_threads(8, work) == [None] * 8
    runs = registry.search_runs(experiment_id=registry.get_experiment_by_name("threads").id, max_results=5000)
    assert len(runs) == 8 * 200 + 8 * 10
    assert {r.status for r in runs} == {"completed"}
    by_id = {r.id: r for r in runs}
    for index in range(8):
        assert [by_id[run_id].name for run_id, _ in started[index]] == [f"t{index}-{i}" for i in range(200)]
        assert all(by_id[run_id].metrics == {"i": float(i)} for run_id, i in started[index])
    children = [r for r in runs if r.parent_run_id]
    assert len(children) == 80 and all(by_id[c.parent_run_id].name + "-child" == c.name for c in children)


def test_one_threads_with_exit_does_not_end_another_threads_run(store_url):
    a_started, b_done = threading.Event(), threading.Event()
    seen = {}

    def thread_a(_):
        with registry.start_run("a") as run:
            a_started.set()
            assert b_done.wait(60)
            seen["a_active"] = registry.active_run()
            seen["a_status_meanwhile"] = registry.get_run(run.id).status
            registry.log_metric("after-b", 1.0)
            seen["a"] = run

    def thread_b(_):
        assert a_started.wait(60)
        assert registry.active_run() is None  # a's run is not b's
        with registry.start_run("b") as run:  # no nested=True needed: nothing is active in this thread
            assert run.parent_run_id is None
        seen["b"] = run
        b_done.set()

    assert _in_threads(2, lambda i: (thread_a, thread_b)[i](i)) == [None, None]
    assert seen["a_active"] is seen["a"] and seen["a_status_meanwhile"] == "running"
    assert registry.get_run(seen["a"].id).status == registry.get_run(seen["b"].id).status == "completed"
    assert registry.get_run(seen["a"].id).metrics == {"after-b": 1.0}


def test_a_worker_thread_logs_into_a_run_it_is_handed(store_url):
    with registry.start_run("main") as run:
        def work(index):
            assert registry.active_run() is None
            for step in range(100):
                run.log_metrics({f"w{index}": float(step)}, step=step)
                registry.log_metric(f"v{index}", -float(step), step=step, run_id=run.id)
            run.log_param(f"worker{index}", "done")
            with pytest.raises(InvalidArgumentError, match=r"no active run in this thread .* thread 'MainThread' "
                                                           rf"has run 'main'\). Pass run_id='{run.id}'"):
                registry.log_metric("lost", 1.0)

        assert _in_threads(4, work) == [None] * 4
        assert registry.active_run() is run and run.status == "running"
    stored = registry.get_run(run.id)
    assert stored.status == "completed"
    assert stored.params == {f"worker{i}": "done" for i in range(4)}
    for i in range(4):
        assert [(p.step, p.value) for p in registry.get_metric_history(run.id, f"w{i}")] == [
            (s, float(s)) for s in range(100)]
        assert len(registry.get_metric_history(run.id, f"v{i}")) == 100
    assert run.metrics["w0"] == 99.0  # the live Run object sees what workers logged into it


def test_ending_a_run_by_id_from_another_thread_takes_it_off_that_threads_stack(store_url):
    ready, ended = threading.Event(), threading.Event()
    holder = {}

    def work(_):
        holder["run"] = registry.start_run("worker-run")
        ready.set()
        assert ended.wait(60)
        holder["active_after"] = registry.active_run()

    thread = threading.Thread(target=work, args=(0,))
    thread.start()
    assert ready.wait(60)
    registry.end_run("killed", run_id=holder["run"].id)
    ended.set()
    thread.join(60)
    assert holder["active_after"] is None and registry.get_run(holder["run"].id).status == "killed"


def test_threads_inside_a_gpu_session_log_into_the_notebooks_run(ip):
    ip.run_cell("%%track --name remote-threads\n%%gpu\nimport threading\nfrom podstack import registry\n"
                "def work(k):\n    for step in range(50):\n        registry.log_metric(f'thread{k}', float(step), "
                "step=step)\nthreads = [threading.Thread(target=work, args=(k,)) for k in range(3)]\n"
                "[t.start() for t in threads]\n[t.join() for t in threads]\nregistry.log_metric('main', 1.0)\n")
    (run,) = registry.search_runs(filter="attributes.name = 'remote-threads'")
    assert run.status == "completed"
    for k in range(3):
        assert [(p.step, p.value) for p in registry.get_metric_history(run.id, f"thread{k}")] == [
            (s, float(s)) for s in range(50)]
    assert registry.get_run(run.id).metrics["main"] == 1.0
