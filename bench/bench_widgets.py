"""The metrics chart's costs, side by side with what a notebook would otherwise do, in one run.

Run: python bench/bench_widgets.py [--points 1000000] [--events 200]
Needs: the test extras (numpy, matplotlib); no browser, no kernel (the widget's comm is the
in-process one ipywidgets makes outside a kernel, so message building is timed, not the socket).

Measures:
  1. latency from a logged point (``log_metrics`` + its ``metrics.logged`` event) to the point being
     in the widget's state (sent to the views as a binary append): the first point after a pause
     (sent at once) and under a steady stream (throttled to 10 messages a second), against the cost
     of one trait set on a plain ipywidgets widget (the smallest possible sync, for scale)
  2. refreshing the chart for a --points-point metric: building the synced snapshot (min/max
     downsampling to 2,000 points + float64 buffers) against sending every point as JSON (a widget
     that syncs a list), redrawing a matplotlib line of every point (Agg), and the machine's floor
     (one copy of the array)
  3. (when Debian's chromium and playwright are installed) the browser's cost of drawing the chart:
     the bundled view, fed through a plain object that behaves like the widget's model (the way the
     JupyterLab extension reuses the views), redraws the snapshot of a --points-point metric (2,000
     points) against the same view given every point
Ratios are other / podstack (>1: podstack faster). The machine is shared: compare ratios of one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time

import numpy as np


def timed(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def latency(events_count: int) -> dict:
    os.environ["PODSTACK_HOME"] = tempfile.mkdtemp(prefix="bench-widgets-")
    import ipywidgets

    from podstack_jupyter import config, registry
    from podstack_jupyter.widgets import MetricsChart

    config.reset()
    run = registry.start_run("bench")
    chart = MetricsChart([run.id])

    def log_one(step: int) -> float:
        before = chart.sent_count
        started = time.perf_counter()
        registry.log_metrics({"loss": float(step)}, step=step)  # reaches the chart by the flusher's metrics.logged
        while chart.sent_count == before:
            time.sleep(0.0002)
        return time.perf_counter() - started

    after_pause = []
    for step in range(20):
        time.sleep(0.15)  # longer than one throttle tick: the sender is idle
        after_pause.append(log_one(step))
    steady = [log_one(step) for step in range(20, 20 + events_count)]
    # a training loop logging every 10 ms for 3 s: how often the chart's views get new points
    before, step, started = chart.sent_count, 10_000, time.perf_counter()
    while time.perf_counter() - started < 3.0:
        registry.log_metrics({"loss": float(step)}, step=step)
        step += 1
        time.sleep(0.01)
    updates_per_s = (chart.sent_count - before) / (time.perf_counter() - started)
    slider = ipywidgets.FloatSlider()
    trait_set = timed(lambda: [setattr(slider, "value", float(i % 100)) for i in range(1000)]) / 1000
    registry.end_run()
    return {"after_pause": statistics.median(after_pause), "steady": statistics.median(steady),
            "steady_max": max(steady), "trait_set": trait_set, "updates_per_s": updates_per_s}


def refresh(points: int) -> dict:
    from podstack_jupyter.widgets._series import Series

    values = np.cumsum(np.random.default_rng(0).normal(size=points))
    steps = np.arange(points, dtype=np.float64)
    series = Series("run", "loss", points)
    series.extend(steps, values, steps)

    def snapshot():
        s, v, t = series.downsampled(2000)
        return [s.tobytes(), v.tobytes(), t.tobytes()]

    ours = timed(snapshot)
    ours_bytes = sum(len(b) for b in snapshot())
    as_json = timed(lambda: json.dumps({"steps": steps.tolist(), "values": values.tolist()}), repeat=3)
    json_bytes = len(json.dumps({"steps": steps.tolist(), "values": values.tolist()}))
    out = {"ours": ours, "ours_bytes": ours_bytes, "json": as_json, "json_bytes": json_bytes,
           "copy": timed(lambda: values.copy())}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
        (line,) = ax.plot(steps, values)

        def redraw():
            line.set_data(steps, values)
            fig.canvas.draw()

        out["matplotlib"] = timed(redraw, repeat=3)
        plt.close(fig)
    except ImportError:
        out["matplotlib"] = None
    return out


_PAGE_SCRIPT = """
async ([js, css, points, maxPoints]) => {
  const style = document.createElement("style"); style.textContent = css; document.head.append(style);
  const mod = await import(URL.createObjectURL(new Blob([js], { type: "text/javascript" })));
  const frame = () => new Promise((resolve) => requestAnimationFrame(() => requestAnimationFrame(resolve)));
  const values = new Float64Array(points), steps = new Float64Array(points);
  let walk = 0;
  for (let i = 0; i < points; i++) { walk += Math.sin(i * 12.9898) * 0.5; values[i] = walk; steps[i] = i; }
  const snapshot = (seq, limit) => {
    const keep = mod.minMaxIndices ? mod.minMaxIndices(values, limit) : null;
    const pick = (a) => (keep ? Float64Array.from(keep, (k) => a[k]) : a);
    return { seq, series: [{ run: "r", key: "loss", n: points, steps: pick(steps), values: pick(values), times: pick(steps) }] };
  };
  const result = {};
  for (const [name, limit] of [["downsampled", maxPoints], ["every_point", points + 1]]) {
    const state = { _kind: "metrics", runs: [{ id: "r", name: "run", status: "completed", color: "#0072B2", start: 0 }],
      metric_keys: ["loss"], panel_layout: "panels", x_axis: "step", y_scale: "linear", smoothing: 0, hidden_runs: [],
      max_points: limit, snapshot: snapshot(0, limit), live: false, title: name, status: "" };
    const listeners = {};
    const model = { get: (k) => state[k], set: (k, v) => { state[k] = v; (listeners["change:" + k] || []).forEach((f) => f()); },
      save_changes() {}, on(e, f) { (listeners[e] = listeners[e] || []).push(f); },
      off(e, f) { listeners[e] = (listeners[e] || []).filter((g) => g !== f); }, send() {} };
    const el = document.createElement("div"); el.style.width = "900px"; document.body.append(el);
    let t = performance.now();
    const cleanup = mod.default.render({ model, el });
    await frame();
    const first = performance.now() - t;
    const times = [];
    for (let i = 1; i <= 5; i++) {
      t = performance.now();
      model.set("snapshot", snapshot(i, limit));
      await frame();
      times.push(performance.now() - t);
    }
    times.sort((a, b) => a - b);
    result[name] = { first, refresh: times[2], drawn: Number(el.querySelector(".psw-panel").dataset.points) };
    cleanup(); el.remove();
  }
  return result;
}
"""


def browser_draw(points: int, max_points: int = 2000) -> dict | None:
    if not os.path.exists("/usr/bin/chromium"):
        return None
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    from podstack_jupyter.widgets._base import bundle_text

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        page = browser.new_page(viewport={"width": 1000, "height": 800})
        page.set_content("<html><body></body></html>")
        result = page.evaluate(_PAGE_SCRIPT, [bundle_text("widgets.js"), bundle_text("widgets.css"), points, max_points])
        browser.close()
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=200)
    args = parser.parse_args()

    lat = latency(args.events)
    print("1. log_metrics -> point in the chart's state (sent to the views)")
    print(f"   after a pause       {lat['after_pause'] * 1e3:8.2f} ms (median)")
    print(f"   steady stream       {lat['steady'] * 1e3:8.2f} ms (median), {lat['steady_max'] * 1e3:.1f} ms max "
          f"(throttle: at most 10 messages/s)")
    print(f"   a loop logging every 10 ms: the chart's views updated {lat['updates_per_s']:.1f} times/s")
    print(f"   plain ipywidgets trait set, for scale: {lat['trait_set'] * 1e6:.1f} us")

    r = refresh(args.points)
    print(f"2. refresh of a {args.points:,}-point metric")
    print(f"   podstack snapshot (min/max to 2,000 points, float64)  {r['ours'] * 1e3:9.2f} ms  {r['ours_bytes']:>12,} bytes")
    print(f"   every point as JSON (a widget syncing a list)       {r['json'] * 1e3:9.2f} ms  {r['json_bytes']:>12,} bytes"
          f"   ratio {r['json'] / r['ours']:.1f}x time, {r['json_bytes'] / r['ours_bytes']:.0f}x bytes")
    if r["matplotlib"] is not None:
        print(f"   matplotlib redraw of every point (Agg)               {r['matplotlib'] * 1e3:9.2f} ms"
              f"   ratio {r['matplotlib'] / r['ours']:.1f}x")
    print(f"   machine floor: one copy of the array                 {r['copy'] * 1e3:9.2f} ms"
          f"   (podstack is {r['ours'] / r['copy']:.1f}x the floor)")

    b = browser_draw(args.points)
    if b is None:
        print("3. browser draw: skipped (needs /usr/bin/chromium and playwright)")
        return
    ours, every = b["downsampled"], b["every_point"]
    print(f"3. the chart view in headless chromium, {args.points:,}-point metric")
    print(f"   podstack (snapshot of {ours['drawn']:,} points): first draw {ours['first']:8.1f} ms, refresh {ours['refresh']:8.1f} ms")
    print(f"   same view, every point ({every['drawn']:,}):      first draw {every['first']:8.1f} ms, refresh {every['refresh']:8.1f} ms"
          f"   ratio {every['refresh'] / ours['refresh']:.1f}x refresh")


if __name__ == "__main__":
    main()
