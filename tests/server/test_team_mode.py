"""Team mode: %%gpu sessions a real ``podstack server`` places on its own compute and relays.

The server runs as a team runs it (a process on loopback, its GPUs declared with
``PODSTACK_LOCAL_GPUS``, a short ``--kernel-grace``); notebooks are a real IPython shell (and,
where a notebook must vanish, a real Python process that is killed). What is checked is what a
team would notice: a session belongs to its project, a vanished notebook's kernel does not
linger, a dying kernel fails the cell in seconds with the reason, GPUs are placed as declared,
and nothing of the server's own settings reaches a session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from websockets.sync.client import connect

sys.path.insert(0, str(Path(__file__).parents[1] / "compute"))

from _cells import only_session, run  # noqa: E402
from team_server import GRACE, forget_team_server, start_team_server, use_team_server  # noqa: E402

from podstack_jupyter import config  # noqa: E402
from podstack_jupyter.compute import sessions  # noqa: E402
from podstack_jupyter.compute.backends._websocket import V1_PROTOCOL  # noqa: E402
from podstack_jupyter.errors import (AuthenticationError, ConfigurationError, GPUNotAvailableError, InvalidArgumentError,
                                     SessionDiedError)  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def team(tmp_path_factory):
    """A team server whose machine declares two L40S and a T4."""
    server = start_team_server(tmp_path_factory.mktemp("team"), gpus="L40S:2,T4")
    yield server
    server.stop()
    server.close_accounts()


@pytest.fixture
def notebook(team, ip, monkeypatch):
    """This notebook, pointed at ``team`` with a project of its own: ``(project id, key)``."""
    project_id, key = team.new_project()
    use_team_server(monkeypatch, team, project_id, key)
    config.reset()
    yield project_id, key
    sessions.stop("all")
    forget_team_server()


def api(server, key, method, path, **kwargs):
    return httpx.request(method, f"{server.url}/api/v1/{path}", headers={"Authorization": f"Bearer {key}"},
                         timeout=60, **kwargs)


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie of the server's is gone for every purpose
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] == "Z"
    except OSError:
        return True


def wait_for(condition, within: float, what: str):
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within:g} s")
        time.sleep(0.1)


def test_gpus_are_placed_as_the_server_declares_them_and_its_settings_stay_there(team, notebook, ip):
    run(ip, "%%gpu L40S\nimport os\nfirst = (os.environ['CUDA_VISIBLE_DEVICES'], os.getpid(),\n"
            "         sorted(k for k in os.environ if k.startswith('PODSTACK_') and k not in\n"
            "                ('PODSTACK_SESSION', 'PODSTACK_SESSION_ID', 'PODSTACK_BACKEND', 'PODSTACK_GPU_TYPE',\n"
            "                 'PODSTACK_GPU_COUNT', 'PODSTACK_GPU_FRACTION')))")
    run(ip, "%%gpu T4\nimport os\nsecond = os.environ['CUDA_VISIBLE_DEVICES'], os.environ['PODSTACK_GPU_TYPE']")
    cuda, pid, leaked = ip.user_ns["first"]
    assert cuda == "0" and pid != os.getpid()
    assert leaked == []  # not the server's home, secret or GPU declaration
    assert ip.user_ns["second"] == ("2", "T4")
    # the server's inventory, as the notebook sees it
    rows = {(row["index"], row["type"], row["used_percent"]) for row in sessions.find("all")[0].backend.inventory()}
    assert rows == {(0, "L40S", 100), (1, "L40S", 0), (2, "T4", 100)}
    # two L40S at once are more than is free now: refused, naming what the server has
    with pytest.raises(GPUNotAvailableError, match="L40S") as info:
        run(ip, "%%gpu L40S --count 2\npass")
    assert "L40S" in info.value.available
    with pytest.raises(GPUNotAvailableError, match="has no H100 GPU; it has: L40S, T4"):
        run(ip, "%%gpu H100\npass")
    # stopping a session gives its GPUs back on the server
    sessions.stop("T4")
    wait_for(lambda: {r["index"]: r["used_percent"] for r in api(team, notebook[1], "GET", "gpus").json()}[2] == 0,
             10, "the T4 given back")


def test_packages_are_refused_with_what_to_do(team, notebook, ip):
    with pytest.raises(InvalidArgumentError, match="server's environment"):
        run(ip, "%%gpu --pip tqdm\npass")
    response = api(team, notebook[1], "POST", "kernels", json={"pip": ["tqdm"]})
    assert response.status_code == 400 and "environment" in response.json()["error"]


def test_a_session_belongs_to_its_project(team, notebook, ip):
    run(ip, "%%gpu\nsecret = 'of project A'")
    kernel_id = only_session().kernel.kernel_id
    _, other_key = team.new_project()
    for method, path in (("GET", f"kernels/{kernel_id}"), ("POST", f"kernels/{kernel_id}/interrupt"),
                         ("DELETE", f"kernels/{kernel_id}")):
        response = api(team, other_key, method, path)
        assert response.status_code == 404, (method, path, response.text)
    assert api(team, other_key, "GET", "kernels").json() == []
    # the other project cannot attach to its channels either
    ws_url = team.url.replace("http", "ws") + f"/api/v1/kernels/{kernel_id}/channels"
    with pytest.raises(Exception) as refused:
        connect(ws_url, subprotocols=[V1_PROTOCOL], additional_headers={"Authorization": f"Bearer {other_key}"},
                open_timeout=10).close()
    assert "403" in str(refused.value) or "1008" in str(refused.value)
    # nor can anyone without a key
    assert httpx.get(f"{team.url}/api/v1/kernels/{kernel_id}").status_code == 401
    assert httpx.post(f"{team.url}/api/v1/kernels", json={}).status_code == 401
    # and the session still works for its own project
    run(ip, "%%gpu\nseen = secret")
    assert ip.user_ns["seen"] == "of project A"


def test_a_revoked_key_is_refused_and_its_open_session_cut_off(team, notebook, ip):
    project_id, key = notebook
    run(ip, "%%gpu\nx = 1")
    session = only_session()
    team.accounts.revoke_key(key)
    assert api(team, key, "POST", "kernels", json={}).status_code == 401
    assert api(team, key, "GET", f"kernels/{session.kernel.kernel_id}").status_code == 401
    # the websocket it holds is closed (the server checks keys every 10 s), the session is reaped
    wait_for(lambda: not session.kernel.is_alive(), 30, "the revoked key's websocket closed")
    assert "revoked" in session.kernel.death_reason()
    with pytest.raises(AuthenticationError, match="refused the API key"):
        run(ip, "%%gpu\ny = 2")
    wait_for(lambda: api(team, team.new_project()[1], "GET", "gpus").json()[0]["used_percent"] == 0,
             GRACE + 20, "the cut-off session reaped")


def test_the_kernel_of_a_notebook_that_vanished_is_stopped_after_the_grace(team, tmp_path):
    project_id, key = team.new_project()
    script = tmp_path / "notebook.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, time
        os.environ.update(PODSTACK_HOME={str(tmp_path / 'home')!r}, PODSTACK_BACKEND="team",
                          PODSTACK_REGISTRY_URL={team.url!r}, PODSTACK_API_KEY={key!r},
                          PODSTACK_PROJECT_ID={project_id!r})
        from IPython.core.interactiveshell import InteractiveShell
        ip = InteractiveShell.instance()
        ip.run_line_magic("load_ext", "podstack")
        result = ip.run_cell("%%gpu\\nimport os\\npid = os.getpid()")
        print("PID", ip.user_ns["pid"], flush=True)
        time.sleep(600)
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env=env, text=True)
    try:
        lines = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("PID"):
                break
        assert lines and lines[-1].startswith("PID"), "".join(lines)
        kernel_pid = int(lines[-1].split()[1])
        (listed,) = api(team, key, "GET", "kernels").json()
        assert listed["attached"] is True and not gone(kernel_pid)
    finally:
        process.kill()  # the notebook vanishes: no shutdown, no DELETE
        process.wait()
        process.stdout.close()
    killed_at = time.monotonic()
    wait_for(lambda: gone(kernel_pid), GRACE + 20, "the kernel stopped")
    assert time.monotonic() - killed_at > GRACE - 0.5  # not before the grace period (a reconnect may come)
    assert api(team, key, "GET", "kernels").json() == []
    # its GPUs are given back right after its process is stopped
    wait_for(lambda: {r["used_percent"] for r in api(team, key, "GET", "gpus").json()} == {0}, 10, "the GPUs freed")


def test_a_kernel_killed_on_the_server_fails_the_cell_within_seconds_with_the_reason(team, notebook, ip):
    run(ip, "%%gpu\nimport os\npid = os.getpid()\nkept = 'here'")
    kernel_pid = ip.user_ns["pid"]
    threading.Timer(1.5, os.kill, (kernel_pid, signal.SIGKILL)).start()
    started = time.monotonic()
    with pytest.raises(SessionDiedError) as info:
        run(ip, "%%gpu\nimport time\nkept = 'changed'\ntime.sleep(60)")
    assert time.monotonic() - started < 15
    assert "SIGKILL" in str(info.value) and "lost" in str(info.value)
    assert ip.user_ns["kept"] == "here"
    wait_for(lambda: api(team, notebook[1], "GET", "kernels").json() == [], 10, "the dead session forgotten")
    run(ip, "%%gpu\nfresh = 'kept' not in globals()")
    assert ip.user_ns["fresh"] is True


def test_large_buffers_travel_whole_both_ways_as_binary_frames(team, notebook, ip):
    ip.user_ns["big"] = np.arange(8_000_000, dtype=np.float64)  # 64 MB: sent in pieces of at most 8 MiB
    run(ip, "%%gpu\nbig += 1\nsquares = big ** 2")
    session = only_session()
    assert session.kernel.protocol == V1_PROTOCOL and not session.same_host
    assert session.kernel.bytes_sent >= 64_000_000 and session.kernel.bytes_received >= 2 * 64_000_000
    expected = np.arange(8_000_000, dtype=np.float64) + 1
    assert np.array_equal(ip.user_ns["big"], expected)
    assert np.array_equal(ip.user_ns["squares"], expected ** 2)


def test_sessions_stop_when_the_server_stops(tmp_path, ip, monkeypatch):
    server = start_team_server(tmp_path / "server")
    try:
        use_team_server(monkeypatch, server, *server.new_project())
        config.reset()
        run(ip, "%%gpu\nimport os\npid = os.getpid()")
        kernel_pid = ip.user_ns["pid"]
        session = only_session()
        os.kill(server.process.pid, signal.SIGTERM)  # the server alone (its kernels are not signalled)
        server.process.wait(60)
        assert gone(kernel_pid)  # stopped by the server on its way out, not left to notice its parent is gone
        assert any("stopping 1 team session" in line for line in server.log_lines())
        wait_for(lambda: not session.kernel.is_alive(), 30, "the notebook noticing")
        assert "stopped" in session.kernel.death_reason()
        with pytest.raises(ConfigurationError, match="cannot reach the podstack server"):
            run(ip, "%%gpu\npass")
    finally:
        server.stop()
        server.close_accounts()
        sessions.stop("all")
        forget_team_server()


def test_messages_that_overflow_while_no_notebook_is_attached_lose_the_session_openly(monkeypatch):
    """The server keeps what a kernel sends while no websocket is attached, up to a limit; past it
    the next notebook to attach is told the session is lost, never handed a stream with a hole."""
    import asyncio
    import json

    from jupyter_client.session import Session

    from podstack_jupyter.compute.backends._websocket import decode_v1
    from podstack_jupyter.compute.spec import GPUSpec
    from podstack_jupyter.server import kernels as team_kernels

    monkeypatch.setattr(team_kernels, "_BACKLOG_BYTES", 256 * 1024)
    team = team_kernels.TeamKernels("local", grace=60)
    loop = asyncio.new_event_loop()
    try:
        kernel = team.start("project", "tester", GPUSpec())

        def iopub_is_live():  # output printed before the server's iopub subscription took would be lost
            time.sleep(0.4)
            kernel.forward("shell", Session().msg("kernel_info_request", content={}))
            return any(decode_v1(item)[0] == "iopub" for item in list(kernel._backlog))

        wait_for(iopub_is_live, 60, "the kernel's iopub stream reaching the server")
        request = Session().msg("execute_request", content={
            "code": "for _ in range(8):\n    print('x' * 100_000, flush=True)", "silent": False,
            "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": True})
        kernel.forward("shell", request)
        wait_for(lambda: kernel._lost_detached, 60, "the backlog overflowing")
        queue = kernel.attach(loop)
        channel, parts = decode_v1(queue.get_nowait())
        content = json.loads(bytes(parts[3]))
        assert channel == "iopub" and content["execution_state"] == "dead"
        assert "dropped" in content["reason"] and "cannot be trusted" in content["reason"]
        assert queue.get_nowait() is team_kernels.CLOSE
    finally:
        team.close()
        loop.close()


def test_bad_requests_are_refused_naming_what_was_wrong(team, notebook, ip):
    key = notebook[1]
    for body, named in (({"count": 0}, "count"), ({"type": "Z80"}, "unknown GPU type"), ({"gpus": 2}, "gpus"),
                        ({"fraction": 150}, "fraction"), ({"type": ["L40S"]}, "type")):
        response = api(team, key, "POST", "kernels", json=body)
        assert response.status_code == 400 and named in response.json()["error"], (body, response.text)
    assert api(team, key, "GET", "kernels").json() == []  # nothing was started
    # a second websocket cannot take over a session a notebook is attached to
    run(ip, "%%gpu\nx = 1")
    headers = {"Authorization": f"Bearer {key}"}
    ws_url = team.url.replace("http", "ws") + "/api/v1/kernels/{}/channels"
    with pytest.raises(Exception) as refused:
        connect(ws_url.format(only_session().kernel.kernel_id), subprotocols=[V1_PROTOCOL],
                additional_headers=headers, open_timeout=10).close()
    assert "403" in str(refused.value)
    # a websocket message that is not a v1 kernel message closes that websocket
    other = api(team, key, "POST", "kernels", json={}).json()["id"]
    with connect(ws_url.format(other), subprotocols=[V1_PROTOCOL], additional_headers=headers) as ws:
        ws.send(b"\x01garbage")
        with pytest.raises(Exception) as closed:
            while True:
                ws.recv(timeout=10)
        assert "1003" in str(closed.value)
    api(team, key, "DELETE", f"kernels/{other}")
    # and the notebook's session went on untouched through both
    run(ip, "%%gpu\ny = x + 1")
    assert ip.user_ns["y"] == 2


def test_a_cell_past_its_timeout_is_stopped_there_and_the_session_goes_on(team, notebook, ip):
    from podstack_jupyter.errors import ExecutionTimeoutError

    run(ip, "%%gpu\ncount = 0")
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError):
        run(ip, "%%gpu --timeout 2\nimport time\nwhile True:\n    count += 1\n    time.sleep(0.01)")
    assert time.monotonic() - started < 15
    assert ip.user_ns["count"] == 0
    run(ip, "%%gpu\nafter = count")  # interrupted through the server: the remote loop stopped, its changes undone
    assert ip.user_ns["after"] == 0


def test_team_mode_without_a_server_says_what_to_set(ip, monkeypatch):
    monkeypatch.setenv("PODSTACK_BACKEND", "team")
    config.reset()
    with pytest.raises(ConfigurationError, match="PODSTACK_REGISTRY_URL, PODSTACK_API_KEY and PODSTACK_PROJECT_ID"):
        run(ip, "%%gpu\nx = 1")
    assert "x" not in ip.user_ns
