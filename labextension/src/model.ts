// A ModelLike (the interface the widget views read, see ../../podstack_jupyter/widgets/common.ts)
// fed by the lab extension instead of a kernel widget: the sidebar renders the same session panel
// and metrics chart as the inline widgets, from the kernel bridge's comm and the server extension.
import type { ModelLike } from "../../podstack_jupyter/widgets/common";

type Callback = (...args: any[]) => void;

export class LocalModel implements ModelLike {
  private values: Record<string, any>;
  private callbacks = new Map<string, Set<Callback>>();

  /** ``onSend``: where the view's messages (a Stop button, a zoom) go. */
  constructor(initial: Record<string, any>, private onSend: (content: any) => void = () => {}) {
    this.values = { ...initial };
  }

  get(name: string): any {
    return this.values[name];
  }

  set(name: string, value: any): void {
    if (this.values[name] === value) return;
    this.values[name] = value;
    this.emit(`change:${name}`, value);
  }

  save_changes(): void {}

  on(event: string, callback: Callback): void {
    let set = this.callbacks.get(event);
    if (!set) this.callbacks.set(event, (set = new Set()));
    set.add(callback);
  }

  off(event?: string | null, callback?: Callback | null): void {
    if (!event) { this.callbacks.clear(); return; }
    if (!callback) { this.callbacks.delete(event); return; }
    this.callbacks.get(event)?.delete(callback);
  }

  send(content: any): void {
    this.onSend(content);
  }

  emit(event: string, ...args: any[]): void {
    for (const callback of Array.from(this.callbacks.get(event) || [])) callback(...args);
  }
}

/** float64 column sent by the server extension as base64 (exact, NaN and infinities included). */
export function base64ToBuffer(text: string): ArrayBuffer {
  const binary = atob(text || "");
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}
