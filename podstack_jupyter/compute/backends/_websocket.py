"""A :class:`~._base.Connection` over a Jupyter server's kernel websocket (``/api/kernels/<id>/channels``).

Jupyter Server, Kernel Gateway and Enterprise Gateway all relay a kernel's channels over one
websocket. With the ``v1.kernel.websocket.jupyter.org`` subprotocol each websocket message is
binary: a table of 64-bit little-endian offsets, the channel name, then the message's parts
as the kernel sent them (header, parent header, metadata, content, and every binary buffer),
so buffers travel as raw bytes and the server forwards them without decoding. A server that
does not offer that subprotocol gets the older framing (JSON text, or a binary blob with
32-bit offsets when there are buffers).

What a server does on its own, and how this connection keeps it from losing data silently:

* it refuses websocket messages above ``websocket_max_message_size`` (tornado's default,
  10 MiB, which Kernel Gateway cannot change). A ``comm_msg`` larger than :data:`CHUNK_BYTES`
  (a pushed 256 MB array) is therefore sent in pieces that a small comm target, installed in
  the kernel by :meth:`KernelWebSocket.prepare_kernel`, joins and hands to the kernel as the
  one message it was; any other message that large is refused before it is sent;
* it drops iopub messages above its rate limits (``iopub_data_rate_limit``,
  ``iopub_msg_rate_limit``), saying so once in the cell. A dropped message may be a cell's
  results, so the connection then counts as dead: the cell fails with the server's reason and
  the next one starts a fresh session, instead of going on with the two sides out of step;
* it restarts a kernel that died. The restarted kernel has lost every variable, so a
  ``restarting`` (or ``dead``) status from the server also counts as death.
"""

from __future__ import annotations

import json
import queue
import struct
import threading
import time
import uuid
from typing import Callable

from jupyter_client.session import Session

from ...errors import PodstackError, SessionDiedError
from ._base import Connection

__all__ = ["KernelWebSocket", "V1_PROTOCOL", "CHUNK_BYTES", "KERNEL_PRELUDE", "encode_v1", "decode_v1",
           "encode_legacy", "decode_legacy"]

V1_PROTOCOL = "v1.kernel.websocket.jupyter.org"
#: the largest websocket message sent as is; tornado refuses above 10 MiB unless told otherwise
CHUNK_BYTES = 8 * 1024 * 1024
_CHUNKS_TARGET = "podstack.chunks"
_RATE_NOTICES = ("IOPub message rate exceeded", "IOPub data rate exceeded")
_DIED = object()  # queued after the last message that arrived before the session died

# Run in the kernel before the session's own bootstrap: the server's PODSTACK_* settings are not
# the notebook's (tracking would write to the wrong folders), the GPUs this session may use, and
# the comm target that joins a large message sent in pieces and hands it to the kernel whole.
KERNEL_PRELUDE = """
def _podstack_prelude(cuda, target):
    import os
    for key in [k for k in os.environ if k.startswith("PODSTACK_")]:
        del os.environ[key]
    if cuda is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = cuda
    manager = get_ipython().kernel.comm_manager
    pending = {}

    def on_open(comm, _):
        def on_piece(msg):
            data = msg["content"]["data"]
            whole = pending.get(data["id"])
            if whole is None:
                whole = pending[data["id"]] = {"bufs": [bytearray(n) for n in data["sizes"]], "at": [0, 0]}
            bufs, at = whole["bufs"], whole["at"]
            for piece in msg.get("buffers") or ():
                piece = memoryview(piece).cast("B")
                while piece.nbytes:
                    while at[1] == len(bufs[at[0]]):  # this buffer is full: the next one
                        at[0], at[1] = at[0] + 1, 0
                    n = min(len(bufs[at[0]]) - at[1], piece.nbytes)
                    bufs[at[0]][at[1]:at[1] + n] = piece[:n]
                    at[1] += n
                    piece = piece[n:]
            if data.get("message") is not None:
                del pending[data["id"]]
                inner = data["message"]
                manager.comm_msg(None, None, dict(msg, header=inner["header"], msg_id=inner["header"]["msg_id"],
                                                  msg_type=inner["header"]["msg_type"], metadata=inner["metadata"],
                                                  content=inner["content"], buffers=bufs))
        comm.on_msg(on_piece)

    manager.register_target(target, on_open)
"""


def encode_v1(channel: str, parts: list) -> list:
    """A v1 websocket message as a list of fragments (no copy of the parts)."""
    channel_bytes = channel.encode()
    sizes = [len(channel_bytes), *(memoryview(p).nbytes for p in parts)]
    offsets = [8 * (len(sizes) + 2)]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    table = struct.pack(f"<{len(offsets) + 1}Q", len(offsets), *offsets)
    return [table, channel_bytes, *parts]


def decode_v1(data) -> tuple[str, list[memoryview]]:
    """``(channel, parts)`` of a v1 websocket message; the parts are views into ``data``."""
    view = memoryview(data)
    (count,) = struct.unpack_from("<Q", view, 0)
    offsets = struct.unpack_from(f"<{count}Q", view, 8)
    channel = bytes(view[offsets[0]:offsets[1]]).decode()
    return channel, [view[offsets[i]:offsets[i + 1]] for i in range(1, count - 1)]


def encode_legacy(channel: str, msg: dict, buffers: list):
    """The pre-v1 framing: JSON text, or with buffers a blob of big-endian 32-bit offsets."""
    body = dict(msg, channel=channel)
    body.pop("buffers", None)
    text = json.dumps(body, default=str)
    if not buffers:
        return text
    parts = [text.encode(), *buffers]
    offsets = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + memoryview(part).nbytes)
    return [struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets), *parts]


def decode_legacy(data) -> tuple[str, dict, list]:
    if isinstance(data, str):
        msg = json.loads(data)
        return msg.pop("channel", "shell"), msg, []
    view = memoryview(data)
    (count,) = struct.unpack_from("!I", view, 0)
    offsets = [*struct.unpack_from(f"!{count}I", view, 4), view.nbytes]
    parts = [view[offsets[i]:offsets[i + 1]] for i in range(count)]
    msg = json.loads(bytes(parts[0]))
    return msg.pop("channel", "shell"), msg, parts[1:]


class KernelWebSocket(Connection):
    """A kernel's channels over a Jupyter server's websocket.

    ``interrupter()`` interrupts the kernel (the server's REST call), ``closer()`` deletes
    it; ``where`` names the server in messages.
    """

    def __init__(self, url: str, headers: dict, *, where: str, interrupter: Callable[[], None],
                 closer: Callable[[], None], open_timeout: float = 30.0, ping_interval: float = 5.0,
                 ping_timeout: float = 20.0):
        super().__init__()
        from websockets.sync.client import connect

        self.where = where
        self._interrupter = interrupter
        self._closer = closer
        # the server signs what it forwards to the kernel with its own key; this one only builds messages
        self._session = Session(key=uuid.uuid4().hex.encode(), session=uuid.uuid4().hex, username="podstack")
        self._inbox: queue.Queue = queue.Queue()
        self._dead: str | None = None
        self._death_read = False
        self._chunk_comm: str | None = None
        self._send_lock = threading.Lock()
        self._closed = False
        try:
            # entered as a context manager (websockets 17 warns otherwise), left in shutdown()
            self._ws = connect(url, subprotocols=[V1_PROTOCOL], additional_headers=headers, compression=None,
                               max_size=None, open_timeout=open_timeout, ping_interval=ping_interval,
                               ping_timeout=ping_timeout, close_timeout=2).__enter__()
        except Exception as exc:
            raise SessionDiedError(f"cannot open the kernel's websocket at {where}: {type(exc).__name__}: {exc}") \
                from exc
        self.protocol = self._ws.subprotocol  # None: the server speaks the older framing
        self._reader = threading.Thread(target=self._read, name="podstack-websocket", daemon=True)
        self._reader.start()

    # -- the kernel side ----------------------------------------------------
    def prepare_kernel(self, cuda_visible_devices: str | None) -> None:
        """Run :data:`KERNEL_PRELUDE` in the kernel and open the comm that joins chunked messages.
        Queued ahead of anything the session sends, so it runs first."""
        self.send("shell", "execute_request", {
            "code": f"{KERNEL_PRELUDE}_podstack_prelude({cuda_visible_devices!r}, {_CHUNKS_TARGET!r})\n"
                    "del _podstack_prelude\n", "silent": True,
            "store_history": False, "user_expressions": {}, "allow_stdin": False, "stop_on_error": False})
        self._chunk_comm = uuid.uuid4().hex
        self.send("shell", "comm_open", {"comm_id": self._chunk_comm, "target_name": _CHUNKS_TARGET, "data": {}})

    # -- Connection -----------------------------------------------------------
    def send(self, channel: str, msg_type: str, content: dict, metadata: dict | None = None,
             buffers: list | None = None, parent: dict | None = None) -> str:
        msg = self._session.msg(msg_type, content=content, metadata=metadata, parent=parent)
        buffers = list(buffers or ())
        size = sum(memoryview(b).nbytes for b in buffers)
        if size + 65536 > CHUNK_BYTES:
            if msg_type != "comm_msg" or channel != "shell" or self._chunk_comm is None:
                raise PodstackError(
                    f"a {msg_type} of {size / 2**20:.0f} MB cannot be sent to {self.where}: a Jupyter server "
                    f"takes websocket messages of at most 10 MiB unless configured otherwise")
            # the kernel handles the last piece: what the message causes (output) answers that piece's id
            sent_id = self._send_chunked(msg, buffers)
        else:
            self._send_message(channel, msg, buffers)
            sent_id = msg["header"]["msg_id"]
        self.bytes_sent += size
        return sent_id

    def forward(self, channel: str, msg: dict) -> None:
        buffers = list(msg.get("buffers") or ())
        self._send_message(channel, msg, buffers)
        self.bytes_sent += sum(memoryview(b).nbytes for b in buffers)

    def _send_message(self, channel: str, msg: dict, buffers: list) -> None:
        pack = self._session.pack
        if self.protocol == V1_PROTOCOL:
            message = encode_v1(channel, [pack(msg["header"]), pack(msg["parent_header"]), pack(msg["metadata"]),
                                          pack(msg["content"]), *buffers])
        else:
            message = encode_legacy(channel, msg, buffers)
        with self._send_lock:
            try:
                self._ws.send(message)
            except Exception as exc:
                self._mark_dead(self._closed_reason(exc))
                raise SessionDiedError(f"the GPU session at {self.where} is gone: {self._dead}") from None

    def _send_chunked(self, msg: dict, buffers: list) -> None:
        """Send ``msg`` as comm messages of at most CHUNK_BYTES of buffers each, to the prelude's comm."""
        upload = uuid.uuid4().hex
        views = [memoryview(b).cast("B") for b in buffers]
        pieces: list = []
        room = CHUNK_BYTES
        first = True

        def flush(last: bool):
            nonlocal pieces, room, first
            data = {"id": upload}
            if first:
                data["sizes"] = [v.nbytes for v in views]
            if last:
                data["message"] = {"header": msg["header"], "metadata": msg["metadata"], "content": msg["content"]}
            chunk = self._session.msg("comm_msg", content={"comm_id": self._chunk_comm, "data": data},
                                      parent=msg["parent_header"] or None)
            self._send_message("shell", chunk, pieces)
            pieces, room, first = [], CHUNK_BYTES, False
            return chunk["header"]["msg_id"]

        for view in views:
            while view.nbytes:
                take = view[:room]
                pieces.append(take)
                room -= take.nbytes
                view = view[take.nbytes:]
                if room == 0:
                    flush(last=False)
        return flush(last=True)

    def recv(self, timeout: float) -> tuple[str, dict] | None:
        """The next message. Once the messages that arrived before the kernel died (or before the
        server dropped one) have been read, only None: ``is_alive`` then says why."""
        if self._death_read:  # nothing after it counts (e.g. the idle status of a cell whose results were dropped)
            time.sleep(min(max(0.0, timeout), 0.05))
            return None
        try:
            got = self._inbox.get(timeout=max(0.0, timeout))
        except queue.Empty:
            return None
        if got is _DIED:
            self._death_read = True
            return None
        return got

    def interrupt(self) -> None:
        if self._dead is None:
            self._interrupter()

    def is_alive(self) -> bool:
        return self._dead is None

    def death_reason(self) -> str:
        return self._dead or "the kernel is running"

    def shutdown(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._mark_dead("the session was shut down")
        try:
            self._ws.close()
        except Exception:  # already gone
            pass
        try:
            self._closer()
        except Exception:  # the server may be gone too; nothing is left to stop
            pass

    # -- reading ----------------------------------------------------------------
    def _read(self) -> None:
        while True:
            try:
                data = self._ws.recv()
            except Exception as exc:
                self._mark_dead(self._closed_reason(exc))
                return
            try:
                channel, msg = self._decode(data)
            except Exception as exc:  # noqa: BLE001 - a message we cannot read: the sides are out of step
                self._mark_dead(f"a message from {self.where} could not be read ({type(exc).__name__}: {exc})")
                return
            self.bytes_received += sum(memoryview(b).nbytes for b in msg["buffers"])
            self._inbox.put((channel, msg))
            self._watch(channel, msg)

    def _decode(self, data) -> tuple[str, dict]:
        if self.protocol == V1_PROTOCOL:
            channel, parts = decode_v1(data)
            unpack = self._session.unpack
            header, parent, metadata, content = (unpack(bytes(p)) for p in parts[:4])
            buffers = parts[4:]
        else:
            channel, body, buffers = decode_legacy(data)
            header, parent = body.get("header") or {}, body.get("parent_header") or {}
            metadata, content = body.get("metadata") or {}, body.get("content") or {}
        return channel, {"header": header, "parent_header": parent, "metadata": metadata, "content": content,
                         "msg_id": header.get("msg_id"), "msg_type": header.get("msg_type"), "buffers": buffers}

    def _watch(self, channel: str, msg: dict) -> None:
        """Notice what the server says about the kernel: restarted (state lost) or output dropped."""
        if channel != "iopub":
            return
        kind, content = msg["msg_type"], msg["content"]
        if kind == "status" and content.get("execution_state") in ("restarting", "dead"):
            self._mark_dead(f"the kernel on {self.where} died and the server "
                            f"{'restarted it' if content['execution_state'] == 'restarting' else 'could not restart it'}"
                            f", so its state is lost")
        elif kind == "stream" and any(notice in content.get("text", "") for notice in _RATE_NOTICES):
            self._mark_dead(
                f"the Jupyter server at {self.where} dropped messages of this session because they exceeded its "
                f"iopub rate limits (it said: {content['text'].strip().splitlines()[0]}); a dropped message may "
                f"hold the cell's results, so the session cannot be trusted any more. Start the server with "
                f"--ZMQChannelsWebsocketConnection.iopub_data_rate_limit=0 and "
                f"--ZMQChannelsWebsocketConnection.iopub_msg_rate_limit=0 (Jupyter Server; or limit_rate=False), "
                f"or print less")

    def _mark_dead(self, reason: str) -> None:
        if self._dead is None:
            self._dead = reason
            if not self._closed:
                self._inbox.put(_DIED)  # read after what arrived before it: a running cell fails in order

    def _closed_reason(self, exc: Exception) -> str:
        if self._closed:
            return "the session was shut down"
        code = getattr(getattr(exc, "rcvd", None), "code", None) or getattr(getattr(exc, "sent", None), "code", None)
        if code == 1009:
            return (f"{self.where} closed the connection: a message was larger than it accepts "
                    f"(its websocket_max_message_size)")
        return f"the connection to {self.where} was lost ({type(exc).__name__}: {exc})"

    def wait_closed(self, timeout: float) -> bool:
        """Whether the reader has stopped within ``timeout`` s (tests)."""
        deadline = time.monotonic() + timeout
        self._reader.join(max(0.0, deadline - time.monotonic()))
        return not self._reader.is_alive()
