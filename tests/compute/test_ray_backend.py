"""The ray backend on a real local Ray cluster (``ray start --head`` with 4 fake T4 GPUs).

What a cluster user meets: placement by type, count and fraction (two 50% sessions share a
device), a request the cluster cannot hold failing at once or in the configured time with what
the cluster has, a package built by the test reaching the node through ``runtime_env``, an
actor killed mid-cell, and the kernel's messages tunnelled through the actor.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from podstack_jupyter import config
from podstack_jupyter.compute import GPUSpec, sessions
from podstack_jupyter.compute.backends import get_backend
from podstack_jupyter.compute.backends.ray import RayKernel, RayRelayKernel
from podstack_jupyter.errors import GPUNotAvailableError, SessionDiedError

from ray_cluster import GPU_COUNT, GPU_TYPE, ray_cluster
from _cells import interrupt_when_printed, only_session, run


@pytest.fixture(scope="module")
def ray_address():
    with ray_cluster() as address:
        yield address


@pytest.fixture
def on_ray(ray_address, monkeypatch):
    monkeypatch.setenv("PODSTACK_BACKEND", "ray")
    monkeypatch.setenv("PODSTACK_RAY_ADDRESS", ray_address)
    monkeypatch.setenv("PODSTACK_RAY_PLACEMENT_TIMEOUT", "3")
    config.reset()
    yield get_backend("ray")
    sessions.stop("all")


def test_type_and_count_place_the_session_on_gpus_of_that_type(ip, on_ray):
    run(ip, f"%%gpu {GPU_TYPE} --count 2\nimport os\ndevices = os.environ['CUDA_VISIBLE_DEVICES']\n"
            "marks = (os.environ['PODSTACK_GPU_TYPE'], os.environ['PODSTACK_GPU_COUNT'])")
    assert len(ip.user_ns["devices"].split(",")) == 2 and ip.user_ns["marks"] == (GPU_TYPE, "2")
    session = only_session()
    assert isinstance(session.kernel, RayKernel)  # the node's ports are reachable from here: direct
    (row,) = ip.run_line_magic("gpu", "gpus")
    assert row["type"] == GPU_TYPE and row["used_percent"] == 50 and row["name"] == f"{GPU_COUNT} x {GPU_TYPE}"


def test_two_half_sessions_share_one_device_and_a_busy_cluster_fails_in_time(ip, on_ray):
    backend = on_ray
    others = backend.allocate(GPUSpec(GPU_TYPE, count=GPU_COUNT - 1))  # three whole GPUs taken elsewhere
    half = backend.allocate(GPUSpec(GPU_TYPE, fraction=50))  # another notebook's 50% session
    try:
        run(ip, f"%%gpu {GPU_TYPE} --fraction 50\nimport os\ndevice = os.environ['CUDA_VISIBLE_DEVICES']")
        assert ip.user_ns["device"].isdigit()  # the last device, shared by the two halves
        started = time.monotonic()
        with pytest.raises(GPUNotAvailableError, match=f"within 3s .*PODSTACK_RAY_PLACEMENT_TIMEOUT.*{GPU_COUNT} x "
                                                       f"{GPU_TYPE}, 4 in use"):
            run(ip, f"%%gpu {GPU_TYPE} --fraction 30 --fresh\nx = 1")
        assert time.monotonic() - started < 15  # Ray alone would wait forever
        assert "x" not in ip.user_ns
    finally:
        backend.release(half)
        backend.release(others)


@pytest.mark.parametrize("line, message", [
    ("A100-80G", f"no node of the Ray cluster can hold 1 x A100-80G; it has: .*{GPU_COUNT} x {GPU_TYPE}"),
    (f"{GPU_TYPE} --count 8", "can hold 8 x T4.* No node has that many")])
def test_a_request_no_node_could_hold_fails_at_once_naming_what_there_is(ip, on_ray, line, message):
    started = time.monotonic()
    with pytest.raises(GPUNotAvailableError, match=message):
        run(ip, f"%%gpu {line}\nx = 1")
    assert time.monotonic() - started < 3  # no waiting for the placement timeout
    assert sessions.list() == []


def test_a_package_built_here_reaches_the_node_through_its_runtime_env(ip, on_ray, tmp_path, capsys):
    package = tmp_path / "tinypod_ray"
    package.mkdir()
    (package / "__init__.py").write_text("VALUE = 'built by the test'\n")
    run(ip, f"%%gpu --pip {package}\nimport tinypod_ray\nvalue = tinypod_ray.VALUE")
    assert ip.user_ns["value"] == "built by the test"
    assert f"uploading {package} to the Ray cluster" in capsys.readouterr().out
    with pytest.raises(ImportError):
        import tinypod_ray  # noqa: F401 - only the session has it


def test_an_actor_killed_mid_cell_is_a_dead_session_within_seconds(ip, on_ray):
    import ray

    run(ip, "state = 'notebook'")
    run(ip, "%%gpu\nremote = 1")
    host = only_session().kernel.watch.host
    threading.Timer(1.0, ray.kill, (host,), {"no_restart": True}).start()
    started = time.monotonic()
    with pytest.raises(SessionDiedError, match="the Ray actor that held the session on Ray node .* died"):
        run(ip, "%%gpu\nimport time\nstate = 'changed'\ntime.sleep(60)")
    assert time.monotonic() - started < 20
    assert ip.user_ns["state"] == "notebook"
    run(ip, "%%gpu\nfresh = 'remote' not in globals()")
    assert ip.user_ns["fresh"] is True


def test_through_the_actors_tunnel_buffers_output_and_interrupts_still_work(ip, on_ray, monkeypatch, capsys):
    monkeypatch.setenv("PODSTACK_RAY_CONNECT", "tunnel")
    config.reset()
    run(ip, "import numpy as np\nweights = np.arange(4_000_000, dtype=np.float64)")
    run(ip, "%%gpu\nprint('through the actor', flush=True)\nweights += 1\ncounter = 0")
    session = only_session()
    assert isinstance(session.kernel, RayRelayKernel) and session.kernel.bytes_sent >= 32_000_000
    assert "through the actor" in capsys.readouterr().out
    assert np.array_equal(ip.user_ns["weights"], np.arange(4_000_000) + 1.0)
    with interrupt_when_printed("looping"):
        result = ip.run_cell("%%gpu\nimport time\nprint('looping', flush=True)\nwhile True:\n    counter += 1\n"
                             "    time.sleep(0.01)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    run(ip, "%%gpu\nafter = counter")
    assert ip.user_ns["after"] == 0  # stopped, and undone there as here


NOTEBOOK = """
import time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
ip.run_line_magic("load_ext", "podstack")
result = ip.run_cell("%%gpu T4 --count 2\\nimport os\\npid = os.getpid()")
assert result.error_in_exec is None, result.error_in_exec
print(ip.user_ns["pid"], flush=True)
time.sleep(600)
"""


def test_a_killed_notebook_leaves_no_kernel_and_no_gpus_held(on_ray, ray_address, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    env.update(PODSTACK_BACKEND="ray", PODSTACK_RAY_ADDRESS=ray_address, PODSTACK_HOME=str(tmp_path / "home"))
    notebook = subprocess.Popen([sys.executable, "-c", NOTEBOOK], env=env, stdout=subprocess.PIPE, text=True)
    try:
        kernel_pid = int(notebook.stdout.readline())
        assert on_ray.inventory()[0]["used_percent"] == 50  # its two GPUs, while it lives
    finally:
        notebook.kill()
        notebook.wait()
        notebook.stdout.close()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (_running(kernel_pid) or on_ray.inventory()[0]["used_percent"] != 0):
        time.sleep(0.5)
    assert not _running(kernel_pid), "the session's kernel outlived its notebook"
    assert on_ray.inventory()[0]["used_percent"] == 0, "the notebook's GPUs are still held"


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"  # a zombie has exited
    except FileNotFoundError:
        return False
