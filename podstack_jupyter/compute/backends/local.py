"""The embedded backend: an ipykernel subprocess on this machine, pinned to its GPUs.

GPUs are found through NVML (``nvidia-ml-py``) where present; a declared
inventory (``PODSTACK_LOCAL_GPUS="L40S:2,T4"``) stands in for NVML on machines
without it. Placement is accounted per device in percent, so two 50% sessions
share one GPU and a third is refused. The kernel sees only its devices through
``CUDA_VISIBLE_DEVICES``. Packages (``--pip``, ``--requirements``, ``--env``) go
into a cached virtualenv layered on the notebook's own (:mod:`._venvs`); conda
environments are not built here.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

from ... import config
from ...errors import EnvironmentBuildError, InvalidArgumentError
from ..spec import GPUSpec, gpu_type_from_device_name
from ._base import Allocation, Backend, Environment, Progress, kernel_environ
from ._ledger import DeviceLedger, declared_devices
from ._venvs import ensure_environment
from ._zmq import ZMQConnection, connect_sockets


def _nvml_devices() -> list[dict]:
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception:  # no driver on this machine
        return []
    devices = []
    for index in range(pynvml.nvmlDeviceGetCount()):
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
        name = name.decode() if isinstance(name, bytes) else name
        devices.append({"index": index, "name": name, "type": gpu_type_from_device_name(name)})
    return devices


class LocalBackend(Backend):
    """Sessions as ipykernel subprocesses of this notebook, on this machine's GPUs."""

    name = "local"

    def __init__(self):
        self._ledger = DeviceLedger("this machine")

    def _devices(self) -> list[dict]:
        declared = config.settings().local_gpus
        return declared_devices(declared, "PODSTACK_LOCAL_GPUS") if declared else _nvml_devices()

    def validate(self, spec: GPUSpec) -> None:
        if spec.conda:
            raise InvalidArgumentError(
                "conda packages need a conda-based backend; the local backend builds pip/uv environments: "
                "use pip=[...] or requirements=... instead")

    def inventory(self) -> list[dict]:
        return self._ledger.inventory(self._devices())

    def allocate(self, spec: GPUSpec) -> Allocation:
        return self._ledger.allocate(spec, self._devices())

    def release(self, allocation: Allocation) -> None:
        self._ledger.release(allocation)

    def prepare(self, spec: GPUSpec, progress: Progress, *, rebuild: bool = False) -> Environment:
        if not spec.needs_environment:
            return Environment(python=sys.executable)
        python, reused = ensure_environment(spec, progress, self._check_kernel_starts, rebuild=rebuild)
        return Environment(name=os.path.basename(os.path.dirname(os.path.dirname(python))), reused=reused,
                           python=python)

    def start_kernel(self, spec: GPUSpec, allocation: Allocation, environment: Environment) -> "LocalKernel":
        return self._launch(environment.python or sys.executable, {
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, allocation.gpus)),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })

    def _launch(self, python: str, extra_env: dict[str, str]) -> "LocalKernel":
        settings = config.settings()
        # a kernel on this machine shares the notebook's folders, never its credentials
        env = kernel_environ({"PODSTACK_HOME": str(settings.home), **extra_env})
        if settings.artifact_root is not None:
            env["PODSTACK_ARTIFACT_ROOT"] = str(settings.artifact_root)
        name = f"podstack-{uuid.uuid4().hex[:12]}"
        km = KernelManager(transport="ipc", ip=os.path.join(_runtime_dir(), name))
        km._kernel_spec = KernelSpec(  # noqa: SLF001 - a kernelspec made for this environment, not from disk
            argv=[python, "-m", "ipykernel_launcher", "-f", "{connection_file}", "--HistoryManager.enabled=False"],
            display_name="podstack session", language="python")
        # What the kernel prints before (or after) ipykernel captures its output: the reason it died starting.
        console = open(os.path.join(_runtime_dir(), name + ".log"), "w+b")  # noqa: SIM115 - closed at shutdown
        try:
            km.start_kernel(env=env, stdout=console, stderr=console)
        except BaseException:
            console.close()
            raise
        return LocalKernel(km, console)

    def _check_kernel_starts(self, python: str, timeout: float = 120.0) -> None:
        """Start a kernel with ``python`` and import what the session's agent needs, or raise."""
        kernel = self._launch(python, {"CUDA_VISIBLE_DEVICES": ""})
        try:
            deadline = time.monotonic() + timeout
            reply = _reply(kernel, kernel.send("shell", "kernel_info_request", {}), deadline)
            if reply is not None:
                reply = _reply(kernel, kernel.send("shell", "execute_request", {
                    "code": "import cloudpickle", "silent": True, "store_history": False, "user_expressions": {},
                    "allow_stdin": False, "stop_on_error": True}), deadline)
            if reply is None or reply["content"]["status"] != "ok":
                why = (kernel.death_reason() if not kernel.is_alive() else
                       f"it did not answer within {timeout:g}s" if reply is None else
                       f"{reply['content'].get('ename')}: {reply['content'].get('evalue')}")
                raise EnvironmentBuildError(
                    f"the environment was built, but a kernel cannot run in it: {why}. Nothing was kept; "
                    f"check that --pip / --requirements do not replace ipykernel, pyzmq or cloudpickle with "
                    f"versions that do not work here.")
        finally:
            kernel.shutdown()


def _reply(kernel: "LocalKernel", msg_id: str, deadline: float) -> dict | None:
    """The shell reply to ``msg_id``, or None if the kernel died or the deadline passed."""
    while time.monotonic() < deadline:
        got = kernel.recv(min(0.2, deadline - time.monotonic()))
        if got is None:
            if not kernel.is_alive():
                return None
            continue
        channel, msg = got
        if channel == "shell" and (msg.get("parent_header") or {}).get("msg_id") == msg_id:
            return msg
    return None


_RUNTIME_DIR: str | None = None


def _runtime_dir() -> str:
    # ipc socket paths must stay under the ~107-byte limit of AF_UNIX: a short private temp dir
    global _RUNTIME_DIR
    if _RUNTIME_DIR is None:
        _RUNTIME_DIR = tempfile.mkdtemp(prefix="podstack-")
        atexit.register(shutil.rmtree, _RUNTIME_DIR, True)
    return _RUNTIME_DIR


class LocalKernel(ZMQConnection):
    """A kernel subprocess of this notebook: interrupted by signal, watched through its process."""

    same_host = True

    def __init__(self, km: KernelManager, console):
        self.km = km
        self.connection_file = km.connection_file
        self._console = console
        super().__init__(km.session, connect_sockets(km))

    def interrupt(self) -> None:
        if self.km.is_alive():
            self.km.interrupt_kernel()

    def is_alive(self) -> bool:
        return self.km.is_alive()

    def console_tail(self, lines: int = 15, limit: int = 4000) -> str:
        """The last lines the kernel process wrote outside ipykernel's capture (start-up errors, crashes)."""
        try:
            self._console.flush()
            size = os.fstat(self._console.fileno()).st_size
            self._console.seek(max(0, size - limit))
            text = self._console.read().decode(errors="replace")
        except (OSError, ValueError):  # closed
            return ""
        return "\n".join(text.strip().splitlines()[-lines:])

    def death_reason(self) -> str:
        process = getattr(self.km.provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            reason = "the kernel stopped responding"
        elif code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
            reason = f"the kernel was killed by {name}{hint}"
        else:
            reason = f"the kernel exited with code {code}"
        printed = self.console_tail()
        return f"{reason}; it printed:\n{printed}" if printed else reason

    def shutdown(self) -> None:
        self.close_sockets()
        try:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        except Exception:  # already gone
            pass
        self.km.cleanup_resources()
        self._console.close()
        try:
            os.unlink(self._console.name)
        except OSError:
            pass


__all__ = ["LocalBackend", "LocalKernel"]
