"""Executions through ``podstack server`` (the official SDK's ``run_on_gpu`` wire), side by side with
what each part of one costs, in one run.

    python bench/bench_executions.py [--repeat 7]

Rows (median seconds of ``--repeat`` runs of ``print(1)``; ratio = the row / the server, below 1:
that part alone is cheaper):
* server: ``POST /api/v1/executions/submit`` then ``GET .../result`` (which waits for the end), over
  HTTP to a ``podstack server`` on SQLite (local backend, a fresh session per execution);
* fresh session in-process: what the server does for one execution without HTTP and the queue
  (``GPUSession(spec, backend).open()``, ``run_code``, ``stop``);
* bare kernel: a ``jupyter_client`` kernel started, ``print(1)`` executed, shut down (the machine's
  floor for a fresh kernel per execution, no podstack agent);
* warm ``run_on_gpu``: podstack's own embedded ``run_on_gpu`` in a session kept warm between calls
  (what a fresh kernel per execution costs over reusing one);
* ``python -c``: a new interpreter printing 1.
Needs the ``server`` extra. The machine's cores may be shared: compare the ratios of one run.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # the test services: the server


def timed(one, repeat: int) -> float:
    one()  # warm-up (imports, first kernel)
    samples = []
    for _ in range(repeat):
        started = time.perf_counter()
        one()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples)


def server_row(repeat: int) -> float:
    import httpx
    from _services.podstack_server import LiveServer

    home = Path(tempfile.mkdtemp(prefix="bench-executions-"))
    server = LiveServer(f"sqlite:///{home / 'server.db'}", str(home / "artifacts"), home,
                        extra_args=("--rate-limit", "0"))
    server.start()
    try:
        project_id, key = server.new_project()
        client = httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"},
                              timeout=120)

        def one():
            execution_id = client.post("/executions/submit", json={"code": "print(1)",
                                                                    "project_id": project_id}).json()["execution_id"]
            got = client.get(f"/executions/{execution_id}/result").json()
            assert got["status"] == "completed" and got["output"] == "1\n", got

        return timed(one, repeat)
    finally:
        server.stop()
        server.close_accounts()


def fresh_session_row(repeat: int) -> float:
    from podstack_jupyter.compute import GPUSession, GPUSpec, run_code
    from podstack_jupyter.compute.session import CapturingSink
    from podstack_jupyter.compute.backends import get_backend

    backend = get_backend("local")

    def one():
        session = GPUSession(GPUSpec(), backend).open(progress=lambda text: None)
        try:
            sink = CapturingSink()
            run_code(session, "print(1)", sink=sink)
            assert sink.text == "1\n"
        finally:
            session.stop()

    return timed(one, repeat)


def bare_kernel_row(repeat: int) -> float:
    from jupyter_client.manager import start_new_kernel

    def one():
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            reply = kc.execute_interactive("print(1)", timeout=60, output_hook=lambda msg: None)
            assert reply["content"]["status"] == "ok"
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)

    return timed(one, repeat)


def warm_row(repeat: int) -> float:
    import podstack_jupyter as podstack
    from podstack_jupyter.compute import sessions

    try:
        return timed(lambda: podstack.run_on_gpu("print(1)"), repeat)
    finally:
        sessions.stop("all")


def python_row(repeat: int) -> float:
    return timed(lambda: subprocess.run([sys.executable, "-c", "print(1)"], check=True, capture_output=True), repeat)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    rows = [("server: submit -> result over HTTP", server_row), ("fresh session in-process", fresh_session_row),
            ("bare jupyter_client kernel", bare_kernel_row), ("warm run_on_gpu (embedded)", warm_row),
            ("python -c 'print(1)'", python_row)]
    figures = []
    for name, row in rows:
        figures.append((name, row(args.repeat)))
        print(f"{name:<38} {figures[-1][1] * 1000:9.1f} ms", file=sys.stderr, flush=True)
    server = figures[0][1]
    print(f"\n{'print(1), median of ' + str(args.repeat):<38} {'ms':>9} {'row / server':>13}")
    for name, seconds in figures:
        print(f"{name:<38} {seconds * 1000:9.1f} {seconds / server:13.2f}")


if __name__ == "__main__":
    main()
