"""GPU accounting for one machine's devices, shared by the backends that place sessions themselves.

A machine's GPUs are a list of ``{"index", "name", "type"}``; the ledger keeps how many percent
of each device its sessions hold, so two 50% sessions share one GPU and a third is refused.
The local backend keeps one for this machine, the ``jupyter`` backend one for its server's machine.
(The ``ray`` backend leaves the accounting to Ray.)
"""

from __future__ import annotations

import threading

from ...errors import ConfigurationError, GPUNotAvailableError
from ..spec import normalize_gpu_type
from ._base import Allocation

__all__ = ["DeviceLedger", "declared_devices"]


def declared_devices(declaration: str, setting: str) -> list[dict]:
    """``"L40S:2,T4"`` -> three devices; ``setting`` names the variable in errors."""
    devices = []
    for part in filter(None, (p.strip() for p in declaration.split(","))):
        gpu_type, _, count = part.partition(":")
        try:
            gpu_type = normalize_gpu_type(gpu_type)
            count = int(count or 1)
        except ValueError as exc:
            raise ConfigurationError(
                f"{setting} entry {part!r} is invalid ({exc}); write TYPE[:COUNT],... e.g. 'L40S:2,T4'") from None
        for _ in range(count):
            devices.append({"index": len(devices), "name": f"declared {gpu_type}", "type": gpu_type})
    return devices


class DeviceLedger:
    """Which share of each device of one machine is held. ``where`` names the machine in errors
    ("this machine", "the Jupyter server at http://...")."""

    def __init__(self, where: str = "this machine"):
        self.where = where
        self._lock = threading.Lock()
        self._used: dict[int, int] = {}  # device index -> percent allocated

    def inventory(self, devices: list[dict]) -> list[dict]:
        with self._lock:
            return [dict(d, used_percent=self._used.get(d["index"], 0)) for d in devices]

    def allocate(self, spec, devices: list[dict]) -> Allocation:
        """Reserve ``spec``'s share of ``devices`` or raise GPUNotAvailableError naming what there is.
        No type asked and nothing free: the CPU (an empty allocation)."""
        with self._lock:
            if spec.type is None:
                candidates = devices
            else:
                candidates = [d for d in devices if d["type"] == spec.type]
                if not candidates:
                    have = sorted({d["type"] or d["name"] for d in devices})
                    raise GPUNotAvailableError(
                        f"{self.where} has no {spec.type} GPU; it has: {', '.join(have) or 'no GPUs (CPU only)'}. "
                        f"Run %%gpu without a type to use what is there.",
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
