"""%%gpu driven through a real IPython shell against real ipykernel sessions."""

from __future__ import annotations

import os
import sys
import time

import numpy as np
import pytest

from podstack_jupyter.compute import sessions
from podstack_jupyter.errors import (CellSyntaxError, ExecutionTimeoutError, GPUNotAvailableError,
                                     RemoteExecutionError, SerializationError, SessionDiedError)
from _cells import interrupt_when_printed, only_session, run


def test_issue_example_variables_travel_and_come_back(ip, capsys):
    run(ip, "import numpy as np\nx = np.arange(1_000_000); scale = 3")
    value = run(ip, "%%gpu\ny = x * scale\nprint(y[:3])\ny.sum()")
    assert "[0 3 6]" in capsys.readouterr().out
    assert repr(value) == repr(np.arange(1_000_000).sum() * 3)  # last expression displayed like a cell's
    assert ip.user_ns["y"][-1] == 2_999_997


def test_unchanged_values_are_not_sent_twice(ip):
    run(ip, "import numpy as np\nbig = np.ones(2_000_000)")
    run(ip, "%%gpu\ntotal = big.sum()")
    session = only_session()
    first = session.kernel.bytes_sent
    assert first >= 16_000_000
    run(ip, "%%gpu\ntotal = big.sum()")
    assert session.kernel.bytes_sent == first  # nothing re-sent: the remote holds it unchanged
    run(ip, "big[0] = 5")
    run(ip, "%%gpu\ntotal = big.sum()")
    assert session.kernel.bytes_sent >= first + 16_000_000  # changed locally: sent again
    assert ip.user_ns["total"] == 2_000_004


def test_in_place_changes_to_inputs_come_back(ip):
    run(ip, "import numpy as np\nlst = [1]\narr = np.zeros(3)\nd = {'a': 1}\nuntouched = [9]")
    run(ip, "%%gpu\nlst.append(2)\narr += 1\nd['b'] = 2\nlen(untouched)")
    assert ip.user_ns["lst"] == [1, 2]
    assert ip.user_ns["arr"].tolist() == [1, 1, 1]
    assert ip.user_ns["d"] == {"a": 1, "b": 2}
    # an input the cell only read does not come back (its identity is kept)
    before = ip.user_ns["untouched"]
    run(ip, "%%gpu\nn = len(untouched)")
    assert ip.user_ns["untouched"] is before


def test_all_kinds_of_bindings_come_back(ip):
    run(ip, "%%gpu\nimport json\ndef double(v):\n    return 2 * v\nclass Point:\n    def __init__(self, x):\n"
            "        self.x = x\nfor i in range(3):\n    pass\nif (w := 7):\n    pass\ndef setg():\n    global g\n"
            "    g = 'set'\nsetg()\np = Point(4)")
    ns = ip.user_ns
    assert ns["double"](21) == 42 and ns["i"] == 2 and ns["w"] == 7 and ns["g"] == "set"
    assert ns["p"].x == 4 and ns["json"].dumps([1]) == "[1]"
    # notebook-defined functions and classes travel by value the other way too
    run(ip, "def triple(v):\n    return 3 * v")
    run(ip, "%%gpu\nt = triple(double(1))")
    assert ns["t"] == 6


def test_remote_state_persists_and_del_propagates(ip):
    run(ip, "%%gpu\nsecret = 41")
    run(ip, "%%gpu\nsecret += 1")
    assert ip.user_ns["secret"] == 42
    run(ip, "%%gpu\ndel secret")
    assert "secret" not in ip.user_ns


def test_failed_cell_leaves_the_namespace_exactly_as_it_was(ip):
    run(ip, "a = 'old'\nlst = [1]")
    with pytest.raises(RemoteExecutionError) as info:
        run(ip, "%%gpu\na = 'new'\nlst.append(2)\nb = 1\nraise ValueError('boom')")
    assert ip.user_ns["a"] == "old" and ip.user_ns["lst"] == [1] and "b" not in ip.user_ns
    error = info.value
    assert error.ename == "ValueError" and error.evalue == "boom"
    rendered = "\n".join(error._render_traceback_())
    assert "line 5" in rendered  # the cell's own line numbers (line 1 is %%gpu)


def test_unpicklable_input_is_named_and_nothing_runs(ip):
    run(ip, "import threading\nlock = threading.Lock()\nran = False")
    with pytest.raises(SerializationError, match=r"'lock' \(a _thread.lock\)"):
        run(ip, "%%gpu\nran = True\nwith lock:\n    pass")
    assert ip.user_ns["ran"] is False


def test_value_that_cannot_come_back_stays_remote_and_the_rest_apply(ip, capsys):
    run(ip, "%%gpu\nimport threading\nok = 1\nremote_lock = threading.Lock()")
    assert ip.user_ns["ok"] == 1 and "remote_lock" not in ip.user_ns
    assert "'remote_lock' stays in the GPU session" in capsys.readouterr().err
    run(ip, "%%gpu\nheld = remote_lock.locked()")  # still usable remotely
    assert ip.user_ns["held"] is False
    assert "stays in the GPU session" not in capsys.readouterr().err  # said once, not on every read


def test_syntax_error_is_reported_before_anything_is_sent(ip):
    with pytest.raises(CellSyntaxError, match="line 3 of the cell"):
        run(ip, "%%gpu\nfor i in range(3):\n    print(i\n")
    assert sessions.find("all") == []  # no session was even started


def test_output_streams_live(ip, monkeypatch):
    stamps = []

    class Recorder:
        def write(self, text):
            if text.strip():
                stamps.append((time.monotonic(), text.strip()))

        def flush(self):
            pass

    run(ip, "%%gpu\npass")  # warm
    monkeypatch.setattr(sys, "stdout", Recorder())
    started = time.monotonic()
    run(ip, "%%gpu\nimport time\nfor k in range(3):\n    print('tick', k, flush=True)\n    time.sleep(0.7)")
    ended = time.monotonic()
    assert [t for _, t in stamps] == ["tick 0", "tick 1", "tick 2"]
    assert stamps[0][0] - started < 1.0 and ended - stamps[0][0] > 1.2  # first line arrived well before the end


def test_interrupt_stops_the_remote_within_a_second(ip):
    run(ip, "%%gpu\nimport time\ncounter = 0")
    started = time.monotonic()
    with interrupt_when_printed("looping"):  # Ctrl-C 0.3 s after the loop started there
        result = ip.run_cell("%%gpu\nprint('looping', flush=True)\nwhile True:\n    counter += 1\n    time.sleep(0.01)")
    elapsed = time.monotonic() - started
    assert isinstance(result.error_in_exec, KeyboardInterrupt)
    assert elapsed < 2.5
    assert ip.user_ns["counter"] == 0  # nothing applied
    started = time.monotonic()
    run(ip, "%%gpu\nafter = counter")  # the remote stopped looping and answers at once
    assert time.monotonic() - started < 2
    assert ip.user_ns["after"] == 0  # and the interrupted cell's changes were undone there too


def test_timeout_interrupts_and_names_the_execution(ip):
    started = time.monotonic()
    with pytest.raises(ExecutionTimeoutError) as info:
        run(ip, "%%gpu --timeout 1\nimport time\ntime.sleep(60)")
    assert time.monotonic() - started < 4
    assert info.value.execution_id and info.value.execution_id in str(info.value)
    run(ip, "%%gpu\nquick = 1")
    assert ip.user_ns["quick"] == 1


def test_killed_kernel_fails_fast_and_next_cell_starts_fresh(ip, capsys):
    run(ip, "state = 'local'")
    run(ip, "%%gpu\nremote_only = 1")
    started = time.monotonic()
    with pytest.raises(SessionDiedError, match="SIGKILL"):
        run(ip, "%%gpu\nimport os, signal\nstate = 'changed'\nos.kill(os.getpid(), signal.SIGKILL)")
    assert time.monotonic() - started < 5
    assert ip.user_ns["state"] == "local"
    capsys.readouterr()
    run(ip, "%%gpu\nfresh = 'yes'")
    assert "remote state was lost" in capsys.readouterr().out
    assert ip.user_ns["fresh"] == "yes"


def test_bad_arguments_are_usage_errors_and_start_nothing(ip, capsys):
    for line in ("%%gpu X100", "%%gpu --fraction 0", "%%gpu --count two", "%%gpu --env quantum"):
        ip.run_cell(line + "\n1")
        err = capsys.readouterr().err
        assert "UsageError" in err, line
    assert sessions.find("all") == []


def test_unknown_gpu_type_error_lists_valid_types(ip, capsys):
    ip.run_cell("%%gpu X100\n1")
    assert "valid types are: T4, L4, A10, L40S, A100-40G, A100-80G, H100" in capsys.readouterr().err


def test_gpu_type_missing_here_says_what_the_machine_has(ip, monkeypatch):
    monkeypatch.setenv("PODSTACK_LOCAL_GPUS", "L40S:2")
    from podstack_jupyter import config

    config.reset()
    with pytest.raises(GPUNotAvailableError, match="has no H100 GPU; it has: L40S"):
        run(ip, "%%gpu H100\n1")
    run(ip, "%%gpu L40S\nimport os\ndevices = os.environ['CUDA_VISIBLE_DEVICES']")
    assert ip.user_ns["devices"] == "0"
    run(ip, "%%gpu L40S --fraction 50\nimport os\ndevices = os.environ['CUDA_VISIBLE_DEVICES']")
    assert ip.user_ns["devices"] == "1"  # the other L40S: device 0 is held by the first session
    run(ip, "%gpu stop all")
    run(ip, "%%gpu L40S --count 2\nimport os\ndevices = os.environ['CUDA_VISIBLE_DEVICES']")
    assert ip.user_ns["devices"] == "0,1"


def test_no_type_falls_back_to_the_cpu(ip):
    run(ip, "%%gpu\nimport os\ndevices = os.environ['CUDA_VISIBLE_DEVICES']\nkind = os.environ['PODSTACK_GPU_TYPE']")
    assert ip.user_ns["devices"] == "" and ip.user_ns["kind"] == "cpu"


def test_local_flag_runs_in_this_kernel(ip):
    run(ip, "base = 2")
    value = run(ip, "%%gpu L40S --local\nimport os\nhere = os.getpid()\nbase * 21")
    assert value == 42 and ip.user_ns["here"] == os.getpid()
    assert sessions.find("all") == []


def test_push_and_pull_force_names(ip):
    run(ip, "hidden = 'from notebook'")
    run(ip, "%%gpu --push hidden --pull seen\nseen = eval('hidden')")
    assert ip.user_ns["seen"] == "from notebook"
    run(ip, "%%gpu\nexec('made = 5')")
    assert "made" not in ip.user_ns
    run(ip, "%gpu pull made")
    assert ip.user_ns["made"] == 5
    run(ip, "pushed_later = [1, 2]")
    run(ip, "%gpu push pushed_later")
    run(ip, "%%gpu\nn = eval('len(pushed_later)')")
    assert ip.user_ns["n"] == 2


def test_sessions_listing_stop_and_restart(ip, capsys):
    run(ip, "%%gpu\nkept = 1")
    table = run(ip, "%gpu sessions")
    (row,) = table
    assert row["backend"] == "local" and row["gpus"] == "cpu" and row["state"] == "idle"
    assert row["bytes_received"] > 0 and "uptime" in repr(table)
    run(ip, "%gpu restart")
    with pytest.raises(RemoteExecutionError, match="NameError"):
        run(ip, "%%gpu\nprint(eval('kept'))")
    run(ip, "%gpu stop all")
    assert "stopped 1 session(s)" in capsys.readouterr().out
    assert sessions.find("all") == []
    assert repr(run(ip, "%gpu sessions")) == "no GPU sessions"


def test_fresh_starts_a_new_session(ip):
    run(ip, "%%gpu\nimport os\npid1 = os.getpid()")
    run(ip, "%%gpu\nimport os\npid2 = os.getpid()")
    run(ip, "%%gpu --fresh\nimport os\npid3 = os.getpid()")
    assert ip.user_ns["pid1"] == ip.user_ns["pid2"] != ip.user_ns["pid3"]


def test_idle_sessions_are_stopped_after_the_idle_timeout(ip, monkeypatch):
    monkeypatch.setenv("PODSTACK_IDLE_TIMEOUT", "1")
    from podstack_jupyter import config

    config.reset()
    run(ip, "%%gpu\nx = 1")
    deadline = time.monotonic() + 10
    while sessions.find("all") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sessions.find("all") == []


def test_help_is_generated_from_the_arguments(ip):
    doc = ip.find_cell_magic("gpu").__doc__
    for option in ("--count", "--fraction", "--timeout", "--env", "--pip", "--requirements", "--fresh", "--local",
                   "--pull", "--push"):
        assert option in doc
