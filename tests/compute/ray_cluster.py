"""A real local Ray cluster for the tests, with fake GPUs declared the way a cluster declares
its types (``--num-gpus=4 --resources='{"accelerator_type:T4": 4}'``).

It is started as a cluster is: ``ray start --head`` in a process of its own, joined by address
(``PODSTACK_RAY_ADDRESS``), with its own temporary folder, so that stopping it touches no
other Ray on the machine. Its agents' ports are given, because a raylet that must wait for its
agents to report theirs gives up after a while on a loaded machine.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

# Ray 2.60 turns token authentication on by default; a test cluster on loopback needs none
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

GPU_TYPE, GPU_COUNT = "T4", 4


# The raylet gives its Python agents about 30 s to report their ports and then fails a check
# (no setting changes that); on a machine shared with other test runs they can take longer,
# so the cluster starts ahead of the rest where it may (root), and is put back once it runs.
_FIRST_IN_LINE = ["nice", "-n", "-10"] if os.geteuid() == 0 else []


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


@contextmanager
def ray_cluster(start_limit: float = 180.0, tries: int = 4):
    """Start the cluster; yields its address (``node-ip:port``). Stopped and removed after.

    A raylet that loses the race with its own GCS on a loaded machine exits at start; it is
    started again (up to ``tries`` times) rather than failing a whole test module."""
    for attempt in range(1, tries + 1):
        try:
            process, temp, address = _start(start_limit)
            break
        except RuntimeError:
            if attempt == tries:
                raise
    try:
        yield address
    finally:
        import ray

        ray.shutdown()
        _stop(process, temp)


def _start(start_limit: float):
    temp = Path(tempfile.mkdtemp(prefix="psray-", dir="/tmp"))  # short: Ray's socket paths have a limit
    port, grpc, http, metrics, client = _free_ports(5)
    ray_bin = Path(sys.executable).with_name("ray")
    # on a loaded machine the raylet waits longer for its GCS and for its agents' port files
    env = dict(os.environ, RAY_raylet_start_wait_time_s="120", RAY_agent_register_timeout_ms="120000")
    with open(temp / "ray-start.log", "wb") as log:  # the child keeps its own copy
        process = subprocess.Popen(
            [*_FIRST_IN_LINE, str(ray_bin), "start", "--head", "--block", f"--port={port}", f"--temp-dir={temp}", "--num-cpus=4",
             f"--num-gpus={GPU_COUNT}", f"--resources={json.dumps({f'accelerator_type:{GPU_TYPE}': GPU_COUNT})}",
             "--include-dashboard=false", f"--dashboard-agent-grpc-port={grpc}", f"--dashboard-agent-listen-port={http}",
             f"--metrics-export-port={metrics}", f"--ray-client-server-port={client}", "--disable-usage-stats"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=env)
    deadline = time.monotonic() + start_limit
    while b"Ray runtime started" not in (temp / "ray-start.log").read_bytes():
        if process.poll() is not None or time.monotonic() > deadline or _raylet_failed(temp):
            text = (temp / "ray-start.log").read_text(errors="replace")[-3000:]
            _stop(process, temp)
            raise RuntimeError(f"the Ray cluster did not start (ray start: {process.returncode}):\n{text}")
        time.sleep(0.5)
    try:  # started: back to an ordinary share of the machine
        os.setpriority(os.PRIO_PGRP, process.pid, 0)
    except OSError:
        pass
    return process, temp, f"{_node_ip()}:{port}"


def _raylet_failed(temp: Path) -> bool:
    """A raylet that failed a check at start (``ray start --block`` then waits forever)."""
    return any(b"Check failed" in log.read_bytes() for log in temp.glob("session_*/logs/raylet.err"))


def _stop(process, temp: Path) -> None:
    _signal_group(process.pid, signal.SIGTERM)  # ray start --block stops what it started
    try:
        process.wait(3)
    except subprocess.TimeoutExpired:
        pass
    _signal_group(process.pid, signal.SIGKILL)  # and whatever of its group is left
    process.wait()
    shutil.rmtree(temp, ignore_errors=True)


def _signal_group(pid: int, signum: int) -> None:
    try:
        os.killpg(pid, signum)
    except ProcessLookupError:
        pass


def _node_ip() -> str:
    from ray.util import get_node_ip_address

    return get_node_ip_address()  # what the head node binds to
