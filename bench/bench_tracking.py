"""podstack's tracking store side by side with MLflow's (both on SQLite), in one run.

Run: python bench/bench_tracking.py [--points 1000000] [--runs 100000] [--created 300]
Needs: pip install -e ".[bench]"  (mlflow; a separate virtual environment keeps its pins apart)

Measures:
  1. logging --points metric points from a loop: the per-call cost in the loop, and the
     persisted throughput (points written to the database per second, until flushed);
     MLflow: log_metric per call, and log_batch of 1,000 points
  2. get_metric_history of a --points-point metric
  3. search_runs with a metric filter over --runs runs
  4. creating a run: start, 5 params, 3 metrics, end (the fluent API of each; median over
     batches of --created runs / 10 for MLflow, whose runs cost tens of milliseconds)
MLflow's own logging is far too slow to fill 1,000,000 points or 100,000 runs through its API in
a benchmark, so its database is filled with the same rows by bulk SQL into its own schema (made
by MLflow); only its reads are timed on that data. Ratios are MLflow / podstack (>1: podstack faster).
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import time
import uuid


def timed(fn):
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def _median_per_run(one, count: int, batches: int = 5) -> float:
    """Seconds per call of ``one()``: the median over ``batches`` batches of ``count`` calls."""
    for _ in range(max(3, count // 10)):
        one()  # warm up: experiment cached, connections open
    per_batch = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(count):
            one()
        per_batch.append((time.perf_counter() - started) / count)
    return sorted(per_batch)[len(per_batch) // 2]


def bench_podstack(points: int, runs: int, home: str, created: int) -> dict:
    os.environ["PODSTACK_HOME"] = home
    import podstack
    from podstack import registry
    from podstack_jupyter.tracking.store import current_store

    podstack.config.reset()
    out = {}
    registry.set_experiment("bench")
    with registry.start_run("logging") as run:
        log_metrics = registry.log_metrics
        started = time.perf_counter()
        for i in range(points):
            log_metrics({"loss": 1.0 / (i + 1)}, step=i)
        loop = time.perf_counter() - started
        registry.flush()
        total = time.perf_counter() - started
    out["per_call_us"] = loop / points * 1e6
    out["persisted_pts_s"] = points / total
    seconds, history = timed(lambda: registry.get_metric_history(run.id, "loss"))
    assert len(history) == points
    out["history_s"] = seconds

    store = current_store()
    experiment = registry.set_experiment("search")
    now = time.time()
    batch = []
    for i in range(runs):
        run_id = str(uuid.uuid4())
        store.create_run({"id": run_id, "experiment_id": experiment.id, "name": f"r{i}", "parent_run_id": None,
                          "status": "completed", "start_time": now + i, "source": None, "gpu": None, "tags": {}})
        batch.append([run_id, "accuracy", (i % 1000) / 1000, 0, now])
    store.log_metrics(batch)
    seconds, found = timed(lambda: registry.search_runs(experiment_id=experiment.id, filter="metrics.accuracy > 0.995",
                                                        max_results=1000))
    assert len(found) == runs * 4 // 1000, len(found)
    out["search_s"] = seconds

    registry.set_experiment("creation")

    def one_run():
        with registry.start_run("r"):
            registry.log_params({"lr": 0.01, "batch": 32, "epochs": 3, "optimizer": "adam", "dropout": 0.1})
            registry.log_metrics({"loss": 0.5}, step=0)
            registry.log_metrics({"accuracy": 0.9}, step=0)
            registry.log_metrics({"f1": 0.8}, step=0)

    out["run_s"] = _median_per_run(one_run, created)
    return out


def bench_mlflow(points: int, runs: int, directory: str, created: int) -> dict:
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    db = os.path.join(directory, "mlflow.db")
    mlflow.set_tracking_uri(f"sqlite:///{db}")
    client = MlflowClient()
    out = {}
    experiment_id = client.create_experiment("bench")
    run = client.create_run(experiment_id)
    calls = 300
    started = time.perf_counter()
    for i in range(calls):
        client.log_metric(run.info.run_id, "single", 1.0 / (i + 1), step=i)
    out["per_call_us"] = (time.perf_counter() - started) / calls * 1e6
    batches = 20
    started = time.perf_counter()
    for b in range(batches):
        now = int(time.time() * 1000)
        client.log_batch(run.info.run_id, metrics=[Metric("batched", 1.0 / (i + 1), now, b * 1000 + i)
                                                    for i in range(1000)])
    out["persisted_pts_s"] = batches * 1000 / (time.perf_counter() - started)

    # Fill the same data as podstack's by bulk SQL into MLflow's schema; time only MLflow's reads.
    con = sqlite3.connect(db)
    now = int(time.time() * 1000)
    con.executemany("INSERT INTO metrics (key, value, timestamp, run_uuid, step, is_nan) VALUES (?,?,?,?,?,0)",
                    (("loss", 1.0 / (i + 1), now, run.info.run_id, i) for i in range(points)))
    con.commit()
    seconds, history = timed(lambda: client.get_metric_history(run.info.run_id, "loss"))
    assert len(history) == points
    out["history_s"] = seconds

    search_experiment = client.create_experiment("search")
    rows, metrics = [], []
    for i in range(runs):
        run_uuid = uuid.uuid4().hex
        rows.append((run_uuid, f"r{i}", "LOCAL", "", "", "bench", "FINISHED", now + i, now + i, "", "active",
                     "", int(search_experiment)))
        metrics.append(("accuracy", (i % 1000) / 1000, now, 0, 0, run_uuid))
    con.executemany("INSERT INTO runs (run_uuid, name, source_type, source_name, entry_point_name, user_id, status, "
                    "start_time, end_time, source_version, lifecycle_stage, artifact_uri, experiment_id) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
    con.executemany("INSERT INTO latest_metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)",
                    metrics)
    con.executemany("INSERT INTO metrics (key, value, timestamp, step, is_nan, run_uuid) VALUES (?,?,?,?,?,?)",
                    metrics)
    con.commit()
    con.close()
    seconds, found = timed(lambda: client.search_runs([search_experiment], "metrics.accuracy > 0.995",
                                                      max_results=1000))
    assert len(found) == runs * 4 // 1000, len(found)
    out["search_s"] = seconds

    mlflow.set_experiment("creation")

    def one_run():
        with mlflow.start_run(run_name="r"):
            mlflow.log_params({"lr": 0.01, "batch": 32, "epochs": 3, "optimizer": "adam", "dropout": 0.1})
            mlflow.log_metric("loss", 0.5, step=0)
            mlflow.log_metric("accuracy", 0.9, step=0)
            mlflow.log_metric("f1", 0.8, step=0)

    out["run_s"] = _median_per_run(one_run, max(1, created // 10))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--created", type=int, default=300, help="runs per batch when timing run creation")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        ours = bench_podstack(args.points, args.runs, os.path.join(work, "podstack"), args.created)
        theirs = bench_mlflow(args.points, args.runs, work, args.created)
    print(f"\n{'measure':44s} {'podstack':>14s} {'MLflow':>14s}  ratio")
    rows = [
        ("log call in a loop (us per call)", "per_call_us", "{:.2f}", True),
        ("persisted throughput (points/s; MLflow log_batch)", "persisted_pts_s", "{:,.0f}", False),
        (f"get_metric_history, {args.points:,} points (s)", "history_s", "{:.3f}", True),
        (f"search_runs metric filter, {args.runs:,} runs (s)", "search_s", "{:.3f}", True),
        ("run: start, 5 params, 3 metrics, end (ms)", "run_ms", "{:.2f}", True),
    ]
    for figures in (ours, theirs):
        figures["run_ms"] = figures["run_s"] * 1e3
    for label, key, fmt, lower_is_better in rows:
        ratio = theirs[key] / ours[key] if lower_is_better else ours[key] / theirs[key]
        print(f"{label:44s} {fmt.format(ours[key]):>14s} {fmt.format(theirs[key]):>14s}  {ratio:,.1f}x")


if __name__ == "__main__":
    main()
