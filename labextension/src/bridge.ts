// What the active notebook's kernel says about itself, over the comm ``podstack.lab`` that
// ``%load_ext podstack`` serves (podstack_jupyter/jupyter_ext/_kernel.py documents the messages).
import type { Kernel, KernelMessage } from "@jupyterlab/services";

export const COMM_TARGET = "podstack.lab";

export interface SessionInfo {
  id: string; state: string; spec: string; backend: string; gpus: string; gpu_type: string | null;
  uptime_s: number; bytes_sent: number; bytes_received: number; reason: string | null;
  at: number; since: number;
}

export interface KernelState {
  sessions: SessionInfo[];
  run: { id: string; name: string; experiment_id: string | null } | null;
  experiment_id: string | null;
  store: string | null;
  changed: { runs: number; models: number };
  /** this browser's clock when the state arrived: elapsed times count from here, not the kernel's clock */
  received: number;
}

type Listener = () => void;

/** One kernel's comm: its latest state, a way to send the sidebar's actions, listeners. */
export class KernelBridge {
  state: KernelState | null = null;
  reply: { action: string; ok: boolean; message: string } | null = null;
  private comm: Kernel.IComm | null = null;
  private listeners = new Set<Listener>();

  constructor(readonly kernel: Kernel.IKernelConnection) {
    // the kernel opens a comm when `%load_ext podstack` runs ...
    kernel.registerCommTarget(COMM_TARGET, (comm: Kernel.IComm, msg: KernelMessage.ICommOpenMsg) => {
      this.adopt(comm);
      this.receive(msg.content.data);
    });
    // ... and serves the target when it already ran (the page was reloaded): ask for one
    this.connect();
    // a restarted or dead kernel has no sessions any more: never show the old ones as live
    kernel.statusChanged.connect((_, status) => {
      if (status === "restarting" || status === "autorestarting" || status === "dead") {
        this.state = null;
        this.reply = null;
        this.comm = null;
        this.notify();
      }
    });
  }

  /** Open a comm to the kernel; a kernel without podstack loaded closes it at once (no harm). */
  connect(): void {
    if (this.comm || this.kernel.isDisposed) return;
    try {
      const comm = this.kernel.createComm(COMM_TARGET);
      this.adopt(comm);
      comm.open({});
    } catch (error) {
      console.debug("podstack: no bridge in this kernel yet", error);
    }
  }

  private adopt(comm: Kernel.IComm) {
    if (this.comm && this.comm !== comm && !this.comm.isDisposed) this.comm.close();
    this.comm = comm;
    comm.onMsg = (msg: KernelMessage.ICommMsgMsg) => this.receive(msg.content.data);
    comm.onClose = () => { if (this.comm === comm) this.comm = null; };
  }

  private receive(data: any) {
    if (!data || typeof data !== "object") return;
    if (data.type === "state") {
      this.state = { sessions: data.sessions || [], run: data.run || null, experiment_id: data.experiment_id || null,
        store: data.store || null, changed: data.changed || { runs: 0, models: 0 }, received: Date.now() / 1000 };
      this.notify();
    } else if (data.type === "reply") {
      this.reply = { action: data.action, ok: !!data.ok, message: data.message || "" };
      this.notify();
    }
  }

  get connected(): boolean {
    return this.comm !== null && !this.comm.isDisposed;
  }

  send(content: any): void {
    if (!this.comm || this.comm.isDisposed) {
      this.reply = { action: content?.action, ok: false, message: "this kernel has no podstack bridge: run %load_ext podstack" };
      this.notify();
      return;
    }
    this.comm.send(content);
  }

  subscribe(listener: Listener): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  private notify() {
    for (const listener of Array.from(this.listeners)) listener();
  }

  dispose() {
    this.listeners.clear();
    if (this.comm && !this.comm.isDisposed) this.comm.close();
    this.comm = null;
  }
}

const ORDER: Record<string, number> = { busy: 0, building: 1, starting: 2, idle: 3, dead: 4, stopped: 5 };

/** The session the status bar shows: the busiest live one. */
export function mainSession(state: KernelState | null): SessionInfo | null {
  const sessions = (state?.sessions || []).slice();
  sessions.sort((a, b) => (ORDER[a.state] ?? 9) - (ORDER[b.state] ?? 9));
  return sessions[0] || null;
}

/** Seconds since the session entered its state, on this browser's clock. */
export function elapsed(state: KernelState, session: SessionInfo): number {
  return Math.max(0, (session.at - session.since) + (Date.now() / 1000 - state.received));
}
