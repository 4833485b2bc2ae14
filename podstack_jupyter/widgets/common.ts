// Shared by every view (and by the JupyterLab extension, which renders the same views from its
// own data): the model interface the views need, binary decoding, formatting, small DOM helpers.

/** What a view needs of its model: anywidget's model, or any object that behaves like it
 *  (the lab extension feeds the same views from its server extension). */
export interface ModelLike {
  get(name: string): any;
  set(name: string, value: any): void;
  save_changes(): void;
  on(event: string, callback: (...args: any[]) => void): void;
  off(event?: string | null, callback?: ((...args: any[]) => void) | null): void;
  send(content: any, callbacks?: any, buffers?: ArrayBuffer[] | ArrayBufferView[]): void;
}

export interface RenderProps {
  model: ModelLike;
  el: HTMLElement;
}

/** A float64 column from a binary buffer as the widget protocol delivers it (DataView,
 *  ArrayBuffer or typed array; copied when its offset is not 8-aligned). */
export function f64(value: any): Float64Array {
  if (value == null) return new Float64Array(0);
  if (value instanceof Float64Array) return value;
  let buffer: ArrayBuffer, offset = 0, length: number;
  if (value instanceof ArrayBuffer) {
    buffer = value; length = value.byteLength;
  } else if (ArrayBuffer.isView(value)) {
    buffer = value.buffer as ArrayBuffer; offset = value.byteOffset; length = value.byteLength;
  } else if (Array.isArray(value)) {
    return Float64Array.from(value);
  } else {
    return new Float64Array(0);
  }
  if (offset % 8 === 0) return new Float64Array(buffer, offset, Math.floor(length / 8));
  return new Float64Array(buffer.slice(offset, offset + length));
}

export function bytesOf(value: any): Uint8Array {
  if (value instanceof ArrayBuffer) return new Uint8Array(value);
  if (ArrayBuffer.isView(value)) return new Uint8Array(value.buffer, value.byteOffset, value.byteLength);
  return new Uint8Array(0);
}

export function formatSize(bytes: number): string {
  if (!isFinite(bytes)) return "—";
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes, unit = 0;
  while (value >= 1024 && unit < units.length - 1) { value /= 1024; unit++; }
  return unit === 0 ? `${value} B` : `${value.toFixed(value >= 100 ? 0 : 1)} ${units[unit]}`;
}

export function formatNumber(value: number | null | undefined): string {
  if (value == null || Number.isNaN(value)) return "—";
  if (!isFinite(value)) return value > 0 ? "∞" : "−∞";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) return value.toExponential(3);
  if (Number.isInteger(value)) return value.toLocaleString();
  return Number(value.toPrecision(5)).toString();
}

/** An axis tick: short, exponent form for very small or large numbers ("" where uPlot leaves a gap). */
export function formatTick(value: number | null | undefined): string {
  if (value == null || !isFinite(value)) return "";
  const magnitude = Math.abs(value);
  if (magnitude !== 0 && (magnitude < 1e-3 || magnitude >= 1e6)) {
    const [mantissa, exponent] = value.toExponential(1).split("e");
    return `${mantissa.replace(/\.0$/, "")}e${Number(exponent)}`;
  }
  return Number(value.toPrecision(4)).toLocaleString();
}

/** A small inline SVG icon (no icon font or emoji needed). */
export function icon(name: "folder" | "file" | "eye" | "download"): SVGElement {
  const paths: Record<string, string> = {
    folder: "M1.5 3.5h4l1.5 1.5h7.5v8.5h-13z",
    file: "M3.5 1.5h6l3 3v10h-9z M9.5 1.5v3h3",
    eye: "M1 8c2-3.5 4.5-5 7-5s5 1.5 7 5c-2 3.5-4.5 5-7 5s-5-1.5-7-5z M8 5.5a2.5 2.5 0 1 0 0 5a2.5 2.5 0 1 0 0-5z",
    download: "M8 1.5v9 M4.5 7l3.5 3.5 3.5-3.5 M2 14h12",
  };
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", "0 0 16 16");
  svg.setAttribute("class", `psw-svg-icon psw-icon-${name}`);
  const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
  path.setAttribute("d", paths[name]);
  svg.append(path);
  return svg;
}

export function formatDuration(seconds: number | null | undefined): string {
  if (seconds == null || !isFinite(seconds)) return "—";
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const s = Math.floor(seconds);
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

export function formatTime(epochSeconds: number | string | null | undefined): string {
  if (epochSeconds == null || epochSeconds === "") return "—";
  const date = typeof epochSeconds === "string" ? new Date(epochSeconds) : new Date(epochSeconds * 1000);
  if (isNaN(date.getTime())) return String(epochSeconds);
  const now = new Date();
  const sameDay = date.toDateString() === now.toDateString();
  const time = date.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
  return sameDay ? time : `${date.toLocaleDateString([], { year: "numeric", month: "short", day: "numeric" })} ${time}`;
}

type Child = Node | string | null | undefined | false;

/** ``h("div.psw-row", {onclick}, child, ...)``: a tiny element builder. */
export function h(tag: string, attrs: Record<string, any> | null = null, ...children: (Child | Child[])[]): HTMLElement {
  const [name, ...classes] = tag.split(".");
  const el = document.createElement(name || "div");
  if (classes.length) el.className = classes.join(" ");
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value == null || value === false) continue;
    if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (key === "style" && typeof value === "object") Object.assign(el.style, value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key in el && key !== "list") (el as any)[key] = value;
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Listen to model events until the returned function is called (a view's cleanup). */
export function listen(model: ModelLike, pairs: [string, (...args: any[]) => void][]): () => void {
  for (const [event, callback] of pairs) model.on(event, callback);
  return () => { for (const [event, callback] of pairs) model.off(event, callback); };
}

/** The status line under a widget (``status`` trait: what an action did, or why it failed). */
export function statusLine(model: ModelLike): [HTMLElement, () => void] {
  const line = h("div.psw-status");
  const update = () => {
    const text = model.get("status") || "";
    line.textContent = text;
    line.classList.toggle("psw-status-error", text.startsWith("⚠"));
    line.style.display = text ? "" : "none";
  };
  update();
  return [line, listen(model, [["change:status", update]])];
}

/** Coalesce redraw requests into one per animation frame. */
export function scheduler(draw: () => void): () => void {
  let pending = false;
  return () => {
    if (pending) return;
    pending = true;
    requestAnimationFrame(() => { pending = false; draw(); });
  };
}

export const CATEGORY_COLORS: Record<string, string> = {
  model: "#7c3aed", data: "#0891b2", image: "#db2777", config: "#ca8a04", text: "#64748b",
  code: "#16a34a", archive: "#9a3412", other: "#6b7280",
};

export const STAGE_COLORS: Record<string, string> = {
  production: "#16a34a", staging: "#d97706", development: "#2563eb", archived: "#6b7280",
  running: "#2563eb", completed: "#16a34a", failed: "#dc2626", killed: "#9333ea",
};
