"""The magics through a real IPython shell: %%track alone and stacked over %%gpu (a real remote kernel);
%gpu's sub-commands, help and tables; a terminal IPython; unloading."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

import podstack
from podstack import registry
from podstack_jupyter import config
from podstack_jupyter.compute import sessions
from _cells import run


@pytest.fixture(autouse=True)
def _fresh_registry():
    yield
    while registry.active_run() is not None:
        registry.end_run()
    registry._reset_store()


def only_run():
    (found,) = registry.search_runs()
    return found


def test_track_records_params_source_tags_and_status(ip):
    run(ip, "lr = 0.01\nepochs = 3")
    value = run(ip, "%%track --name baseline --experiment magic-exp --tag team=nlp owner=ana --params lr,epochs\n"
                    "from podstack import registry\nregistry.log_metrics({'loss': 0.5}, step=1)\nlr * 100")
    assert value == 1.0
    tracked = only_run()
    assert tracked.name == "baseline" and tracked.status == "completed"
    assert tracked.params == {"lr": "0.01", "epochs": "3"}
    assert tracked.tags["team"] == "nlp" and tracked.tags["owner"] == "ana"
    assert "registry.log_metrics" in tracked.source and tracked.duration >= 0
    assert registry.get_experiment(tracked.experiment_id).name == "magic-exp"
    assert [p.value for p in registry.get_metric_history(tracked.id, "loss")] == [0.5]


def test_failed_cell_marks_the_run_failed_and_raises(ip):
    with pytest.raises(ZeroDivisionError):
        run(ip, "%%track --name broken\n1 / 0")
    assert only_run().status == "failed"


@pytest.mark.parametrize("line, message", [("--tag novalue", "KEY=VALUE"), ("--params missing_name", "not defined")])
def test_bad_track_arguments_are_usage_errors_and_start_no_run(ip, capsys, line, message):
    ip.run_cell(f"%%track {line}\n1")
    assert message in capsys.readouterr().err
    assert registry.search_runs() == []


def test_track_over_gpu_logs_from_the_remote_into_the_notebook_run(ip):
    run(ip, "%%track --name remote-train\n%%gpu\nfrom podstack import registry\nfor step in range(3):\n"
            "    registry.log_metrics({'loss': 1.0 / (step + 1)}, step=step)\nregistry.log_params({'batch': 32})\n"
            "result = 'trained'")
    tracked = only_run()
    assert tracked.status == "completed" and tracked.params == {"batch": "32"}
    assert tracked.tags["podstack.gpu"] == "any"
    assert [(p.step, p.value) for p in registry.get_metric_history(tracked.id, "loss")] == [(0, 1.0), (1, 0.5),
                                                                                              (2, 1 / 3)]
    assert ip.user_ns["result"] == "trained" and "%%gpu" in tracked.source


def test_remote_metrics_arrive_while_the_cell_is_still_running(ip, podstack_home):
    from podstack_jupyter.tracking.store import SQLStore
    from podstack_jupyter.config import settings

    seen_at = []
    stop = threading.Event()

    def watch():
        observer = SQLStore(settings().database_url)
        try:
            while not stop.is_set():
                found = observer.search_runs({"experiment_ids": None, "statuses": None, "clauses": [],
                                              "order_by": [], "max_results": 10})
                if found and found[0]["metrics"].get("loss") is not None:
                    seen_at.append(time.monotonic())
                    return
                time.sleep(0.1)
        finally:
            observer.close()

    registry.list_experiments()  # create the database before the observer opens it
    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        run(ip, "%%track --name live\n%%gpu\nimport time\nfrom podstack import registry\n"
                "registry.log_metrics({'loss': 0.9}, step=0)\ntime.sleep(3)")
        ended = time.monotonic()
    finally:
        stop.set()
        watcher.join()
    assert seen_at and seen_at[0] < ended - 1.0  # visible in the notebook's store mid-cell


def test_run_decorator_under_gpu_tracks_a_remote_function():
    @podstack.gpu()
    @podstack.experiment(name="remote-exp")
    @podstack.run(name="remote-fn", tags={"variant": "a"})
    def train(lr):
        from podstack import registry as remote_registry

        remote_registry.log_params({"lr": lr})
        remote_registry.log_metrics({"acc": 0.75})
        return remote_registry.active_run().id

    try:
        run_id = train(0.3)
    finally:
        sessions.stop("all")
    tracked = registry.get_run(run_id)
    assert tracked.name == "remote-fn" and tracked.status == "completed"
    assert tracked.params == {"lr": "0.3"} and tracked.metrics == {"acc": 0.75} and tracked.tags["variant"] == "a"
    assert registry.get_experiment(tracked.experiment_id).name == "remote-exp"


# -- %gpu: sub-commands, help, tables --------------------------------------------------------------
def test_gpu_help_lists_every_subcommand_and_each_has_its_own(ip, capsys):
    from podstack_jupyter.magics import PodstackMagics

    for command in ("sessions", "stop", "restart", "pull", "push", "gpus"):
        assert f"usage: %gpu {command}" in PodstackMagics.gpu_line.__doc__  # what %gpu? shows
    assert "--pip PKG" in PodstackMagics.gpu_cell.__doc__ and "PODSTACK_LOCAL_GPUS" in PodstackMagics.gpu_cell.__doc__
    run(ip, "%gpu stop --help")
    out = capsys.readouterr().out
    assert "usage: %gpu stop [-h] [target]" in out and "a session id, a GPU type" in out
    assert run(ip, "%%gpu --help\nx = 1") is None
    assert "usage: %%gpu [-h] [--count COUNT]" in capsys.readouterr().out and "x" not in ip.user_ns
    assert sessions.find("all") == []


def test_gpu_bad_subcommands_are_usage_errors_naming_the_choices(ip, capsys):
    ip.run_cell("%gpu bogus")
    assert "invalid choice: 'bogus' (choose from 'sessions', 'stop', 'restart', 'pull', 'push', 'gpus')" in \
        capsys.readouterr().err
    ip.run_cell("%gpu pull")
    assert "the following arguments are required: NAME" in capsys.readouterr().err


def test_gpu_stop_of_nothing_says_what_is_there(ip, capsys):
    ip.run_cell("%gpu stop NOPE")
    err = capsys.readouterr().err
    assert "no session matches 'NOPE'" in err and "no GPU session is running" in err
    run(ip, "%%gpu\nkept = 1")
    (session,) = sessions.find("all")
    ip.run_cell("%gpu stop NOPE")
    err = capsys.readouterr().err
    assert "no session matches 'NOPE'" in err and "live sessions" in err and session.id in err
    assert sessions.find("all") == [session]  # nothing stopped
    run(ip, f"%gpu stop {session.id}")
    assert f"stopped 1 session(s): {session.id}" in capsys.readouterr().out and sessions.find("all") == []


def test_gpu_sessions_and_gpus_are_tables_in_text_and_in_notebooks(ip, monkeypatch):
    monkeypatch.setenv("PODSTACK_LOCAL_GPUS", "L40S:2,T4")
    config.reset()
    gpus = run(ip, "%gpu gpus")
    assert [g["type"] for g in gpus] == ["L40S", "L40S", "T4"]  # still the list of dicts, for scripts
    text = gpus.text().splitlines()
    assert text[0].split() == ["index", "type", "device", "in", "use"] and text[1].split()[:2] == ["0", "L40S"]
    assert text[-1] == "backend: local" and "| 2 | T4 | declared T4 | 0% |" in gpus._repr_markdown_()
    run(ip, "%%gpu L40S --fraction 50\nx = 1")
    assert "50%" in run(ip, "%gpu gpus").text().splitlines()[1]
    table = run(ip, "%gpu sessions")
    header, row = table.text().splitlines()
    assert header.split() == ["id", "state", "spec", "backend", "GPUs", "environment", "uptime", "sent", "received"]
    assert row.split()[:4] == [table[0]["id"], "idle", "L40S@50%", "local"] and "1xL40S [0] @50%" in row
    assert table._repr_markdown_().splitlines()[0] == ("| id | state | spec | backend | GPUs | environment | uptime "
                                                       "| sent | received |")


def test_no_gpus_says_how_to_declare_them(ip):
    try:
        import pynvml  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("NVML is installed here")
    assert "PODSTACK_LOCAL_GPUS=L40S:2,T4" in run(ip, "%gpu gpus").text()


def test_terminal_ipython_shows_plain_text_tables(tmp_path):
    """A real terminal IPython (not a kernel): no HTML, no bare lists."""
    script = ('%load_ext podstack\nget_ipython().run_cell_magic("gpu", "L40S", "x = 1")\n%gpu sessions\n'
              '%gpu gpus\n%gpu stop NOPE\n')
    env = dict(os.environ, PODSTACK_LOCAL_GPUS="L40S", PODSTACK_HOME=str(tmp_path), COLUMNS="200")
    out = subprocess.run([sys.executable, "-m", "IPython", "--simple-prompt", "--no-banner", "--colors=nocolor"],
                         input=script, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                         timeout=120).stdout
    assert "<t" not in out and "Out[4]: []" not in out
    assert "state  spec  backend  GPUs" in out and "idle   L40S  local    1xL40S [0]" in out
    assert "0      L40S  declared L40S  100%" in out and "backend: local" in out
    assert "no session matches 'NOPE'" in out


def test_unload_removes_the_magics_and_load_brings_them_back(ip):
    ip.run_line_magic("unload_ext", "podstack")
    try:
        for kind, name in (("line", "gpu"), ("cell", "gpu"), ("cell", "track"), ("line", "podstack")):
            assert name not in ip.magics_manager.magics[kind], (kind, name)
        assert "PodstackMagics" not in ip.magics_manager.registry
    finally:
        ip.run_line_magic("load_ext", "podstack")
    assert "gpu" in ip.magics_manager.magics["cell"]
    assert repr(run(ip, "%gpu sessions")) == "no GPU sessions"
