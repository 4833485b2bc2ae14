"""A :class:`~._base.Connection` over the kernel's own ZMQ sockets (what ``jupyter_client`` speaks).

Any backend that can reach a kernel's ports (a local subprocess over ``ipc``, a
node's ports over ``tcp`` or a tunnel) uses this for messages and adds only the
kernel's process control: how to interrupt it, tell it is alive, say why it died.
"""

from __future__ import annotations

import uuid

import zmq
from jupyter_client.connect import ConnectionFileMixin
from jupyter_client.session import Session

from ._base import Connection

__all__ = ["ZMQConnection", "connect_sockets"]


def connect_sockets(kernel: ConnectionFileMixin) -> dict[str, zmq.Socket]:
    """Open the four channels to ``kernel`` (a KernelManager, or any holder of connection info).
    shell and stdin share one identity: the kernel's ``input_request`` (``input()``, agent calls)
    is routed to the stdin socket of the client whose shell request is running."""
    identity = uuid.uuid4().hex.encode()
    return {"shell": kernel.connect_shell(identity=identity), "stdin": kernel.connect_stdin(identity=identity),
            "iopub": kernel.connect_iopub(), "control": kernel.connect_control()}


class ZMQConnection(Connection):
    """Messages over ZMQ sockets ``shell``, ``iopub``, ``stdin``, ``control``.

    Received binary buffers are not copied (``copy=False``): a large pulled array is
    read straight out of the received frame.
    """

    def __init__(self, session: Session, sockets: dict[str, zmq.Socket]):
        super().__init__()
        self.session = session
        self.sockets = sockets
        self.poller = zmq.Poller()
        for name in ("iopub", "shell", "stdin"):
            self.poller.register(sockets[name], zmq.POLLIN)
        self._by_socket = {sock: name for name, sock in sockets.items()}

    @classmethod
    def from_connection_info(cls, info: dict, **kwargs) -> "ZMQConnection":
        """Connect to a kernel described by its connection info (``ip``, ``transport``, the five ports,
        ``key``, ``signature_scheme``), e.g. one a remote node started; ``kwargs`` go to the subclass."""
        holder = ConnectionFileMixin(context=zmq.Context.instance())
        holder.load_connection_info(info)
        return cls(holder.session, connect_sockets(holder), **kwargs)

    def send(self, channel: str, msg_type: str, content: dict, metadata: dict | None = None,
             buffers: list | None = None, parent: dict | None = None) -> str:
        msg = self.session.msg(msg_type, content=content, metadata=metadata, parent=parent)
        self.session.send(self.sockets[channel], msg, buffers=buffers)
        self.bytes_sent += sum(memoryview(b).nbytes for b in buffers or ())
        return msg["header"]["msg_id"]

    def forward(self, channel: str, msg: dict) -> None:
        buffers = list(msg.get("buffers") or ())
        self.session.send(self.sockets[channel], {k: v for k, v in msg.items() if k != "buffers"}, buffers=buffers)
        self.bytes_sent += sum(memoryview(b).nbytes for b in buffers)

    def recv(self, timeout: float) -> tuple[str, dict] | None:
        events = dict(self.poller.poll(max(0, int(timeout * 1000))))
        for sock in (self.sockets["shell"], self.sockets["stdin"], self.sockets["iopub"]):
            if sock in events:
                frames = sock.recv_multipart(copy=False)
                _, frames = self.session.feed_identities(frames, copy=False)
                msg = self.session.deserialize(frames, content=True, copy=False)
                self.bytes_received += sum(memoryview(b).nbytes for b in msg["buffers"])
                return self._by_socket[sock], msg
        return None

    def interrupt(self) -> None:
        """Ask the kernel to interrupt itself over the control channel (``interrupt_request``);
        a backend that owns the kernel's process may signal it instead."""
        self.send("control", "interrupt_request", {})

    def close_sockets(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)
