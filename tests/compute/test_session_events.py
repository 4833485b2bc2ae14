"""``session.state`` events: what a session panel or the JupyterLab status bar follows, from real kernels."""

from __future__ import annotations

import os
import signal
import time

import pytest

from podstack_jupyter import events
from podstack_jupyter.compute import sessions
from podstack_jupyter.errors import EnvironmentBuildError, SessionDiedError
from _cells import run


@pytest.fixture
def seen():
    received = []
    with events.subscribe("session.state", lambda e: received.append((e.data["state"], e.data["session"]))):
        yield received


def test_a_session_starts_runs_goes_idle_and_stops(ip, seen):
    run(ip, "%%gpu\nx = 1")
    assert [state for state, _ in seen] == ["starting", "idle", "busy", "idle"]
    assert all(info["state"] == state for state, info in seen)  # each event carries the session as it is then
    info = seen[-1][1]
    assert info["spec"] == "any" and info["backend"] == "local" and info["gpus"] == "cpu"
    assert info["environment"] == "default" and info["uptime_s"] >= 0 and info["reason"] is None
    assert {"bytes_sent", "bytes_received", "id", "devices", "gpu_type"} <= set(info)
    run(ip, "%gpu stop all")
    assert seen[-1][0] == "stopped" and seen[-1][1]["id"] == info["id"] and seen[-1][1]["reason"] == "stopped"
    assert sessions.list() == []


def test_a_session_that_dies_mid_cell_is_dead_then_stopped(ip, seen):
    run(ip, "%%gpu\nx = 1")
    with pytest.raises(SessionDiedError):
        run(ip, "%%gpu\nimport os, signal\nos.kill(os.getpid(), signal.SIGKILL)")
    states = [state for state, _ in seen]
    assert states[-4:] == ["idle", "busy", "dead", "stopped"]
    assert "SIGKILL" in seen[-2][1]["reason"] and "SIGKILL" in seen[-1][1]["reason"]


def test_a_session_found_dead_before_a_cell_is_reported_dead(ip, seen):
    run(ip, "%%gpu\nx = 1")
    (session,) = sessions.find("all")
    os.kill(session.kernel.km.provisioner.pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while session.kernel.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    run(ip, "%%gpu\ny = 2")
    states = [(state, info["id"]) for state, info in seen]
    assert ("dead", session.id) in states and ("stopped", session.id) in states
    assert states[-1] == ("idle", sessions.find("all")[0].id) != session.id


def test_an_environment_build_is_announced(ip, seen, tmp_path):
    with pytest.raises(EnvironmentBuildError):
        run(ip, f"%%gpu --pip {tmp_path / 'missing-0.1-py3-none-any.whl'}\nx = 1")
    assert [state for state, _ in seen] == ["starting", "building", "stopped"]
    assert seen[-1][1]["reason"] == "it could not start" and seen[-1][1]["spec"].startswith("any pip=")


def test_nobody_listening_costs_no_info(ip, monkeypatch):
    from podstack_jupyter.compute.session import GPUSession

    def fail(self):
        raise AssertionError("info() built with no subscriber")

    run(ip, "%%gpu\nx = 1")
    monkeypatch.setattr(GPUSession, "info", fail)
    run(ip, "%%gpu\ny = x + 1")
    assert ip.user_ns["y"] == 2
