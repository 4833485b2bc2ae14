"""``podstack server`` (the REST store) side by side with the embedded store and with an MLflow
tracking server, all on one PostgreSQL server started here, in one run.

Run: python bench/bench_server.py [--points 200000] [--runs 300] [--searched 1000]
Needs: pip install -e ".[bench,server]" (MLflow pins many packages: a separate virtual
environment, see bench/README.md) and PostgreSQL's server binaries (initdb, pg_ctl).

Each server runs as one process with one worker (``podstack server``; ``mlflow server --workers 1``)
on its own database of the same PostgreSQL server; the clients run in this process.

Measures:
  1. metric logging throughput: --points points of one run logged in a loop and flushed
     (podstack: ``registry.log_metrics`` per point, batched by the store; MLflow: ``log_batch`` of
     1,000 metrics per call, its fastest way, and ``log_metric`` per point on a sample of 50-300 points)
  2. creating a run: start, 5 params, 3 metrics, end (the fluent API of each), median per run
  3. ``search_runs`` with a metric filter over --searched runs, 100 results, median latency (each
     database ANALYZEd first: the statistics of a server that has been running)
Ratios are other / podstack server (>1: the podstack server is faster), and REST / embedded
(what going through the server costs over the embedded store on the same PostgreSQL).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test services: PostgreSQL, server


def median(values):
    values = sorted(values)
    return values[len(values) // 2]


def per_call(one, count: int, batches: int = 5) -> float:
    """Seconds per call of ``one()``: the median over ``batches`` batches of ``count`` calls (after a warm-up)."""
    for _ in range(max(2, count // 5)):
        one()
    results = []
    for _ in range(batches):
        started = time.perf_counter()
        for _ in range(count):
            one()
        results.append((time.perf_counter() - started) / count)
    return median(results)


# -- podstack (the REST store through podstack server, or the embedded store) ---------------------------

def analyzed(database_url: str) -> None:
    """ANALYZE a database: search timings then see the statistics a server that has been running has,
    not whatever autovacuum (once a minute) happened to do during the run."""
    import psycopg

    with psycopg.connect(database_url.replace("postgresql+psycopg://", "postgresql://"), autocommit=True) as conn:
        conn.execute("ANALYZE")


def bench_podstack(points: int, runs: int, searched: int, database_url: str, **settings) -> dict:
    from podstack_jupyter import config
    from podstack_jupyter.tracking import registry

    config.reset()
    config.init(**settings)
    registry._reset_store()
    registry._set_current_experiment((None, None))
    out = {}
    registry.set_experiment(f"throughput-{uuid.uuid4().hex[:6]}")
    started = time.perf_counter()
    with registry.start_run("throughput") as run:
        for step in range(points):
            registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    out["throughput"] = points / (time.perf_counter() - started)
    assert len(registry.get_metric_history(run.id, "loss")) == points

    registry.set_experiment(f"creation-{uuid.uuid4().hex[:6]}")

    def create():
        with registry.start_run("r"):
            registry.log_params({"lr": 0.01, "batch": 32, "epochs": 3, "optimizer": "adam", "dropout": 0.1})
            registry.log_metrics({"loss": 0.5, "accuracy": 0.9, "f1": 0.8}, step=0)

    out["create"] = per_call(create, max(1, runs // 5))

    experiment = registry.set_experiment(f"search-{uuid.uuid4().hex[:6]}")
    for i in range(searched):
        with registry.start_run(f"s{i}"):
            registry.log_metrics({"loss": i / searched}, step=0)
    analyzed(database_url)
    query = "metrics.loss < 0.5"
    found = registry.search_runs(experiment_id=experiment.id, filter=query, max_results=100)
    assert len(found) == min(100, searched // 2), len(found)
    out["search"] = per_call(lambda: registry.search_runs(experiment_id=experiment.id, filter=query,
                                                          max_results=100), 5)
    registry._reset_store()
    config.reset()
    return out


# -- MLflow's tracking server -----------------------------------------------------------------------------

def bench_mlflow(url: str, points: int, runs: int, searched: int, database_url: str) -> dict:
    import logging

    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "1")  # not a "View run at ..." line per run
    import mlflow
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # not a "View run at ..." line per run
    mlflow.set_tracking_uri(url)
    client = MlflowClient(url)
    out = {}
    experiment = client.create_experiment(f"throughput-{uuid.uuid4().hex[:6]}")
    run = client.create_run(experiment)
    now = int(time.time() * 1000)
    started = time.perf_counter()
    for first in range(0, points, 1000):
        client.log_batch(run.info.run_id, metrics=[Metric("loss", 1.0 / (s + 1), now, s)
                                                   for s in range(first, min(points, first + 1000))])
    out["throughput"] = points / (time.perf_counter() - started)
    single = min(300, max(50, points // 100))  # one request a point: slow, so a sample
    run2 = client.create_run(experiment)
    started = time.perf_counter()
    for step in range(single):
        client.log_metric(run2.info.run_id, "loss", 1.0 / (step + 1), now, step)
    out["throughput_single"] = single / (time.perf_counter() - started)
    assert len(client.get_metric_history(run.info.run_id, "loss")) == points

    mlflow.set_experiment(f"creation-{uuid.uuid4().hex[:6]}")

    def create():
        with mlflow.start_run(run_name="r"):
            mlflow.log_params({"lr": 0.01, "batch": 32, "epochs": 3, "optimizer": "adam", "dropout": 0.1})
            mlflow.log_metrics({"loss": 0.5, "accuracy": 0.9, "f1": 0.8}, step=0)

    out["create"] = per_call(create, max(1, runs // 5))

    experiment = client.create_experiment(f"search-{uuid.uuid4().hex[:6]}")
    for i in range(searched):
        run = client.create_run(experiment, run_name=f"s{i}")
        client.log_metric(run.info.run_id, "loss", i / searched, now, 0)
        client.set_terminated(run.info.run_id)
    analyzed(database_url)
    query = "metrics.loss < 0.5"
    assert len(client.search_runs([experiment], query, max_results=100)) == min(100, searched // 2)
    out["search"] = per_call(lambda: client.search_runs([experiment], query, max_results=100), 5)
    return out


def wait_http(url: str, process, seconds: float = 120) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url}: the server exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {seconds} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=300, help="runs created to time run creation")
    parser.add_argument("--searched", type=int, default=1000, help="runs search_runs looks through")
    parser.add_argument("--skip-mlflow", action="store_true")
    args = parser.parse_args()

    from _services.podstack_server import LiveServer, free_port
    from _services.postgres import PostgresServer, pg_bin

    bindir = pg_bin()
    if bindir is None:
        sys.exit("PostgreSQL's server binaries (initdb, pg_ctl) are needed: apt-get install postgresql")
    work = Path(tempfile.mkdtemp(prefix="podstack-bench-server-"))
    os.environ["PODSTACK_HOME"] = str(work / "client-home")
    postgres = PostgresServer(bindir)
    postgres.start()
    server = mlflow_process = None
    try:
        server_db = postgres.new_database()
        server = LiveServer(server_db, str(work / "artifacts"), work / "server",
                            extra_args=("--rate-limit", "0", "--log-level", "warning"))
        server.start()
        project_id, key = server.new_project()
        results = {}
        print(f"podstack server ({server.url}, PostgreSQL) ...", flush=True)
        results["podstack server"] = bench_podstack(args.points, args.runs, args.searched, server_db,
                                                    registry_url=server.url, api_key=key, project_id=project_id)
        print("podstack embedded store (the same PostgreSQL) ...", flush=True)
        embedded_db = postgres.new_database()
        results["embedded (PostgreSQL)"] = bench_podstack(args.points, args.runs, args.searched, embedded_db,
                                                          tracking_uri=embedded_db)
        if not args.skip_mlflow:
            try:
                import mlflow  # noqa: F401
            except ImportError:
                print("MLflow is not installed (pip install -e '.[bench]'): its column is left out")
            else:
                port = free_port()
                postgres.admin("CREATE DATABASE mlflow")
                mlflow_db = postgres.url("mlflow")
                log = open(work / "mlflow.log", "wb")
                mlflow_process = subprocess.Popen(
                    [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", mlflow_db, "--host",
                     "127.0.0.1", "--port", str(port), "--workers", "1", "--default-artifact-root",
                     str(work / "mlflow-artifacts")], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
                wait_http(f"http://127.0.0.1:{port}/health", mlflow_process)
                print(f"MLflow tracking server (http://127.0.0.1:{port}, PostgreSQL) ...", flush=True)
                results["MLflow server"] = bench_mlflow(f"http://127.0.0.1:{port}", args.points, args.runs,
                                                        args.searched, mlflow_db)
        ours = results["podstack server"]
        print(f"\n{args.points:,} points, run creation median of batches, search over {args.searched:,} runs "
              "(the machine may be shared: compare ratios, not figures)\n")
        print(f"{'':34}{'points/s':>14}{'create (ms)':>14}{'search (ms)':>14}")
        for name, r in results.items():
            print(f"{name:34}{r['throughput']:14,.0f}{r['create'] * 1e3:14.2f}{r['search'] * 1e3:14.2f}")
        if "MLflow server" in results:
            print(f"{'MLflow server, log_metric per point':34}{results['MLflow server']['throughput_single']:14,.0f}")
        print("\nratios (x > 1: podstack server faster)")
        for name, r in results.items():
            if name == "podstack server":
                continue
            print(f"  {name:32} throughput {ours['throughput'] / r['throughput']:6.2f}x   "
                  f"create {r['create'] / ours['create']:6.2f}x   search {r['search'] / ours['search']:6.2f}x")
        if "MLflow server" in results:
            print(f"  {'MLflow log_metric per point':32} throughput "
                  f"{ours['throughput'] / results['MLflow server']['throughput_single']:6.2f}x")
    finally:
        if mlflow_process is not None and mlflow_process.poll() is None:
            os.killpg(mlflow_process.pid, 15)
            mlflow_process.wait(30)
        if server is not None:
            server.stop()
            server.close_accounts()
        postgres.stop()


if __name__ == "__main__":
    main()
