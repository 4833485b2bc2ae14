// The podstack server's read-only dashboard: sign in with an API key, then the key's project:
// experiments, their runs (the widgets' runs table) with metric charts (the widgets' chart),
// a run's page (params, metrics chart, tags, notes, datasets, and an Artifacts tab: the widgets'
// artifact browser, downloading through the server's signed URLs), models with their versions,
// stages and aliases. Everything is read through /api/v1 with the key as a Bearer token; the key
// lives in this tab's session storage only. Routes are URL fragments (#/runs/<id>), so a page
// can be reloaded or linked.
import { formatDuration, formatNumber, formatTime, h, STAGE_COLORS } from "../../widgets/common";
import { initializeMetrics, minMaxIndices, renderArtifacts, renderMetrics, renderRuns } from "../../widgets/index";
import { base64ToBuffer, LocalModel } from "../../../labextension/src/model";
import "./dashboard.css";

const KEY_STORE = "podstack.apiKey";
const PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#B8860B", "#7F7F7F"];
const MAX_POINTS = 2000; // drawn per series; a zoom asks for the range at full detail
const CHART_RUNS = 5; // runs of an experiment drawn at first (select others in the table)

const settings: { categories: Record<string, string[]> } =
  JSON.parse(document.getElementById("podstack-settings")?.textContent || "{}");

// -- the API -------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(message: string, public status: number, public kind = "") { super(message); }
}

/** JSON as the server writes it: Python's json keeps NaN and ±Infinity, which JSON.parse refuses. */
export function parseJson(text: string): any {
  try { return JSON.parse(text); } catch { /* non-finite numbers: rewrite them outside strings */ }
  let out = "", inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (inString) {
      out += c;
      if (c === "\\") out += text[++i];
      else if (c === '"') inString = false;
    } else if (c === '"') { inString = true; out += c; }
    else if (text.startsWith("NaN", i)) { out += "null"; i += 2; }
    else if (text.startsWith("-Infinity", i)) { out += "-1e999"; i += 8; }
    else if (text.startsWith("Infinity", i)) { out += "1e999"; i += 7; }
    else out += c;
  }
  return JSON.parse(out);
}

function storedKey(): string | null {
  return sessionStorage.getItem(KEY_STORE);
}

async function api(path: string, key: string | null = storedKey(), attempt = 0): Promise<any> {
  let response: Response;
  try {
    response = await fetch(`/api/v1${path}`, { headers: { Authorization: `Bearer ${key ?? ""}` }, cache: "no-store" });
  } catch (error) {
    throw new ApiError(`the server did not answer (${(error as Error).message}); is podstack server still running?`, 0);
  }
  const retryAfter = Number(response.headers.get("Retry-After"));
  if (response.status === 429 && attempt < 3 && retryAfter >= 0 && retryAfter <= 10) {
    // the key's rate limit (a page of many charts asks for many histories at once): wait as told
    await new Promise((resolve) => setTimeout(resolve, Math.max(retryAfter, 0.2) * 1000));
    return api(path, key, attempt + 1);
  }
  const text = await response.text();
  let body: any = {};
  try { body = text ? parseJson(text) : {}; } catch { body = { error: text.slice(0, 300) }; }
  if (!response.ok) {
    const error = new ApiError(body.error || `${response.status} ${response.statusText}`, response.status, body.type || "");
    if (response.status === 401 && key === storedKey()) signOut(`Signed out: ${error.message}.`);
    throw error;
  }
  return body;
}

const enc = encodeURIComponent;

// -- sign-in -------------------------------------------------------------------------------------

let project: { id: string; name: string; user: string | null; key: string } | null = null;
let cleanups: (() => void)[] = [];
const app = document.getElementById("app")!;

function signOut(message = "") {
  sessionStorage.removeItem(KEY_STORE);
  project = null;
  showSignIn(message);
}

function showSignIn(message = "") {
  dispose();
  const input = h("input.pd-input", { id: "api-key", type: "password", name: "api-key", autocomplete: "off", spellcheck: false,
    placeholder: "pjt_…", "aria-label": "API key", required: true }) as HTMLInputElement;
  const error = h("div.pd-error", { role: "alert", id: "signin-error" }, message);
  error.hidden = !message;
  const button = h("button.pd-button", { type: "submit" }, "Sign in") as HTMLButtonElement;
  const form = h("form.pd-signin", { onsubmit: async (event: Event) => {
    event.preventDefault();
    const key = input.value.trim();
    const fail = (text: string) => { error.textContent = text; error.hidden = false; input.focus(); };
    if (!key) return fail("Enter an API key.");
    if (!/^[\x21-\x7e]+$/.test(key)) return fail("That is not an API key: a key is one word of letters, digits, - and _ (pjt_…), without spaces.");
    button.disabled = true;
    try {
      project = await api("/project", key);
      sessionStorage.setItem(KEY_STORE, key);
      route();
    } catch (e) {
      const err = e as ApiError;
      fail(err.status === 401
        ? `This API key was refused (${err.message}). Check that you pasted the whole key and that it was not revoked; `
          + "`podstack admin key create --project NAME` makes a new one."
        : err.status === 429 ? `Too many requests with this key: ${err.message}` : `Could not sign in: ${err.message}`);
    } finally {
      button.disabled = false;
    }
  } },
  h("h1", null, "podstack"),
  h("p.pd-muted", null, "Sign in with an API key of your project. The key stays in this browser tab and is sent only to this server."),
  h("label.pd-label", { htmlFor: "api-key" }, "API key"), input, button, error);
  app.replaceChildren(h("div.pd-signin-page", null, form));
  input.focus();
}

// -- layout and routes ---------------------------------------------------------------------------

function dispose() {
  for (const cleanup of cleanups) { try { cleanup(); } catch { /* a view already gone */ } }
  cleanups = [];
}

function link(href: string, ...children: (Node | string)[]): HTMLElement {
  return h("a", { href }, ...children);
}

function badge(text: string, colors: Record<string, string> = STAGE_COLORS): HTMLElement {
  return h("span.pd-badge", { style: { color: colors[text] || "inherit", borderColor: colors[text] || "currentColor" } }, text);
}

function table(head: string[], rows: (Node | string)[][], empty: string, name = ""): HTMLElement {
  if (!rows.length) return h("p.pd-muted.pd-empty", null, empty);
  return h("table.pd-table", { dataset: { table: name } }, h("thead", null, h("tr", null, ...head.map((c) => h("th", null, c)))),
    h("tbody", null, ...rows.map((row) => h("tr", null, ...row.map((cell) => h("td", null, cell))))));
}

function section(title: string, ...children: (Node | string)[]): HTMLElement {
  return h("section.pd-section", null, h("h2", null, title), ...children);
}

function frame(active: string, ...content: Node[]): HTMLElement {
  const nav = (href: string, label: string, id: string) => h(`a.pd-nav${active === id ? ".pd-active" : ""}`, { href }, label);
  const main = h("main.pd-main", null, ...content);
  app.replaceChildren(h("header.pd-bar", null,
    h("a.pd-brand", { href: "#/experiments" }, "podstack"),
    nav("#/experiments", "Experiments", "experiments"), nav("#/models", "Models", "models"),
    h("span.pd-spacer"),
    h("span.pd-project", { title: `project ${project?.id} · key ${project?.key}` }, "Project ", h("b", null, project?.name || "")),
    h("button.pd-link-button", { type: "button", onclick: () => signOut("Signed out.") }, "Sign out")), main);
  return main;
}

async function route() {
  if (!storedKey()) return showSignIn();
  dispose();
  const parts = (location.hash.replace(/^#\/?/, "") || "experiments").split("/").map(decodeURIComponent);
  let main: HTMLElement | null = null;
  try {
    if (!project) project = await api("/project");
    main = frame(parts[0], h("p.pd-muted", null, "Loading…"));
    if (parts[0] === "experiments" && parts[1]) await experimentPage(main, parts[1]);
    else if (parts[0] === "runs" && parts[1]) await runPage(main, parts[1], parts[2] === "artifacts" ? "artifacts" : "overview");
    else if (parts[0] === "models") await modelsPage(main);
    else await experimentsPage(main);
  } catch (e) {
    if (!storedKey()) return; // signed out (the key was revoked): the sign-in form says why
    const error = h("div.pd-error", { role: "alert" }, `Could not load this page: ${(e as Error).message}`);
    if (main) main.replaceChildren(error); else app.replaceChildren(error);
  }
}

// -- experiments -----------------------------------------------------------------------------------

async function experimentsPage(main: HTMLElement) {
  const { experiments } = await api("/experiments?limit=100000");
  main.replaceChildren(h("h1", null, "Experiments"), table(["Experiment", "Description", "Runs", "Last run", "Created"],
    experiments.map((e: any) => [link(`#/experiments/${enc(e.id)}`, e.name), e.description || "", String(e.run_count),
      formatTime(e.last_run_at), formatTime(e.created)]),
    `Project ${project?.name} has no experiments yet: podstack.registry.set_experiment("name") makes one.`, "experiments"));
}

interface RunInfo { id: string; name: string; status: string; started: number | null; ended: number | null; params: Record<string, string>; metrics: Record<string, number | null>; }

function runsModel(runs: RunInfo[], experiment: string): LocalModel {
  const params = Array.from(new Set(runs.flatMap((r) => Object.keys(r.params).filter((k) => !k.startsWith("podstack.") && !k.startsWith("_"))))).sort();
  const metrics = Array.from(new Set(runs.flatMap((r) => Object.keys(r.metrics)))).sort();
  const numbers = (values: (number | null | undefined)[]) => Float64Array.from(values, (v) => (v == null ? NaN : v));
  const columns: any[] = [{ id: "name", label: "run", group: "attribute", type: "text" },
    { id: "status", label: "status", group: "attribute", type: "text" },
    { id: "start_time", label: "started", group: "attribute", type: "time" },
    { id: "duration", label: "duration", group: "attribute", type: "number" }];
  const cells: Record<string, any> = {
    name: runs.map((r) => r.name || r.id.slice(0, 8)), status: runs.map((r) => r.status),
    start_time: numbers(runs.map((r) => r.started)),
    duration: numbers(runs.map((r) => (r.started != null && r.ended != null ? r.ended - r.started : null))),
  };
  for (const key of params) {
    const texts = runs.map((r) => r.params[key]);
    const numeric = texts.every((t) => t == null || (t.trim() !== "" && !Number.isNaN(Number(t))));
    columns.push({ id: `params.${key}`, label: key, group: "param", type: numeric ? "number" : "text" });
    cells[`params.${key}`] = numeric ? numbers(texts.map((t) => (t == null ? null : Number(t)))) : texts.map((t) => t ?? "");
  }
  for (const key of metrics) {
    columns.push({ id: `metrics.${key}`, label: key, group: "metric", type: "number" });
    cells[`metrics.${key}`] = numbers(runs.map((r) => r.metrics[key]));
  }
  return new LocalModel({ _kind: "runs", experiment, columns, table: { ids: runs.map((r) => r.id), cells }, filter: "",
    sort: {}, selected: [], colors: {}, status: "" });
}

/** Every point of one metric of one run, exact (the packed history: int64 steps, float64 values and times). */
async function history(runId: string, key: string) {
  const { history: packed } = await api(`/runs/${enc(runId)}/metrics/${enc(key)}/history?format=packed`);
  const steps = Float64Array.from(new BigInt64Array(base64ToBuffer(packed.steps)), (s) => Number(s));
  return { steps, values: new Float64Array(base64ToBuffer(packed.values)), times: new Float64Array(base64ToBuffer(packed.timestamps)) };
}

type Series = { run: string; key: string; steps: Float64Array; values: Float64Array; times: Float64Array };

/** The widgets' metrics chart over series read from the server: thinned to each bucket's min and
 *  max for drawing (as the kernel does), a zoom answered with the range at full detail. */
class Chart {
  model: LocalModel;
  full = new Map<string, Series>();
  seq = 0;

  constructor(el: HTMLElement, title = "") {
    this.model = new LocalModel({ _kind: "metrics", runs: [], metric_keys: [], panel_layout: "panels", x_axis: "step",
      y_scale: "linear", smoothing: 0, hidden_runs: [], title, live: false, max_points: MAX_POINTS, status: "",
      snapshot: { seq: -1, series: [] } }, (message) => this.message(message));
    const stopStore = initializeMetrics(this.model);
    const stopView = renderMetrics({ model: this.model, el });
    cleanups.push(stopView, stopStore);
  }

  async show(runs: { id: string; name: string; status: string; started: number | null; color: string }[], keysOf: (id: string) => string[]) {
    const wanted: [string, string][] = runs.flatMap((r) => keysOf(r.id).map((k) => [r.id, k] as [string, string]));
    await Promise.all(wanted.filter(([run, key]) => !this.full.has(`${run}\u0000${key}`)).map(async ([run, key]) => {
      this.full.set(`${run}\u0000${key}`, { run, key, ...(await history(run, key)) });
    }));
    const series = wanted.map(([run, key]) => this.thin(this.full.get(`${run}\u0000${key}`)!, -Infinity, Infinity));
    this.model.set("runs", runs.map((r) => ({ id: r.id, name: r.name, status: r.status, color: r.color, start: r.started })));
    this.model.set("metric_keys", Array.from(new Set(wanted.map(([, k]) => k))).sort());
    this.model.set("snapshot", { seq: ++this.seq, series: series.map((s) => ({ ...s, n: this.full.get(`${s.run}\u0000${s.key}`)!.values.length })) });
  }

  private thin(s: Series, min: number, max: number): Series {
    const axis = this.model.get("x_axis") === "time" ? s.times : s.steps;
    const start = this.model.get("x_axis") === "time" ? (this.model.get("runs").find((r: any) => r.id === s.run)?.start ?? s.times[0] ?? 0) : 0;
    let inRange = Array.from(axis.keys()).filter((i) => axis[i] - start >= min && axis[i] - start <= max);
    if (inRange.length === axis.length) inRange = [];
    const picked = inRange.length ? inRange : null;
    const values = picked ? Float64Array.from(picked, (i) => s.values[i]) : s.values;
    const keep = minMaxIndices(values, MAX_POINTS);
    const from = (a: Float64Array) => Float64Array.from(keep, (k) => (picked ? a[picked[k]] : a[k]));
    return { run: s.run, key: s.key, steps: from(s.steps), values: from(s.values), times: from(s.times) };
  }

  private message(content: any) {
    if (content?.action !== "zoom") return;
    const shown = new Set((this.model.get("runs") || []).map((r: any) => r.id));
    const series = Array.from(this.full.values()).filter((s) => shown.has(s.run)).map((s) => this.thin(s, content.min, content.max));
    const buffers = series.flatMap((s) => [s.steps, s.values, s.times]);
    queueMicrotask(() => this.model.emit("msg:custom", { type: "detail", request: content.request,
      series: series.map((s) => ({ run: s.run, key: s.key })) }, buffers));
  }
}

async function experimentPage(main: HTMLElement, experimentId: string) {
  const [experiment, { runs }] = await Promise.all([api(`/experiments/${enc(experimentId)}`),
    api(`/runs?experiment_id=${enc(experimentId)}&limit=100000`)]);
  const infos: RunInfo[] = runs.map((r: any) => ({ id: r.id, name: r.name || r.id.slice(0, 8), status: r.status, started: r.started,
    ended: r.ended, params: r.params || {}, metrics: r.metrics || {} }));
  const byId = new Map(infos.map((r) => [r.id, r]));
  const tableEl = h("div.pd-widget");
  const chartEl = h("div.pd-widget");
  const open = h("div.pd-open-runs");
  main.replaceChildren(
    h("nav.pd-crumbs", null, link("#/experiments", "Experiments"), " / "),
    h("h1", null, experiment.name), experiment.description ? h("p.pd-muted", null, experiment.description) : "",
    infos.length ? h("p.pd-muted", null, "Select runs in the table to draw their metrics below; double-click a run to open its page.") : "",
    infos.length ? tableEl : h("p.pd-muted.pd-empty", null, "This experiment has no runs yet."), open, chartEl);
  if (!infos.length) return;
  const model = runsModel(infos, experiment.name);
  cleanups.push(renderRuns({ model, el: tableEl }));
  tableEl.addEventListener("dblclick", (event) => {
    const row = (event.target as HTMLElement).closest("[data-run]") as HTMLElement | null;
    if (row?.dataset.run) location.hash = `#/runs/${enc(row.dataset.run)}`;
  });
  const chart = new Chart(chartEl);
  const draw = async () => {
    const selected: string[] = (model.get("selected") || []).filter((id: string) => byId.has(id));
    const colors: Record<string, string> = {};
    selected.forEach((id, i) => { colors[id] = PALETTE[i % PALETTE.length]; });
    model.set("colors", colors);
    open.replaceChildren(...(selected.length ? ["Open: ", ...selected.flatMap((id, i) => [i ? " · " : "",
      link(`#/runs/${enc(id)}`, byId.get(id)!.name)])] : []));
    try {
      await chart.show(selected.map((id) => ({ ...byId.get(id)!, color: colors[id] })), (id) => Object.keys(byId.get(id)!.metrics));
    } catch (e) {
      chart.model.set("status", `⚠ could not read the metrics: ${(e as Error).message}`);
    }
  };
  model.on("change:selected", draw);
  model.set("selected", infos.slice(0, CHART_RUNS).map((r) => r.id));
}

// -- a run ---------------------------------------------------------------------------------------

function keyValues(values: Record<string, any>, empty: string, name: string, format = (v: any) => String(v)): HTMLElement {
  const keys = Object.keys(values).sort();
  return table(["Key", "Value"], keys.map((k) => [h("code", null, k), format(values[k])]), empty, name);
}

function category(path: string): [string, string] {
  const name = path.split("/").pop() || "";
  const ext = name.replace(/^\.+/, "").includes(".") ? name.split(".").pop()!.toLowerCase() : "";
  for (const [cat, extensions] of Object.entries(settings.categories || {})) if (extensions.includes(ext)) return [ext, cat];
  return [ext, "other"];
}

async function runPage(main: HTMLElement, runId: string, tab: "overview" | "artifacts") {
  const run = await api(`/runs/${enc(runId)}`);
  const experiment = await api(`/experiments/${enc(run.experiment_id)}`).catch(() => null);
  const tabLink = (id: string, label: string) => h(`a.pd-tab${tab === id ? ".pd-active" : ""}`,
    { href: `#/runs/${enc(runId)}${id === "artifacts" ? "/artifacts" : ""}`, dataset: { tab: id } }, label);
  const duration = run.started != null ? (run.ended ?? Date.now() / 1000) - run.started : null;
  const body = h("div.pd-tab-body");
  main.replaceChildren(
    h("nav.pd-crumbs", null, link("#/experiments", "Experiments"), " / ",
      experiment ? link(`#/experiments/${enc(experiment.id)}`, experiment.name) : "", " / "),
    h("h1", null, run.name || run.id, " ", badge(run.status)),
    h("p.pd-facts.pd-muted", null, `run ${run.id} · started ${formatTime(run.started)} · `,
      `${run.ended != null ? "took" : "running for"} ${formatDuration(duration)}`,
      run.parent_run_id ? h("span", null, " · parent ", link(`#/runs/${enc(run.parent_run_id)}`, run.parent_run_id.slice(0, 8))) : "",
      run.gpu ? ` · GPU ${typeof run.gpu === "string" ? run.gpu : JSON.stringify(run.gpu)}` : ""),
    h("nav.pd-tabs", { role: "tablist" }, tabLink("overview", "Overview"), tabLink("artifacts", "Artifacts")), body);
  if (tab === "artifacts") return artifactsTab(body, run);

  const notes = run.tags?.["podstack.notes"] ?? run.notes;
  const tags = Object.fromEntries(Object.entries(run.tags || {}).filter(([k]) => k !== "podstack.notes"));
  const params = Object.fromEntries(Object.entries(run.params || {}).filter(([k]) => !k.startsWith("_")));
  const chartEl = h("div.pd-widget");
  const datasetsEl = h("div", null, h("p.pd-muted", null, "Loading…"));
  body.replaceChildren(
    section("Metrics", Object.keys(run.metrics || {}).length ? chartEl : h("p.pd-muted.pd-empty", null, "This run logged no metrics.")),
    h("div.pd-columns", null,
      section("Params", keyValues(params, "No params.", "params")),
      section("Latest metrics", keyValues(run.metrics || {}, "No metrics.", "metrics", (v) => formatNumber(v))),
      section("Tags", keyValues(tags, "No tags.", "tags"))),
    section("Notes", notes ? h("div.pd-notes", null, notes) : h("p.pd-muted.pd-empty", null, "No notes.")),
    section("Datasets", datasetsEl));
  if (Object.keys(run.metrics || {}).length) {
    const chart = new Chart(chartEl, "");
    await chart.show([{ id: run.id, name: run.name || run.id.slice(0, 8), status: run.status, started: run.started, color: PALETTE[0] }],
      () => Object.keys(run.metrics));
  }
  const { datasets } = await api(`/runs/${enc(runId)}/datasets`);
  datasetsEl.replaceChildren(table(["Name", "Context", "Source", "Digest", "Rows × columns", "Logged"], datasets.map((d: any) => [
    d.name, d.context || "", d.source || d.source_type || "", h("code", { title: d.digest }, (d.digest || "").slice(0, 12)),
    d.profile?.num_rows != null ? `${formatNumber(d.profile.num_rows)} × ${d.profile.num_columns ?? (d.schema?.columns?.length ?? "?")}` : "—",
    formatTime(d.created ?? d.created_at)]), "No datasets.", "datasets"));
}

async function artifactsTab(body: HTMLElement, run: any) {
  const runPath = `/runs/${enc(run.id)}`;
  const model: LocalModel = new LocalModel({ _kind: "artifacts", files: [], total_size: 0, run: { id: run.id, name: run.name },
    downloads: {}, download_dir: "your browser's download folder", status: "" }, (message) => act(message));
  const load = async () => {
    const { artifacts } = await api(`${runPath}/artifacts`);
    const files = artifacts.map((a: any) => {
      const [ext, cat] = category(a.path);
      return { path: a.path, size: a.size, modified: a.last_modified || "", ext, category: cat };
    });
    model.set("files", files);
    model.set("total_size", files.reduce((sum: number, f: any) => sum + f.size, 0));
  };
  const downloadUrl = async (path: string) =>
    (await api(`${runPath}/artifacts/download-url?artifact_path=${enc(path)}`)).download_url as string;
  async function act(message: any) {
    try {
      if (message.action === "refresh") {
        await load();
        model.set("status", "");
      } else if (message.action === "download") {
        const files: any[] = model.get("files") || [];
        const folder = files.some((f) => f.path === message.path) ? [] : files.filter((f) => f.path.startsWith(`${message.path}/`));
        const paths = folder.length ? folder.map((f) => f.path) : [message.path];
        for (const path of paths) {
          const anchor = h("a", { href: await downloadUrl(path), rel: "noopener", download: path.split("/").pop() }) as HTMLAnchorElement;
          document.body.append(anchor);
          anchor.click(); // a signed URL is short-lived: it is asked for at the click, never kept
          anchor.remove();
        }
        model.set("status", folder.length ? `Downloading the ${paths.length} files of ${message.path}/ one by one.`
          : `Downloading ${message.path} (through a link valid for a few minutes).`);
      } else if (message.action === "preview") {
        const file = (model.get("files") || []).find((f: any) => f.path === message.path);
        const limit = file?.category === "image" ? 8 << 20 : 64 << 10;
        if (!file || (file.category === "image" && file.size > limit)) {
          model.emit("msg:custom", { type: "preview", path: message.path, kind: "none", reason: "larger than 8 MB" }, []);
          return;
        }
        const response = await fetch(await downloadUrl(message.path));
        if (!response.ok) throw new Error(`the download answered ${response.status}`);
        const data = await response.arrayBuffer();
        const kind = file.category === "image" ? "image" : "text";
        const mime = file.ext === "svg" ? "image/svg+xml" : `image/${file.ext === "jpg" ? "jpeg" : file.ext}`;
        model.emit("msg:custom", { type: "preview", path: message.path, kind, mime, truncated: data.byteLength > limit },
          [kind === "text" ? data.slice(0, limit) : data]);
      }
    } catch (e) {
      model.set("status", `⚠ ${message.action} ${message.path ?? ""}: ${(e as Error).message}`);
      if (message.action === "preview") {
        model.emit("msg:custom", { type: "preview", path: message.path, kind: "none", reason: (e as Error).message }, []);
      }
    }
  }
  await load();
  const el = h("div.pd-widget.pd-artifacts");
  body.replaceChildren(el);
  cleanups.push(renderArtifacts({ model, el }));
}

// -- models ----------------------------------------------------------------------------------------

async function modelsPage(main: HTMLElement) {
  const { models } = await api("/models?limit=100000");
  main.replaceChildren(h("h1", null, "Models"), ...(models.length ? models.map((m: any) => {
    const aliasesOf = new Map<number, string[]>();
    for (const [alias, version] of Object.entries(m.aliases || {}) as [string, number][]) {
      aliasesOf.set(version, [...(aliasesOf.get(version) || []), alias]);
    }
    const versions = [...(m.versions || [])].sort((a: any, b: any) => b.version - a.version);
    return h("section.pd-section.pd-model", { dataset: { model: m.name } },
      h("h2", null, m.name, " ", h("span.pd-muted", null, `${versions.length} version${versions.length === 1 ? "" : "s"}`)),
      m.description ? h("p.pd-muted", null, m.description) : "",
      h("div.pd-chips", null, ...Object.entries(m.aliases || {}).map(([alias, version]) =>
        h("span.pd-chip", { dataset: { alias } }, `@${alias} → v${version}`))),
      table(["Version", "Stage", "Aliases", "Framework", "Run", "Created"], versions.map((v: any) => [
        `v${v.version}`, badge(v.stage), (aliasesOf.get(v.version) || []).map((a) => `@${a}`).join(" "), v.framework || "",
        v.run_id ? link(`#/runs/${enc(v.run_id)}`, v.run_id.slice(0, 8)) : "", formatTime(v.created ?? v.created_at)]),
      "No versions yet.", `versions-${m.name}`));
  }) : [h("p.pd-muted.pd-empty", null, `Project ${project?.name} has no registered models yet.`)]));
}

window.addEventListener("hashchange", () => { if (storedKey()) route(); });
route();
