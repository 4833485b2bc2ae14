// The lineage graph view: datasets -> runs -> model versions in three columns, edges as
// curves; hover shows a node's digest / row count / stage, a click shows all its details.
import { h, listen, RenderProps, statusLine, STAGE_COLORS } from "./common";

const SVG = "http://www.w3.org/2000/svg";
const NODE_W = 210, NODE_H = 58, GAP_Y = 18, COL_GAP = 110, PAD = 16;
const COLUMNS: Record<string, number> = { dataset: 0, run: 1, version: 2 };
const HEADINGS = ["Datasets", "Runs", "Model versions"];
const ICONS: Record<string, string> = { dataset: "▤", run: "▶", version: "◆" };

function svg(tag: string, attrs: Record<string, any>, ...children: (Node | string)[]): SVGElement {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) if (value != null) el.setAttribute(key, String(value));
  for (const child of children) el.append(child);
  return el;
}

function clip(text: string, max: number) { return text.length > max ? text.slice(0, max - 1) + "…" : text; }

class LineageView {
  root: HTMLElement;
  canvas: HTMLElement;
  details: HTMLElement;
  tooltip: HTMLElement;
  private cleanups: (() => void)[] = [];

  constructor(private model: any, el: HTMLElement) {
    this.canvas = h("div.psw-graph");
    this.details = h("div.psw-details");
    this.tooltip = h("div.psw-tooltip");
    const [status, stopStatus] = statusLine(model);
    this.root = h("div.psw.psw-lineage", null, h("div.psw-header", null, h("div.psw-title")),
      h("div.psw-graph-wrap", null, this.canvas, this.tooltip), this.details, status);
    el.append(this.root);
    this.cleanups.push(stopStatus, listen(model, [["change:nodes", () => this.draw()], ["change:edges", () => this.draw()],
      ["change:selected", () => this.draw()]]));
    this.draw();
  }

  draw() {
    const nodes: any[] = this.model.get("nodes") || [];
    const edges: any[] = this.model.get("edges") || [];
    const selected: string = this.model.get("selected") || "";
    const title = this.root.querySelector(".psw-title") as HTMLElement;
    const versions = nodes.filter((n) => n.kind === "version").length;
    title.textContent = `Lineage of ${this.model.get("model")} · ${versions} version${versions === 1 ? "" : "s"}`;
    if (!nodes.length) { this.canvas.replaceChildren(h("div.psw-empty", null, "This model has no versions yet.")); this.details.replaceChildren(); return; }
    const columns: any[][] = [[], [], []];
    for (const node of nodes) columns[COLUMNS[node.kind] ?? 1].push(node);
    // keep runs and datasets near the versions they feed: order each column by its neighbours' positions
    const position = new Map<string, number>();
    columns[2].forEach((n, i) => position.set(n.id, i));
    const mean = (id: string, side: "source" | "target") => {
      const linked = edges.filter((e) => e[side] === id).map((e) => position.get(e[side === "source" ? "target" : "source"])).filter((v) => v != null) as number[];
      return linked.length ? linked.reduce((a, b) => a + b, 0) / linked.length : 1e9;
    };
    columns[1].sort((a, b) => mean(a.id, "source") - mean(b.id, "source"));
    columns[1].forEach((n, i) => position.set(n.id, i));
    columns[0].sort((a, b) => mean(a.id, "source") - mean(b.id, "source"));
    columns[0].forEach((n, i) => position.set(n.id, i));
    const rows = Math.max(...columns.map((c) => c.length), 1);
    const height = PAD * 2 + 24 + rows * (NODE_H + GAP_Y);
    const width = PAD * 2 + 3 * NODE_W + 2 * COL_GAP;
    const place = new Map<string, { x: number; y: number }>();
    columns.forEach((column, c) => {
      const offset = ((rows - column.length) * (NODE_H + GAP_Y)) / 2;
      column.forEach((node, i) => place.set(node.id, { x: PAD + c * (NODE_W + COL_GAP), y: PAD + 24 + offset + i * (NODE_H + GAP_Y) }));
    });
    const root = svg("svg", { width, height, viewBox: `0 0 ${width} ${height}`, class: "psw-svg", role: "img",
      "aria-label": `lineage graph of ${this.model.get("model")}` });
    HEADINGS.forEach((text, c) => root.append(svg("text", { x: PAD + c * (NODE_W + COL_GAP) + NODE_W / 2, y: PAD + 8, class: "psw-col-head", "text-anchor": "middle" }, text)));
    for (const edge of edges) {
      const a = place.get(edge.source), b = place.get(edge.target);
      if (!a || !b) continue;
      const x1 = a.x + NODE_W, y1 = a.y + NODE_H / 2, x2 = b.x, y2 = b.y + NODE_H / 2;
      const lit = selected && (edge.source === selected || edge.target === selected);
      root.append(svg("path", { d: `M${x1},${y1} C${x1 + COL_GAP / 2},${y1} ${x2 - COL_GAP / 2},${y2} ${x2},${y2}`,
        class: `psw-edge${lit ? " psw-edge-lit" : ""}`, "data-edge": `${edge.source}->${edge.target}` }));
      root.append(svg("circle", { cx: x2, cy: y2, r: 3, class: `psw-edge-dot${lit ? " psw-edge-lit" : ""}` }));
    }
    for (const node of nodes) {
      const p = place.get(node.id)!;
      const badges: string[] = node.badges || [];
      const group = svg("g", { class: `psw-node psw-node-${node.kind}${node.id === selected ? " psw-node-selected" : ""}`,
        transform: `translate(${p.x},${p.y})`, "data-node": node.id, tabindex: 0, role: "button" },
        svg("rect", { width: NODE_W, height: NODE_H, rx: 8, ry: 8, class: "psw-node-box" }),
        svg("rect", { width: 4, height: NODE_H - 16, x: 0, y: 8, rx: 2, class: "psw-node-accent" }),
        svg("text", { x: 14, y: 22, class: "psw-node-label" }, `${ICONS[node.kind] || ""} ${clip(node.label, 24)}`),
        svg("text", { x: 14, y: 42, class: "psw-node-sub" }, clip(node.kind === "version" ? "" : node.sub || "", 30)));
      if (node.kind === "version") {
        let x = 14;
        for (const badge of badges) {
          const alias = badge.startsWith("@");
          const w = 8 + badge.length * 6.4;
          group.append(svg("rect", { x, y: 31, width: w, height: 16, rx: 8, fill: alias ? "#7c3aed" : STAGE_COLORS[badge] || "#6b7280", class: "psw-pill" }));
          group.append(svg("text", { x: x + w / 2, y: 43, "text-anchor": "middle", class: "psw-pill-text" }, badge));
          x += w + 5;
        }
      } else if (node.kind === "run" && badges[0]) {
        group.querySelector(".psw-node-sub")?.setAttribute("fill", STAGE_COLORS[badges[0]] || "currentColor");
      }
      group.append(svg("title", {}, [node.label, node.sub, ...badges].filter(Boolean).join(" · ")));
      group.addEventListener("mouseenter", () => this.hover(node, p));
      group.addEventListener("mouseleave", () => { this.tooltip.style.display = "none"; });
      const select = () => { this.model.set("selected", node.id === selected ? "" : node.id); this.model.save_changes(); };
      group.addEventListener("click", select);
      group.addEventListener("keydown", (e: Event) => { if ((e as KeyboardEvent).key === "Enter") select(); });
      root.append(group);
    }
    this.canvas.replaceChildren(root);
    this.drawDetails(nodes.find((n) => n.id === selected));
  }

  private hover(node: any, p: { x: number; y: number }) {
    const d = node.details || {};
    const lines: [string, string][] = node.kind === "dataset"
      ? [["rows", d.rows], ["digest", d.digest], ["source", d.source]]
      : node.kind === "run" ? [["status", d.status], ["metrics", d.metrics], ["params", d.params]]
        : [["stage", d.stage], ["aliases", d.aliases], ["framework", d.framework]];
    this.tooltip.replaceChildren(h("b", null, node.label), ...lines.map(([k, v]) => h("div", null, h("span.psw-key", null, k), " ", String(v ?? "—"))));
    this.tooltip.style.left = `${p.x + 20}px`;
    this.tooltip.style.top = `${p.y + NODE_H + 4}px`;
    this.tooltip.style.display = "block";
  }

  private drawDetails(node: any) {
    if (!node) { this.details.replaceChildren(h("div.psw-hint", null, "Click a node for its details.")); return; }
    this.details.replaceChildren(h("div.psw-details-head", null, `${node.kind}: ${node.label}`),
      h("table.psw-kv", null, ...Object.entries(node.details || {}).map(([k, v]) => h("tr", null, h("th", null, k), h("td", null, String(v))))));
  }

  dispose() { for (const cleanup of this.cleanups) cleanup(); this.root.remove(); }
}

export function renderLineage({ model, el }: RenderProps): () => void {
  const view = new LineageView(model, el);
  return () => view.dispose();
}
