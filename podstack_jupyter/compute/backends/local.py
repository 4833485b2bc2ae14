"""The embedded backend: an ipykernel subprocess on this machine, pinned to its GPUs.

GPUs are found through NVML (``nvidia-ml-py``) where present; a declared
inventory (``PODSTACK_LOCAL_GPUS="L40S:2,T4"``) stands in for NVML on machines
without it. Placement is accounted per device in percent, so two 50% sessions
share one GPU and a third is refused. The kernel sees only its devices through
``CUDA_VISIBLE_DEVICES``.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
import threading
import uuid

from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpec

from ... import config
from ...errors import ConfigurationError, GPUNotAvailableError
from ..spec import GPUSpec, gpu_type_from_device_name, normalize_gpu_type
from ._base import Allocation, Backend, KernelHandle


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


def _declared_devices(declaration: str) -> list[dict]:
    devices = []
    for part in filter(None, (p.strip() for p in declaration.split(","))):
        gpu_type, _, count = part.partition(":")
        try:
            gpu_type = normalize_gpu_type(gpu_type)
            count = int(count or 1)
        except ValueError as exc:
            raise ConfigurationError(
                f"PODSTACK_LOCAL_GPUS entry {part!r} is invalid ({exc}); write TYPE[:COUNT],... e.g. 'L40S:2,T4'"
            ) from None
        for _ in range(count):
            devices.append({"index": len(devices), "name": f"declared {gpu_type}", "type": gpu_type})
    return devices


class LocalBackend(Backend):
    name = "local"

    def __init__(self):
        self._lock = threading.Lock()
        self._used: dict[int, int] = {}  # device index -> percent allocated

    def _devices(self) -> list[dict]:
        declared = config.settings().local_gpus
        return _declared_devices(declared) if declared else _nvml_devices()

    def inventory(self) -> list[dict]:
        with self._lock:
            return [dict(d, used_percent=self._used.get(d["index"], 0)) for d in self._devices()]

    def allocate(self, spec: GPUSpec) -> Allocation:
        devices = self._devices()
        with self._lock:
            if spec.type is None:
                candidates = devices
            else:
                candidates = [d for d in devices if d["type"] == spec.type]
                if not candidates:
                    have = sorted({d["type"] or d["name"] for d in devices})
                    raise GPUNotAvailableError(
                        f"this machine has no {spec.type} GPU; it has: {', '.join(have) or 'no GPUs (CPU only)'}. "
                        f"Run %%gpu without a type to use what is here.",
                        available=self._summary(devices))
            free = [d for d in candidates if 100 - self._used.get(d["index"], 0) >= spec.fraction]
            if len(free) < spec.count:
                if spec.type is None:
                    return Allocation()  # no type asked: fall back to the CPU
                raise GPUNotAvailableError(
                    f"{spec.count} x {spec.type} at {spec.fraction}% requested, but only {len(free)} of "
                    f"{len(candidates)} {spec.type} GPU(s) have that much free. Stop a session with "
                    f"%gpu stop, or ask for a smaller fraction.",
                    available=self._summary(devices))
            # Prefer devices already partly used by fractional sessions, so whole GPUs stay free.
            free.sort(key=lambda d: (-self._used.get(d["index"], 0) if spec.fraction < 100 else 0, d["index"]))
            chosen = free[:spec.count]
            for d in chosen:
                self._used[d["index"]] = self._used.get(d["index"], 0) + spec.fraction
            return Allocation([d["index"] for d in chosen], chosen[0]["type"], spec.fraction)

    def _summary(self, devices) -> dict:
        summary: dict[str, dict] = {}
        for d in devices:
            entry = summary.setdefault(d["type"] or d["name"], {"total": 0, "free_percent": []})
            entry["total"] += 1
            entry["free_percent"].append(100 - self._used.get(d["index"], 0))
        return summary

    def release(self, allocation: Allocation) -> None:
        with self._lock:
            for index in allocation.gpus:
                self._used[index] = max(0, self._used.get(index, 0) - allocation.fraction)

    def start_kernel(self, spec: GPUSpec, allocation: Allocation, python: str | None = None) -> KernelHandle:
        env = dict(os.environ)
        env.pop("PODSTACK_LOCAL_GPUS", None)  # the kernel sees only what it was given
        env.update({
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, allocation.gpus)),
            "PODSTACK_SESSION": "1",
            "PODSTACK_GPU_TYPE": allocation.gpu_type or "cpu",
            "PODSTACK_GPU_FRACTION": str(allocation.fraction),
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
        })
        km = KernelManager(transport="ipc", ip=os.path.join(_runtime_dir(), f"podstack-{uuid.uuid4().hex[:12]}"))
        km._kernel_spec = KernelSpec(  # noqa: SLF001 - a kernelspec made for this environment, not from disk
            argv=[python or sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}",
                  "--HistoryManager.enabled=False"],
            display_name="podstack session", language="python")
        km.start_kernel(env=env)
        return LocalKernel(km)


_RUNTIME_DIR: str | None = None


def _runtime_dir() -> str:
    # ipc socket paths must stay under the ~107-byte limit of AF_UNIX: a short private temp dir
    global _RUNTIME_DIR
    if _RUNTIME_DIR is None:
        _RUNTIME_DIR = tempfile.mkdtemp(prefix="podstack-")
        atexit.register(shutil.rmtree, _RUNTIME_DIR, True)
    return _RUNTIME_DIR


class LocalKernel(KernelHandle):
    same_host = True

    def __init__(self, km: KernelManager):
        self.km = km
        self.connection_file = km.connection_file
        identity = uuid.uuid4().hex.encode()
        sockets = {"shell": km.connect_shell(identity=identity), "stdin": km.connect_stdin(identity=identity),
                   "iopub": km.connect_iopub(), "control": km.connect_control()}
        super().__init__(km.session, sockets)

    def interrupt(self) -> None:
        if self.km.is_alive():
            self.km.interrupt_kernel()

    def is_alive(self) -> bool:
        return self.km.is_alive()

    def death_reason(self) -> str:
        process = getattr(self.km.provisioner, "process", None)
        code = process.poll() if process is not None else None
        if code is None:
            return "the kernel stopped responding"
        if code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
            return f"the kernel was killed by {name}{hint}"
        return f"the kernel exited with code {code}"

    def shutdown(self) -> None:
        for sock in self.sockets.values():
            sock.close(linger=0)
        try:
            if self.km.has_kernel:
                self.km.shutdown_kernel(now=True)
        except Exception:  # already gone
            pass
        self.km.cleanup_resources()


__all__ = ["LocalBackend", "LocalKernel"]
