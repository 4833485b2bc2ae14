"""The ``team`` backend: sessions handed out by a ``podstack server``, on the server's own compute.

A team runs one ``podstack server`` next to its GPUs (its ``--backend`` places sessions: the
server's own machine by default, or a Ray cluster); every notebook points at it with the
settings it already uses for tracking::

    podstack.init(backend="team", registry_url="http://podstack:8080", api_key="pjt_...", project_id="...")
    # or PODSTACK_BACKEND=team PODSTACK_REGISTRY_URL=... PODSTACK_API_KEY=... PODSTACK_PROJECT_ID=...

``%%gpu L40S`` then asks the server for a session (``POST /api/v1/kernels``) and drives its
kernel over the server's websocket (``/api/v1/kernels/{id}/channels``, Jupyter's
``v1.kernel.websocket.jupyter.org`` protocol: binary frames, large buffers as raw bytes): the
notebook needs no cluster credentials and no route to the GPU nodes, only to the server.

Sessions belong to the key's project; the server stops one when the notebook shuts it down,
when its websocket has been gone beyond the server's grace period, and when the server stops.
A kernel that dies on the server fails the running cell with ``SessionDiedError`` and the
server's reason; a request the server's GPUs cannot satisfy fails with
``GPUNotAvailableError`` naming what the server has (``%gpu gpus`` lists it).

Packages cannot be installed per session (``--pip``, ``--requirements``, ``--env``, conda):
sessions run in the server's environment.
"""

from __future__ import annotations

import threading
from urllib.parse import urlsplit

from ... import config
from ...errors import (AuthenticationError, ConfigurationError, GPUNotAvailableError, InvalidArgumentError,
                       PodstackError, RateLimitError, SessionDiedError)
from ._base import Allocation, Backend, Environment, Progress
from ._websocket import KernelWebSocket

__all__ = ["TeamBackend", "TeamServer", "TeamKernelSocket"]


class TeamServer:
    """The kernel API of one ``podstack server`` (``url``), as one project's API key."""

    def __init__(self, url: str, api_key: str | None, project_id: str | None):
        import httpx

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigurationError(f"the team backend needs the http(s) address of a podstack server in "
                                     f"PODSTACK_REGISTRY_URL (registry_url=...), e.g. http://podstack:8080; got "
                                     f"{config.redact(url)!r}")
        base = url.rstrip("/")
        if base.endswith("/api/v1"):
            base = base[:-len("/api/v1")]
        self.url = base
        self.where = f"the podstack server at {config.redact(base)}"
        self.headers = {"User-Agent": "podstack-jupyter"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        if project_id:
            self.headers["X-Project-ID"] = project_id
        self._timeout = httpx.Timeout(120.0, connect=10.0)
        self._deleted: set[str] = set()

    def request(self, method: str, path: str, **kwargs):
        """The decoded answer of one call; errors as the podstack exception they mean."""
        import httpx

        # a client per call: calls are rare (start, interrupt, stop; cells go over the websocket) and
        # nothing stays open for a notebook to leak
        try:
            with httpx.Client(base_url=self.url + "/api/v1/", headers=self.headers, timeout=self._timeout) as http:
                response = http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise ConfigurationError(f"cannot reach {self.where} ({type(exc).__name__}: {exc}); check "
                                     f"PODSTACK_REGISTRY_URL and that the server runs") from None
        if response.status_code < 300:
            return response.json() if response.content else None
        try:
            body = response.json()
        except ValueError:
            body = {"error": response.text[:300]}
        message = body.get("error") or str(body)
        status = response.status_code
        if status == 401:
            raise AuthenticationError(f"{self.where} refused the API key: {message}. Check podstack.init(api_key=...)"
                                      f" / PODSTACK_API_KEY (podstack admin key create makes one)")
        if status == 403:
            raise AuthenticationError(f"{self.where} refused this request: {message}")
        if status == 429:
            retry = response.headers.get("retry-after")
            raise RateLimitError(f"{self.where} is rate limiting this API key: {message}",
                                 retry_after=float(retry) if retry and retry.replace(".", "", 1).isdigit() else None)
        if status == 409 and body.get("type") == "GPUNotAvailableError":
            raise GPUNotAvailableError(f"{self.where}: {message}", available=body.get("available") or {})
        if status == 404:
            raise SessionDiedError(f"{self.where} has no such GPU session ({message})")
        if status == 400:
            raise InvalidArgumentError(f"{self.where} refused the request: {message}")
        if status == 503 and body.get("type") == "SessionDiedError":
            raise SessionDiedError(f"{self.where} could not start the session: {message}")
        raise PodstackError(f"{method} {path}: {self.where} answered {status}: {message}")

    def start(self, spec) -> dict:
        return self.request("POST", "kernels", json={"type": spec.type, "count": spec.count,
                                                     "fraction": spec.fraction})

    def connect(self, kernel_id: str) -> "TeamKernelSocket":
        ws = ("wss" if self.url.startswith("https") else "ws") + self.url[self.url.index(":"):]
        return TeamKernelSocket(f"{ws}/api/v1/kernels/{kernel_id}/channels", self.headers, where=self.where,
                                interrupter=lambda: self.request("POST", f"kernels/{kernel_id}/interrupt"),
                                closer=lambda: self.delete(kernel_id))

    def delete(self, kernel_id: str) -> None:
        """Stop the session (once: the connection's shutdown and the GPUs' release both ask)."""
        if kernel_id in self._deleted:
            return
        self._deleted.add(kernel_id)
        try:
            self.request("DELETE", f"kernels/{kernel_id}", timeout=30.0)
        except (SessionDiedError, ConfigurationError):  # already gone (reaped), or the server is gone with it
            pass


class TeamKernelSocket(KernelWebSocket):
    """A session's kernel relayed by the team server. The server tells why its kernel died in the
    last ``status`` message it sends (``execution_state: dead``, ``reason``)."""

    def _watch(self, channel: str, msg: dict) -> None:
        content = msg["content"]
        if channel == "iopub" and msg["msg_type"] == "status" and content.get("execution_state") == "dead" \
                and content.get("reason"):
            self._mark_dead(f"{content['reason']} (on {self.where})")
            return
        super()._watch(channel, msg)

    def _closed_reason(self, exc: Exception) -> str:
        close = getattr(exc, "rcvd", None)
        if not self._closed and close is not None:
            if close.code == 1012:
                return f"{self.where} stopped (its sessions stop with it)"
            if close.code in (1008, 1011) and close.reason:
                return f"{self.where} closed the session: {close.reason}"
        return super()._closed_reason(exc)


class TeamBackend(Backend):
    """Sessions handed out by the podstack server at ``PODSTACK_REGISTRY_URL``."""

    name = "team"

    def __init__(self):
        self._lock = threading.Lock()
        self._servers: dict[tuple, TeamServer] = {}

    def _server(self) -> TeamServer:
        s = config.settings()
        if not s.registry_url:
            raise ConfigurationError(
                "the team backend needs a podstack server: set PODSTACK_REGISTRY_URL, PODSTACK_API_KEY and "
                "PODSTACK_PROJECT_ID, or podstack.init(backend='team', registry_url='http://podstack:8080', "
                "api_key='pjt_...', project_id='...')")
        if not s.api_key:
            raise ConfigurationError("the team backend needs the API key of a project on the podstack server: "
                                     "PODSTACK_API_KEY or podstack.init(api_key=...) (podstack admin key create)")
        key = (s.registry_url, s.api_key, s.project_id)
        with self._lock:
            server = self._servers.get(key)
            if server is None:
                server = self._servers[key] = TeamServer(*key)
            return server

    def validate(self, spec) -> None:
        if spec.needs_environment:
            raise InvalidArgumentError(
                "the team backend cannot install packages for a session (--pip / --requirements / --env / conda): "
                "sessions run in the podstack server's environment. Ask its admin to install them there")

    def inventory(self) -> list[dict]:
        return self._server().request("GET", "gpus")

    def allocate(self, spec) -> Allocation:
        """Ask the server for the session; it places the GPUs and starts the kernel at once."""
        server = self._server()
        started = server.start(spec)
        return Allocation(list(started.get("gpus") or []), started.get("gpu_type"), started.get("fraction", 100),
                          handle={"id": started["id"], "server": server})

    def release(self, allocation: Allocation) -> None:
        handle = allocation.handle
        if handle:
            handle["server"].delete(handle["id"])

    def prepare(self, spec, progress: Progress, *, rebuild: bool = False) -> Environment:
        self.validate(spec)
        return Environment(name="the server's")

    def start_kernel(self, spec, allocation: Allocation, environment: Environment) -> TeamKernelSocket:
        handle = allocation.handle
        connection = handle["server"].connect(handle["id"])
        connection.kernel_id = handle["id"]
        # the kernel keeps the GPUs the server pinned it to; the prelude clears the server's PODSTACK_* settings
        connection.prepare_kernel(None)
        return connection
