"""The server's compute API (executions) as the official SDK and a user see it: a live ``podstack server``
whose local backend declares ``L40S:2,T4`` (devices 0 and 1 are the L40S, 2 the T4), the unmodified
official SDK 1.7.0 in its own virtualenv (``sdk_compute.py``), and plain HTTP for what the SDK does not
show (status codes, the raw stream, other projects' keys).

Nothing here waits on a clock to prove an order: the code that must still be running waits for a file
that the test makes only after it saw the code's first output.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import uuid

import httpx
import pytest
from _services.official_sdk import official_sdk_python
from _services.podstack_server import LiveServer, env_without_podstack

GPUS = "L40S:2,T4"


@pytest.fixture(scope="module")
def compute_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("compute-server")
    server = LiveServer(f"sqlite:///{home / 'server.db'}", str(home / "artifacts"), home,
                        env={"PODSTACK_LOCAL_GPUS": GPUS}, extra_args=("--rate-limit", "0", "--max-executions", "4"))
    server.start()
    yield server
    server.stop()
    server.close_accounts()


@pytest.fixture(scope="module")
def sdk_python(tmp_path_factory):
    return official_sdk_python(tmp_path_factory)


@pytest.fixture
def project(compute_server):
    return compute_server.new_project()


def api(server, key=None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=120)


def sdk(sdk_python, server, project, mode, tmp_path) -> dict:
    """Run ``sdk_compute.py MODE`` with the official SDK pointed at ``server``; what it saw."""
    project_id, key = project
    out = tmp_path / f"{mode}.json"
    env = {**env_without_podstack(), "HOME": str(tmp_path / "home"), "PODSTACK_NOTEBOOK_SERVICE_URL": server.url,
           "PODSTACK_API_KEY": key, "PODSTACK_PROJECT_ID": project_id}
    done = subprocess.run([str(sdk_python), os.path.join(os.path.dirname(__file__), "sdk_compute.py"), mode, str(out),
                           str(tmp_path)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:] + "\n" + server.log_tail()
    return json.loads(out.read_text())


def submit(client, project_id, code) -> str:
    answer = client.post("/executions/submit", json={"code": code, "project_id": project_id})
    assert answer.status_code == 202, answer.text
    return answer.json()["execution_id"]


def result(client, execution_id) -> dict:
    answer = client.get(f"/executions/{execution_id}/result")
    assert answer.status_code == 200, answer.text
    return answer.json()


def wait_for_output(client, execution_id, text, seconds=120.0) -> dict:
    deadline = time.monotonic() + seconds
    while True:
        now = client.get(f"/executions/{execution_id}/result", params={"wait": 0}).json()
        if text in now["output"] or now["status"] in ("completed", "failed", "timeout", "cancelled"):
            return now
        assert time.monotonic() < deadline, f"no {text!r} in the output after {seconds:g} s: {now}"
        time.sleep(0.05)


# -- the official SDK --------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["stream", "poll"])
def test_run_on_gpu_of_the_official_sdk_runs_on_the_servers_backend(sdk_python, compute_server, project, tmp_path,
                                                                    mode):
    """``podstack.run_on_gpu(code, gpu="L40S")``, streaming and polling: the code ran in a session placed on
    an L40S, and the output (stdout and stderr) came back verbatim."""
    got = sdk(sdk_python, compute_server, project, mode, tmp_path)["result"]
    assert got["status"] == "completed" and got["success"] and got["error"] is None
    lines = got["output"].splitlines()
    assert lines[0] in ("hello from L40S devices 0", "hello from L40S devices 1")
    assert "to stderr" in lines and f"total {sum(i * i for i in range(1000))}" in lines
    assert got["gpu_type"] == "L40S" and got["gpu_count"] == 1 and got["gpu_seconds"] > 0


def test_podstack_gpu_of_the_official_sdk_gets_its_return_value_back(sdk_python, compute_server, project, tmp_path):
    """``@podstack.gpu``: arguments go by repr, the return value comes back through the
    ``__PODSTACK_RESULT__`` line; each function's GPUs are the ones it asked for."""
    got = sdk(sdk_python, compute_server, project, "gpu", tmp_path)
    assert got["train"] == {"n": 10, "sum": 22.5, "label": "lr=3e-4", "text": "two\nlines", "pair": [1, None],
                            "devices": "2", "gpu": "T4"}
    assert got["positional"]["sum"] == 6.0 and got["positional"]["label"] == "x"
    # the SDK sends f(scale=0.5, 10) for f(10, scale=0.5): the server says why it could not run
    assert "SyntaxError" in got["mixed"] and "positional argument follows keyword argument" in got["mixed"]
    assert got["both"] == "0,1"
    assert got["nothing"] is None


def test_output_reaches_the_sdks_stream_while_the_code_still_runs(sdk_python, compute_server, project, tmp_path):
    """The SDK sees the first line while the code is still running (the code cannot end before the
    SDK has seen it), then the rest, then the final status."""
    got = sdk(sdk_python, compute_server, project, "live", tmp_path)
    assert got["submitted"]["status"] == "pending"
    assert got["status_at_first"] == "running"
    statuses = [e["status"] for e in got["events"] if e.get("type") == "status"]
    assert statuses[0] == "pending" and statuses[-1] == "completed" and "running" in statuses
    printed = [e["content"] for e in got["events"] if e.get("type") == "stdout"]
    assert "".join(printed) == "first\nsecond\n"
    assert got["result"]["output"] == "first\nsecond\n" and got["result"]["status"] == "completed"


def test_cancel_from_the_sdk_stops_the_code_and_frees_its_gpus(sdk_python, compute_server, project, tmp_path):
    got = sdk(sdk_python, compute_server, project, "cancel", tmp_path)
    assert got["cancel"]["status"] == "cancelled" and got["status"] == "cancelled"
    assert got["result"]["status"] == "cancelled" and not got["result"]["success"]
    assert "tick" in got["result"]["output"]
    pid = int(got["result"]["output"].split()[1])
    assert not _alive(pid), "the cancelled execution's kernel is still running"
    assert got["after"]["status"] == "completed" and got["after"]["output"] == "after\n"


def test_a_failing_cell_is_failed_with_its_traceback(sdk_python, compute_server, project, tmp_path):
    got = sdk(sdk_python, compute_server, project, "fail", tmp_path)
    failed = got["result"]
    assert failed["status"] == "failed" and not failed["success"]
    assert failed["output"] == "before\n"
    assert "ValueError: bad input 42" in failed["error"] and "step(42)" in failed["error"]
    assert "\x1b[" not in failed["error"]
    assert "KeyError" in got["decorated"] and "'missing'" in got["decorated"]
    h100 = got["h100_result"]
    assert h100["status"] == "failed" and "no H100 GPU" in h100["error"] and "L40S, T4" in h100["error"]


@pytest.mark.slow
def test_pip_packages_of_the_sdk_go_into_a_cached_environment_of_the_session(sdk_python, compute_server, project,
                                                                              tmp_path):
    """``run_on_gpu(code, pip=[...])``: the server builds the session's environment with the package
    (the SDK's own install preamble then finds it there), and the server's environment stays without it."""
    _tiny_wheel(tmp_path)
    got = sdk(sdk_python, compute_server, project, "pip", tmp_path)["result"]
    assert got["status"] == "completed", got
    assert "tinypod 42" in got["output"].splitlines()
    assert f"{os.sep}envs{os.sep}" in got["output"].splitlines()[-1]  # the kernel ran in the built environment
    with pytest.raises(ImportError):
        import tinypod  # noqa: F401


def _tiny_wheel(folder) -> str:
    """A one-module wheel, ``tinypod`` (``VALUE = 42``), installable without an index."""
    import base64
    import hashlib
    import zipfile

    files = {"tinypod.py": b"VALUE = 42\n",
             "tinypod-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypod\nVersion: 0.1\n",
             "tinypod-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                                            b"Tag: py3-none-any\n"}
    record = [f"{name},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for name, data in files.items()]
    path = os.path.join(folder, "tinypod-0.1-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("tinypod-0.1.dist-info/RECORD", "\n".join([*record, "tinypod-0.1.dist-info/RECORD,,"]) + "\n")
    return path


# -- over HTTP ------------------------------------------------------------------------------------------------

def test_the_stream_is_server_sent_events_as_they_happen(compute_server, project, tmp_path):
    """The raw stream: ``data: {json}`` lines, status events then output as it is printed (the code
    waits for the test to have read its first line), ending with the terminal status."""
    project_id, key = project
    release = tmp_path / "go"
    with api(compute_server, key) as client:
        execution_id = submit(client, project_id, f"import os, time\nprint('one', flush=True)\n"
                                                  f"while not os.path.exists({str(release)!r}):\n"
                                                  f"    time.sleep(0.05)\nprint('two')\n")
        events = []
        with httpx.stream("GET", f"{compute_server.url}/api/v1/executions/{execution_id}/stream",
                          params={"token": key}, timeout=120) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            for line in response.iter_lines():
                if not line.startswith("data: "):
                    continue
                event = json.loads(line[len("data: "):])
                events.append(event)
                if event.get("content") == "one\n":
                    assert client.get(f"/executions/{execution_id}/status").json()["status"] == "running"
                    release.touch()
        assert [e["status"] for e in events if "status" in e][-1] == "completed"
        assert [e["content"] for e in events if e.get("type") == "stdout"] == ["one\n", "two\n"]
        assert all(e["execution_id"] == execution_id for e in events)
        # a second reader, after the end, gets the whole story again
        again = client.get(f"/executions/{execution_id}/stream")
        assert again.status_code == 200 and again.text.count("data: ") == len(events)


def test_a_timeout_interrupts_the_code_and_says_so(compute_server, project):
    project_id, key = project
    with api(compute_server, key) as client:
        execution_id = submit(client, project_id, "#@podstack gpu=T4 timeout=1.5\nimport time\n"
                                                  "print('started', flush=True)\ntime.sleep(600)\nprint('never')")
        got = result(client, execution_id)
    assert got["status"] == "timeout" and got["output"] == "started\n"
    assert "timeout of 1.5 s" in got["error"]


def test_placement_honours_count_fraction_and_waits_for_busy_gpus(compute_server, project, tmp_path):
    """Two executions at fraction=50 share the T4; an L40S execution asking for both L40S waits
    (queued, without holding an execution slot) while another holds one, then runs; asking for more
    than the server has fails at once."""
    project_id, key = project
    release = tmp_path / "release"
    hold = (f"import os, time\nprint(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['PODSTACK_GPU_FRACTION'], "
            f"flush=True)\nwhile not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n")
    with api(compute_server, key) as client:
        halves = [submit(client, project_id, "#@podstack gpu=T4 fraction=50\n" + hold) for _ in range(2)]
        one = submit(client, project_id, "#@podstack gpu=L40S\n" + hold)
        for execution_id in [*halves, one]:
            wait_for_output(client, execution_id, "\n")
        both = submit(client, project_id, "#@podstack gpu=L40S count=2\nimport os\n"
                                          "print(os.environ['CUDA_VISIBLE_DEVICES'])")
        deadline = time.monotonic() + 60
        while client.get(f"/executions/{both}/status").json()["status"] != "queued":
            assert time.monotonic() < deadline, client.get(f"/executions/{both}/status").json()
            time.sleep(0.05)
        too_many = result(client, submit(client, project_id, "#@podstack gpu=L40S count=3\nprint(1)"))
        # waiting for GPUs holds none of the 4 execution slots: a fourth execution runs meanwhile
        fourth = result(client, submit(client, project_id, "print('not blocked')"))
        assert fourth["output"] == "not blocked\n"
        assert client.get(f"/executions/{both}/status").json()["status"] == "queued"
        release.touch()
        outputs = [result(client, e) for e in [*halves, one, both]]
    assert [o["output"] for o in outputs[:2]] == ["2 50\n", "2 50\n"]
    assert outputs[2]["output"] in ("0 100\n", "1 100\n")
    assert outputs[3]["status"] == "completed" and outputs[3]["output"] == "0,1\n"
    assert too_many["status"] == "failed" and "3 x L40S" in too_many["error"] and too_many["output"] == ""


def test_cancel_stops_code_that_ignores_the_interrupt(compute_server, project):
    """Code that swallows KeyboardInterrupt is stopped anyway: its kernel is shut down."""
    project_id, key = project
    with api(compute_server, key) as client:
        execution_id = submit(client, project_id, "import os, time\nprint('pid', os.getpid(), flush=True)\n"
                                                  "while True:\n    try:\n        time.sleep(0.1)\n"
                                                  "    except KeyboardInterrupt:\n        pass\n")
        pid = int(wait_for_output(client, execution_id, "pid")["output"].split()[1])
        answer = client.post(f"/executions/{execution_id}/cancel")
        assert answer.status_code == 200 and answer.json()["status"] == "cancelled", answer.text
        assert not _alive(pid)
        again = client.post(f"/executions/{execution_id}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"


@pytest.mark.parametrize("body, expected", [
    ({}, "code"),
    ({"code": "   \n"}, "empty"),
    ({"code": "#@podstack gpu=L40S colour=red\nprint(1)"}, "unknown key 'colour'"),
    ({"code": "#@podstack gpu=L40S count=two\nprint(1)"}, "count must be a whole number"),
    ({"code": "#@podstack gpu=L40S fraction=150\nprint(1)"}, "fraction"),
    ({"code": "#@podstack gpu=Z80\nprint(1)"}, "unknown GPU type 'Z80'"),
    ({"code": "#@podstack gpu=L40S timeout=-3\nprint(1)"}, "timeout must be a positive"),
    ({"code": "#@podstack gpu=L40S conda=cudatoolkit\nprint(1)"}, "conda"),
    ({"code": "#@podstack gpu=L40S runner=pytorch-2\nprint(1)"}, "runner="),
    ({"code": "#@podstack gpu=L40S requirements=/nowhere/req.txt\nprint(1)"}, "requirements="),
])
def test_bad_submissions_are_refused_with_what_was_wrong(compute_server, project, body, expected):
    project_id, key = project
    with api(compute_server, key) as client:
        answer = client.post("/executions/submit", json=dict(body, project_id=project_id) if body else {})
        assert answer.status_code == 400, answer.text
        assert expected in answer.json()["error"]
        assert client.get("/executions").json()["executions"] == []


def test_executions_belong_to_their_project(compute_server, project):
    """Another project's key neither sees nor touches them (404), cannot submit into this project
    (403); a revoked key and no key are refused (401) on every execution endpoint."""
    project_id, key = project
    other_id, other_key = compute_server.new_project()
    revoked_id, revoked_key = compute_server.new_project()
    compute_server.accounts.revoke_key(revoked_key)
    with api(compute_server, key) as client:
        execution_id = submit(client, project_id, "print('mine')")
        assert result(client, execution_id)["output"] == "mine\n"
    calls = [("GET", f"/executions/{execution_id}/status"), ("GET", f"/executions/{execution_id}/stream"),
             ("GET", f"/executions/{execution_id}/result"), ("POST", f"/executions/{execution_id}/cancel")]
    with api(compute_server, other_key) as client:
        for method, path in calls:
            answer = client.request(method, path)
            assert answer.status_code == 404 and answer.json()["error"], (method, path, answer.text)
        refused = client.post("/executions/submit", json={"code": "print(1)", "project_id": project_id})
        assert refused.status_code == 403 and project_id in refused.text
        assert client.get("/executions").json()["executions"] == []
    for who, caller in [("revoked", api(compute_server, revoked_key)), ("none", api(compute_server))]:
        with caller as client:
            for method, path in [*calls, ("POST", "/executions/submit"), ("GET", "/executions")]:
                answer = client.request(method, path, json={"code": "print(1)", "project_id": project_id}
                                        if path.endswith("submit") else None)
                assert answer.status_code == 401 and answer.json()["error"], (who, method, path, answer.text)
    with api(compute_server, key) as client:
        listed = client.get("/executions").json()["executions"]
        assert [e["execution_id"] for e in listed] == [execution_id]


def test_code_cannot_reach_the_servers_own_tracking_through_its_session(compute_server, project):
    """podstack's registry inside an execution's kernel would relay to "the notebook", which here is the
    server's process: refused, so no key reads or writes the server's own (default project's) records."""
    project_id, key = project
    with api(compute_server, key) as client:
        got = result(client, submit(client, project_id, "from podstack_jupyter.tracking import registry\n"
                                                        "registry.set_experiment('sneaky')\n"))
    assert got["status"] == "failed"
    assert "goes through the server's API" in got["error"]


def test_the_legacy_client_submits_with_query_parameters(compute_server, project):
    project_id, key = project
    with api(compute_server, key) as client:
        answer = client.post("/executions/submit", params={"code": "print(6 * 7)", "project_id": project_id})
        assert answer.status_code == 202, answer.text
        assert result(client, answer.json()["execution_id"])["output"] == "42\n"


def test_beyond_max_executions_they_wait_in_line_and_a_queued_one_can_be_cancelled(tmp_path):
    server = LiveServer(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"), tmp_path / "home",
                        extra_args=("--rate-limit", "0", "--max-executions", "1"))
    server.start()
    release = tmp_path / "release"
    try:
        project_id, key = server.new_project()
        with api(server, key) as client:
            first = submit(client, project_id, f"import os, time\nprint('first', flush=True)\n"
                                               f"while not os.path.exists({str(release)!r}):\n    time.sleep(0.05)\n")
            second = submit(client, project_id, "print('second')")
            third = submit(client, project_id, "print('third')")
            wait_for_output(client, first, "first")
            waiting = [client.get(f"/executions/{e}/status").json() for e in (second, third)]
            assert [(w["status"], w["queue_position"]) for w in waiting] == [("queued", 1), ("queued", 2)]
            cancelled = client.post(f"/executions/{second}/cancel").json()
            assert cancelled["status"] == "cancelled" and cancelled["queue_position"] is None
            assert client.get(f"/executions/{third}/status").json()["queue_position"] == 1
            release.touch()
            assert result(client, third)["output"] == "third\n"
            assert result(client, second)["output"] == "" and result(client, first)["status"] == "completed"
    finally:
        server.stop()
        server.close_accounts()


@pytest.mark.slow
def test_a_silent_stream_gets_heartbeats(compute_server, project, tmp_path):
    """While the code prints nothing for longer than the heartbeat interval, the stream says it is alive."""
    project_id, key = project
    with api(compute_server, key) as client:
        execution_id = submit(client, project_id, "import time\ntime.sleep(17)\nprint('awake')")
        with httpx.stream("GET", f"{compute_server.url}/api/v1/executions/{execution_id}/stream",
                          params={"token": key}, timeout=120) as response:
            lines = [line for line in response.iter_lines() if line]
    heartbeat = lines.index(": heartbeat")
    assert heartbeat < next(i for i, line in enumerate(lines) if "awake" in line)


def test_server_shutdown_stops_running_sessions(tmp_path):
    """SIGTERM to the server: the running execution's kernel is stopped, and the server exits cleanly."""
    server = LiveServer(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"), tmp_path / "home",
                        extra_args=("--rate-limit", "0"))
    server.start()
    try:
        project_id, key = server.new_project()
        with api(server, key) as client:
            execution_id = submit(client, project_id, "import os, time\nprint('pid', os.getpid(), flush=True)\n"
                                                      "time.sleep(600)")
            pid = int(wait_for_output(client, execution_id, "pid")["output"].split()[1])
        assert _alive(pid)
        # uvicorn re-raises the SIGTERM it handled once it has shut down
        assert server.stop() in (0, -signal.SIGTERM), server.log_tail()
        assert "Application shutdown complete" in server.log_tail()
        assert not _alive(pid), "the kernel outlived the server"
    finally:
        server.stop()
        server.close_accounts()


def _alive(pid: int, seconds: float = 15.0) -> bool:
    """Whether process ``pid`` is still there after up to ``seconds`` (a stopped kernel takes a moment)."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        try:  # a zombie has ended; only its parent has not read its status yet
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(")")[-1].split()[0] == "Z":
                    return False
        except OSError:
            return False
        if time.monotonic() > deadline:
            return True
        time.sleep(0.05)


def test_unknown_execution_ids_are_not_found(compute_server, project):
    with api(compute_server, project[1]) as client:
        answer = client.get(f"/executions/{uuid.uuid4().hex}/status")
        assert answer.status_code == 404 and "no execution" in answer.json()["error"]
