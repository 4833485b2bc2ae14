// The session panel (GPU sessions with stop / restart) and the compact %%gpu status line.
// Uptime and elapsed time tick here between the kernel's updates.
import { formatDuration, formatSize, h, listen, RenderProps, statusLine } from "./common";

const STATE_COLORS: Record<string, string> = {
  idle: "#16a34a", busy: "#2563eb", running: "#2563eb", starting: "#d97706", building: "#d97706",
  preparing: "#d97706", dead: "#dc2626", stopped: "#6b7280", done: "#16a34a", failed: "#dc2626", interrupted: "#9333ea",
};

function stateBadge(state: string, reason?: string | null) {
  return h("span.psw-state", { style: { color: STATE_COLORS[state] || "inherit" }, title: reason || state }, h("i", { style: { background: STATE_COLORS[state] || "#6b7280" } }), state);
}

class SessionsView {
  root: HTMLElement;
  body: HTMLElement;
  private timer: any;
  private cleanups: (() => void)[] = [];

  constructor(private model: any, el: HTMLElement) {
    this.body = h("div");
    const [status, stopStatus] = statusLine(model);
    this.root = h("div.psw.psw-sessions", null,
      h("div.psw-header", null, h("div.psw-title", null, "GPU sessions"), h("div.psw-controls", null,
        h("button.psw-btn", { type: "button", onclick: () => model.send({ action: "refresh" }) }, "Refresh"))),
      this.body, status);
    el.append(this.root);
    this.cleanups.push(stopStatus, listen(model, [["change:sessions", () => this.draw()]]));
    this.timer = setInterval(() => this.tick(), 1000);
    this.draw();
  }

  private uptime(s: any) {
    return s.state === "stopped" || s.state === "dead" ? s.uptime_s : s.uptime_s + (Date.now() / 1000 - s.at);
  }

  draw() {
    const sessions: any[] = this.model.get("sessions") || [];
    if (!sessions.length) {
      this.body.replaceChildren(h("div.psw-empty", null, "No GPU sessions. A %%gpu cell starts one."));
      return;
    }
    const head = ["Session", "Spec", "Backend", "GPUs", "State", "Uptime", "Sent", "Received", ""];
    this.body.replaceChildren(h("table.psw-table", null, h("thead", null, h("tr", null, ...head.map((t) => h("th", null, t)))),
      h("tbody", null, ...sessions.map((s) => {
        const gone = s.state === "stopped" || s.state === "dead";
        return h(`tr${gone ? ".psw-gone" : ""}`, { dataset: { session: s.id } },
          h("td.psw-mono", null, s.id), h("td", null, s.spec), h("td", null, s.backend), h("td", null, String(s.gpus ?? "")),
          h("td", null, stateBadge(s.state, s.reason)), h("td.psw-num.psw-uptime", null, formatDuration(this.uptime(s))),
          h("td.psw-num", null, formatSize(s.bytes_sent || 0)), h("td.psw-num", null, formatSize(s.bytes_received || 0)),
          h("td.psw-actions", null, gone ? "" : [
            h("button.psw-btn", { type: "button", title: "fresh kernel, same spec: remote variables are lost",
              onclick: () => this.model.send({ action: "restart", id: s.id }) }, "Restart"),
            h("button.psw-btn.psw-danger", { type: "button", title: "stop this session: remote variables are lost",
              onclick: () => this.model.send({ action: "stop", id: s.id }) }, "Stop")]));
      }))));
  }

  private tick() {
    const sessions: any[] = this.model.get("sessions") || [];
    this.body.querySelectorAll("tr[data-session]").forEach((row) => {
      const s = sessions.find((x) => x.id === (row as HTMLElement).dataset.session);
      const cell = row.querySelector(".psw-uptime");
      if (s && cell) cell.textContent = formatDuration(this.uptime(s));
    });
  }

  dispose() { clearInterval(this.timer); for (const cleanup of this.cleanups) cleanup(); this.root.remove(); }
}

export function renderSessions({ model, el }: RenderProps): () => void {
  const view = new SessionsView(model, el);
  return () => view.dispose();
}

const STATE_TEXT: Record<string, string> = {
  starting: "starting the session…", building: "building the environment…", preparing: "preparing the environment…",
  running: "running", idle: "running", done: "done", failed: "failed", interrupted: "interrupted",
};

export function renderGpuStatus({ model, el }: RenderProps): () => void {
  const line = h("div.psw.psw-gpu-status");
  el.append(line);
  const draw = () => {
    const state: string = model.get("state");
    const started: number = model.get("started");
    const finished: number = model.get("finished");
    const elapsed = (finished || Date.now() / 1000) - started;
    const text = STATE_TEXT[state] || state;
    const detail: string = model.get("detail");
    line.replaceChildren(h("span.psw-dot", { style: { background: STATE_COLORS[state] || "#6b7280" }, class: finished ? "" : "psw-pulse" }),
      h("span.psw-mono", null, "%%gpu"), h("b", null, model.get("spec")), h("span", null, finished ? `${text} in ${formatDuration(elapsed)}` : `${text} · ${formatDuration(elapsed)}`),
      detail ? h("span.psw-muted", null, detail) : "", model.get("session") ? h("span.psw-muted.psw-mono", null, `session ${model.get("session")}`) : "");
  };
  draw();
  const timer = setInterval(() => { if (!model.get("finished")) draw(); }, 500);
  const stop = listen(model, ["state", "finished", "detail", "session"].map((n) => [`change:${n}`, draw] as [string, () => void]));
  return () => { clearInterval(timer); stop(); line.remove(); };
}
