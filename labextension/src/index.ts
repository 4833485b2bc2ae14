// The podstack JupyterLab extension: a sidebar (the active notebook's GPU sessions, recent runs
// with their latest metrics, registered models) and a status-bar item (the session's state and
// the current %%track run). Sessions come from the notebook's kernel (bridge.ts); runs and models
// from the server extension (/podstack-lab/api, podstack_jupyter/jupyter_ext/_app.py). The
// session table and the metrics chart are the inline widgets' own views.
import { ILabShell, JupyterFrontEnd, JupyterFrontEndPlugin } from "@jupyterlab/application";
import { MainAreaWidget } from "@jupyterlab/apputils";
import { URLExt } from "@jupyterlab/coreutils";
import { ServerConnection } from "@jupyterlab/services";
import type { Kernel } from "@jupyterlab/services";
import { IStatusBar } from "@jupyterlab/statusbar";
import { LabIcon } from "@jupyterlab/ui-components";
import { Widget } from "@lumino/widgets";
import { formatNumber, formatTime, h, STAGE_COLORS } from "../../podstack_jupyter/widgets/common";
import { initializeMetrics, renderMetrics, renderSessions } from "../../podstack_jupyter/widgets/index";
import { elapsed, KernelBridge, KernelState, mainSession } from "./bridge";
import { base64ToBuffer, LocalModel } from "./model";
import "./style.css";

const SIDEBAR_ID = "podstack-sidebar";
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9"];

const podstackIcon = new LabIcon({
  name: "podstack:icon",
  svgstr: '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 16 16"><g class="jp-icon3" fill="#616161">'
    + '<rect x="2" y="2" width="12" height="3" rx="1"/><rect x="2" y="6.5" width="12" height="3" rx="1"/>'
    + '<rect x="2" y="11" width="12" height="3" rx="1"/></g></svg>',
});

async function api(path: string): Promise<any> {
  const settings = ServerConnection.makeSettings();
  const response = await ServerConnection.makeRequest(URLExt.join(settings.baseUrl, "podstack-lab/api", path), {}, settings);
  const text = await response.text();
  let body: any = {};
  try { body = text ? JSON.parse(text) : {}; } catch { body = { message: text }; }
  if (!response.ok) throw new Error(body.message || `${response.status} ${response.statusText}`);
  return body;
}

/** The kernel of the notebook (or console) in focus, and its bridge. */
class ActiveKernel {
  bridge: KernelBridge | null = null;
  private bridges = new Map<Kernel.IKernelConnection, KernelBridge>();
  private listeners = new Set<() => void>();
  private unsubscribe: (() => void) | null = null;
  private context: any = null;

  constructor(shell: ILabShell | null, app: JupyterFrontEnd) {
    const follow = (widget: any) => {
      const context = widget?.sessionContext;
      if (!context || context === this.context) return;
      if (this.context) this.context.kernelChanged.disconnect(this.onKernel, this);
      this.context = context;
      context.kernelChanged.connect(this.onKernel, this);
      this.onKernel();
    };
    if (shell) shell.currentChanged.connect((_, change) => follow(change.newValue));
    // notebooks already open (a reloaded page): bridges on all, the one in focus followed
    for (const widget of Array.from(app.shell.widgets("main"))) this.bridgeOf((widget as any)?.sessionContext?.session?.kernel);
    follow(app.shell.currentWidget);
  }

  private bridgeOf(kernel: Kernel.IKernelConnection | null | undefined): KernelBridge | null {
    if (!kernel) return null;
    let bridge = this.bridges.get(kernel);
    if (!bridge) {
      bridge = new KernelBridge(kernel);
      this.bridges.set(kernel, bridge);
      kernel.disposed.connect(() => { bridge!.dispose(); this.bridges.delete(kernel); });
    }
    return bridge;
  }

  private onKernel() {
    const bridge = this.bridgeOf(this.context?.session?.kernel);
    if (bridge === this.bridge) return;
    this.unsubscribe?.();
    this.bridge = bridge;
    this.unsubscribe = bridge ? bridge.subscribe(() => this.notify()) : null;
    this.notify();
  }

  subscribe(listener: () => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify() { for (const listener of Array.from(this.listeners)) listener(); }
}

const STATE_TEXT: Record<string, string> = {
  starting: "starting", building: "building environment", busy: "running", idle: "idle", dead: "dead", stopped: "stopped",
};

/** The status bar's words for a kernel state (exported for the browser test's sake of clarity). */
function statusText(state: KernelState | null): { text: string; state: string } {
  const session = mainSession(state);
  const run = state?.run ? ` · run ${state.run.name}` : "";
  if (!state || !session || session.state === "stopped" || session.state === "dead") {
    return { text: `GPU: no session${run}`, state: "none" };
  }
  let words = STATE_TEXT[session.state] || session.state;
  if (session.state === "busy") words += ` ${formatElapsed(elapsed(state, session))}`;
  else if (session.state === "starting" || session.state === "building") words += "…";
  return { text: `GPU ${session.spec}: ${words}${run}`, state: session.state };
}

function formatElapsed(seconds: number): string {
  const s = Math.floor(seconds);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}

class StatusItem extends Widget {
  private timer: any;

  constructor(private active: ActiveKernel, onClick: () => void) {
    super();
    this.addClass("podstack-status");
    this.node.title = "Podstack: GPU session and %%track run of this notebook (click for the sidebar)";
    this.node.addEventListener("click", onClick);
    active.subscribe(() => this.update());
    this.timer = setInterval(() => { if (this.node.dataset.state === "busy") this.update(); }, 1000);
    this.update();
  }

  protected onUpdateRequest(): void {
    const { text, state } = statusText(this.active.bridge?.state || null);
    this.node.dataset.state = state;
    this.node.replaceChildren(h("span.podstack-status-dot"), h("span.podstack-status-text", null, text));
  }

  dispose(): void { clearInterval(this.timer); super.dispose(); }
}

class Sidebar extends Widget {
  private sessionsModel: LocalModel;
  private storeLine = h("div.podstack-store");
  private runsBox = h("div.podstack-list");
  private runsTitle = h("span", null, "Runs");
  private modelsBox = h("div.podstack-list");
  private seen = { runs: -1, models: -1, experiment: "" as string | null };
  private serverStore: string | null = null;
  private loading: Promise<void> | null = null;
  private again = false;
  private charts = new Map<string, { model: LocalModel; widget: MainAreaWidget }>();

  constructor(private app: JupyterFrontEnd, private active: ActiveKernel) {
    super();
    this.id = SIDEBAR_ID;
    this.addClass("podstack-sidebar");
    this.title.icon = podstackIcon;
    this.title.caption = "Podstack: GPU sessions, runs and models";
    this.sessionsModel = new LocalModel({ sessions: [], status: "" }, (content) => this.sessionAction(content));
    const sessionsBox = h("div.podstack-sessions.psw-host");
    renderSessions({ model: this.sessionsModel, el: sessionsBox });
    this.node.append(
      h("div.podstack-head", null, h("b", null, "Podstack"),
        h("button.psw-btn", { type: "button", title: "read runs and models again", onclick: () => this.reload(true) }, "Refresh")),
      this.storeLine, sessionsBox,
      h("div.podstack-section", null, this.runsTitle), this.runsBox,
      h("div.podstack-section", null, "Models"), this.modelsBox);
    active.subscribe(() => this.onKernelState());
    this.onKernelState();
  }

  protected onAfterShow(): void { this.reload(true); }

  private sessionAction(content: any) {
    const bridge = this.active.bridge;
    if (!bridge) { this.sessionsModel.set("status", "⚠ no notebook kernel in focus"); return; }
    if (content?.action === "stop" || content?.action === "restart") {
      this.sessionsModel.set("status", `${content.action === "stop" ? "stopping" : "restarting"} session ${content.id}…`);
    }
    bridge.send(content);
  }

  private onKernelState() {
    const bridge = this.active.bridge;
    const state = bridge?.state || null;
    const received = state?.received || Date.now() / 1000;
    // the session view counts uptime from ``at``: this browser's clock, like ``received``
    this.sessionsModel.set("sessions", (state?.sessions || []).map((s) => ({ ...s, at: received })));
    if (bridge?.reply) this.sessionsModel.set("status", bridge.reply.ok ? bridge.reply.message : `⚠ ${bridge.reply.message}`);
    this.node.dataset.kernel = bridge ? (bridge.connected ? "bridged" : "plain") : "none";
    this.reload(false);
  }

  /** Re-read runs and models when the kernel says they changed (or ``force``), one request at a time. */
  reload(force: boolean) {
    if (!this.isVisible && !force) return;
    const state = this.active.bridge?.state || null;
    const changed = state?.changed || { runs: 0, models: 0 };
    const experiment = state?.experiment_id || null;
    const runs = force || changed.runs !== this.seen.runs || experiment !== this.seen.experiment;
    const models = force || changed.models !== this.seen.models;
    if (!runs && !models) return;
    if (this.loading) { this.again = true; return; }
    this.seen = { runs: changed.runs, models: changed.models, experiment };
    this.loading = (async () => {
      try {
        if (this.serverStore === null) this.serverStore = (await api("status")).store;
        this.drawStore(state);
        if (runs) await this.loadRuns(experiment);
        if (models) await this.loadModels();
      } catch (error) {
        this.runsBox.replaceChildren(h("div.psw-status.psw-status-error", null, `⚠ ${(error as Error).message}`));
      } finally {
        this.loading = null;
        if (this.again) { this.again = false; setTimeout(() => this.reload(false), 250); }
      }
    })();
  }

  private drawStore(state: KernelState | null) {
    const kernelStore = state?.store;
    // a notebook that logs elsewhere than the server reads must not look empty or, worse, current
    if (kernelStore && this.serverStore && kernelStore !== this.serverStore) {
      this.storeLine.className = "podstack-store podstack-store-mismatch";
      this.storeLine.textContent = `⚠ this notebook logs to ${kernelStore}; the lists below show ${this.serverStore} `
        + "(set PODSTACK_TRACKING_URI for the server, or c.PodstackLabApp.tracking_uri)";
    } else {
      this.storeLine.className = "podstack-store";
      this.storeLine.textContent = this.serverStore ? `store: ${this.serverStore}` : "";
    }
  }

  private async loadRuns(experimentId: string | null) {
    // how many: the server's PodstackLabApp.max_runs
    const query = experimentId ? `runs?experiment_id=${encodeURIComponent(experimentId)}` : "runs";
    const body = await api(query);
    this.runsTitle.textContent = body.experiment ? `Runs of ${body.experiment.name}` : "Recent runs";
    const runs: any[] = body.runs || [];
    if (!runs.length) {
      this.runsBox.replaceChildren(h("div.psw-empty", null, "No runs yet. A %%track cell makes one."));
    } else {
      this.runsBox.replaceChildren(...runs.map((run) => {
        const metrics = Object.entries(run.metrics || {}).slice(0, 4)
          .map(([key, value]) => `${key} ${typeof value === "number" ? formatNumber(value) : String(value)}`).join(" · ");
        return h("div.podstack-run", {
          role: "button", tabIndex: 0, dataset: { run: run.id, status: run.status }, title: `${run.id}: open its metrics chart`,
          onclick: () => this.openChart(run),
        }, h("div.podstack-row", null, h("span.psw-badge", { style: { color: STAGE_COLORS[run.status] || "inherit" } }, run.status),
          h("span.podstack-name", null, run.name), h("span.psw-muted", null, formatTime(run.start_time))),
        h("div.podstack-metrics.psw-mono", null, metrics || "no metrics"));
      }));
    }
    for (const [runId, chart] of this.charts) {
      const run = runs.find((r) => r.id === runId);
      if (chart.widget.isDisposed) this.charts.delete(runId);
      else if (run && (run.status === "running" || chart.model.get("runs")?.[0]?.status === "running")) void this.fillChart(runId, chart.model);
    }
  }

  private async loadModels() {
    const models: any[] = (await api("models")).models || [];
    if (!models.length) {
      this.modelsBox.replaceChildren(h("div.psw-empty", null, "No registered models."));
      return;
    }
    this.modelsBox.replaceChildren(...models.map((model) => h("div.podstack-model", { dataset: { model: model.name } },
      h("div.podstack-name", null, model.name),
      h("div.podstack-versions", null, ...(model.versions || []).slice(-6).reverse().map((v: any) =>
        h("span.podstack-version", { title: `version ${v.version}, stage ${v.stage}${v.run_id ? `, run ${v.run_id}` : ""}` },
          `v${v.version} `, h("span.psw-badge", { style: { color: STAGE_COLORS[v.stage] || "inherit" } }, v.stage),
          ...(v.aliases || []).map((alias: string) => h("span.podstack-alias", null, `@${alias}`))))))));
  }

  private async openChart(run: any) {
    const existing = this.charts.get(run.id);
    if (existing && !existing.widget.isDisposed) { this.app.shell.activateById(existing.widget.id); return; }
    const model = new LocalModel({
      _kind: "metrics", title: run.name, runs: [], metric_keys: [], panel_layout: "panels", x_axis: "step",
      y_scale: "linear", smoothing: 0, hidden_runs: [], max_points: 2000, snapshot: { seq: -1, series: [] }, live: true, status: "",
    });
    initializeMetrics(model);
    const content = new Widget();
    content.addClass("podstack-chart");
    content.node.classList.add("psw-host");
    renderMetrics({ model, el: content.node });
    const widget = new MainAreaWidget({ content });
    widget.id = `podstack-metrics-${run.id}`;
    widget.title.label = `Metrics: ${run.name}`;
    widget.title.icon = podstackIcon;
    widget.title.closable = true;
    this.charts.set(run.id, { model, widget });
    this.app.shell.add(widget, "main", { mode: "split-right" });
    await this.fillChart(run.id, model);
  }

  private async fillChart(runId: string, model: LocalModel) {
    try {
      const body = await api(`runs/${encodeURIComponent(runId)}/metrics`);
      const run = body.run;
      const seq = (model.get("snapshot")?.seq ?? -1) + 1;
      model.set("runs", [{ id: run.id, name: run.name, status: run.status, color: PALETTE[0], start: run.start_time }]);
      model.set("metric_keys", body.series.map((s: any) => s.key));
      model.set("snapshot", { seq, series: body.series.map((s: any) => ({ run: run.id, key: s.key, n: s.n,
        steps: base64ToBuffer(s.steps), values: base64ToBuffer(s.values), times: base64ToBuffer(s.times) })) });
      model.set("status", "");
    } catch (error) {
      model.set("status", `⚠ ${(error as Error).message}`);
    }
  }
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: "podstack-jupyterlab:plugin",
  description: "Podstack sidebar (GPU sessions, runs, models) and status-bar item",
  autoStart: true,
  optional: [ILabShell, IStatusBar],
  activate: (app: JupyterFrontEnd, labShell: ILabShell | null, statusBar: IStatusBar | null) => {
    const active = new ActiveKernel(labShell, app);
    const sidebar = new Sidebar(app, active);
    app.shell.add(sidebar, "left", { rank: 900 });
    if (statusBar) {
      const item = new StatusItem(active, () => app.shell.activateById(SIDEBAR_ID));
      statusBar.registerStatusItem("podstack-jupyterlab:status", { item, align: "left", rank: 100 });
    }
  },
};

export default plugin;
