"""%%gpu inside a real notebook kernel, seen from its front end (a jupyter_client standing in
for JupyterLab, at the message level): widgets made in the session are live there and answer
the front end, and input() is asked of the front end, or fails clearly when it cannot ask."""

from __future__ import annotations

import os
import queue
import time

import pytest
from jupyter_client import KernelManager

pytest.importorskip("ipywidgets")
pytest.importorskip("tqdm")


@pytest.fixture(scope="module")
def notebook(tmp_path_factory):
    home = tmp_path_factory.mktemp("podstack-home")
    km = KernelManager(kernel_name="python3")
    km.start_kernel(env=dict(os.environ, PODSTACK_HOME=str(home)))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)
        reply, _ = execute(kc, "%load_ext podstack")
        assert reply["content"]["status"] == "ok"
        yield kc
    finally:
        kc.stop_channels()
        km.shutdown_kernel()  # gracefully: its sessions stop with it


def execute(kc, code, *, allow_stdin=False, answer=None, timeout=120):
    """Run ``code`` as a front end would; returns the reply and every iopub message (with arrival time)."""
    msg_id = kc.execute(code, allow_stdin=allow_stdin)
    messages, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        if allow_stdin:
            try:
                request = kc.get_stdin_msg(timeout=0)
                kc.input(answer)
                messages.append((time.monotonic(), request))
            except queue.Empty:
                pass
        try:
            msg = kc.get_iopub_msg(timeout=0.05)
        except queue.Empty:
            continue
        messages.append((time.monotonic(), msg))
        if msg["parent_header"].get("msg_id") == msg_id and msg["msg_type"] == "status" \
                and msg["content"]["execution_state"] == "idle":
            break
    else:
        raise TimeoutError(f"no answer to {code!r}")
    while True:
        reply = kc.get_shell_msg(timeout=timeout)
        if reply["parent_header"].get("msg_id") == msg_id:
            return reply, messages


def stdout_of(messages):
    return "".join(m["content"]["text"] for _, m in messages if m["msg_type"] == "stream")


def widget_opens(messages, model):
    return [m for _, m in messages if m["msg_type"] == "comm_open"
            and m["content"]["data"].get("state", {}).get("_model_name") == model]


def test_a_tqdm_bar_made_in_the_session_moves_in_the_notebook(notebook):
    reply, messages = execute(notebook, "%%gpu\nfrom tqdm.auto import tqdm\nimport time\n"
                                        "for i in tqdm(range(5), desc='steps'):\n    time.sleep(0.4)")
    assert reply["content"]["status"] == "ok"
    bars = widget_opens(messages, "FloatProgressModel") + widget_opens(messages, "IntProgressModel")
    assert bars, [m["msg_type"] for _, m in messages]
    bar = bars[0]["content"]["comm_id"]
    updates = [(at, m["content"]["data"]["state"]["value"]) for at, m in messages
               if m["msg_type"] == "comm_msg" and m["content"]["comm_id"] == bar
               and "value" in m["content"]["data"].get("state", {})]
    values = [value for _, value in updates]
    assert values[-1] == 5 and len(set(values)) >= 3, values  # the bar moved
    assert updates[-1][0] - updates[0][0] > 0.8  # while the cell ran, not all at its end
    views = [m for _, m in messages if m["msg_type"] == "display_data"
             and m["content"]["data"].get("application/vnd.jupyter.widget-view+json", {}).get("model_id")]
    assert views  # and the front end was told to draw it


def test_the_front_end_drives_a_widget_that_lives_in_the_session(notebook):
    reply, messages = execute(notebook, "%%gpu\nimport ipywidgets as widgets\nslider = widgets.IntSlider(value=1)\n"
                                        "slider")
    assert reply["content"]["status"] == "ok"
    (opened,) = widget_opens(messages, "IntSliderModel")
    slider_id = opened["content"]["comm_id"]
    shown = [m for _, m in messages if m["msg_type"] == "execute_result"]
    assert shown and shown[0]["content"]["data"]["application/vnd.jupyter.widget-view+json"]["model_id"] == slider_id
    # the user drags the slider to 7
    notebook.shell_channel.send(notebook.session.msg("comm_msg", {
        "comm_id": slider_id, "data": {"method": "update", "state": {"value": 7}, "buffer_paths": []}}))
    reply, messages = execute(notebook, "%%gpu\nprint('seen', slider.value)")
    assert "seen 7" in stdout_of(messages)


def test_input_is_asked_of_the_front_end(notebook):
    reply, messages = execute(notebook, "%%gpu\nname = input('who? ')\nprint('hello', name)",
                              allow_stdin=True, answer="Ada")
    assert reply["content"]["status"] == "ok"
    assert "hello Ada" in stdout_of(messages)
    prompts = [m for _, m in messages if m["msg_type"] == "input_request"]
    assert prompts and prompts[0]["content"]["prompt"] == "who? "


def test_input_fails_clearly_when_the_front_end_cannot_answer(notebook):
    reply, messages = execute(notebook, "%%gpu\nname = input('who? ')", allow_stdin=False)
    assert reply["content"]["status"] == "error"
    assert reply["content"]["ename"] == "StdinNotImplementedError"
    assert "input" in reply["content"]["evalue"]
