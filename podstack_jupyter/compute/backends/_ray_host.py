"""What runs on a Ray node for a GPU session: the actor that starts the kernel, watches it, and relays it.

This module travels to the node by value (``ray.cloudpickle.register_pickle_by_value``): the
node needs Ray, ipykernel (with jupyter_client and pyzmq) and cloudpickle, not podstack.

:class:`KernelHost` starts an ipykernel next to itself, bound to the node's address, in the
actor's own environment (its ``runtime_env``, its ``CUDA_VISIBLE_DEVICES``); the kernel exits
with the actor (ipykernel's parent poller). The notebook connects to the kernel's ports when it
can reach them; when it cannot, the actor relays the kernel's messages (:meth:`KernelHost.relay_send`,
:meth:`KernelHost.relay_recv`) as raw, still signed frames, so large buffers stay binary.
:class:`LogTail` reads the node's ``runtime_env`` build log while a session's environment is built.
"""

import collections
import glob
import os
import socket
import sys
import tempfile
import threading
import time

import ray

_CHANNELS = ("shell", "iopub", "stdin", "control")
# Ray's threads block SIGINT and a child inherits the mask: unblocked, or an interrupt never arrives
_LAUNCH_KERNEL = ("import runpy, signal; signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGINT]); "
                  "runpy.run_module('ipykernel_launcher', run_name='__main__', alter_sys=True)")
_RELAY_BATCH_BYTES = 64 * 1024 * 1024  # one relay_recv answer stops adding messages past this


def _same_machine_marks():
    """What tells the notebook the kernel runs on its own machine and in its own pid namespace."""
    marks = {"hostname": socket.gethostname()}
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            marks["boot_id"] = f.read().strip()
        marks["pid_namespace"] = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        pass
    return marks


@ray.remote(concurrency_groups={"control": 2, "relay_out": 1, "relay_in": 1})
class KernelHost:
    def __init__(self):
        self.km = None
        self.console = None
        self.folder = None
        self.relay = None

    def start(self, env: dict) -> dict:
        """Start the kernel; returns its connection info and where it runs."""
        from jupyter_client import KernelManager
        from jupyter_client.kernelspec import KernelSpec

        ip = ray.util.get_node_ip_address()
        self.folder = tempfile.mkdtemp(prefix="podstack-ray-")
        km = KernelManager(transport="tcp", ip=ip, connection_file=os.path.join(self.folder, "kernel.json"))
        km._kernel_spec = KernelSpec(  # a kernel in this actor's environment, not a kernelspec from disk
            argv=[sys.executable, "-c", _LAUNCH_KERNEL, "-f", "{connection_file}", "--HistoryManager.enabled=False"],
            display_name="podstack session", language="python")
        # the kernel gets none of the node's PODSTACK_* settings (the notebook's are never sent)
        kernel_env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
        kernel_env.update(env)
        self.console = open(os.path.join(self.folder, "console.log"), "w+b")  # noqa: SIM115 - closed at shutdown
        km.start_kernel(env=kernel_env, stdout=self.console, stderr=self.console)
        self.km = km
        info = km.get_connection_info()
        info["key"] = info["key"].decode() if isinstance(info["key"], bytes) else info["key"]
        context = ray.get_runtime_context()
        return {"connection": info, "node_ip": ip, "node_id": context.get_node_id(),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "cuda_visible_devices": kernel_env.get("CUDA_VISIBLE_DEVICES"), "python": sys.executable,
                "kernel_pid": km.provisioner.pid if km.provisioner is not None else None,
                **_same_machine_marks()}

    @ray.method(concurrency_group="control")
    def status(self) -> dict:
        """Whether the kernel lives; if not, its exit code and what it printed last."""
        if self.km is None:
            return {"alive": False, "code": None, "printed": "", "started": False}
        if self.km.is_alive():
            return {"alive": True}
        process = getattr(self.km.provisioner, "process", None)
        return {"alive": False, "code": process.poll() if process is not None else None,
                "printed": self._console_tail(), "started": True}

    def _console_tail(self, lines: int = 15, limit: int = 4000) -> str:
        try:
            self.console.flush()
            size = os.fstat(self.console.fileno()).st_size
            self.console.seek(max(0, size - limit))
            text = self.console.read().decode(errors="replace")
        except (OSError, ValueError, AttributeError):
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    @ray.method(concurrency_group="control")
    def interrupt(self) -> None:
        if self.km is not None and self.km.is_alive():
            self.km.interrupt_kernel()

    @ray.method(concurrency_group="control")
    def shutdown(self) -> None:
        if self.relay is not None:
            self.relay.close()
            self.relay = None
        if self.km is not None:
            try:
                if self.km.has_kernel:
                    self.km.shutdown_kernel(now=True)
            except Exception:  # already gone
                pass
            self.km.cleanup_resources()
            self.km = None
        if self.console is not None:
            self.console.close()
            self.console = None

    # -- relay, for a notebook that cannot reach the kernel's ports ----------------
    @ray.method(concurrency_group="control")
    def open_relay(self) -> None:
        if self.relay is None:
            self.relay = _Relay(self.km)

    @ray.method(concurrency_group="relay_out")
    def relay_send(self, channel: str, frames: list) -> None:
        """Send a serialized, signed message (``[DELIM, signature, header, parent, metadata, content, *buffers]``)."""
        self.relay.send(channel, frames)

    @ray.method(concurrency_group="relay_in")
    def relay_recv(self, wait: float) -> list:
        """The kernel's messages that arrived, as ``(channel, frames)``; waits up to ``wait`` s for the first."""
        return self.relay.recv(wait)


def _portable(frame):
    """A received frame as Ray moves it best: small ones as bytes, large ones as a numpy view
    (out of band through the object store, no pickle copy)."""
    if len(frame) < 65536:
        return frame.bytes
    import numpy

    return numpy.frombuffer(frame.buffer, dtype=numpy.uint8)


class _Relay:
    """The kernel's sockets, owned by one I/O thread (ZMQ sockets are not thread-safe)."""

    def __init__(self, km):
        import uuid

        import zmq

        self.zmq = zmq
        identity = uuid.uuid4().hex.encode()
        self.sockets = {"shell": km.connect_shell(identity=identity), "stdin": km.connect_stdin(identity=identity),
                        "iopub": km.connect_iopub(), "control": km.connect_control()}
        context = zmq.Context.instance()
        wake_address = f"inproc://podstack-relay-{identity.decode()}"
        self.wake_in = context.socket(zmq.PULL)
        self.wake_in.bind(wake_address)
        self.wake_out = context.socket(zmq.PUSH)
        self.wake_out.connect(wake_address)
        self.wake_lock = threading.Lock()
        self.outgoing = collections.deque()
        self.incoming = collections.deque()
        self.arrived = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._run, name="podstack-relay", daemon=True)
        self.thread.start()

    def send(self, channel, frames):
        self.outgoing.append((channel, frames))
        with self.wake_lock:
            self.wake_out.send(b"")

    def recv(self, wait):
        deadline = time.monotonic() + wait
        with self.arrived:
            while not self.incoming and not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    return []
                self.arrived.wait(left)
            batch, size = [], 0
            while self.incoming and size < _RELAY_BATCH_BYTES:
                channel, frames = self.incoming.popleft()
                batch.append((channel, frames))
                size += sum(len(f) for f in frames)
            return batch

    def _run(self):
        zmq = self.zmq
        poller = zmq.Poller()
        by_socket = {}
        for name in ("shell", "stdin", "iopub"):
            poller.register(self.sockets[name], zmq.POLLIN)
            by_socket[self.sockets[name]] = name
        poller.register(self.wake_in, zmq.POLLIN)
        while not self.closed:
            try:
                events = dict(poller.poll(200))
            except zmq.ZMQError:
                break
            if self.wake_in in events:
                while True:
                    try:
                        self.wake_in.recv(zmq.NOBLOCK)
                    except zmq.Again:
                        break
            while self.outgoing:
                channel, frames = self.outgoing.popleft()
                self.sockets[channel].send_multipart(frames, copy=False)
            received = []
            for sock, name in by_socket.items():
                if sock in events:
                    while True:
                        try:
                            frames = sock.recv_multipart(zmq.NOBLOCK, copy=False)
                        except zmq.Again:
                            break
                        received.append((name, [_portable(f) for f in frames]))
            if received:
                with self.arrived:
                    self.incoming.extend(received)
                    self.arrived.notify_all()
        for sock in (*self.sockets.values(), self.wake_in, self.wake_out):
            sock.close(linger=0)

    def close(self):
        self.closed = True
        with self.arrived:
            self.arrived.notify_all()
        self.thread.join(2)


@ray.remote(num_cpus=0)
class LogTail:
    """Reads the node's runtime_env build log of one job, for the notebook's progress lines."""

    def read(self, job_id: str, offset: int) -> tuple[int, str]:
        folder = ray._private.worker.global_worker.node.get_logs_dir_path()
        found = glob.glob(os.path.join(folder, f"runtime_env_setup-{job_id}.log"))
        if not found:
            return offset, ""
        with open(found[0], "rb") as f:
            f.seek(offset)
            data = f.read(1 << 20)
        return offset + len(data), data.decode(errors="replace")
