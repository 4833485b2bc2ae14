"""Messages a running remote cell sends to the notebook: events in order, and calls answered mid-cell."""

import time

import pytest

from podstack_jupyter.compute import sessions
from podstack_jupyter.compute.hooks import on_agent_event


@pytest.fixture
def recorder():
    seen = []

    def record(data, buffers):
        seen.append((time.monotonic(), data["value"]))

    on_agent_event("test.record", record)
    on_agent_event("test.double", lambda data, buffers: data["value"] * 2)
    on_agent_event("test.fail", lambda data, buffers: {}["missing"])
    yield seen
    for op in ("test.record", "test.double", "test.fail"):
        on_agent_event(op, None)


def test_events_arrive_while_the_cell_runs_even_from_threads(ip, recorder):
    started = time.monotonic()
    ip.run_cell(
        "%%gpu\nimport threading, time, _podstack_agent\nagent = _podstack_agent.install()\n"
        "def loop():\n    for i in range(3):\n        agent.emit('test.record', {'value': i})\n        time.sleep(0.3)\n"
        "t = threading.Thread(target=loop); t.start(); t.join(); time.sleep(1.0)\ndel agent, t, loop")
    ended = time.monotonic()
    assert [v for _, v in recorder] == [0, 1, 2]
    assert recorder[-1][0] < ended - 0.8  # delivered during the cell, not after it


def test_calls_are_answered_mid_cell_in_order_with_events(ip, recorder):
    result = ip.run_cell(
        "%%gpu\nimport _podstack_agent\nagent = _podstack_agent.install()\nagent.emit('test.record', {'value': 'first'})\n"
        "doubled = agent.call('test.double', {'value': 21})\ndel agent")
    assert result.error_in_exec is None
    assert ip.user_ns["doubled"] == 42 and [v for _, v in recorder] == ["first"]
    failed = ip.run_cell("%%gpu\nimport _podstack_agent\n_podstack_agent.install().call('test.fail', {})")
    assert "KeyError" in str(failed.error_in_exec) or "missing" in str(failed.error_in_exec)
    assert sessions.find("all")[0].alive
