// The artifact browser view: a run's artifacts as a tree (path, type badge by extension,
// size, upload time), total size in the footer, download into the notebook's working folder,
// preview of images and text (sent by the kernel: nothing is fetched from elsewhere).
import { bytesOf, CATEGORY_COLORS, formatSize, formatTime, h, icon, listen, RenderProps, statusLine } from "./common";

interface FileEntry { path: string; size: number; modified: string; ext: string; category: string; }
interface TreeNode { name: string; path: string; children: Map<string, TreeNode>; file?: FileEntry; size: number; count: number; modified: string; }

const PREVIEWABLE = new Set(["image", "text", "config", "code"]);
const PREVIEW_EXT = new Set(["csv", "tsv", "jsonl"]);

function buildTree(files: FileEntry[]): TreeNode {
  const root: TreeNode = { name: "", path: "", children: new Map(), size: 0, count: 0, modified: "" };
  for (const file of files) {
    let node = root;
    const parts = file.path.split("/");
    parts.forEach((part, i) => {
      node.size += file.size; node.count += 1;
      if (file.modified > node.modified) node.modified = file.modified;
      const path = parts.slice(0, i + 1).join("/");
      let child = node.children.get(part);
      if (!child) { child = { name: part, path, children: new Map(), size: 0, count: 0, modified: "" }; node.children.set(part, child); }
      node = child;
    });
    node.file = file; node.size = file.size; node.count = 1; node.modified = file.modified;
  }
  return root;
}

class ArtifactsView {
  root: HTMLElement;
  body: HTMLElement;
  footer: HTMLElement;
  preview: HTMLElement;
  collapsed = new Set<string>();
  previewing = "";
  private url = "";
  private cleanups: (() => void)[] = [];

  constructor(private model: any, el: HTMLElement) {
    this.body = h("div.psw-tree", { role: "tree" });
    this.footer = h("div.psw-footer-info");
    this.preview = h("div.psw-preview");
    const [status, stopStatus] = statusLine(model);
    this.root = h("div.psw.psw-artifacts", null,
      h("div.psw-header", null, h("div.psw-title"), h("div.psw-controls", null,
        h("button.psw-btn", { type: "button", title: "read the artifacts again", onclick: () => model.send({ action: "refresh" }) }, "Refresh"))),
      h("div.psw-tree-head", null, h("span.psw-col-path", null, "Path"), h("span.psw-col-type", null, "Type"),
        h("span.psw-col-size", null, "Size"), h("span.psw-col-time", null, "Uploaded"), h("span.psw-col-act", null, "")),
      this.body, h("div.psw-footer", null, this.footer), status, this.preview);
    el.append(this.root);
    this.cleanups.push(stopStatus, listen(model, [["change:files", () => this.draw()], ["change:downloads", () => this.draw()],
      ["msg:custom", (msg: any, buffers: any[]) => this.message(msg, buffers || [])]]));
    this.draw();
  }

  private message(msg: any, buffers: any[]) {
    if (msg?.type !== "preview" || msg.path !== this.previewing) return;
    if (this.url) { URL.revokeObjectURL(this.url); this.url = ""; }
    const close = h("button.psw-btn", { type: "button", onclick: () => { this.previewing = ""; this.preview.replaceChildren(); } }, "Close");
    const head = h("div.psw-preview-head", null, h("span", null, msg.path), close);
    if (msg.kind === "image") {
      const data = bytesOf(buffers[0]);
      this.url = URL.createObjectURL(new Blob([data.slice()], { type: msg.mime }));
      this.preview.replaceChildren(head, h("img.psw-preview-img", { src: this.url, alt: msg.path }));
    } else if (msg.kind === "text") {
      const text = new TextDecoder("utf-8", { fatal: false }).decode(bytesOf(buffers[0]));
      this.preview.replaceChildren(head, h("pre.psw-preview-text", null, text + (msg.truncated ? "\n… (the first 64 KB)" : "")));
    } else {
      this.preview.replaceChildren(head, h("div.psw-hint", null, `No preview: ${msg.reason || "not an image or text"}.`));
    }
  }

  draw() {
    const files: FileEntry[] = this.model.get("files") || [];
    const run = this.model.get("run") || {};
    (this.root.querySelector(".psw-title") as HTMLElement).textContent = `Artifacts of ${run.name || "run"}`;
    const downloads = this.model.get("downloads") || {};
    const rows: HTMLElement[] = [];
    const walk = (node: TreeNode, depth: number) => {
      const children = Array.from(node.children.values()).sort((a, b) => (a.file ? 1 : 0) - (b.file ? 1 : 0) || a.name.localeCompare(b.name));
      for (const child of children) {
        const isFolder = !child.file;
        const open = isFolder && !this.collapsed.has(child.path);
        const category = child.file?.category || "folder";
        const canPreview = child.file && (PREVIEWABLE.has(category) || PREVIEW_EXT.has(child.file.ext));
        const saved = downloads[child.path];
        rows.push(h(`div.psw-tree-row${isFolder ? ".psw-folder" : ""}${this.previewing === child.path ? ".psw-selected" : ""}`,
          { dataset: { path: child.path }, role: "treeitem", "aria-expanded": isFolder ? String(open) : null },
          h("span.psw-col-path", { style: { paddingLeft: `${8 + depth * 18}px` }, title: child.path,
            onclick: () => { if (isFolder) { if (open) this.collapsed.add(child.path); else this.collapsed.delete(child.path); this.draw(); } else if (canPreview) this.askPreview(child.path); } },
          h("span.psw-twisty", null, isFolder ? (open ? "▾" : "▸") : ""), icon(isFolder ? "folder" : "file"),
          child.name, isFolder ? h("span.psw-muted", null, ` ${child.count} file${child.count === 1 ? "" : "s"}`) : "",
          saved ? h("span.psw-saved", { title: `downloaded to ${saved}` }, " ✓ saved") : ""),
          h("span.psw-col-type", null, child.file ? h("span.psw-type", { style: { background: CATEGORY_COLORS[category] || CATEGORY_COLORS.other }, title: category },
            (child.file.ext || "file").toUpperCase()) : ""),
          h("span.psw-col-size", null, formatSize(child.size)),
          h("span.psw-col-time", { title: child.modified }, formatTime(child.modified)),
          h("span.psw-col-act", null,
            canPreview ? h("button.psw-icon-btn", { type: "button", title: `preview ${child.path}`, "aria-label": `preview ${child.path}`, onclick: () => this.askPreview(child.path) }, icon("eye")) : "",
            h("button.psw-icon-btn.psw-download", { type: "button", title: `download ${child.path} into the working folder`, "aria-label": `download ${child.path}`,
              onclick: () => { this.model.send({ action: "download", path: child.path }); } }, icon("download")))));
        if (open) walk(child, depth + 1);
      }
    };
    walk(buildTree(files), 0);
    this.body.replaceChildren(...(rows.length ? rows : [h("div.psw-empty", null, "This run has no artifacts yet.")]));
    this.footer.textContent = `${files.length} file${files.length === 1 ? "" : "s"} · total ${formatSize(this.model.get("total_size") || 0)} · downloads go to ${this.model.get("download_dir")}`;
  }

  private askPreview(path: string) {
    this.previewing = path;
    this.preview.replaceChildren(h("div.psw-hint", null, `Loading ${path}…`));
    this.model.send({ action: "preview", path });
    this.draw();
  }

  dispose() { for (const cleanup of this.cleanups) cleanup(); if (this.url) URL.revokeObjectURL(this.url); this.root.remove(); }
}

export function renderArtifacts({ model, el }: RenderProps): () => void {
  const view = new ArtifactsView(model, el);
  return () => view.dispose();
}
