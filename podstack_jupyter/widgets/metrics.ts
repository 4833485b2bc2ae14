// The metrics chart view: panels per metric (or overlaid), x by step or time since the run
// started, linear/log y, smoothing, hover read-out, legend toggles, drag to zoom (the kernel
// sends that range at full detail), double-click to reset. Live points arrive as binary
// "append" messages and are kept per model, so every view of the model draws all of them.
import uPlot from "uplot";
import { f64, formatDuration, formatNumber, formatTick, h, listen, ModelLike, RenderProps, scheduler, statusLine, STAGE_COLORS } from "./common";

interface SeriesData { run: string; key: string; steps: Float64Array; values: Float64Array; times: Float64Array; n: number; total: number; }

const seriesId = (run: string, key: string) => `${run}\u0000${key}`;

function grow(array: Float64Array, n: number, extra: Float64Array): Float64Array {
  let out = array;
  if (n + extra.length > array.length) {
    out = new Float64Array(Math.max(2 * array.length, n + extra.length, 64));
    out.set(array.subarray(0, n));
  }
  out.set(extra, n);
  return out;
}

/** Same as the kernel's downsampling: each bucket's min and max, plus the first and last point. */
export function minMaxIndices(values: Float64Array, maxPoints: number): number[] {
  const n = values.length;
  if (n <= maxPoints) return Array.from({ length: n }, (_, i) => i);
  const buckets = Math.max(1, Math.floor((maxPoints - 2) / 2));
  const size = Math.ceil(n / buckets);
  const keep = new Set<number>([0, n - 1]);
  for (let start = 0; start < n; start += size) {
    const end = Math.min(n, start + size);
    let lo = -1, hi = -1;
    for (let i = start; i < end; i++) {
      const v = values[i];
      if (Number.isNaN(v)) continue;
      if (lo < 0 || v < values[lo]) lo = i;
      if (hi < 0 || v > values[hi]) hi = i;
    }
    keep.add(lo < 0 ? start : lo);
    keep.add(hi < 0 ? start : hi);
  }
  return Array.from(keep).sort((a, b) => a - b);
}

/** Every point the views of one model draw: the snapshot, then the appended points. */
class MetricsStore {
  series = new Map<string, SeriesData>();
  seq = -1;
  private listeners = new Set<() => void>();
  private cleanup: () => void;

  constructor(private model: ModelLike) {
    this.load();
    this.cleanup = listen(model, [
      ["change:snapshot", () => { this.load(); this.notify(); }],
      ["msg:custom", (msg: any, buffers: any[]) => { if (msg?.type === "append") this.append(msg, buffers || []); }],
    ]);
  }

  private load() {
    const snapshot = this.model.get("snapshot") || {};
    this.seq = snapshot.seq ?? -1;
    this.series.clear();
    for (const s of snapshot.series || []) {
      const steps = f64(s.steps), values = f64(s.values), times = f64(s.times);
      this.series.set(seriesId(s.run, s.key), { run: s.run, key: s.key, steps: steps.slice(), values: values.slice(),
        times: times.slice(), n: values.length, total: s.n ?? values.length });
    }
  }

  private append(msg: any, buffers: any[]) {
    if (msg.seq <= this.seq) return; // already in the snapshot
    this.seq = msg.seq;
    const maxPoints = this.model.get("max_points") || 2000;
    (msg.series || []).forEach((entry: any, i: number) => {
      const steps = f64(buffers[3 * i]), values = f64(buffers[3 * i + 1]), times = f64(buffers[3 * i + 2]);
      const id = seriesId(entry.run, entry.key);
      let s = this.series.get(id);
      if (!s) {
        s = { run: entry.run, key: entry.key, steps: new Float64Array(0), values: new Float64Array(0), times: new Float64Array(0), n: 0, total: 0 };
        this.series.set(id, s);
      }
      s.steps = grow(s.steps, s.n, steps);
      s.values = grow(s.values, s.n, values);
      s.times = grow(s.times, s.n, times);
      s.n += values.length;
      s.total += values.length;
      if (s.n > 4 * maxPoints) { // keep redraws cheap while a long run logs: thin the drawn points
        const keep = minMaxIndices(s.values.subarray(0, s.n), 2 * maxPoints);
        const pick = (a: Float64Array) => Float64Array.from(keep, (k) => a[k]);
        s.steps = pick(s.steps); s.values = pick(s.values); s.times = pick(s.times); s.n = keep.length;
      }
    });
    this.notify();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify() { for (const listener of this.listeners) listener(); }

  dispose() { this.cleanup(); this.listeners.clear(); }
}

const stores = new WeakMap<ModelLike, MetricsStore>();

export function metricsStore(model: ModelLike): MetricsStore {
  let store = stores.get(model);
  if (!store) { store = new MetricsStore(model); stores.set(model, store); }
  return store;
}

export function initializeMetrics(model: ModelLike): () => void {
  const store = metricsStore(model);
  return () => { store.dispose(); stores.delete(model); };
}

function smooth(values: Float64Array, weight: number): Float64Array {
  const out = new Float64Array(values.length);
  let last = 0, count = 0;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (!isFinite(v)) { out[i] = v; continue; }
    last = last * weight + (1 - weight) * v;
    count++;
    out[i] = last / (1 - Math.pow(weight, count)); // debiased, as TensorBoard does
  }
  return out;
}

function alpha(color: string, a: string): string { return color.length === 7 ? color + a : color; }

function cssVar(el: HTMLElement, name: string, fallback: string): string {
  return getComputedStyle(el).getPropertyValue(name).trim() || fallback;
}

interface Drawn { label: string; color: string; x: Float64Array; y: Float64Array; raw?: Float64Array; run: string; }

class Panel {
  plot: uPlot | null = null;
  signature = "";
  readout: HTMLElement;
  box: HTMLElement;
  chartEl: HTMLElement;
  drawn: Drawn[] = [];

  constructor(public title: string, private view: MetricsView) {
    this.readout = h("span.psw-readout");
    this.chartEl = h("div.psw-plot");
    this.box = h("div.psw-panel", null, h("div.psw-panel-head", null, h("span.psw-panel-title", null, title), this.readout), this.chartEl);
    this.chartEl.addEventListener("dblclick", () => this.view.resetZoom());
  }

  update(drawn: Drawn[], width: number, height: number) {
    this.drawn = drawn;
    // what is drawn, readable from the page (browser tests, accessibility tools)
    this.box.dataset.series = String(drawn.length);
    this.box.dataset.points = String(drawn.reduce((sum, d) => sum + d.y.length, 0));
    const view = this.view;
    const model = view.model;
    const log = model.get("y_scale") === "log";
    const byTime = model.get("x_axis") === "time";
    const smoothing = model.get("smoothing") || 0;
    const tables: uPlot.AlignedData[] = drawn.map((d) => {
      const y = Array.from(d.y, (v) => (isFinite(v) && (!log || v > 0) ? v : null));
      if (d.raw) {
        const raw = Array.from(d.raw, (v) => (isFinite(v) && (!log || v > 0) ? v : null));
        return [d.x as any, raw, y] as uPlot.AlignedData;
      }
      return [d.x as any, y] as uPlot.AlignedData;
    });
    const data: uPlot.AlignedData = tables.length ? (tables.length === 1 ? tables[0] : uPlot.join(tables)) : [[]];
    const series: uPlot.Series[] = [{ label: byTime ? "time" : "step" }];
    for (const d of drawn) {
      if (d.raw) series.push({ label: `${d.label} (raw)`, stroke: alpha(d.color, "40"), width: 1, spanGaps: true, points: { show: false } });
      series.push({ label: d.label, stroke: d.color, width: 1.75, spanGaps: true, points: { show: false } });
    }
    const signature = JSON.stringify([series.map((s) => [s.label, s.stroke]), log, byTime, smoothing > 0, width, height]);
    if (!this.plot || signature !== this.signature) {
      this.plot?.destroy();
      this.signature = signature;
      const axis = cssVar(this.box, "--jp-ui-font-color2", "#666");
      const grid = cssVar(this.box, "--jp-border-color2", "#e5e7eb");
      const font = `11px ${cssVar(this.box, "--jp-ui-font-family", "system-ui, sans-serif")}`;
      this.plot = new uPlot({
        width, height, legend: { show: false },
        scales: { x: { time: false }, y: { distr: log ? 3 : 1, log: 10 } },
        axes: [
          { stroke: axis, font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 },
            incrs: byTime ? undefined : STEP_INCREMENTS,
            values: byTime ? (_u: uPlot, splits: number[]) => splits.map((s) => formatDuration(s))
              : (_u: uPlot, splits: number[]) => splits.map((s) => formatTick(s)) },
          { stroke: axis, font, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid, width: 1 }, size: 60,
            // on a log axis only the powers of ten get a label
            values: (_u: uPlot, splits: number[]) => {
              const decades = splits.map((s) => (log && s > 0 && Math.abs(Math.log10(s) % 1) > 1e-9 ? "" : formatTick(s)));
              return decades.filter(Boolean).length >= 2 ? decades : splits.map((s) => formatTick(s)); // a narrow log range: label every tick
            } },
        ],
        series,
        cursor: { drag: { x: true, y: false, setScale: false }, points: { size: 7 } },
        hooks: {
          setCursor: [(u: uPlot) => this.hover(u)],
          setSelect: [(u: uPlot) => {
            if (u.select.width > 4) view.zoomTo(u.posToVal(u.select.left, "x"), u.posToVal(u.select.left + u.select.width, "x"));
            u.setSelect({ left: 0, top: 0, width: 0, height: 0 }, false);
          }],
        },
      }, data, this.chartEl);
    } else {
      this.plot.setData(data, !view.zoom);
    }
    if (view.zoom) this.plot.setScale("x", { min: view.zoom.min, max: view.zoom.max });
    this.hover(this.plot);
  }

  hover(u: uPlot) {
    const idx = u.cursor.idx;
    const model = this.view.model;
    if (idx == null) {
      this.readout.textContent = "";
      this.readout.append(...this.drawn.map((d) => h("span.psw-readout-item", null, h("i", { style: { background: d.color } }),
        `${d.label} ${formatNumber(d.y[d.y.length - 1])}`)));
      return;
    }
    const x = u.data[0][idx] as number;
    const byTime = model.get("x_axis") === "time";
    const parts: Node[] = [h("span.psw-readout-x", null, byTime ? formatDuration(x) : `step ${formatNumber(x)}`)];
    for (const d of this.drawn) {
      // the point of this series nearest to the cursor's x
      let lo = 0, hi = d.x.length - 1;
      if (hi < 0) continue;
      while (lo < hi) { const mid = (lo + hi) >> 1; if (d.x[mid] < x) lo = mid + 1; else hi = mid; }
      if (lo > 0 && Math.abs(d.x[lo - 1] - x) < Math.abs(d.x[lo] - x)) lo--;
      parts.push(h("span.psw-readout-item", null, h("i", { style: { background: d.color } }), `${d.label} ${formatNumber(d.y[lo])}`));
    }
    this.readout.replaceChildren(...parts);
  }

  destroy() { this.plot?.destroy(); this.plot = null; }
}

class MetricsView {
  root: HTMLElement;
  legend: HTMLElement;
  grid: HTMLElement;
  info: HTMLElement;
  controls: HTMLElement;
  panels = new Map<string, Panel>();
  zoom: { min: number; max: number } | null = null;
  detail: Map<string, SeriesData> | null = null;
  private request = 0;
  private cleanups: (() => void)[] = [];
  private width = 600;
  redraw: () => void;

  constructor(public model: ModelLike, private el: HTMLElement) {
    const store = metricsStore(model);
    this.redraw = scheduler(() => this.draw());
    this.controls = h("div.psw-controls");
    this.legend = h("div.psw-legend");
    this.grid = h("div.psw-grid");
    this.info = h("div.psw-footer-info");
    const [status, stopStatus] = statusLine(model);
    this.root = h("div.psw.psw-metrics", null,
      h("div.psw-header", null, h("div.psw-title"), this.controls), this.legend, this.grid,
      h("div.psw-footer", null, this.info), status);
    el.append(this.root);
    this.cleanups.push(stopStatus, store.subscribe(() => { this.detail = this.zoom ? this.detail : null; this.redraw(); }));
    this.cleanups.push(listen(model, [
      ...["runs", "metric_keys", "panel_layout", "x_axis", "y_scale", "smoothing", "hidden_runs", "title", "live"]
        .map((name) => [`change:${name}`, () => { this.buildControls(); this.redraw(); }] as [string, () => void]),
      ["msg:custom", (msg: any, buffers: any[]) => { if (msg?.type === "detail") this.receiveDetail(msg, buffers || []); }],
    ]));
    const observer = new ResizeObserver(() => {
      const width = Math.floor(this.root.clientWidth);
      if (width && Math.abs(width - this.width) > 2) { this.width = width; this.redraw(); }
    });
    observer.observe(this.root);
    this.cleanups.push(() => observer.disconnect());
    this.buildControls();
    this.width = Math.floor(el.clientWidth) || 600;
    this.draw();
  }

  private choice(name: string, options: [string, string][]) {
    const current = this.model.get(name);
    return h("div.psw-toggle", { role: "group", "aria-label": name }, ...options.map(([value, label]) =>
      h(`button.psw-toggle-btn${value === current ? ".psw-on" : ""}`, {
        type: "button", title: `${name}: ${label}`, dataset: { option: `${name}=${value}` },
        onclick: () => { this.model.set(name, value); this.model.save_changes(); },
      }, label)));
  }

  buildControls() {
    const model = this.model;
    const titleEl = this.root.querySelector(".psw-title") as HTMLElement;
    const runs: any[] = model.get("runs") || [];
    const live = runs.some((r) => r.status === "running") && model.get("live");
    titleEl.replaceChildren(live ? h("span.psw-live", { title: "updating live" }, "live") : "",
      model.get("title") || (runs.length === 1 ? runs[0].name : `${runs.length} runs`));
    const smoothing = model.get("smoothing") || 0;
    const value = h("span.psw-smooth-value", null, smoothing.toFixed(2));
    const slider = h("input.psw-slider", { type: "range", min: "0", max: "0.99", step: "0.01", value: String(smoothing),
      title: "smoothing (exponential moving average)", "aria-label": "smoothing" }) as HTMLInputElement;
    slider.addEventListener("input", () => { value.textContent = Number(slider.value).toFixed(2); });
    slider.addEventListener("change", () => { model.set("smoothing", Number(slider.value)); model.save_changes(); });
    this.controls.replaceChildren(
      this.choice("panel_layout", [["panels", "Panels"], ["overlay", "Overlay"]]),
      this.choice("x_axis", [["step", "Step"], ["time", "Time"]]),
      this.choice("y_scale", [["linear", "Linear"], ["log", "Log"]]),
      h("label.psw-smooth", null, "Smoothing", slider, value));
    const hidden = new Set<string>(model.get("hidden_runs") || []);
    this.legend.replaceChildren(...runs.map((run) => h(`button.psw-chip${hidden.has(run.id) ? ".psw-off" : ""}`, {
      type: "button", title: hidden.has(run.id) ? `show ${run.name}` : `hide ${run.name}`, dataset: { run: run.id },
      onclick: () => {
        const now = new Set<string>(model.get("hidden_runs") || []);
        if (now.has(run.id)) now.delete(run.id); else now.add(run.id);
        model.set("hidden_runs", Array.from(now)); model.save_changes();
      },
    }, h("i", { style: { background: run.color } }), run.name,
      run.status ? h("span.psw-badge", { style: { color: STAGE_COLORS[run.status] || "inherit" } }, run.status) : "")));
  }

  zoomTo(min: number, max: number) {
    if (!(max > min)) return;
    this.zoom = { min, max };
    this.request += 1;
    this.model.send({ action: "zoom", by: this.model.get("x_axis"), min, max, request: this.request });
    this.redraw();
  }

  resetZoom() { this.zoom = null; this.detail = null; this.redraw(); }

  private receiveDetail(msg: any, buffers: any[]) {
    if (msg.request !== this.request || !this.zoom) return;
    const detail = new Map<string, SeriesData>();
    (msg.series || []).forEach((entry: any, i: number) => {
      const values = f64(buffers[3 * i + 1]);
      detail.set(seriesId(entry.run, entry.key), { run: entry.run, key: entry.key, steps: f64(buffers[3 * i]), values,
        times: f64(buffers[3 * i + 2]), n: values.length, total: values.length });
    });
    this.detail = detail;
    this.redraw();
  }

  draw() {
    const model = this.model;
    const store = metricsStore(model);
    const runs: any[] = model.get("runs") || [];
    const keys: string[] = model.get("metric_keys") || [];
    const hidden = new Set<string>(model.get("hidden_runs") || []);
    const byTime = model.get("x_axis") === "time";
    const smoothing = model.get("smoothing") || 0;
    const overlay = model.get("panel_layout") === "overlay";
    const drawnFor = (key: string, labelWithKey: boolean): Drawn[] => {
      const out: Drawn[] = [];
      for (const run of runs) {
        if (hidden.has(run.id)) continue;
        const s = (this.detail && this.detail.get(seriesId(run.id, key))) || store.series.get(seriesId(run.id, key));
        if (!s || !s.n) continue;
        const axis = (byTime ? s.times : s.steps).subarray(0, s.n);
        const offset = byTime ? (run.start ?? s.times[0]) : 0;
        let order: number[] | null = null;
        for (let i = 1; i < axis.length; i++) if (axis[i] < axis[i - 1]) { order = Array.from(axis.keys()).sort((a, b) => axis[a] - axis[b]); break; }
        const pick = (a: Float64Array) => (order ? Float64Array.from(order, (k) => a[k]) : a.subarray(0, s.n));
        const x = Float64Array.from(pick(axis), (v) => v - offset);
        const raw = pick(s.values);
        const label = labelWithKey ? (runs.length > 1 ? `${run.name} · ${key}` : key) : run.name;
        out.push({ label, color: run.color, x, y: smoothing > 0 ? smooth(raw, smoothing) : raw, raw: smoothing > 0 ? raw : undefined, run: run.id });
      }
      return out;
    };
    const wanted: [string, Drawn[]][] = overlay
      ? [["all metrics", keys.flatMap((key, k) => drawnFor(key, true).map((d) => keys.length > 1 && runs.length === 1
          ? { ...d, color: runs.length === 1 ? PANEL_COLORS[k % PANEL_COLORS.length] : d.color } : d))]]
      : keys.map((key) => [key, drawnFor(key, false)] as [string, Drawn[]]);
    const names = new Set(wanted.map(([name]) => name));
    for (const [name, panel] of this.panels) if (!names.has(name)) { panel.destroy(); panel.box.remove(); this.panels.delete(name); }
    const width = Math.max(280, this.width || 600);
    const columns = overlay || keys.length === 1 ? 1 : width >= 760 ? 2 : 1;
    const panelWidth = Math.floor((width - (columns - 1) * 12) / columns) - 2;
    this.grid.style.gridTemplateColumns = `repeat(${columns}, minmax(0, 1fr))`;
    if (!wanted.length || wanted.every(([, d]) => !d.length)) {
      this.grid.replaceChildren(h("div.psw-empty", null, runs.length
        ? (runs.some((r) => r.status === "running") ? "Waiting for the first metric points…" : "These runs logged no metrics.")
        : "No runs to draw. Select runs in the table above, or pass run ids to show_metrics()."));
      for (const panel of this.panels.values()) panel.destroy();
      this.panels.clear();
    } else {
      this.grid.querySelector(".psw-empty")?.remove();
      wanted.forEach(([name, drawn]) => {
        let panel = this.panels.get(name);
        if (!panel) { panel = new Panel(name, this); this.panels.set(name, panel); }
        this.grid.append(panel.box); // keeps the order of keys
        panel.update(drawn, panelWidth, overlay ? 320 : 220);
      });
    }
    let total = 0, shown = 0;
    for (const s of store.series.values()) { if (runs.some((r) => r.id === s.run)) { total += s.total; shown += s.n; } }
    this.info.textContent = total === 0 ? "" : total > shown
      ? `${total.toLocaleString()} points · drawn from ${shown.toLocaleString()} (each bucket's min and max)${this.zoom ? " · zoomed: double-click to reset" : " · drag to zoom"}`
      : `${total.toLocaleString()} points${this.zoom ? " · zoomed: double-click to reset" : " · drag to zoom"}`;
  }

  dispose() {
    for (const cleanup of this.cleanups) cleanup();
    for (const panel of this.panels.values()) panel.destroy();
    this.root.remove();
  }
}

// whole-number ticks for steps
const STEP_INCREMENTS = [1, 2, 5].flatMap((m) => Array.from({ length: 10 }, (_, e) => m * 10 ** e)).sort((a, b) => a - b);

const PANEL_COLORS = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#B8860B", "#7F7F7F"];

export function renderMetrics({ model, el }: RenderProps): () => void {
  const view = new MetricsView(model, el);
  return () => view.dispose();
}
