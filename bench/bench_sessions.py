"""Session start-up on the local backend, side by side with the machine's floor, in one run.

    python bench/bench_sessions.py [--repeat 3]

Rows (median seconds of ``--repeat`` runs; ratio = the other / podstack, above 1: podstack is faster):
* cold start: ``sessions.get()`` until the agent is loaded, against a bare ``jupyter_client``
  kernel started and answering ``kernel_info`` (what any Jupyter front end waits for);
* ``--pip`` environment, first use: build (venv + install of a tiny local wheel + a kernel started in
  it to check it) and the session's start, with pip and with uv, against ``python -m venv`` alone and
  against what one does by hand without layering: a venv with ``pip install ipykernel cloudpickle``
  (measured once: it downloads or reads the package index);
* ``--pip`` environment, cached: a session start in the built environment, against the cold start.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path


def tiny_wheel(directory: Path, name: str) -> str:
    files = {f"{name}/__init__.py": b"VALUE = 1\n",
             f"{name}-0.1.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n".encode(),
             f"{name}-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: bench\nRoot-Is-Purelib: true\n"
                                             b"Tag: py3-none-any\n"}
    record = [f"{p},sha256={base64.urlsafe_b64encode(hashlib.sha256(d).digest()).rstrip(b'=').decode()},{len(d)}"
              for p, d in files.items()] + [f"{name}-0.1.dist-info/RECORD,,"]
    path = directory / f"{name}-0.1-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{name}-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return str(path)


def bare_kernel_start() -> float:
    from jupyter_client import KernelManager

    started = time.perf_counter()
    km = KernelManager(kernel_name="python3", transport="ipc",
                       ip=os.path.join(tempfile.mkdtemp(prefix="pk-"), "kernel"))
    km.start_kernel()
    client = km.client()
    client.start_channels()
    client.wait_for_ready(timeout=60)
    elapsed = time.perf_counter() - started
    client.stop_channels()
    km.shutdown_kernel(now=True)
    return elapsed


def podstack_start(spec) -> float:
    from podstack_jupyter.compute import sessions

    started = time.perf_counter()
    sessions.get(spec, progress=lambda line: None)
    elapsed = time.perf_counter() - started
    sessions.stop("all")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="podstack-bench-"))
    os.environ["PODSTACK_HOME"] = str(work / "home")
    from podstack_jupyter.compute import GPUSpec
    from podstack_jupyter.compute.backends import _venvs

    rows = []

    def median(fn, *a):
        return statistics.median(fn(*a) for _ in range(args.repeat))

    floor = median(bare_kernel_start)
    cold = median(podstack_start, GPUSpec())
    rows.append(("cold start (agent loaded)", cold, "bare kernel answering", floor))

    def plain_venv():
        target = work / f"venv-{time.perf_counter_ns()}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
        return time.perf_counter() - started

    venv_floor = median(plain_venv)

    def by_hand_kernel_env():
        target = work / f"byhand-{time.perf_counter_ns()}"
        started = time.perf_counter()
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(target)], check=True)
        subprocess.run([sys.executable, "-m", "pip", "--python", str(target / "bin" / "python"), "install", "-q",
                        "--disable-pip-version-check", "ipykernel", "cloudpickle"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - started

    by_hand = by_hand_kernel_env()
    builders = [("pip", lambda: True)]
    if _venvs.find_uv():
        builders.append(("uv", lambda: False))  # uv builds where the notebook's environment has no pip
    real_pip_available = _venvs.pip_available
    for builder, pip_available in builders:
        _venvs.pip_available = pip_available
        try:
            times = []
            for i in range(args.repeat):
                spec = GPUSpec(pip=(tiny_wheel(work, f"benchpkg_{builder}_{i}"),))
                times.append(podstack_start(spec))
            rows.append((f"--pip, first use ({builder})", statistics.median(times), "python -m venv alone",
                         venv_floor))
            rows.append((f"--pip, first use ({builder})", statistics.median(times),
                         "venv + pip install ipykernel", by_hand))
        finally:
            _venvs.pip_available = real_pip_available
    spec = GPUSpec(pip=(tiny_wheel(work, "benchpkg_cached"),))
    podstack_start(spec)
    rows.append(("--pip, cached environment", median(podstack_start, spec), "cold start (no packages)", cold))

    print(f"{'what':<30} {'podstack s':>10}   {'against':<30} {'s':>7} {'ratio':>7}")
    for what, ours, against, theirs in rows:
        print(f"{what:<30} {ours:>10.2f}   {against:<30} {theirs:>7.2f} {theirs / ours:>6.2f}x")


if __name__ == "__main__":
    main()
