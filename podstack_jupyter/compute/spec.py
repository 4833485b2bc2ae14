"""What a GPU session asks for: accelerator type, count, fraction and environment.

A :class:`GPUSpec` is the key of a session: cells with equal specs share one
warm session. What any backend would refuse (an unknown type, a fraction of
150%) is refused here, before anything is started, and every error names the
valid choices; what only some backends can serve (conda packages) is each
backend's own rule (``Backend.validate``).
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..config import redact
from ..errors import InvalidArgumentError

__all__ = ["GPU_TYPES", "ENV_PRESETS", "GPUSpec", "normalize_gpu_type", "gpu_type_from_device_name"]

# The seed's types first, then others a node may have. Memory in GB, for display.
GPU_TYPES = {
    "T4": 16, "L4": 24, "A10": 24, "L40S": 48, "A100-40G": 40, "A100-80G": 80, "H100": 80,
    "H200": 141, "L40": 48, "A10G": 24, "V100": 32, "A6000": 48, "RTX4090": 24, "B200": 192,
}
_ALIASES = {"A100": "A100-40G", "A100-40GB": "A100-40G", "A100-80GB": "A100-80G", "RTX-4090": "RTX4090",
            "RTXA6000": "A6000", "RTX-A6000": "A6000"}

# Pre-built environments of seed 000, as the packages a local build installs.
ENV_PRESETS = {
    "ml": ["numpy", "pandas", "scikit-learn", "matplotlib"],
    "nlp": ["transformers", "datasets", "tokenizers", "sentencepiece"],
    "cv": ["pillow", "opencv-python-headless", "albumentations"],
    "audio": ["librosa", "soundfile"],
    "tabular": ["pandas", "scikit-learn", "xgboost", "lightgbm"],
    "rl": ["gymnasium", "stable-baselines3"],
    "scientific": ["numpy", "scipy", "sympy", "matplotlib"],
}

DEFAULT_TIMEOUT = 3600.0


def normalize_gpu_type(name: str) -> str:
    """``"l40s"`` -> ``"L40S"``; raises InvalidArgumentError listing the valid types."""
    key = name.strip().upper().replace("_", "-")
    key = _ALIASES.get(key, key)
    if key not in GPU_TYPES:
        raise InvalidArgumentError(
            f"unknown GPU type {name!r}; valid types are: {', '.join(GPU_TYPES)}")
    return key


def gpu_type_from_device_name(device: str) -> str | None:
    """Map an NVML device name (``"NVIDIA A100-SXM4-80GB"``) to a podstack type, or None."""
    d = device.upper()
    if "A100" in d:
        return "A100-80G" if "80G" in d else "A100-40G"
    for candidate in ("H200", "H100", "B200", "L40S", "L40", "A10G", "A10", "L4", "T4", "V100",
                      "A6000", "4090"):
        if re.search(rf"(^|[^A-Z0-9]){candidate}([^A-Z0-9]|$)", d):
            return "RTX4090" if candidate == "4090" else candidate
    return None


@dataclass(frozen=True)
class GPUSpec:
    """A request for a GPU session. ``type=None`` takes any free GPU, else the CPU."""

    type: str | None = None
    count: int = 1
    fraction: int = 100
    env: str | None = None
    pip: tuple[str, ...] = ()
    requirements: str | None = None  # path; its content is part of the environment key
    conda: tuple[str, ...] = ()  # served by backends that build conda environments (Ray's runtime_env)
    use_uv: bool = True
    timeout: float = field(default=DEFAULT_TIMEOUT, compare=False)

    def __post_init__(self):
        if self.type is not None:
            object.__setattr__(self, "type", normalize_gpu_type(self.type))
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= 16:
            raise InvalidArgumentError(f"count must be a whole number from 1 to 16, got {self.count!r}")
        if isinstance(self.fraction, bool) or not isinstance(self.fraction, int) or not 1 <= self.fraction <= 100:
            raise InvalidArgumentError(
                f"fraction must be a whole percentage from 1 to 100, got {self.fraction!r}")
        if self.fraction < 100 and self.count > 1:
            raise InvalidArgumentError(
                f"a fraction below 100 shares one GPU; it cannot be combined with count={self.count}")
        if self.env is not None and self.env not in ENV_PRESETS:
            raise InvalidArgumentError(
                f"unknown environment preset {self.env!r}; valid presets are: {', '.join(ENV_PRESETS)}")
        if not (isinstance(self.timeout, (int, float)) and self.timeout > 0):
            raise InvalidArgumentError(f"timeout must be a positive number of seconds, got {self.timeout!r}")
        if self.requirements is not None and not Path(self.requirements).is_file():
            raise InvalidArgumentError(
                f"requirements file {self.requirements!r} does not exist; pass the path of a pip requirements file")
        object.__setattr__(self, "pip", tuple(self.pip))
        object.__setattr__(self, "conda", tuple(self.conda))
        # Whether conda packages (or any environment) can be had is the backend's rule: Backend.validate.

    @property
    def packages(self) -> list[str]:
        """Every package the session's environment needs beyond the notebook's own."""
        return [*ENV_PRESETS.get(self.env or "", []), *self.pip]

    @property
    def needs_environment(self) -> bool:
        """Whether the session needs packages beyond the notebook's own (pip, requirements, preset, conda)."""
        return bool(self.packages or self.requirements or self.conda)

    def environment_key(self) -> str:
        """A stable hash of the requirement set (sorted packages + requirements file content)."""
        h = hashlib.sha256()
        for pkg in sorted(set(self.packages)):
            h.update(pkg.encode() + b"\n")
        if self.requirements:
            h.update(b"--requirements\n" + Path(self.requirements).read_bytes())
        if self.conda:
            h.update(b"--conda\n" + "\n".join(sorted(set(self.conda))).encode())
        return h.hexdigest()[:16]

    def __repr__(self):
        fields = ", ".join(f"{f}={getattr(self, f)!r}" for f in ("type", "count", "fraction", "env"))
        return redact(f"GPUSpec({fields}, pip={self.pip!r}, requirements={self.requirements!r}, conda={self.conda!r})")

    def describe(self) -> str:
        """What the spec asks for, in a few words (``2xL40S env=nlp pip=transformers``); URLs redacted."""
        gpu = self.type or "any"
        if self.count > 1:
            gpu = f"{self.count}x{gpu}"
        if self.fraction < 100:
            gpu += f"@{self.fraction}%"
        extras = []
        if self.env:
            extras.append(f"env={self.env}")
        if self.pip:
            extras.append("pip=" + ",".join(redact(p) for p in self.pip))  # no token of a private index
        if self.requirements:
            extras.append(f"requirements={Path(self.requirements).name}")
        if self.conda:
            extras.append("conda=" + ",".join(self.conda))
        return " ".join([gpu, *extras])
