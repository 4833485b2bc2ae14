"""The runs a script leaves open end with the status its exit deserves (real subprocesses)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from podstack_jupyter.tracking import registry

START = """
import os, signal, sys, threading, time
from podstack_jupyter.tracking import registry
run = registry.start_run("script")
child = registry.start_run("child", nested=True)
for i in range(1000):
    registry.log_metric("loss", float(i))
print(run.id, child.id, flush=True)
"""

SCRIPTS = {
    "normal end": ("", "completed", 0),
    "sys.exit(0)": ("sys.exit(0)", "completed", 0),
    "sys.exit(3)": ("sys.exit(3)", "failed", 3),
    "uncaught exception": ("raise RuntimeError('boom')", "failed", 1),
    "Ctrl-C": ("time.sleep(60)", "killed", -signal.SIGINT),  # the test sends SIGINT
    "exit code set then caught": ("try:\n    sys.exit(2)\nexcept SystemExit:\n    pass\nsys.exit(0)", "completed", 0),
}


def _env(podstack_home, store_url) -> dict:
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    if store_url.startswith("postgresql"):
        env["PODSTACK_TRACKING_URI"] = store_url
    return env


def test_open_runs_end_completed_failed_or_killed_as_the_script_ends(podstack_home, store_url):
    env = _env(podstack_home, store_url)
    processes = {name: subprocess.Popen([sys.executable, "-c", START + ending], env=env, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)
                 for name, (ending, _, _) in SCRIPTS.items()}  # all at once: each takes a second to start
    ids = {name: process.stdout.readline().split() for name, process in processes.items()}
    time.sleep(0.2)
    processes["Ctrl-C"].send_signal(signal.SIGINT)
    for name, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == SCRIPTS[name][2], (name, stderr)
    for name, (run_id, child_id) in ids.items():
        expected = SCRIPTS[name][1]
        assert (registry.get_run(run_id).status, registry.get_run(child_id).status) == (expected, expected), name
        assert len(registry.get_metric_history(child_id, "loss")) == 1000, name


def test_a_thread_that_dies_of_an_exception_ends_its_own_runs_failed(podstack_home, store_url):
    script = START + textwrap.dedent("""
        def work():
            worker_run = registry.start_run("in-thread")
            print(worker_run.id, flush=True)
            registry.log_metric("x", 1.0)
            raise ValueError("the worker failed")
        thread = threading.Thread(target=work)
        thread.start()
        thread.join()
    """)
    out = subprocess.run([sys.executable, "-c", script], env=_env(podstack_home, store_url), capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0 and "the worker failed" in out.stderr  # the usual thread traceback still shows
    first, worker = out.stdout.splitlines()
    run_id, child_id = first.split()
    assert registry.get_run(worker).status == "failed" and registry.get_run(worker).metrics == {"x": 1.0}
    assert registry.get_run(run_id).status == registry.get_run(child_id).status == "completed"


@pytest.mark.parametrize("code, status", [("0", "completed"), ("4", "failed")])
def test_sys_exit_inside_a_run_block_ends_it_by_the_code(code, status):
    with pytest.raises(SystemExit):
        with registry.start_run("exiting") as run:
            sys.exit(int(code))
    assert registry.get_run(run.id).status == status
