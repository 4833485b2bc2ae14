"""The ``jupyter`` backend: sessions are kernels of a Jupyter Server, Kernel Gateway or Enterprise Gateway.

Any machine that runs a Jupyter server becomes a ``%%gpu`` target: a GPU box, a JupyterHub
user server, a Kernel Gateway in front of a cluster. Configure it with::

    podstack.init(backend="jupyter", jupyter_url="http://gpu-box:8888", jupyter_token="...")
    # or PODSTACK_BACKEND=jupyter PODSTACK_JUPYTER_URL=... PODSTACK_JUPYTER_TOKEN=...

Kernels are started over the server's REST API (``POST /api/kernels``; ``PODSTACK_JUPYTER_KERNEL``
names the kernel spec, else the server's default), driven over its websocket
(:mod:`._websocket`: the ``v1.kernel.websocket.jupyter.org`` protocol, binary buffers as raw
bytes), interrupted and deleted over REST. The kernel's environment must have ``cloudpickle``
(and ``ipykernel``, as any Jupyter Python kernel has).

GPUs: the server machine's devices are declared with ``PODSTACK_JUPYTER_GPUS`` (``A100-80G:4``,
as ``PODSTACK_LOCAL_GPUS``) or, when not declared, asked once of a short-lived kernel there
(NVML, else ``nvidia-smi``). Each session's kernel sees only its devices
(``CUDA_VISIBLE_DEVICES``, set before any cell runs); this notebook keeps the accounting, so
two 50% sessions share a device. Sessions of other notebooks on the same server are not
counted: give each notebook its own devices, or its own server.

Packages cannot be installed per session here (``--pip``, ``--requirements``, ``--env``,
conda): a server's kernels share its environments. Install them there, or pick a kernel spec
whose environment has them.
"""

from __future__ import annotations

import ast
import threading
import time
import uuid
from urllib.parse import urlsplit

from ... import config
from ...errors import (AuthenticationError, ConfigurationError, InvalidArgumentError, PodstackError,
                       SessionDiedError)
from ..spec import gpu_type_from_device_name
from ._base import Allocation, Backend, Environment, Progress
from ._ledger import DeviceLedger, declared_devices
from ._websocket import KernelWebSocket

__all__ = ["JupyterBackend", "JupyterServer"]

# Asked of a kernel on the server when its GPUs are not declared: their names, by index.
_PROBE = """
def _podstack_gpu_names():
    try:
        import pynvml
        pynvml.nvmlInit()
        names = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            name = pynvml.nvmlDeviceGetName(pynvml.nvmlDeviceGetHandleByIndex(i))
            names.append(name.decode() if isinstance(name, bytes) else name)
        return names
    except Exception:
        pass
    import subprocess
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except Exception:
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()] if out.returncode == 0 else []
"""


class JupyterServer:
    """One Jupyter server's REST API (``url``: its base URL, e.g. ``http://host:8888/user/ana/``)."""

    def __init__(self, url: str, token: str | None, kernel_name: str | None):
        import httpx

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"PODSTACK_JUPYTER_URL must be the http(s) address of a Jupyter server, "
                                     f"e.g. http://gpu-box:8888; got {url!r}")
        self.url = url.rstrip("/") + "/"
        self.host = parts.netloc
        self.kernel_name = kernel_name
        self.headers = {"Authorization": f"token {token}"} if token else {}
        self.http = httpx.Client(base_url=self.url, headers=self.headers, timeout=60.0)

    def request(self, method: str, path: str, **kwargs):
        import httpx

        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"cannot reach the Jupyter server at {self.url} ({type(exc).__name__}: {exc}); "
                                     f"check PODSTACK_JUPYTER_URL and that the server runs") from None
        if response.status_code in (401, 403):
            raise AuthenticationError(
                f"the Jupyter server at {self.url} refused the request ({method} {path}: HTTP "
                f"{response.status_code}); set PODSTACK_JUPYTER_TOKEN (jupyter_token=...) to its token")
        return response

    def start_kernel(self) -> str:
        body = {"name": self.kernel_name} if self.kernel_name else {}
        response = self.request("POST", "api/kernels", json=body)
        if response.status_code not in (200, 201):
            detail = _detail(response)
            hint = (f" (is there a kernel spec named {self.kernel_name!r}? PODSTACK_JUPYTER_KERNEL)"
                    if self.kernel_name else "")
            raise SessionDiedError(f"the Jupyter server at {self.url} did not start a kernel: HTTP "
                                   f"{response.status_code} {detail}{hint}")
        return response.json()["id"]

    def connect(self, kernel_id: str) -> KernelWebSocket:
        ws_url = ("wss" if self.url.startswith("https") else "ws") + self.url[self.url.index(":"):]
        return KernelWebSocket(f"{ws_url}api/kernels/{kernel_id}/channels?session_id={uuid.uuid4().hex}",
                               self.headers, where=f"the Jupyter server at {self.url}",
                               interrupter=lambda: self.interrupt(kernel_id),
                               closer=lambda: self.delete_kernel(kernel_id))

    def interrupt(self, kernel_id: str) -> None:
        self.request("POST", f"api/kernels/{kernel_id}/interrupt")

    def delete_kernel(self, kernel_id: str, within: float = 20.0) -> None:
        """Delete the kernel; a server that is restarting it answers 500 until it is done, so ask again."""
        deadline, pause = time.monotonic() + within, 0.25
        while True:
            response = self.request("DELETE", f"api/kernels/{kernel_id}", timeout=15.0)
            if response.status_code < 500 or time.monotonic() + pause > deadline:
                return
            time.sleep(pause)
            pause = min(2 * pause, 2.0)

    def run_once(self, code: str, expression: str, timeout: float = 120.0):
        """Evaluate ``expression`` after ``code`` in a short-lived kernel; returns its value (a literal)."""
        kernel_id = self.start_kernel()
        connection = self.connect(kernel_id)
        try:
            msg_id = connection.send("shell", "execute_request", {
                "code": code, "silent": True, "store_history": False, "user_expressions": {"value": expression},
                "allow_stdin": False, "stop_on_error": True})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                got = connection.recv(0.5)
                if got is None:
                    if not connection.is_alive():
                        break
                    continue
                channel, msg = got
                if channel == "shell" and msg["parent_header"].get("msg_id") == msg_id:
                    value = msg["content"].get("user_expressions", {}).get("value", {})
                    if value.get("status") != "ok":
                        raise PodstackError(f"a kernel on {self.url} could not run podstack's probe: "
                                            f"{value.get('ename')}: {value.get('evalue')}")
                    return ast.literal_eval(value["data"]["text/plain"])
            raise PodstackError(f"a kernel on {self.url} did not answer within {timeout:g}s "
                                f"({connection.death_reason()})")
        finally:
            connection.shutdown()


def _detail(response) -> str:
    try:
        body = response.json()
    except ValueError:
        return response.text[:200]
    return str(body.get("message") or body.get("reason") or body)[:300]


class JupyterBackend(Backend):
    """Sessions as kernels of the Jupyter server at ``PODSTACK_JUPYTER_URL``."""

    name = "jupyter"

    def __init__(self):
        self._lock = threading.Lock()
        self._servers: dict[tuple, JupyterServer] = {}
        self._ledgers: dict[str, DeviceLedger] = {}
        self._probed: dict[str, list[dict]] = {}

    def _server(self) -> JupyterServer:
        s = config.settings()
        if not s.jupyter_url:
            raise ConfigurationError(
                "the jupyter backend needs the address of a Jupyter server: set PODSTACK_JUPYTER_URL (and "
                "PODSTACK_JUPYTER_TOKEN), or podstack.init(backend='jupyter', jupyter_url='http://host:8888', "
                "jupyter_token=...)")
        key = (s.jupyter_url, s.jupyter_token, s.jupyter_kernel)
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = JupyterServer(*key)
            return server

    def validate(self, spec) -> None:
        if spec.needs_environment:
            raise InvalidArgumentError(
                "the jupyter backend cannot install packages for a session (--pip / --requirements / --env / "
                "conda): the server's kernels share its environments. Install them on the server, or name a "
                "kernel spec whose environment has them with PODSTACK_JUPYTER_KERNEL")

    def _devices(self, server: JupyterServer) -> list[dict]:
        declared = config.settings().jupyter_gpus
        if declared:
            return declared_devices(declared, "PODSTACK_JUPYTER_GPUS")
        with self._lock:
            known = self._probed.get(server.url)
        if known is None:
            names = server.run_once(_PROBE, "_podstack_gpu_names()")
            known = [{"index": i, "name": name, "type": gpu_type_from_device_name(name)} for i, name in enumerate(names)]
            with self._lock:
                self._probed[server.url] = known
        return known

    def _ledger(self, server: JupyterServer) -> DeviceLedger:
        with self._lock:
            ledger = self._ledgers.get(server.url)
            if ledger is None:
                ledger = self._ledgers[server.url] = DeviceLedger(f"the Jupyter server at {server.url}")
            return ledger

    def inventory(self) -> list[dict]:
        server = self._server()
        return [dict(row, node=server.host) for row in self._ledger(server).inventory(self._devices(server))]

    def allocate(self, spec) -> Allocation:
        server = self._server()
        allocation = self._ledger(server).allocate(spec, self._devices(server))
        allocation.handle = server.url
        return allocation

    def release(self, allocation: Allocation) -> None:
        with self._lock:
            ledger = self._ledgers.get(allocation.handle)
        if ledger is not None:
            ledger.release(allocation)

    def prepare(self, spec, progress: Progress, *, rebuild: bool = False) -> Environment:
        self.validate(spec)
        return Environment(name=config.settings().jupyter_kernel or "default")

    def start_kernel(self, spec, allocation: Allocation, environment: Environment) -> KernelWebSocket:
        server = self._server()
        kernel_id = server.start_kernel()
        try:
            connection = server.connect(kernel_id)
        except BaseException:
            server.delete_kernel(kernel_id)
            raise
        connection.kernel_id = kernel_id
        connection.prepare_kernel(",".join(map(str, allocation.gpus)))
        return connection
