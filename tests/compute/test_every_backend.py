"""What a user meets in a %%gpu cell, on every backend: the local kernel, a kernel of a real
jupyter-kernel-gateway on loopback, a Ray actor's kernel on a real local Ray cluster, and a
session a real ``podstack server`` hands out (team mode).

The same cells, the same expectations: variables travel both ways, output streams while the
cell runs, an interrupt stops the remote, a killed kernel is a clear error that changes
nothing here, and what the cell logs reaches the notebook's run.
"""

from __future__ import annotations

import os
import random
import signal
import sys
import threading
import time

import numpy as np
import pytest

from podstack import registry
from podstack_jupyter import config
from podstack_jupyter.compute import sessions
from podstack_jupyter.errors import SessionDiedError

from jupyter_servers import start_kernel_gateway
from ray_cluster import ray_cluster
from team_server import forget_team_server, start_team_server, use_team_server
from _cells import interrupt_when_printed, run

BACKENDS = ["local", "jupyter", "ray", "team"]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    server = start_kernel_gateway(tmp_path_factory.mktemp("gateway"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def ray_address():
    with ray_cluster() as address:
        yield address


@pytest.fixture(scope="module")
def team_server(tmp_path_factory):
    server = start_team_server(tmp_path_factory.mktemp("team-server"))
    yield server
    server.stop()
    server.close_accounts()


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
    """Points PODSTACK_BACKEND at one backend (its server or cluster started once per module)."""
    name = request.param
    monkeypatch.setenv("PODSTACK_BACKEND", name)
    if name == "jupyter":
        server = request.getfixturevalue("gateway")
        monkeypatch.setenv("PODSTACK_JUPYTER_URL", server.url)
        monkeypatch.setenv("PODSTACK_JUPYTER_TOKEN", server.token)
    elif name == "ray":
        monkeypatch.setenv("PODSTACK_RAY_ADDRESS", request.getfixturevalue("ray_address"))
    elif name == "team":
        server = request.getfixturevalue("team_server")
        use_team_server(monkeypatch, server, *server.new_project())
    config.reset()
    yield name
    sessions.stop("all")
    if name == "team":
        forget_team_server()


def test_variables_travel_both_ways_and_output_streams_while_the_cell_runs(ip, backend, monkeypatch):
    run(ip, "import numpy as np\nweights = np.arange(3_000_000, dtype=np.float64)\nhistory = ['here']")
    run(ip, "%%gpu\npass")  # the session starts: not part of what is timed below
    stamps = []

    class Recorder:
        def write(self, text):
            if text.strip():
                stamps.append((time.monotonic(), text.strip()))

        def flush(self):
            pass

    monkeypatch.setattr(sys, "stdout", Recorder())
    started = time.monotonic()
    run(ip, "%%gpu\nimport time\nfor k in range(3):\n    print('tick', k, flush=True)\n    time.sleep(0.8)\n"
            "weights *= 2\nhistory.append('remote')\nnorm = float(weights.sum())")
    ended = time.monotonic()
    monkeypatch.undo()
    assert [text for _, text in stamps] == ["tick 0", "tick 1", "tick 2"]
    assert ended - stamps[0][0] > 1.4  # the first line arrived while the cell still ran
    assert stamps[0][0] - started < ended - started - 1.4
    assert np.array_equal(ip.user_ns["weights"], np.arange(3_000_000) * 2.0)  # changed in place there
    assert ip.user_ns["history"] == ["here", "remote"]
    assert ip.user_ns["norm"] == float((np.arange(3_000_000) * 2.0).sum())
    # and back again: the notebook's change is what the next cell sees there
    run(ip, "weights[:] = 1")
    run(ip, "%%gpu\ntotal = float(weights.sum())")
    assert ip.user_ns["total"] == 3_000_000.0


def test_an_interrupt_stops_the_remote_cell_and_applies_nothing(ip, backend):
    run(ip, "%%gpu\nimport time\ncounter = 0")
    started = time.monotonic()
    with interrupt_when_printed("looping"):
        result = ip.run_cell("%%gpu\nprint('looping', flush=True)\nwhile True:\n    counter += 1\n    time.sleep(0.01)")
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert time.monotonic() - started < 10
    assert ip.user_ns["counter"] == 0  # nothing applied here
    started = time.monotonic()
    run(ip, "%%gpu\nafter = counter")  # the remote stopped looping and answers
    assert time.monotonic() - started < 5
    assert ip.user_ns["after"] == 0  # and the interrupted cell's changes were undone there too


def test_ctrl_c_at_any_moment_keeps_both_sides_in_step(ip, backend):
    """Ctrl-C pressed at random moments of short cells: while values are sent, while the cell runs,
    while its results come back. Every cell either lands whole or changes nothing here; the
    session stays usable; nothing the notebook was told was interrupted shows up later."""
    run(ip, "import numpy as np\nbig = np.zeros(2_000_000)\nn = 0\nseen = []")
    run(ip, "%%gpu\nimport time")
    press = random.Random(7)
    completed = 0
    for _ in range(40):
        timer = threading.Timer(press.uniform(0, 0.3), os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        try:
            result = ip.run_cell("%%gpu\nbig += 1\nn += 1\nseen.append(n)\ntime.sleep(0.02)")
            completed += result.success
            timer.join()
            time.sleep(0.1)
        except KeyboardInterrupt:  # it landed in IPython itself, or after the cell: like any Ctrl-C
            pass
    started = time.monotonic()
    run(ip, "%%gpu\nthere = (n, float(big[0]), list(seen))")
    assert time.monotonic() - started < 15, "the session answers at once"
    n = ip.user_ns["n"]
    assert ip.user_ns["there"] == (n, float(n), list(range(1, n + 1)))  # the session holds what the notebook holds
    assert float(ip.user_ns["big"][0]) == n and ip.user_ns["seen"] == list(range(1, n + 1))
    # a Ctrl-C that lands just as a cell's results are taken in is raised after they are: at most a
    # few of those; a cell reported interrupted whose changes arrive with a later cell would be many
    assert completed <= n <= completed + 2


def test_a_killed_kernel_is_a_clear_error_and_the_notebook_keeps_its_values(ip, backend):
    run(ip, "state = 'notebook'")
    run(ip, "%%gpu\nremote_only = 1")
    started = time.monotonic()
    with pytest.raises(SessionDiedError, match="died") as info:
        run(ip, "%%gpu\nimport os, signal, time\nstate = 'changed'\nprint('going', flush=True)\ntime.sleep(0.3)\n"
                "os.kill(os.getpid(), signal.SIGKILL)")
    assert time.monotonic() - started < 20, "death noticed within seconds"
    assert "lost" in str(info.value)  # the user learns the remote variables are gone
    assert ip.user_ns["state"] == "notebook"
    run(ip, "%%gpu\nfresh = 'remote_only' not in globals()")
    assert ip.user_ns["fresh"] is True


def test_what_the_cell_logs_reaches_the_notebooks_run(ip, backend):
    run(ip, "%%track --name remote-train\n%%gpu\nfrom podstack import registry\nfor step in range(3):\n"
            "    registry.log_metrics({'loss': 1.0 / (step + 1)}, step=step)\nregistry.log_params({'batch': 32})")
    (tracked,) = registry.search_runs(filter="name = 'remote-train'")
    assert tracked.status == "completed" and tracked.params == {"batch": "32"}
    assert [(p.step, p.value) for p in registry.get_metric_history(tracked.id, "loss")] == [
        (0, 1.0), (1, 0.5), (2, 1 / 3)]


def scale_rows(matrix, factor=2):
    print("scaling", matrix.shape, flush=True)
    return matrix * factor, os.getpid()


def test_a_decorated_function_and_run_on_gpu_run_there(ip, backend, capsys):
    import podstack

    result, pid = podstack.gpu()(scale_rows)(np.ones((3, 2)), factor=5)
    assert result.tolist() == [[5.0, 5.0]] * 3 and pid != os.getpid()
    assert "scaling (3, 2)" in capsys.readouterr().out
    assert podstack.run_on_gpu("import os\nprint(os.environ['PODSTACK_BACKEND'])").output.strip() == backend


def test_artifacts_logged_there_land_in_the_notebooks_store(ip, backend, tmp_path, request):
    run(ip, "%%track --name remote-files\n%%gpu\nimport os, tempfile\nimport numpy as np\nfrom podstack import registry\n"
            "folder = tempfile.mkdtemp()\nnp.save(os.path.join(folder, 'weights.npy'), np.arange(3_000_000))\n"
            "registry.log_artifact(os.path.join(folder, 'weights.npy'), 'model/weights.npy')\n"
            "open(os.path.join(folder, 'empty.txt'), 'w').close()\nregistry.log_artifact(os.path.join(folder, 'empty.txt'))")
    (tracked,) = registry.search_runs(filter="name = 'remote-files'")
    assert {(a["path"], a["size"]) for a in registry.list_artifacts(tracked.id)} >= {("empty.txt", 0)}
    assert {a["path"] for a in registry.list_artifacts(tracked.id)} == {"model/weights.npy", "empty.txt"}
    copy = registry.download_artifact(tracked.id, "model/weights.npy", tmp_path / "here")
    assert np.array_equal(np.load(copy), np.arange(3_000_000))  # the bytes came through the session
    if backend == "jupyter":
        assert not list(request.getfixturevalue("gateway").home.rglob("blobs"))  # none left on the server's disk
    # and a cell there reads the notebook's artifacts back the same way
    ip.user_ns["run_id"] = tracked.id
    run(ip, "%%gpu\nimport tempfile\nimport numpy as np\nfrom podstack import registry\n"
            "total = int(np.load(registry.download_artifact(run_id, 'model/weights.npy', tempfile.mkdtemp())).sum())")
    assert ip.user_ns["total"] == int(np.arange(3_000_000).sum())
