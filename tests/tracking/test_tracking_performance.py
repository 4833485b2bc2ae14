"""What a training loop and a dashboard feel: call cost, write throughput, history and search times (SQLite)."""

from __future__ import annotations

import random
import time
import uuid

import pytest

from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.store import current_store

pytestmark = [pytest.mark.slow, pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)]


def test_log_metrics_costs_microseconds_per_call(store_url):
    with registry.start_run("loop") as run:
        n = 100_000
        start = time.perf_counter()
        for i in range(n):
            registry.log_metrics({"loss": 0.5, "accuracy": 0.9}, step=i)
        per_call = (time.perf_counter() - start) / n
    assert per_call < 20e-6, f"{per_call * 1e6:.1f} us per log_metrics call"
    assert len(registry.get_metric_history(run.id, "accuracy")) == n  # and nothing was lost


def test_a_million_points_are_written_fast_and_read_back_in_well_under_a_second(store_url):
    store = current_store()
    with registry.start_run("big") as run:
        pass
    now = time.time()
    points = [(run.id, "loss", 1.0 / (i + 1), i, now + i * 1e-3) for i in range(1_000_000)]
    start = time.perf_counter()
    for i in range(0, len(points), 200_000):
        store.log_metrics(points[i:i + 200_000])
    rate = len(points) / (time.perf_counter() - start)
    assert rate > 250_000, f"{rate:,.0f} points/s"
    start = time.perf_counter()
    history = registry.get_metric_history(run.id, "loss")
    elapsed = time.perf_counter() - start
    assert elapsed < 1.0, f"history of 1M points took {elapsed:.2f}s"
    assert len(history) == 1_000_000 and history[-1].step == 999_999 and history[10].value == pytest.approx(1 / 11)


def test_searching_a_hundred_thousand_runs_by_metric_takes_under_two_seconds(store_url):
    store = current_store()
    exp = registry.set_experiment("sweep")
    n = 100_000
    rng = random.Random(7)
    ids = [str(uuid.uuid4()) for _ in range(n)]
    now = time.time()
    with store._engine.begin() as conn:  # seed directly: 100k runs through start_run would take minutes
        raw = conn.connection.driver_connection
        raw.executemany("INSERT INTO runs (id, project_id, experiment_id, name, status, start_time, end_time) "
                        "VALUES (?,?,?,?,?,?,?)", [(rid, store.project_id, exp.id, f"trial-{i}", "completed", now + i,
                                                    now + i + 1) for i, rid in enumerate(ids)])
        raw.executemany('INSERT INTO latest_metrics (run_id, key, value, step, "timestamp") VALUES (?,?,?,?,?)',
                        [(rid, "accuracy", rng.random(), 0, now) for rid in ids])
        raw.executemany("INSERT INTO params (run_id, key, value, value_num) VALUES (?,?,?,?)",
                        [(rid, "lr", str(v), v) for rid in ids for v in [rng.choice([0.1, 0.01, 0.001])]])
    start = time.perf_counter()
    best = registry.search_runs(experiment_id=exp.id, metrics={"accuracy": (">", 0.9)},
                                order_by="metrics.accuracy DESC", max_results=100)
    filtered = registry.search_runs(filter="metrics.accuracy > 0.99 and params.lr < 0.05", max_results=50)
    elapsed = time.perf_counter() - start
    assert elapsed < 2.0, f"two searches over {n} runs took {elapsed:.2f}s"
    values = [r.metrics["accuracy"] for r in best]
    assert len(best) == 100 and values == sorted(values, reverse=True) and values[-1] > 0.9
    assert filtered and all(r.metrics["accuracy"] > 0.99 and float(r.params["lr"]) < 0.05 for r in filtered)
