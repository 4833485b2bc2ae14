"""%%gpu side by side with ipyparallel (%%px on one local engine) and a bare jupyter_client kernel.

Run: python bench/bench_gpu.py [--mb 256] [--reps 50]
Needs: pip install -e ".[bench]"  (ipyparallel)

Measures, on this machine, in one run:
  * a warm trivial cell's round trip through IPython (median of --reps)
  * pushing a --mb MB numpy array, and re-running with it unchanged
  * session cold start (podstack: kernel + agent; bare: KernelManager until ready)
and prints each peer's figure and the ratio peer / podstack (>1: podstack is faster).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def median_time(fn, reps: int) -> float:
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def check(result):
    if result.error_before_exec or result.error_in_exec:
        raise RuntimeError(result.error_before_exec or result.error_in_exec)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=int, default=256)
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--cold-reps", type=int, default=5)
    args = parser.parse_args()

    import ipyparallel as ipp
    from IPython.core.interactiveshell import InteractiveShell
    from jupyter_client import KernelManager

    from podstack_jupyter.compute import GPUSpec, sessions

    ip = InteractiveShell.instance()
    ip.run_line_magic("load_ext", "podstack")
    rows = []

    # -- cold start --------------------------------------------------------
    def podstack_cold():
        sessions.get(GPUSpec(), fresh=True, progress=lambda _: None)

    def bare_cold():
        km = KernelManager(kernel_name="python3")
        km.start_kernel()
        kc = km.client()
        kc.start_channels()
        kc.wait_for_ready(timeout=60)
        kc.stop_channels()
        km.shutdown_kernel(now=True)

    bare = median_time(bare_cold, args.cold_reps)
    ours = median_time(podstack_cold, args.cold_reps)
    rows.append(("session cold start", ours, {"bare jupyter_client kernel": bare}))

    # -- warm trivial cell ---------------------------------------------------
    cluster = ipp.Cluster(n=1, log_level=40)
    client = cluster.start_and_connect_sync()
    client.wait_for_engines(1, timeout=120)
    view = client[:]
    view.block = True
    view.activate()  # %%px in this shell
    check(ip.run_cell("%%px\npass"))
    check(ip.run_cell("%%gpu\npass"))
    km = KernelManager(kernel_name="python3")
    km.start_kernel()
    kc = km.client()
    kc.start_channels()
    kc.wait_for_ready(timeout=60)
    px = median_time(lambda: check(ip.run_cell("%%px\npass")), args.reps)
    bare_cell = median_time(lambda: kc.execute_interactive("pass", output_hook=lambda m: None), args.reps)
    ours = median_time(lambda: check(ip.run_cell("%%gpu\npass")), args.reps)
    rows.append(("warm trivial cell", ours, {"ipyparallel %%px": px, "bare jupyter_client execute": bare_cell}))

    # -- big push, then unchanged re-run --------------------------------------
    n = args.mb * 1024 * 1024 // 8
    pushes, reruns, rerun_bytes = [], [], []
    px_pushes = []
    for _ in range(3):
        ip.user_ns["big"] = np.random.default_rng().random(n)
        session = sessions.find("all")[0]
        sent = session.kernel.bytes_sent
        started = time.perf_counter()
        check(ip.run_cell("%%gpu\nshape = big.shape"))
        pushes.append(time.perf_counter() - started)
        sent_after = session.kernel.bytes_sent
        assert sent_after - sent >= n * 8, "the array was not sent"
        started = time.perf_counter()
        check(ip.run_cell("%%gpu\nshape = big.shape"))
        reruns.append(time.perf_counter() - started)
        rerun_bytes.append(session.kernel.bytes_sent - sent_after)
        started = time.perf_counter()
        view.push({"big": ip.user_ns["big"]}, block=True)
        px_pushes.append(time.perf_counter() - started)
        check(ip.run_cell("%%gpu\ndel big"))  # deletes it here too
        view.execute("del big", block=True)
    push, rerun, px_push = statistics.median(pushes), statistics.median(reruns), statistics.median(px_pushes)
    rows.append((f"push {args.mb} MB array", push, {"ipyparallel push": px_push}))
    rows.append((f"re-run with {args.mb} MB unchanged", rerun, {"ipyparallel push (no dedup)": px_push}))

    kc.stop_channels()
    km.shutdown_kernel(now=True)
    cluster.stop_cluster_sync()
    sessions.stop("all")

    print(f"\n{'measure':34s} {'podstack':>10s}   peer figures (ratio peer/podstack)")
    for name, ours, peers in rows:
        peer_text = "; ".join(f"{p} {v * 1000:.1f} ms ({v / ours:.2f}x)" for p, v in peers.items())
        print(f"{name:34s} {ours * 1000:8.1f} ms   {peer_text}")
    print(f"\nunchanged re-run sent {max(rerun_bytes)} bytes; re-run / first push = {rerun / push:.3f}")
    print(f"push throughput: {args.mb / push / 1024:.2f} GB/s")


if __name__ == "__main__":
    main()
