"""The kernel's half of the lab extension, in a real ipykernel driven over ZMQ as JupyterLab
drives it: ``%load_ext podstack`` opens the ``podstack.lab`` comm; a ``%%track`` + ``%%gpu`` cell
shows up as session states and the current run; the front end's Stop comes back as a reply."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from jupyter_client.manager import start_new_kernel

TARGET = "podstack.lab"


@pytest.fixture
def kernel(podstack_home):
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    manager, client = start_new_kernel(kernel_name="python3", env=env)
    try:
        yield client
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


class Front:
    """What the lab extension sees of the kernel: comm opens and messages, in order."""

    def __init__(self, client):
        self.client, self.comm_id, self.states, self.replies = client, None, [], []

    def pump(self, until, timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if until():
                return
            try:
                msg = self.client.get_iopub_msg(timeout=0.2)
            except Exception:  # noqa: BLE001 - queue.Empty: nothing yet
                continue
            kind, content = msg["msg_type"], msg["content"]
            if kind == "comm_open" and content.get("target_name") == TARGET and self.comm_id is None:
                self.comm_id = content["comm_id"]
                self._take(content.get("data") or {})
            elif kind == "comm_msg" and content.get("comm_id") == self.comm_id:
                self._take(content.get("data") or {})
        raise AssertionError(f"timed out waiting for {what}; states seen: {[self.summary(s) for s in self.states]}")

    def _take(self, data: dict) -> None:
        (self.states if data.get("type") == "state" else self.replies).append(data)

    @staticmethod
    def summary(state: dict) -> tuple:
        return tuple(s["state"] for s in state["sessions"]), (state["run"] or {}).get("name")

    def send(self, data: dict) -> None:
        msg = self.client.session.msg("comm_msg", {"comm_id": self.comm_id, "data": data})
        self.client.shell_channel.send(msg)


def test_sessions_and_runs_reach_the_front_end_and_stop_comes_back(kernel):
    front = Front(kernel)
    kernel.execute("%load_ext podstack")
    front.pump(lambda: front.states, what="the comm the kernel opens on %load_ext")
    assert front.states[0]["sessions"] == [] and front.states[0]["run"] is None
    assert front.states[0]["store"].startswith("sqlite:///") and front.states[0]["store"].endswith("podstack.db")

    kernel.execute("%%track --name bridged --experiment bridge\n%%gpu\nimport time\ntime.sleep(1.5)\nvalue = 7")
    front.pump(lambda: any("busy" in front.summary(s)[0] for s in front.states), what="a busy session")
    busy = next(s for s in front.states if "busy" in front.summary(s)[0])
    assert busy["run"]["name"] == "bridged" and busy["experiment_id"]
    assert busy["sessions"][0]["since"] <= busy["sessions"][0]["at"]
    front.pump(lambda: front.summary(front.states[-1]) == (("idle",), None), what="the session idle, the run ended")
    assert front.states[-1]["changed"]["runs"] > front.states[0]["changed"]["runs"]

    old_id = front.states[-1]["sessions"][0]["id"]
    front.send({"action": "restart", "id": old_id})
    front.pump(lambda: front.replies, what="the reply to restart")
    assert front.replies[-1]["ok"] is True and "new session" in front.replies[-1]["message"]
    front.pump(lambda: any(s["id"] != old_id and s["state"] == "idle" for s in front.states[-1]["sessions"]),
               what="the fresh session idle")
    assert old_id not in [s["id"] for s in front.states[-1]["sessions"] if s["state"] != "stopped"]

    session_id = next(s["id"] for s in front.states[-1]["sessions"] if s["id"] != old_id)
    front.send({"action": "stop", "id": session_id})
    front.pump(lambda: len(front.replies) == 2, what="the reply to stop")
    assert front.replies[-1] == {"type": "reply", "action": "stop", "ok": True,
                                 "message": f"stopped session {session_id} (any)"}
    front.pump(lambda: all(s["state"] == "stopped" for s in front.states[-1]["sessions"]), what="the sessions stopped")

    front.send({"action": "stop", "id": session_id})  # twice: told, not silently ignored
    front.pump(lambda: len(front.replies) == 3, what="the third reply")
    assert front.replies[-1]["ok"] is False and "not running any more" in front.replies[-1]["message"]
    front.send({"action": "explode"})
    front.pump(lambda: len(front.replies) == 4, what="the reply to an unknown action")
    assert front.replies[-1]["ok"] is False and "explode" in front.replies[-1]["message"]


def test_a_front_end_that_connects_later_gets_the_state(kernel):
    """A reloaded page opens the comm itself (the kernel's own open went to the old page)."""
    kernel.execute("%load_ext podstack", reply=True, timeout=60)
    while True:  # the comm the kernel opened then went to a page that is gone: drop it
        try:
            kernel.get_iopub_msg(timeout=1)
        except Exception:  # noqa: BLE001 - queue.Empty: all read
            break
    front = Front(kernel)
    front.comm_id = uuid.uuid4().hex
    kernel.shell_channel.send(kernel.session.msg("comm_open", {"comm_id": front.comm_id, "target_name": TARGET,
                                                               "data": {}}))
    front.pump(lambda: front.states, what="the state on a comm the front end opened")
    assert front.states[-1]["sessions"] == []
