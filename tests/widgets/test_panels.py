"""Runs table, lineage graph, artifact browser, session panel and the text/terminal displays:
their state and their answers to the views' messages (selection, download, stop), no browser."""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import pytest
import traitlets

import podstack
from podstack_jupyter.errors import ArtifactNotFoundError, InvalidArgumentError
from podstack_jupyter import registry
from podstack_jupyter.widgets import ArtifactBrowser, LineageGraph, RunsTable, SessionPanel, _display
from podstack_jupyter.widgets.artifacts import artifact_category


def make_runs(n: int, experiment: str = "exp") -> list:
    registry.set_experiment(experiment)
    runs = []
    for i in range(n):
        with registry.start_run(f"run-{i}") as run:
            registry.log_params({"lr": 10 ** -(i % 4), "optimizer": "adam" if i % 2 else "sgd"})
            registry.log_metrics({"loss": 1.0 / (i + 1)}, step=0)
        runs.append(run)
    return runs


def test_runs_table_has_params_and_latest_metrics_as_columns():
    runs = make_runs(4)
    explorer = podstack.show_runs("exp")
    table = explorer.table
    ids = {c["id"]: c for c in table.columns}
    assert ids["params.lr"]["type"] == "number" and ids["params.optimizer"]["type"] == "text"
    assert ids["metrics.loss"]["group"] == "metric"
    loss = dict(zip(table.run_ids, table.column("metrics.loss")))
    assert loss[runs[3].id] == pytest.approx(0.25)
    assert dict(zip(table.run_ids, table.column("params.optimizer")))[runs[1].id] == "adam"
    with pytest.raises(InvalidArgumentError, match="no experiment named"):
        podstack.show_runs("nope")


def test_selecting_runs_draws_them_in_the_chart_below():
    runs = make_runs(3)
    explorer = podstack.show_runs("exp")
    explorer.table.selected = [runs[0].id, runs[2].id]  # what clicking two rows sets
    assert explorer.chart.run_ids == [runs[0].id, runs[2].id]
    assert {s["run"] for s in explorer.chart.snapshot["series"]} == {runs[0].id, runs[2].id}
    assert set(explorer.table.colors) == {runs[0].id, runs[2].id}
    explorer.table.selected = []
    assert explorer.chart.run_ids == [] and explorer.chart.snapshot["series"] == []
    with pytest.raises(traitlets.TraitError, match="not a run in this table"):
        explorer.table.selected = ["someone-else"]


def test_the_table_follows_runs_starting_and_ending(monkeypatch):
    from podstack_jupyter import events
    from podstack_jupyter.widgets import live_sender
    from widget_helpers import wait_for

    make_runs(1)
    table = RunsTable("exp")
    monkeypatch.setattr(RunsTable, "reload_every", 0.0)
    run = registry.start_run("new-one")
    events.publish("run.started", run=run.to_dict())  # as the tracking plane documents it
    wait_for(lambda: run.id in table.run_ids, what="the new run's row")
    registry.end_run()
    events.publish("run.ended", run_id=run.id, status="completed")
    wait_for(lambda: dict(zip(table.run_ids, table.column("status")))[run.id] == "completed", what="its status")
    other = registry.set_experiment("other")
    with registry.start_run("elsewhere") as elsewhere:
        pass
    events.publish("run.started", run={"id": elsewhere.id, "experiment_id": other.id})
    live_sender.drain()
    assert elsewhere.id not in table.run_ids


def test_ten_thousand_runs_travel_as_columns_not_rows():
    from podstack_jupyter.tracking.store import current_store

    registry.set_experiment("big")
    experiment = registry.get_experiment_by_name("big")
    store = current_store()
    for i in range(10_000):  # the store directly: 10,000 runs through start_run take a minute here
        store.create_run({"id": f"r{i:05d}", "experiment_id": experiment.id, "name": f"run-{i}", "parent_run_id": None,
                          "status": "completed", "start_time": 1e9 + i, "end_time": 1e9 + i + 5, "source": None,
                          "gpu": None, "tags": {}})
    table = RunsTable("big")
    assert len(table.run_ids) == 10_000
    state = table.get_state()
    assert isinstance(state["table"]["cells"]["start_time"], bytes)  # one float64 buffer, not 10,000 JSON numbers
    assert len(state["table"]["cells"]["start_time"]) == 8 * 10_000


def register_models(tmp_path):
    data = tmp_path / "train.csv"
    frame = pd.DataFrame({"x": np.arange(40.0), "y": np.arange(40) % 2})
    frame.to_csv(data, index=False)
    for i in range(2):
        with registry.start_run(f"train-{i}") as run:
            registry.log_dataset("train", path=str(data), df=frame)
            registry.log_model({"weights": [i]}, framework="pickle")
        registry.register_model("clf", run_id=run.id)
    registry.set_model_stage("clf", version=2, stage="production")
    registry.set_model_alias("clf", alias="champion", version=2)
    return run


def test_lineage_graph_has_datasets_runs_and_versions_with_stages_and_aliases(tmp_path):
    register_models(tmp_path)
    graph = podstack.show_lineage("clf")
    kinds = sorted(n["kind"] for n in graph.nodes)
    assert kinds == ["dataset", "run", "run", "version", "version"]  # the same data is one node
    v2 = next(n for n in graph.nodes if n["id"] == "version:2")
    assert v2["badges"] == ["production", "@champion"]
    dataset = next(n for n in graph.nodes if n["kind"] == "dataset")
    assert dataset["details"]["rows"] == "40" and len(dataset["details"]["digest"]) == 64
    assert "40 rows" in dataset["sub"]
    assert {(e["source"].split(":")[0], e["target"].split(":")[0]) for e in graph.edges} == {("dataset", "run"),
                                                                                            ("run", "version")}
    graph._handle_custom_msg({"action": "select", "node": "version:2"}, [])  # a click on the node
    assert graph.selected == "version:2"
    graph._handle_custom_msg({"action": "select", "node": "version:99"}, [])
    assert graph.status.startswith("⚠") and graph.selected == "version:2"
    # the other ways to name the model draw the same graph
    assert LineageGraph(registry.get_model("clf")).model == "clf"
    assert LineageGraph(registry.get_model_version("clf", version=1)).model == "clf"
    assert LineageGraph(registry.get_model_lineage("clf")).model == "clf"


def test_artifact_browser_lists_downloads_and_previews(tmp_path, monkeypatch):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "notes.txt").write_text("hello artifacts\n")
    (tmp_path / "src" / "curves.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100)
    with registry.start_run("art") as run:
        registry.log_artifact(tmp_path / "src" / "notes.txt", artifact_path="docs/notes.txt")
        registry.log_artifact(tmp_path / "src" / "curves.png", artifact_path="plots/curves.png")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    browser = podstack.show_artifacts(run.id)
    assert browser.download_dir == str(work)
    assert [f["path"] for f in browser.files] == ["docs/notes.txt", "plots/curves.png"]
    assert [(f["ext"], f["category"]) for f in browser.files] == [("txt", "text"), ("png", "image")]
    assert browser.total_size == 16 + 108
    browser._handle_custom_msg({"action": "download", "path": "docs/notes.txt"}, [])  # the download button
    assert (work / "notes.txt").read_text() == "hello artifacts\n"
    assert browser.sent[-1][0] == {"type": "downloaded", "path": "docs/notes.txt", "local": str(work / "notes.txt")}
    # a different file of the same name in the working folder is never overwritten
    (work / "curves.png").write_bytes(b"mine")
    browser._handle_custom_msg({"action": "download", "path": "plots/curves.png"}, [])
    assert (work / "curves.png").read_bytes() == b"mine"
    assert (work / "curves (2).png").read_bytes().startswith(b"\x89PNG")
    browser._handle_custom_msg({"action": "download", "path": "plots"}, [])  # a folder
    assert (work / "plots" / "curves.png").is_file()
    browser._handle_custom_msg({"action": "preview", "path": "docs/notes.txt"}, [])
    content, buffers = browser.sent[-1]
    assert content["kind"] == "text" and buffers == [b"hello artifacts\n"]
    browser._handle_custom_msg({"action": "preview", "path": "plots/curves.png"}, [])
    content, buffers = browser.sent[-1]
    assert content["kind"] == "image" and content["mime"] == "image/png" and buffers[0].startswith(b"\x89PNG")
    browser._handle_custom_msg({"action": "download", "path": "missing.bin"}, [])
    assert browser.status.startswith("⚠") and "missing.bin" in browser.status
    with pytest.raises(ArtifactNotFoundError):
        browser.download("nope")


def test_type_badges_follow_the_extension():
    assert artifact_category("model/model.safetensors") == ("safetensors", "model")
    assert artifact_category("analysis/features.csv") == ("csv", "data")
    assert artifact_category("config.yaml") == ("yaml", "config")
    assert artifact_category("Makefile") == ("", "other")


@pytest.mark.slow
def test_session_panel_stop_and_restart_buttons(ip):
    from podstack_jupyter.compute import GPUSpec, sessions

    session = sessions.get(GPUSpec(), progress=lambda _text: None)
    panel = podstack.show_sessions()
    assert [s["id"] for s in panel.sessions] == [session.id] and panel.sessions[0]["state"] == "idle"
    panel._handle_custom_msg({"action": "restart", "id": session.id}, [])
    fresh = sessions.find("all")
    assert len(fresh) == 1 and fresh[0].id != session.id and not session.alive
    panel._handle_custom_msg({"action": "stop", "id": fresh[0].id}, [])  # the stop button
    assert sessions.find("all") == [] and not fresh[0].alive
    assert [s["state"] for s in panel.sessions] == ["stopped"]
    assert panel.status == f"stopped session {fresh[0].id} (cpu)" or panel.status.startswith(f"stopped session {fresh[0].id}")
    panel._handle_custom_msg({"action": "stop", "id": fresh[0].id}, [])
    assert "not running any more" in panel.status
    assert SessionPanel().sessions == []


@pytest.mark.slow
def test_status_line_and_panel_follow_session_events(ip):
    from podstack_jupyter.compute import GPUSpec, sessions
    from podstack_jupyter.widgets import GPUStatusLine
    from widget_helpers import wait_for

    spec = GPUSpec()
    panel = SessionPanel()
    line = GPUStatusLine(spec.describe())
    states = []
    line.observe(lambda change: states.append(change["new"]), names="state")
    ip.run_cell("%%gpu\nimport time\ntime.sleep(0.3)\nx = 1").raise_error()
    line.finish()
    assert "running" in states and states[-1] == "done" and ip.user_ns["x"] == 1
    assert line.session and "received" in line.detail
    wait_for(lambda: [s["id"] for s in panel.sessions] == [line.session], what="the panel to list the new session")
    sessions.stop("all")
    wait_for(lambda: panel.sessions == [], what="the panel to drop the stopped session")


def test_terminal_text_is_readable(tmp_path):
    run = register_models(tmp_path)
    with registry.start_run("metrics") as tracked:
        for step in range(100):
            registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    text = _display.describe(registry.get_run(tracked.id))
    assert text.startswith("Run 'metrics' · completed") and "loss=0.01" in text
    history = _display.describe(registry.get_metric_history(tracked.id, "loss"))
    assert "100 points, steps 0–99" in history and "▁" in history and "█" in history
    assert "clf v2 · production @champion" in _display.describe(registry.get_model("clf"))
    lineage = _display.describe(registry.get_model_lineage("clf"))
    assert "v2 · production" in lineage and "dataset train (40 rows · sha256" in lineage
    # outside a kernel, a run's display is that text only (no widget is made)
    assert registry.get_run(run.id)._repr_mimebundle_() == {"text/plain": _display.describe(registry.get_run(run.id))}


def test_in_a_kernel_objects_display_as_widgets_with_text(monkeypatch):
    from podstack_jupyter.widgets import _display as display_module

    with registry.start_run("shown") as run:
        registry.log_metrics({"loss": 0.5}, step=0)
    monkeypatch.setattr(display_module, "can_show_widgets", lambda: True)
    data, _metadata = registry.get_run(run.id)._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data and data["text/plain"].startswith("Run 'shown'")
    data, _ = registry.get_metric_history(run.id, "loss")._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in data


def test_widgets_import_without_a_built_front_end_and_say_how_to_build_it(monkeypatch, tmp_path):
    from podstack_jupyter.widgets import _base

    monkeypatch.setattr(_base, "_STATIC", tmp_path)
    monkeypatch.setattr(_base, "_bundle_cache", {})
    with pytest.raises(podstack.PodstackError, match="npm run build"):
        _base.bundle_text("widgets.js")


def test_the_installed_bundle_is_self_contained():
    from podstack_jupyter.widgets._base import bundle_text

    js = bundle_text("widgets.js")
    assert "export" in js and "uPlot" in js or "uplot" in js.lower()
    assert "http://" not in js.replace("http://www.w3.org", "") and "https://" not in js.replace("https://github.com", "")
    assert os.path.getsize(os.path.join(os.path.dirname(_display.__file__), "static", "widgets.js")) < 300_000
