"""The metrics chart's state and messages, without a browser: what the views would draw."""

from __future__ import annotations

import numpy as np
import pytest
import traitlets

import podstack
from podstack_jupyter import events
from podstack_jupyter.errors import InvalidArgumentError, RunNotFoundError
from podstack_jupyter import registry
from podstack_jupyter.widgets import MetricsChart, live_sender
from podstack_jupyter.widgets._series import min_max_indices
from widget_helpers import log_points, wait_for


def snapshot_series(chart) -> dict:
    """``{(run, key): (steps, values, times)}`` decoded from the synced snapshot, as a view decodes it."""
    out = {}
    for s in chart.snapshot["series"]:
        out[(s["run"], s["key"])] = tuple(np.frombuffer(s[f], dtype=np.float64) for f in ("steps", "values", "times"))
    return out


def appended(chart) -> dict:
    """Every point sent to the views in ``append`` messages: ``{(run, key): [(step, value), ...]}``."""
    out: dict = {}
    for content, buffers in list(chart.sent):
        if content.get("type") != "append":
            continue
        for i, entry in enumerate(content["series"]):
            steps = np.frombuffer(buffers[3 * i], dtype=np.float64)
            values = np.frombuffer(buffers[3 * i + 1], dtype=np.float64)
            out.setdefault((entry["run"], entry["key"]), []).extend(zip(steps.tolist(), values.tolist()))
    return out


def test_a_finished_run_is_drawn_from_the_store_with_every_point():
    with registry.start_run("baseline") as run:
        for step in range(50):
            registry.log_metrics({"loss": 1.0 / (step + 1), "accuracy": step / 50}, step=step)
    chart = podstack.show_metrics([run.id])
    assert chart.metric_keys == ["accuracy", "loss"]
    assert chart.runs[0]["name"] == "baseline" and chart.runs[0]["status"] == "completed"
    series = snapshot_series(chart)
    steps, values, _ = series[(run.id, "loss")]
    assert steps.tolist() == list(range(50)) and values[-1] == pytest.approx(1 / 50)
    assert all(s["n"] == 50 and s["shown"] == 50 for s in chart.snapshot["series"])


def test_options_are_checked_and_bad_runs_are_named():
    with registry.start_run("r") as run:
        registry.log_metrics({"loss": 1.0})
    chart = MetricsChart([run.id], layout="overlay", x_axis="time", y_scale="log", smoothing=0.6)
    assert (chart.panel_layout, chart.x_axis, chart.y_scale, chart.smoothing) == ("overlay", "time", "log", 0.6)
    with pytest.raises(traitlets.TraitError, match="smoothing"):
        chart.smoothing = 1.5
    with pytest.raises(traitlets.TraitError):
        chart.y_scale = "symlog"
    with pytest.raises(RunNotFoundError, match="nope"):
        MetricsChart(["nope"])
    with pytest.raises(InvalidArgumentError, match="keys"):
        MetricsChart([run.id], keys="loss")


def test_live_points_go_out_as_binary_appends_and_into_the_snapshot():
    run = registry.start_run("live")
    chart = MetricsChart([run.id])
    assert chart.live and chart.metric_keys == []
    log_points(run.id, "loss", range(0, 10), [float(10 - i) for i in range(10)])
    wait_for(lambda: len(appended(chart).get((run.id, "loss"), [])) == 10, what="10 appended points")
    assert chart.metric_keys == ["loss"]  # a key logged after the chart was made gets its panel
    log_points(run.id, "loss", range(10, 20), [float(-i) for i in range(10)])
    wait_for(lambda: len(appended(chart).get((run.id, "loss"), [])) == 20, what="20 appended points")
    points = appended(chart)[(run.id, "loss")]
    assert [p[0] for p in points] == list(range(20))
    # a view opened now (a page reload asks for the whole state) gets every point so far
    state = chart.get_state()
    assert len(np.frombuffer(state["snapshot"]["series"][0]["values"], dtype=np.float64)) == 20
    # appends carry increasing sequence numbers the snapshot refers to, so a view drops nothing twice
    seqs = [c["seq"] for c, _ in chart.sent if c.get("type") == "append"]
    assert seqs == sorted(seqs) and chart.snapshot["seq"] == seqs[-1]
    registry.end_run()
    chart.close()


def test_updates_are_throttled_not_one_message_per_point():
    run = registry.start_run("burst")
    chart = MetricsChart([run.id])
    for i in range(300):
        log_points(run.id, "loss", [i], [float(i)])
    wait_for(lambda: len(appended(chart).get((run.id, "loss"), [])) == 300, what="300 points")
    messages = [c for c, _ in chart.sent if c.get("type") == "append"]
    assert len(messages) < 60, f"{len(messages)} messages for 300 points: not throttled"
    registry.end_run()


def test_points_logged_while_the_chart_reads_the_store_are_neither_lost_nor_doubled():
    run = registry.start_run("race")
    log_points(run.id, "loss", range(5), [1.0] * 5)
    registry.flush()
    real = registry.get_metric_history

    def history_then_more(run_id, key):
        history = real(run_id, key)
        # points logged (and flushed) while the chart is reading: in the store AND in events
        log_points(run.id, "loss", range(5, 8), [2.0] * 3)
        registry.flush()
        return history

    registry.get_metric_history = history_then_more
    try:
        chart = MetricsChart([run.id])
    finally:
        registry.get_metric_history = real
    log_points(run.id, "loss", range(8, 10), [3.0] * 2)
    wait_for(lambda: chart.points(run.id, "loss")[0].size == 10, what="10 points")
    steps, values, _ = chart.points(run.id, "loss")
    assert steps.tolist() == list(range(10)) and values.tolist() == [1.0] * 5 + [2.0] * 3 + [3.0] * 2
    registry.end_run()


def test_at_the_end_the_chart_is_exactly_what_the_store_recorded():
    run = registry.start_run("exact")
    chart = MetricsChart([run.id])
    # points logged without any event (e.g. a publisher that was not there): the end reconciles
    for step in range(30):
        registry.log_metrics({"loss": float(step)}, step=step)
    chart.finish()
    steps, values, _ = snapshot_series(chart)[(run.id, "loss")]
    assert steps.tolist() == list(range(30)) and values.tolist() == [float(s) for s in range(30)]
    registry.end_run()
    events.publish("run.ended", run_id=run.id, status="completed")
    wait_for(lambda: chart.runs[0]["status"] == "completed", what="status from run.ended")


def test_a_million_points_are_downsampled_keeping_every_spike():
    n = 1_000_000
    values = np.sin(np.arange(n) / 5000.0)
    values[123_457] = 50.0   # one spike up
    values[876_543] = -50.0  # one spike down
    keep = min_max_indices(values, 2000)
    assert len(keep) <= 2000
    assert 123_457 in keep and 876_543 in keep and keep[0] == 0 and keep[-1] == n - 1
    assert np.all(np.diff(keep) > 0)
    nan_values = values.copy()
    nan_values[:1000] = np.nan
    kept = nan_values[min_max_indices(nan_values, 2000)]
    assert np.nanmax(kept) == 50.0 and np.nanmin(kept) == -50.0


def test_a_long_run_is_sent_downsampled_and_zoom_sends_the_range_in_detail():
    with registry.start_run("long") as run:
        values = np.cos(np.arange(200_000) / 300.0)
        values[150_001] = 9.0
        for step, value in enumerate(values):
            registry.log_metrics({"loss": value}, step=step)
    chart = MetricsChart([run.id])
    entry = chart.snapshot["series"][0]
    assert entry["n"] == 200_000 and entry["shown"] <= chart.max_points
    assert 9.0 in np.frombuffer(entry["values"], dtype=np.float64)
    chart._handle_custom_msg({"action": "zoom", "by": "step", "min": 150_000, "max": 150_100, "request": 7}, [])
    content, buffers = chart.sent[-1]
    assert content["type"] == "detail" and content["request"] == 7
    steps = np.frombuffer(buffers[0], dtype=np.float64)
    assert steps[0] <= 150_000 and steps[-1] >= 150_100 and len(steps) == 103  # every point, one beyond each edge


def test_a_metric_history_displays_as_its_own_points():
    with registry.start_run("h") as run:
        for step in range(5):
            registry.log_metrics({"loss": 5.0 - step}, step=step)
    history = registry.get_metric_history(run.id, "loss")
    chart = MetricsChart.from_history(history)
    assert not chart.live and chart.metric_keys == ["loss"] and chart.runs[0]["name"] == "h"
    assert snapshot_series(chart)[(run.id, "loss")][1].tolist() == [5.0, 4.0, 3.0, 2.0, 1.0]


def test_two_runs_share_a_chart_with_distinct_colours_and_legend_toggles():
    ids = []
    for name, scale in (("a", 1.0), ("b", 2.0)):
        with registry.start_run(name) as run:
            for step in range(3):
                registry.log_metrics({"loss": scale * step}, step=step)
        ids.append(run.id)
    chart = podstack.show_metrics(ids, keys=["loss"], layout="overlay")
    assert [r["name"] for r in chart.runs] == ["a", "b"]
    assert chart.runs[0]["color"] != chart.runs[1]["color"]
    chart.hidden_runs = [ids[0]]  # what the legend chip sets
    assert chart.get_state("hidden_runs") == {"hidden_runs": [ids[0]]}


def test_the_sender_keeps_going_when_one_widget_fails():
    class Broken(MetricsChart):
        def _flush_live(self):
            raise RuntimeError("boom")

    run = registry.start_run("x")
    broken, good = Broken([run.id]), MetricsChart([run.id])
    log_points(run.id, "loss", [0], [1.0])
    wait_for(lambda: appended(good).get((run.id, "loss")), what="the good chart's update")
    live_sender.mark(broken)
    log_points(run.id, "loss", [1], [2.0])
    wait_for(lambda: len(appended(good).get((run.id, "loss"), [])) == 2, what="a second update")
    registry.end_run()
