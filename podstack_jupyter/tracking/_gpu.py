"""What GPU a run ran on, for ``podstack.run(track_gpu=True)``: NVML, else nvidia-smi, else the
``CUDA_VISIBLE_DEVICES`` variable, else the CPU."""

from __future__ import annotations

import os
import shutil
import subprocess

__all__ = ["gpu_info", "gpu_tags"]


def _from_nvml() -> list[dict] | None:
    try:
        import pynvml
    except ImportError:
        return None
    try:
        pynvml.nvmlInit()
    except Exception:  # noqa: BLE001 - no driver: fall through to the next source
        return None
    try:
        devices = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            name = pynvml.nvmlDeviceGetName(handle)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle).total
            devices.append({"index": index, "name": name.decode() if isinstance(name, bytes) else name,
                            "memory_mb": int(memory // (1024 * 1024))})
        return devices
    finally:
        pynvml.nvmlShutdown()


def _from_nvidia_smi() -> list[dict] | None:
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    devices = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            devices.append({"index": int(parts[0]), "name": parts[1],
                            "memory_mb": int(float(parts[2])) if parts[2].replace(".", "").isdigit() else None})
    return devices


def gpu_info() -> dict:
    """``{"source": "nvml"|"nvidia-smi"|"env"|"cpu", "count", "devices": [...], "cuda_visible_devices"}``."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    for source, probe in (("nvml", _from_nvml), ("nvidia-smi", _from_nvidia_smi)):
        devices = probe()
        if devices:
            if visible not in (None, ""):
                wanted = {v.strip() for v in visible.split(",")}
                devices = [d for d in devices if str(d["index"]) in wanted] or devices
            return {"source": source, "count": len(devices), "devices": devices, "cuda_visible_devices": visible}
    if visible not in (None, "", "-1"):
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return {"source": "env", "count": len(ids), "devices": [{"index": i} for i in ids],
                "cuda_visible_devices": visible}
    return {"source": "cpu", "count": 0, "devices": [], "cuda_visible_devices": visible}


def gpu_tags(info: dict) -> dict:
    """Run tags describing ``info``: ``gpu`` (e.g. ``2x NVIDIA L40S`` or ``cpu``), ``gpu.count``, ..."""
    if info["count"] == 0:
        return {"gpu": "cpu", "gpu.count": "0"}
    names = [d.get("name") for d in info["devices"] if d.get("name")]
    label = f"{info['count']}x {names[0]}" if names and len(set(names)) == 1 else ", ".join(names) or \
        f"CUDA_VISIBLE_DEVICES={info['cuda_visible_devices']}"
    tags = {"gpu": label, "gpu.count": str(info["count"]), "gpu.source": info["source"]}
    memory = [d.get("memory_mb") for d in info["devices"] if d.get("memory_mb")]
    if memory:
        tags["gpu.memory_mb"] = str(sum(memory))
    if info.get("cuda_visible_devices") not in (None, ""):
        tags["gpu.cuda_visible_devices"] = info["cuda_visible_devices"]
    return tags
