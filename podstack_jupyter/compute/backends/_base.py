"""The contract between the session layer and a compute backend.

A backend obtains a live Jupyter kernel somewhere that holds the GPUs a
:class:`~podstack_jupyter.compute.spec.GPUSpec` asks for, and hands back a
:class:`Connection` to it. Everything else (pushing variables, running cells,
relaying output, the agent inside the kernel, marking the kernel as a podstack
session) is the session layer's, the same for every backend.

The session layer calls a backend in this order, for each new session::

    backend.validate(spec)                     # refuse what this backend cannot do, before any work
    allocation = backend.allocate(spec)        # reserve GPUs, or GPUNotAvailableError naming what there is
    environment = backend.prepare(spec, progress)          # packages (--pip, --requirements, --env)
    connection = backend.start_kernel(spec, allocation, environment)
    ...                                        # cells run over the connection
    connection.shutdown(); backend.release(allocation)

``progress(text)`` prints a line into the notebook cell that asked for the
session (environment builds take minutes: say what is happening). If a kernel
started in a *reused* environment dies before it answers, the session layer
calls ``prepare(spec, progress, rebuild=True)`` once and tries again, so a
broken cached environment heals itself.

A backend is a class with a no-argument constructor, found by name through the
entry-point group ``podstack.backends`` (``PODSTACK_BACKEND`` / ``podstack.init(
backend=...)``)::

    [project.entry-points."podstack.backends"]
    ray = "podstack_jupyter.compute.backends.ray:RayBackend"

One instance lives per process; it reads its own settings from
``podstack_jupyter.config.settings()``.

Rules every backend keeps:

* the kernel must not see the notebook's ``PODSTACK_*`` configuration (API keys,
  store URLs with passwords): start it from :func:`kernel_environ`. The session
  layer tells the kernel what it needs (that it is a session, its GPUs) itself;
* ``Connection.death_reason()`` says why a kernel is gone in words a user can act
  on, including what the kernel printed if it died while starting;
* large binary buffers travel as the messages' ``buffers``, never inside JSON.
"""

from __future__ import annotations

import abc
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

__all__ = ["Allocation", "Environment", "Connection", "Backend", "Progress", "kernel_environ"]

Progress = Callable[[str], None]

def kernel_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment for a session's kernel: this process's without any ``PODSTACK_*`` variable
    (API keys, store URLs that may carry passwords stay in the notebook), plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}
    env.update(extra or {})
    return env


@dataclass
class Allocation:
    """GPUs reserved for one session: device indexes, type, and the percentage of each.

    ``handle`` is the backend's own record of the reservation (a Ray placement group, ...).
    """

    gpus: list[int] = field(default_factory=list)
    gpu_type: str | None = None
    fraction: int = 100
    handle: Any = None

    def describe(self) -> str:
        if not self.gpus:
            return "cpu"
        share = f" @{self.fraction}%" if self.fraction < 100 else ""
        return f"{len(self.gpus)}x{self.gpu_type} [{','.join(map(str, self.gpus))}]{share}"


@dataclass
class Environment:
    """The software a session's kernel runs in, as :meth:`Backend.prepare` made it.

    ``name`` is for messages ("default" when the spec asks for no packages);
    ``reused`` says it was built earlier (a cache hit), so a kernel that cannot start
    in it is a reason to rebuild; ``python`` is the interpreter on the kernel's host
    (local backend); ``options`` holds what another backend needs (a Ray ``runtime_env``).
    """

    name: str = "default"
    reused: bool = False
    python: str | None = None
    options: dict = field(default_factory=dict)


class Connection(abc.ABC):
    """A live kernel's Jupyter message channels, however they are carried (ZMQ, a websocket...).

    Messages are dicts as ``jupyter_client.session.Session`` builds them (``header``,
    ``parent_header``, ``metadata``, ``content``, ``msg_type``, ``buffers``); the
    channels are ``shell``, ``iopub``, ``stdin`` and ``control``. ``buffers`` may be
    any bytes-like objects (memoryviews of received frames: no copy).
    ``bytes_sent`` / ``bytes_received`` count the binary buffers moved.
    ``same_host`` is True when the kernel runs on this machine, so that large
    buffers can go through shared memory instead of the connection.
    """

    same_host: bool = False

    def __init__(self) -> None:
        self.bytes_sent = 0
        self.bytes_received = 0

    @abc.abstractmethod
    def send(self, channel: str, msg_type: str, content: dict, metadata: dict | None = None,
             buffers: list | None = None, parent: dict | None = None) -> str:
        """Send a message on ``channel``; returns its ``msg_id``."""

    def forward(self, channel: str, msg: dict) -> None:
        """Send ``msg`` (a whole message from another client: ``header``, ``parent_header``,
        ``metadata``, ``content``, ``buffers``) on ``channel`` with its header untouched, so the
        kernel's replies name that client's ids (the team server relays notebooks' messages so)."""
        raise NotImplementedError(f"{type(self).__name__} cannot relay another client's messages")

    @abc.abstractmethod
    def recv(self, timeout: float) -> tuple[str, dict] | None:
        """The next message from iopub, shell or stdin as ``(channel, msg)``, or None after ``timeout`` s."""

    @abc.abstractmethod
    def interrupt(self) -> None:
        """Interrupt what the kernel is running (as Ctrl-C would)."""

    @abc.abstractmethod
    def is_alive(self) -> bool:
        """Whether the kernel is still there (cheap: called twice a second while a cell runs)."""

    @abc.abstractmethod
    def death_reason(self) -> str:
        """Why the kernel is gone (exit code, signal, lost node; what it printed if it died
        while starting), for the error message."""

    @abc.abstractmethod
    def shutdown(self) -> None:
        """Stop the kernel and close the channels; safe to call twice or on a dead kernel."""

    def drain(self, seconds: float = 0.0) -> None:
        """Read and drop every message that arrives within ``seconds``."""
        deadline = time.monotonic() + seconds
        while self.recv(max(0.0, deadline - time.monotonic())) is not None:
            pass


class Backend(abc.ABC):
    """Obtains kernels for GPU sessions. See the module docstring for the order of calls."""

    name: str

    def validate(self, spec) -> None:
        """Refuse, with InvalidArgumentError naming what to use instead, a spec this backend
        cannot serve (e.g. conda packages where only pip environments can be built)."""

    @abc.abstractmethod
    def inventory(self) -> list[dict]:
        """The GPUs this backend can place on: ``[{"index", "type", "name", "used_percent"}]``
        (a cluster adds ``"node"``)."""

    @abc.abstractmethod
    def allocate(self, spec) -> Allocation:
        """Reserve GPUs for ``spec`` or raise GPUNotAvailableError naming what is available.
        Fast: called before a possibly long environment build."""

    @abc.abstractmethod
    def release(self, allocation: Allocation) -> None:
        """Give back what :meth:`allocate` reserved (called once, after the kernel is shut down)."""

    def prepare(self, spec, progress: Progress, *, rebuild: bool = False) -> Environment:
        """Make the environment ``spec`` asks for (``spec.packages``, ``spec.requirements``),
        reporting progress; ``rebuild``: the reused one could not start a kernel, build it anew.
        The default serves specs that ask for no packages."""
        if spec.needs_environment:
            from ...errors import InvalidArgumentError

            raise InvalidArgumentError(f"the {self.name} backend cannot install packages for a session "
                                       f"(--pip / --requirements / --env)")
        return Environment()

    @abc.abstractmethod
    def start_kernel(self, spec, allocation: Allocation, environment: Environment) -> Connection:
        """Start a kernel that holds ``allocation`` and runs in ``environment``; return its connection.
        It need not be ready yet: the session layer waits for it (and watches ``is_alive``)."""
