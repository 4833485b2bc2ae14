"""The contract between the session layer and a compute backend."""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field

import zmq
from jupyter_client.session import Session


@dataclass
class Allocation:
    """GPUs reserved for one session: device indexes, type, and the percentage of each."""

    gpus: list[int] = field(default_factory=list)
    gpu_type: str | None = None
    fraction: int = 100

    def describe(self) -> str:
        if not self.gpus:
            return "cpu"
        share = f" @{self.fraction}%" if self.fraction < 100 else ""
        return f"{len(self.gpus)}x{self.gpu_type} [{','.join(map(str, self.gpus))}]{share}"


class KernelHandle(abc.ABC):
    """A live Jupyter kernel reachable over ZMQ: shell, iopub, stdin and control sockets.

    Messages are received without copying their binary buffers (``copy=False``),
    so a large pulled array is read straight out of the received frame.
    """

    session: Session
    sockets: dict[str, zmq.Socket]
    same_host: bool = False  # the kernel runs on this machine: large buffers may skip the socket

    def __init__(self, session: Session, sockets: dict[str, zmq.Socket]):
        self.session = session
        self.sockets = sockets
        self.poller = zmq.Poller()
        for name in ("iopub", "shell", "stdin"):
            self.poller.register(sockets[name], zmq.POLLIN)
        self._by_socket = {sock: name for name, sock in sockets.items()}
        self.bytes_sent = 0
        self.bytes_received = 0

    def send(self, channel: str, msg_type: str, content: dict, metadata: dict | None = None,
             buffers: list | None = None, parent: dict | None = None) -> str:
        msg = self.session.msg(msg_type, content=content, metadata=metadata, parent=parent)
        self.session.send(self.sockets[channel], msg, buffers=buffers)
        self.bytes_sent += sum(memoryview(b).nbytes for b in buffers or ())
        return msg["header"]["msg_id"]

    def recv(self, timeout: float) -> tuple[str, dict] | None:
        """The next message on iopub, shell or stdin within ``timeout`` seconds, else None."""
        events = dict(self.poller.poll(max(0, int(timeout * 1000))))
        for sock in (self.sockets["shell"], self.sockets["stdin"], self.sockets["iopub"]):
            if sock in events:
                frames = sock.recv_multipart(copy=False)
                _, frames = self.session.feed_identities(frames, copy=False)
                msg = self.session.deserialize(frames, content=True, copy=False)
                self.bytes_received += sum(b.nbytes for b in msg["buffers"])
                return self._by_socket[sock], msg
        return None

    def drain(self, seconds: float = 0.0) -> None:
        deadline = time.monotonic() + seconds
        while self.recv(max(0.0, deadline - time.monotonic())) is not None:
            pass

    @abc.abstractmethod
    def interrupt(self) -> None: ...

    @abc.abstractmethod
    def is_alive(self) -> bool: ...

    @abc.abstractmethod
    def death_reason(self) -> str:
        """Why the kernel is gone (exit code, signal), for the error message."""

    @abc.abstractmethod
    def shutdown(self) -> None: ...


class Backend(abc.ABC):
    name: str

    @abc.abstractmethod
    def allocate(self, spec) -> Allocation:
        """Reserve GPUs for ``spec`` or raise GPUNotAvailableError naming what is available."""

    @abc.abstractmethod
    def release(self, allocation: Allocation) -> None: ...

    @abc.abstractmethod
    def start_kernel(self, spec, allocation: Allocation, python: str | None = None) -> KernelHandle:
        """Start a kernel on a node holding ``allocation``; ``python`` is the environment's interpreter."""

    @abc.abstractmethod
    def inventory(self) -> list[dict]:
        """The GPUs this backend can place on: ``[{"index", "type", "name", "used_percent"}]``."""
