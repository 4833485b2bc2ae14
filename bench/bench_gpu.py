"""%%gpu side by side with ipyparallel (%%px on one local engine) and the machine's limits, in one run.

Run: python bench/bench_gpu.py [--quick] [--only ROW ...]
Needs: pip install -e ".[bench]"  (ipyparallel)

Each row times a notebook cell that reads a value the other side does not hold yet
(podstack: ``%%gpu`` pushes it, runs, checks what changed; ipyparallel: ``view.push``
then ``%%px`` reading it), as the median of a few repetitions, and prints the ratio
ipyparallel / podstack (> 1: podstack is faster) next to the issue's target:

  array-local   256 MB numpy array, session on this machine (memory copied process to process)
  array-socket  the same through the session's socket (as a remote session would)
  dataframe     5M-row DataFrame with object strings; and an unchanged re-run / the first
  dicts         list of 2M small dicts
  tensor        512 MB torch tensor, against a 512 MB numpy array through podstack (out of band)
  vars          a cell reading 200 unchanged small variables, against %%px reading them
  trivial       a warm trivial cell
  cold          session cold start, against a bare jupyter_client kernel

and the machine's limits: memcpy into fresh and into touched memory, a unix socket pair and
TCP loopback moving 256 MB. The machine may be shared: run it 2-3 times and quote the spread.
"""

from __future__ import annotations

import argparse
import gc
import socket
import statistics
import threading
import time

import numpy as np


def timed(fn) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def median_time(fn, reps: int, setup=None) -> float:
    samples = []
    for _ in range(reps):
        if setup is not None:
            setup()
        samples.append(timed(fn))
    return statistics.median(samples)


def check(result):
    if result.error_before_exec or result.error_in_exec:
        raise RuntimeError(result.error_before_exec or result.error_in_exec)


# -- the machine's limits --------------------------------------------------------------------------

def machine_limits(nbytes: int) -> dict:
    src = np.random.default_rng(0).integers(0, 255, nbytes, dtype=np.uint8)
    touched = np.empty_like(src)
    touched[:] = 1
    limits = {
        "memcpy into touched memory": median_time(lambda: np.copyto(touched, src), 5),
        "memcpy into fresh memory": median_time(lambda: np.copyto(np.empty_like(src), src), 3),
        "unix socket pair": median_time(lambda: _socket_transfer(src, socket.AF_UNIX), 3),
        "TCP loopback": median_time(lambda: _socket_transfer(src, socket.AF_INET), 3),
    }
    return {name: nbytes / seconds / 1e9 for name, seconds in limits.items()}


def _socket_transfer(data: np.ndarray, family: int):
    if family == socket.AF_UNIX:
        left, right = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    else:
        server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        left = socket.create_connection(server.getsockname())
        right, _ = server.accept()
        server.close()
    sink = bytearray(data.nbytes)

    def receive():
        view, got = memoryview(sink), 0
        while got < len(sink):
            got += right.recv_into(view[got:], min(1 << 22, len(sink) - got))

    reader = threading.Thread(target=receive)
    reader.start()
    left.sendall(memoryview(data))
    reader.join()
    left.close()
    right.close()


# -- rows --------------------------------------------------------------------------------------------

class Bench:
    def __init__(self, args):
        import ipyparallel as ipp
        from IPython.core.interactiveshell import InteractiveShell

        from podstack_jupyter.compute import GPUSpec, sessions

        self.args = args
        self.sessions = sessions
        self.spec = GPUSpec()
        self.ip = InteractiveShell.instance()
        self.ip.run_line_magic("load_ext", "podstack")
        self.cluster = ipp.Cluster(n=1, log_level=40)
        self.client = self.cluster.start_and_connect_sync()
        self.client.wait_for_engines(1, timeout=120)
        self.view = self.client[:]
        self.view.block = True
        self.view.activate()  # %%px in this shell
        self.run("%%gpu\nimport numpy as np")
        self.run("%%px\nimport numpy as np")
        self.rows = []

    def run(self, cell):
        check(self.ip.run_cell(cell))

    @property
    def session(self):
        return self.sessions.find("all")[0]

    def both(self, name, make, cell, reps, target, note=""):
        """Time ``cell`` on a fresh value from ``make()`` through podstack and through ipyparallel."""
        ours, theirs = [], []
        for _ in range(reps):
            self.ip.user_ns["value"] = make()
            gc.collect()
            ours.append(timed(lambda: self.run("%%gpu\n" + cell)))
            self.run("%%gpu\ndel value")
            value = make()
            gc.collect()
            theirs.append(timed(lambda: (self.view.push({"value": value}), self.run("%%px\n" + cell))))
            self.view.execute("del value")
            del value
        self.rows.append((name, statistics.median(ours), statistics.median(theirs), target, note,
                          (min(ours), max(ours))))
        return statistics.median(ours)

    def array(self, mb, same_host=True):
        self.session.kernel.same_host = same_host
        try:
            n = mb * 1024 * 1024 // 8
            return self.both(f"{mb} MB numpy array, {'local' if same_host else 'socket'}",
                             lambda: np.random.default_rng().random(n), "shape = value.shape", self.args.reps,
                             ">= 10x" if same_host else ">= 3x")
        finally:
            self.session.kernel.same_host = True

    def dataframe(self, rows):
        import pandas as pd

        rng = np.random.default_rng(0)
        words = np.array([f"word{i}" for i in range(1000)], dtype=object)

        def make():
            return pd.DataFrame({"s": pd.Series(words[rng.integers(0, 1000, rows)], dtype=object),
                                 "t": pd.Series(rng.integers(0, 1 << 40, rows).astype(str)).astype(object),
                                 "x": rng.random(rows)})

        first = self.both(f"{rows / 1e6:g}M-row DataFrame, object strings", make, "n = len(value)",
                          self.args.big_reps, ">= 1.0x")
        self.ip.user_ns["frame"] = make()
        self.run("%%gpu\nn = len(frame)")
        rerun = median_time(lambda: self.run("%%gpu\nn = len(frame)"), self.args.big_reps)
        self.run("%%gpu\ndel frame")
        self.rows.append(("  unchanged re-run (podstack only)", rerun, None, "<= 0.3 of first",
                          f"{rerun / first:.2f} of the first", (rerun, rerun)))

    def dicts(self, count):
        self.both(f"list of {count / 1e6:g}M small dicts",
                  lambda: [{"id": i, "name": f"item{i}", "score": i * 0.5} for i in range(count)],
                  "n = len(value)", self.args.big_reps, ">= 1.0x")

    def tensor(self, mb):
        import torch

        n_float32 = mb * 1024 * 1024 // 4
        n_float64 = mb * 1024 * 1024 // 8
        # one untimed push of each first: whichever ran first would otherwise pay for the memory both
        # reuse afterwards (fresh pages cost several times the copy on some machines)
        for warm in (torch.rand(n_float32), np.random.default_rng().random(n_float64)):
            self.ip.user_ns["value"] = warm
            self.run("%%gpu\nn = value.size if hasattr(value, 'size') and not callable(value.size) else 0")
            self.run("%%gpu\ndel value")
        del warm
        tensor_time = self.both(f"{mb} MB torch tensor", lambda: torch.rand(n_float32), "n = value.numel()",
                                self.args.reps, "within 1.2x of numpy")
        array_time = median_time(lambda: self.run("%%gpu\nn = value.size"), self.args.reps,
                                 setup=lambda: self.ip.user_ns.__setitem__("value", np.random.default_rng().random(
                                     n_float64)))
        self.run("%%gpu\ndel value")
        self.rows.append((f"  {mb} MB numpy array (podstack only)", array_time, None, "",
                          f"tensor / array = {tensor_time / array_time:.2f}", (array_time, array_time)))

    def variables(self, count):
        values = {}
        for i in range(count):
            kind = i % 4
            values[f"v{i}"] = (i if kind == 0 else f"text {i}" if kind == 1 else [i, i + 1, i + 2]
                               if kind == 2 else np.arange(10) + i)
        self.ip.user_ns.update(values)
        self.view.push(values)
        cell = "n = len([" + ", ".join(values) + "])"
        self.run("%%gpu\n" + cell)
        ours = median_time(lambda: self.run("%%gpu\n" + cell), self.args.trivial_reps)
        theirs = median_time(lambda: self.run("%%px\n" + cell), self.args.trivial_reps)
        self.rows.append((f"cell reading {count} unchanged variables", ours, theirs, ">= 1.0x", "", (ours, ours)))

    def trivial(self):
        self.run("%%gpu\npass")
        self.run("%%px\npass")
        reps = self.args.trivial_reps
        ours, theirs = [], []
        for _ in range(3):  # interleaved, so a busy moment on a shared machine hits both
            ours.append(median_time(lambda: self.run("%%gpu\npass"), reps))
            theirs.append(median_time(lambda: self.run("%%px\npass"), reps))
        self.rows.append(("warm trivial cell", statistics.median(ours), statistics.median(theirs), ">= 1.5x", "",
                          (min(ours), max(ours))))

    def cold(self):
        from jupyter_client import KernelManager

        def bare():
            km = KernelManager(kernel_name="python3")
            km.start_kernel()
            kc = km.client()
            kc.start_channels()
            kc.wait_for_ready(timeout=60)
            kc.stop_channels()
            km.shutdown_kernel(now=True)

        theirs = median_time(bare, 3)
        ours = median_time(lambda: self.sessions.get(self.spec, fresh=True, progress=lambda _: None), 3)
        self.run("%%gpu\nimport numpy as np")
        self.rows.append(("session cold start (vs a bare kernel)", ours, theirs, "", "", (ours, ours)))

    def close(self):
        self.cluster.stop_cluster_sync()
        self.sessions.stop("all")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, to check the script itself")
    parser.add_argument("--only", nargs="+", default=None,
                        choices=["array-local", "array-socket", "dataframe", "dicts", "tensor", "vars", "trivial",
                                 "cold", "limits"])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--big-reps", type=int, default=3)
    parser.add_argument("--trivial-reps", type=int, default=50)
    args = parser.parse_args()
    quick = args.quick
    only = set(args.only or ["limits", "array-local", "array-socket", "dataframe", "dicts", "tensor", "vars",
                             "trivial", "cold"])
    mb = 16 if quick else 256

    limits = machine_limits(mb << 20) if "limits" in only else {}
    bench = Bench(args)
    try:
        if "trivial" in only:
            bench.trivial()
        if "vars" in only:
            bench.variables(200)
        if "array-local" in only:
            bench.array(mb, same_host=True)
        if "array-socket" in only:
            bench.array(mb, same_host=False)
        if "tensor" in only:
            bench.tensor(32 if quick else 512)
        if "dataframe" in only:
            bench.dataframe(100_000 if quick else 5_000_000)
        if "dicts" in only:
            bench.dicts(50_000 if quick else 2_000_000)
        if "cold" in only:
            bench.cold()
    finally:
        bench.close()

    print(f"\n{'measure':44s} {'podstack':>11s} {'ipyparallel':>12s} {'ratio':>7s}  target        "
          "podstack min-max / note")
    for name, ours, theirs, target, note, (low, high) in bench.rows:
        peer = f"{theirs * 1000:9.1f} ms" if theirs is not None else " " * 12
        ratio = f"{theirs / ours:6.2f}x" if theirs is not None else " " * 7
        spread = f"{low * 1000:.1f}-{high * 1000:.1f} ms" if high > low else ""
        print(f"{name:44s} {ours * 1000:8.1f} ms {peer} {ratio}  {target:13s} {spread} {note}")
    if limits:
        print("\nmachine limits (same run):")
        for name, rate in limits.items():
            print(f"  {name:30s} {rate:6.2f} GB/s")
        for name, ours, theirs, *_ in bench.rows:
            if "numpy array," in name:
                rate = mb * 1.048576e6 / ours / 1e9
                print(f"  {name:30s} {rate:6.2f} GB/s end to end (whole cell)")


if __name__ == "__main__":
    main()
