"""%%gpu on each compute backend side by side with the local backend (and ipyparallel), in one run.

    python bench/bench_backends.py [--mb 256] [--reps 30] [--cold-reps 3] [--backends local,jupyter,ray,team]

Backends, all on this machine (so the figures show each backend's own overhead, not a network):
* ``local``: an ipykernel subprocess (ZMQ over loopback, large buffers through shared memory);
* ``jupyter``: a kernel of a real jupyter-kernel-gateway, over its REST API and websocket;
* ``ray``: a Ray actor's kernel on a real local Ray cluster (``ray start --head``), connected
  directly to the kernel's ports; ``ray (tunnel)``: the same, its messages relayed by the actor;
* ``team``: a session a real ``podstack server`` (SQLite, ``--backend local``) hands out, its
  kernel's messages relayed by the server over its websocket.
Peer: ipyparallel ``%%px`` on one local engine (warm cell and push), when it is installed.

Rows (medians): session cold start (``sessions.get(fresh=True)`` until the agent answers), a warm
trivial cell's round trip through IPython, pushing a ``--mb`` MB numpy array (first use in a cell).
Each row prints the figure and the ratio backend / local (above 1: slower than local).
The servers and the cluster are started by the test suite's own helpers (``tests/compute``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "compute"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def median_time(fn, reps: int) -> float:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def check(result):
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        raise RuntimeError(error)


def measure(ip, args) -> dict:
    from podstack_jupyter.compute import GPUSpec, sessions

    figures = {"cold": median_time(lambda: sessions.get(GPUSpec(), fresh=True, progress=lambda _: None),
                                   args.cold_reps)}
    check(ip.run_cell("%%gpu\npass"))
    figures["warm"] = median_time(lambda: check(ip.run_cell("%%gpu\npass")), args.reps)
    pushes = []
    for _ in range(3):
        ip.user_ns["big"] = np.random.default_rng().random(args.mb * 1024 * 1024 // 8)
        started = time.perf_counter()
        check(ip.run_cell("%%gpu\nshape = big.shape"))
        pushes.append(time.perf_counter() - started)
        check(ip.run_cell("%%gpu\ndel big"))
    figures["push"] = statistics.median(pushes)
    sessions.stop("all")
    return figures


_SET: list[str] = []  # what the last use() set, taken away by the next


def use(backend: str, **settings) -> None:
    from podstack_jupyter import config

    while _SET:
        os.environ.pop(_SET.pop(), None)
    os.environ["PODSTACK_BACKEND"] = backend
    for key, value in settings.items():
        os.environ["PODSTACK_" + key.upper()] = value
        _SET.append("PODSTACK_" + key.upper())
    config.reset()


def ipyparallel_figures(ip, args) -> dict | None:
    try:
        import ipyparallel as ipp
    except ImportError:
        return None
    cluster = ipp.Cluster(n=1, log_level=40)
    client = cluster.start_and_connect_sync()
    try:
        client.wait_for_engines(1, timeout=120)
        view = client[:]
        view.block = True
        view.activate()
        check(ip.run_cell("%%px\npass"))
        warm = median_time(lambda: check(ip.run_cell("%%px\npass")), args.reps)
        big = np.random.default_rng().random(args.mb * 1024 * 1024 // 8)
        push = median_time(lambda: view.push({"big": big}, block=True), 3)
        return {"warm": warm, "push": push}
    finally:
        cluster.stop_cluster_sync()


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--reps", type=int, default=30)
    parser.add_argument("--cold-reps", type=int, default=3)
    parser.add_argument("--backends", default="local,jupyter,ray,team",
                        help="which to run, comma-separated (local always runs: it is the baseline)")
    args = parser.parse_args()
    chosen = set(args.backends.split(","))

    from IPython.core.interactiveshell import InteractiveShell

    from jupyter_servers import start_kernel_gateway
    from ray_cluster import ray_cluster
    from team_server import start_team_server

    os.environ.setdefault("PODSTACK_HOME", tempfile.mkdtemp(prefix="podstack-bench-"))
    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "podstack")
    results = {}
    use("local")
    results["local"] = measure(ip, args)
    if "jupyter" in chosen:
        gateway = start_kernel_gateway(Path(tempfile.mkdtemp(prefix="podstack-bench-gw-")))
        try:
            use("jupyter", jupyter_url=gateway.url, jupyter_token=gateway.token)
            results["jupyter (kernel gateway)"] = measure(ip, args)
        finally:
            gateway.stop()
    if "ray" in chosen:
        with ray_cluster() as address:
            use("ray", ray_address=address, ray_connect="direct")
            results["ray (direct)"] = measure(ip, args)
            use("ray", ray_address=address, ray_connect="tunnel")
            results["ray (tunnel)"] = measure(ip, args)
    if "team" in chosen:
        server = start_team_server(Path(tempfile.mkdtemp(prefix="podstack-bench-team-")), grace=60)
        try:
            project_id, key = server.new_project()
            use("team", registry_url=server.url, api_key=key, project_id=project_id)
            results["team (podstack server)"] = measure(ip, args)
        finally:
            server.stop()
            server.close_accounts()
    use("local")
    peer = ipyparallel_figures(ip, args)
    if peer is not None:
        results["ipyparallel %%px (peer)"] = {"cold": float("nan"), **peer}

    base = results["local"]
    rows = [("session cold start", "cold"), ("warm trivial cell", "warm"), (f"push {args.mb} MB array", "push")]
    print(f"\n{'backend':26s}" + "".join(f"{title:>32s}" for title, _ in rows))
    for name, figures in results.items():
        cells = []
        for _, key in rows:
            value = figures[key]
            cells.append("-" if value != value else f"{value * 1000:.1f} ms ({value / base[key]:.2f}x local)")
        print(f"{name:26s}" + "".join(f"{c:>32s}" for c in cells))
    print("\nratio = backend / local (above 1: slower than the local backend); medians; machine shared, "
          "compare ratios within one run")


if __name__ == "__main__":
    main()
