"""podstack's tracking store side by side with MLflow's (both on SQLite), in one run.

Run: python bench/bench_tracking.py [--points 1000000] [--runs 100000] [--created 300] [--kill-safe-only]
Needs: pip install -e ".[bench]"  (mlflow; a separate virtual environment keeps its pins apart)

Measures:
  1. logging --points metric points from a loop: the per-call cost in the loop, and the
     persisted throughput (points written to the database per second, until flushed);
     MLflow: log_metric per call, and log_batch of 1,000 points
  2. get_metric_history of a --points-point metric
  3. search_runs with a metric filter over --runs runs
  4. creating a run: start, 5 params, 3 metrics, end (the fluent API of each; median over
     batches of --created runs / 10 for MLflow, whose runs cost tens of milliseconds)
  5. kill-safe logging (bench_kill_safe_logging): the same loop with podstack's metric journal on
     (every point survives a SIGKILL once log_metrics returns) and off (points in memory until
     flushed), MLflow's synchronous log_metric (kill-safe: one transaction a call) and asynchronous
     log_metric (not kill-safe); wall-clock and CPU time (the machine may be shared); then each
     kill-safe way of logging is SIGKILLed after a second of logging and the acknowledged points
     missing from the store afterwards are counted.
MLflow's own logging is far too slow to fill 1,000,000 points or 100,000 runs through its API in
a benchmark, so its database is filled with the same rows by bulk SQL into its own schema (made
by MLflow); only its reads are timed on that data. Ratios are MLflow / podstack (>1: podstack faster).
"""

from __future__ import annotations

import argparse
import mmap
import os
import signal
import sqlite3
import struct
import subprocess
import sys
import tempfile
import textwrap
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


def _podstack_loop(points: int, durable: bool) -> dict:
    from podstack import registry
    from podstack_jupyter.tracking.runs import metric_buffer

    registry._reset_store()  # the next log opens a fresh journal, on disk or in memory
    metric_buffer.durable = durable
    try:
        with registry.start_run(f"kill-safe-{durable}") as run:
            log_metrics = registry.log_metrics
            wall, cpu = time.perf_counter(), time.process_time()
            for i in range(points):
                log_metrics({"loss": 1.0 / (i + 1)}, step=i)
            loop_wall, loop_cpu = time.perf_counter() - wall, time.process_time() - cpu
            registry.flush()
            total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
        assert len(registry.get_metric_history(run.id, "loss")) == points
    finally:
        metric_buffer.durable = True
        registry._reset_store()
    return {"per_call_us": loop_wall / points * 1e6, "per_call_cpu_us": loop_cpu / points * 1e6,
            "persisted_pts_s": points / total_wall, "persisted_cpu_pts_s": points / total_cpu}


def _mlflow_loop(calls: int, synchronous: bool, directory: str) -> dict:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(f"sqlite:///{os.path.join(directory, 'mlflow-kill-safe.db')}")
    run = client.create_run(client.create_experiment(f"kill-safe-{synchronous}-{uuid.uuid4().hex[:6]}"))
    wall, cpu = time.perf_counter(), time.process_time()
    for i in range(calls):
        client.log_metric(run.info.run_id, "loss", 1.0 / (i + 1), step=i, synchronous=synchronous)
    loop_wall, loop_cpu = time.perf_counter() - wall, time.process_time() - cpu
    if not synchronous:
        client._tracking_client.store.flush_async_logging()  # this client's queue (mlflow.flush_... is the fluent one's)
    total_wall, total_cpu = time.perf_counter() - wall, time.process_time() - cpu
    assert len(client.get_metric_history(run.info.run_id, "loss")) == calls
    return {"per_call_us": loop_wall / calls * 1e6, "per_call_cpu_us": loop_cpu / calls * 1e6,
            "persisted_pts_s": calls / total_wall, "persisted_cpu_pts_s": calls / total_cpu}


# A victim process logs for about a second, counting each call that returned in a shared page
# (which, like the journal, outlives the process); then it is SIGKILLed.
_VICTIM = textwrap.dedent("""
    import mmap, os, struct, sys, time
    ack = mmap.mmap(os.open(sys.argv[1], os.O_RDWR), 4096)
    if sys.argv[2] == "podstack":
        from podstack import registry
        run_id = registry.start_run("victim").id
        def log(i):
            registry.log_metrics({"loss": float(i)}, step=i)
    else:
        from mlflow.tracking import MlflowClient
        client = MlflowClient("sqlite:///" + sys.argv[3])
        run_id = client.create_run(client.create_experiment("victim")).info.run_id
        synchronous = sys.argv[2] == "mlflow-sync"
        def log(i):
            client.log_metric(run_id, "loss", float(i), step=i, synchronous=synchronous)
    ack[16:16 + len(run_id)] = run_id.encode()
    struct.pack_into("q", ack, 8, 1)
    i = 0
    while True:
        log(i)
        struct.pack_into("q", ack, 0, i + 1)
        i += 1
""")


def _acknowledged_but_lost(how: str, work: str, seconds: float = 1.0) -> tuple[int, int]:
    """SIGKILL a process logging the ``how`` way; returns (acknowledged points, of them missing after)."""
    ack_path = os.path.join(work, f"{how}.ack")
    with open(ack_path, "wb") as f:
        f.write(bytes(4096))
    env = {**os.environ, "PODSTACK_HOME": os.path.join(work, "victims")}
    db = os.path.join(work, f"{how}.db")
    victim = subprocess.Popen([sys.executable, "-c", _VICTIM, ack_path, how, db], env=env)
    with open(ack_path, "rb") as f:
        page = mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_READ)
        deadline = time.monotonic() + 120
        while struct.unpack_from("q", page, 8)[0] == 0 or struct.unpack_from("q", page, 0)[0] == 0:
            assert victim.poll() is None and time.monotonic() < deadline, "the victim did not start"
            time.sleep(0.01)
        time.sleep(seconds)
        victim.send_signal(signal.SIGKILL)
        victim.wait()
        acknowledged = struct.unpack_from("q", page, 0)[0]
        run_id = page[16:64].rstrip(b"\0").decode()
        page.close()
    if how == "podstack":  # the next process that opens the store recovers the journal
        out = subprocess.run([sys.executable, "-c", "from podstack import registry\nimport sys\n"
                              "print(len(registry.get_metric_history(sys.argv[1], 'loss')))", run_id],
                             env=env, capture_output=True, text=True, check=True)
        stored = int(out.stdout.split()[-1])
    else:
        with sqlite3.connect(db) as con:
            stored = con.execute("SELECT COUNT(*) FROM metrics WHERE run_uuid = ?", (run_id,)).fetchone()[0]
    return acknowledged, max(0, acknowledged - stored)


def bench_kill_safe_logging(points: int, work: str) -> list:
    """Rows ``(label, per call us, per call cpu us, persisted/s, persisted cpu/s, acked, lost)``."""
    rows = []
    for label, result, kill in (
        ("podstack, journal on (kill-safe)", lambda: _podstack_loop(points, True), "podstack"),
        ("podstack, journal off (in memory)", lambda: _podstack_loop(points, False), None),
        ("MLflow log_metric synchronous (kill-safe)", lambda: _mlflow_loop(300, True, work), "mlflow-sync"),
        ("MLflow log_metric synchronous=False", lambda: _mlflow_loop(2_000, False, work), "mlflow-async"),
    ):
        figures = result()
        acked, lost = _acknowledged_but_lost(kill, work) if kill else (None, None)
        rows.append((label, figures, acked, lost))
    return rows


def print_kill_safe(rows: list) -> None:
    print(f"\n{'kill-safe logging (1 metric a call)':44s} {'us/call':>8s} {'cpu us':>7s} {'persisted/s':>12s} "
          f"{'cpu pts/s':>10s} {'acked':>9s} {'lost':>7s}")
    for label, f, acked, lost in rows:
        print(f"{label:44s} {f['per_call_us']:8.2f} {f['per_call_cpu_us']:7.2f} {f['persisted_pts_s']:12,.0f} "
              f"{f['persisted_cpu_pts_s']:10,.0f} {'' if acked is None else f'{acked:,}':>9s} "
              f"{'' if lost is None else f'{lost:,}':>7s}")
    ours = rows[0][1]
    print("  ratios to podstack with its journal on (>1: the journaled podstack is faster):")
    for label, f, _, _ in rows[1:]:
        print(f"  {label:42s} per call {f['per_call_us'] / ours['per_call_us']:10,.2f}x   "
              f"persisted {ours['persisted_pts_s'] / f['persisted_pts_s']:10,.2f}x")
    print("  ('acked': log calls that had returned when the process was SIGKILLed after 1 s of logging; 'lost':\n"
          "   of those, points missing from the store afterwards, after podstack's recovery by the next process)")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--created", type=int, default=300, help="runs per batch when timing run creation")
    parser.add_argument("--kill-safe-only", action="store_true", help="only the kill-safe logging comparison")
    args = parser.parse_args()
    if args.kill_safe_only:
        with tempfile.TemporaryDirectory() as work:
            os.environ["PODSTACK_HOME"] = os.path.join(work, "podstack")
            print_kill_safe(bench_kill_safe_logging(args.points, work))
        return
    with tempfile.TemporaryDirectory() as work:
        ours = bench_podstack(args.points, args.runs, os.path.join(work, "podstack"), args.created)
        theirs = bench_mlflow(args.points, args.runs, work, args.created)
        kill_safe = bench_kill_safe_logging(args.points, work)
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
    print_kill_safe(kill_safe)


if __name__ == "__main__":
    main()
