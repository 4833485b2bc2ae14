// The runs table view: params and latest metrics as columns; click a header to sort, type to
// filter ("loss < 0.5", "lr = 0.01", or words), click rows to select (shift: range). Only the
// rows in sight are in the DOM, so 10,000 runs scroll and sort without delay.
import { f64, formatDuration, formatNumber, formatTime, h, listen, RenderProps, scheduler, statusLine, STAGE_COLORS } from "./common";

const ROW = 30;
const VISIBLE = 14;

interface Column { id: string; label: string; group: string; type: string; }
interface Table { ids: string[]; columns: Column[]; text: Map<string, string[]>; numbers: Map<string, Float64Array>; }

function decode(model: any): Table {
  const columns: Column[] = model.get("columns") || [];
  const table = model.get("table") || {};
  const text = new Map<string, string[]>(), numbers = new Map<string, Float64Array>();
  for (const column of columns) {
    const cells = table.cells?.[column.id];
    if (Array.isArray(cells)) text.set(column.id, cells);
    else numbers.set(column.id, f64(cells));
  }
  return { ids: table.ids || [], columns, text, numbers };
}

type Test = (row: number) => boolean;

/** "loss < 0.5, lr = 0.01 adam": conditions on columns (by label or id) and words, all must hold. */
export function parseFilter(query: string, table: Table): Test[] {
  const tests: Test[] = [];
  const byName = new Map<string, Column>();
  for (const c of table.columns) { byName.set(c.label.toLowerCase(), c); byName.set(c.id.toLowerCase(), c); }
  const condition = /([\w.\-/]+)\s*(<=|>=|!=|=|<|>|~)\s*("[^"]*"|'[^']*'|[^\s,]+)/g;
  let rest = query;
  for (const match of query.matchAll(condition)) {
    const column = byName.get(match[1].toLowerCase());
    if (!column) continue;
    rest = rest.replace(match[0], " ");
    const op = match[2];
    const raw = match[3].replace(/^["']|["']$/g, "");
    const numbers = table.numbers.get(column.id);
    if (numbers) {
      const target = Number(raw);
      if (Number.isNaN(target)) continue;
      const compare: Record<string, (a: number) => boolean> = {
        "<": (a) => a < target, "<=": (a) => a <= target, ">": (a) => a > target, ">=": (a) => a >= target,
        "=": (a) => a === target, "!=": (a) => a !== target, "~": (a) => String(a).includes(raw),
      };
      const fn = compare[op];
      tests.push((row) => !Number.isNaN(numbers[row]) && fn(numbers[row]));
    } else {
      const texts = table.text.get(column.id) || [];
      const needle = raw.toLowerCase();
      const fn: Record<string, (a: string) => boolean> = {
        "=": (a) => a.toLowerCase() === needle, "!=": (a) => a.toLowerCase() !== needle, "~": (a) => a.toLowerCase().includes(needle),
        "<": (a) => a < raw, "<=": (a) => a <= raw, ">": (a) => a > raw, ">=": (a) => a >= raw,
      };
      tests.push((row) => fn[op](texts[row] ?? ""));
    }
  }
  const words = rest.split(/[\s,]+/).map((w) => w.trim().toLowerCase()).filter((w) => w && w !== "and");
  if (words.length) {
    const textColumns = Array.from(table.text.values());
    tests.push((row) => words.every((w) => textColumns.some((column) => (column[row] || "").toLowerCase().includes(w))));
  }
  return tests;
}

class RunsView {
  root: HTMLElement;
  scroller: HTMLElement;
  body: HTMLElement;
  head: HTMLElement;
  footer: HTMLElement;
  filterInput: HTMLInputElement;
  table!: Table;
  order: number[] = [];
  anchor = -1;
  private cleanups: (() => void)[] = [];
  private renderRows: () => void;

  constructor(private model: any, el: HTMLElement) {
    this.filterInput = h("input.psw-filter", { type: "search", placeholder: "Filter: loss < 0.5, lr = 0.01, or words…",
      value: model.get("filter") || "", "aria-label": "filter runs" }) as HTMLInputElement;
    let timer: any;
    this.filterInput.addEventListener("input", () => {
      clearTimeout(timer);
      timer = setTimeout(() => { model.set("filter", this.filterInput.value); model.save_changes(); this.recompute(); }, 120);
    });
    this.head = h("div.psw-thead");
    this.body = h("div.psw-tbody");
    this.scroller = h("div.psw-scroller", null, this.head, this.body);
    this.footer = h("div.psw-footer-info");
    const [status, stopStatus] = statusLine(model);
    this.root = h("div.psw.psw-runs", null,
      h("div.psw-header", null, h("div.psw-title", null, model.get("experiment") ? `Runs of ${model.get("experiment")}` : "Runs"),
        h("div.psw-controls", null, this.filterInput)),
      this.scroller, h("div.psw-footer", null, this.footer,
        h("button.psw-btn", { type: "button", onclick: () => { model.set("selected", []); model.save_changes(); } }, "Clear selection")),
      status);
    el.append(this.root);
    this.renderRows = scheduler(() => this.drawRows());
    this.scroller.addEventListener("scroll", this.renderRows);
    this.cleanups.push(stopStatus, listen(model, [
      ["change:table", () => this.reload()], ["change:columns", () => this.reload()],
      ["change:sort", () => this.recompute()], ["change:selected", () => { this.drawRows(); this.drawFooter(); }],
      ["change:colors", () => this.drawRows()],
    ]));
    this.reload();
  }

  reload() { this.table = decode(this.model); this.recompute(); }

  private widthOf(c: Column) { return c.id === "name" ? 200 : c.id === "start_time" ? 150 : c.id === "status" ? 100 : 112; }

  recompute() {
    const table = this.table;
    const tests = parseFilter(this.model.get("filter") || "", table);
    const rows: number[] = [];
    for (let i = 0; i < table.ids.length; i++) if (tests.every((t) => t(i))) rows.push(i);
    const sort = this.model.get("sort") || {};
    const numbers = table.numbers.get(sort.column);
    const texts = table.text.get(sort.column);
    const sign = sort.descending ? -1 : 1;
    if (numbers) {
      rows.sort((a, b) => {
        const x = numbers[a], y = numbers[b];
        if (Number.isNaN(x)) return Number.isNaN(y) ? 0 : 1; // missing values last, either way
        if (Number.isNaN(y)) return -1;
        return sign * (x - y);
      });
    } else if (texts) {
      const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
      rows.sort((a, b) => sign * collator.compare(texts[a] || "", texts[b] || ""));
    }
    this.order = rows;
    this.drawHead();
    this.body.style.height = `${rows.length * ROW}px`;
    this.scroller.style.height = `${Math.min(VISIBLE, Math.max(rows.length, 1)) * ROW + ROW + 2}px`;
    this.drawRows();
    this.drawFooter();
  }

  private drawHead() {
    const sort = this.model.get("sort") || {};
    const width = 36 + this.table.columns.reduce((sum, c) => sum + this.widthOf(c), 0);
    this.head.style.width = this.body.style.width = `${width}px`;
    this.head.replaceChildren(h("div.psw-cell.psw-check"), ...this.table.columns.map((c) => h(
      `div.psw-cell.psw-th.psw-${c.group}${c.type !== "text" ? ".psw-num" : ""}`, {
        style: { width: `${this.widthOf(c)}px` }, title: `${c.group} ${c.label}: click to sort`, dataset: { column: c.id },
        onclick: () => {
          const now = this.model.get("sort") || {};
          this.model.set("sort", { column: c.id, descending: now.column === c.id ? !now.descending : c.group === "metric" ? false : true });
          this.model.save_changes();
        },
      }, c.group === "param" || c.group === "metric" ? h("span.psw-group", null, c.group === "param" ? "param" : "metric") : "",
      c.label, sort.column === c.id ? h("span.psw-sort", null, sort.descending ? " ▼" : " ▲") : "")));
  }

  private cellText(c: Column, row: number): string {
    const numbers = this.table.numbers.get(c.id);
    if (!numbers) return this.table.text.get(c.id)?.[row] ?? "";
    const v = numbers[row];
    if (c.type === "time") return formatTime(v);
    if (c.id === "duration") return formatDuration(v);
    return formatNumber(v);
  }

  drawRows() {
    const first = Math.max(0, Math.floor(this.scroller.scrollTop / ROW) - 4);
    const last = Math.min(this.order.length, first + VISIBLE + 10);
    const selected = new Set<string>(this.model.get("selected") || []);
    const colors = this.model.get("colors") || {};
    const rows: HTMLElement[] = [];
    for (let position = first; position < last; position++) {
      const row = this.order[position];
      const id = this.table.ids[row];
      const isSelected = selected.has(id);
      rows.push(h(`div.psw-tr${isSelected ? ".psw-selected" : ""}`, {
        style: { top: `${position * ROW}px` }, dataset: { run: id }, role: "row", "aria-selected": String(isSelected),
        onclick: (event: MouseEvent) => this.toggle(position, event.shiftKey),
      }, h("div.psw-cell.psw-check", null, h("span.psw-box", { style: isSelected && colors[id] ? { background: colors[id], borderColor: colors[id] } : {} }, isSelected ? "✓" : "")),
      ...this.table.columns.map((c) => {
        const text = this.cellText(c, row);
        const cell = h(`div.psw-cell${c.type !== "text" ? ".psw-num" : ""}`, { style: { width: `${this.widthOf(c)}px` }, title: text }, text);
        if (c.id === "status") cell.replaceChildren(h("span.psw-badge", { style: { color: STAGE_COLORS[text] || "inherit" } }, text));
        return cell;
      })));
    }
    this.body.replaceChildren(...rows);
  }

  private toggle(position: number, range: boolean) {
    const selected = new Set<string>(this.model.get("selected") || []);
    if (range && this.anchor >= 0) {
      const [a, b] = [Math.min(this.anchor, position), Math.max(this.anchor, position)];
      for (let p = a; p <= b; p++) selected.add(this.table.ids[this.order[p]]);
    } else {
      const id = this.table.ids[this.order[position]];
      if (selected.has(id)) selected.delete(id); else selected.add(id);
      this.anchor = position;
    }
    this.model.set("selected", Array.from(selected));
    this.model.save_changes();
  }

  private drawFooter() {
    const selected = (this.model.get("selected") || []).length;
    const total = this.table.ids.length;
    this.footer.textContent = `${total.toLocaleString()} runs` + (this.order.length !== total ? ` · ${this.order.length.toLocaleString()} match` : "")
      + (selected ? ` · ${selected} selected (drawn below)` : " · select runs to compare them below");
  }

  dispose() { for (const cleanup of this.cleanups) cleanup(); this.root.remove(); }
}

export function renderRuns({ model, el }: RenderProps): () => void {
  const view = new RunsView(model, el);
  return () => view.dispose();
}
