"""Package environments for GPU sessions (``--pip``, ``--requirements``, ``--env``).

Each requirement set gets one virtual environment under ``<home>/envs/<key>``,
built once and reused by every session that asks for the same set. It layers
on the notebook's own packages (``--system-site-packages``) so the kernel,
cloudpickle and whatever the notebook already has need not be reinstalled.
uv builds it when present (much faster), else pip. Build output streams into
the cell; a failed build leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Callable

from .. import config
from ..errors import EnvironmentBuildError
from .spec import GPUSpec

__all__ = ["ensure_environment", "environment_dir"]


def environment_dir(spec: GPUSpec) -> Path:
    return config.settings().home / "envs" / spec.environment_key()


def _python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def ensure_environment(spec: GPUSpec, progress: Callable[[str], None] = print) -> str:
    """The interpreter of the environment for ``spec``, building it on first use."""
    target = environment_dir(spec)
    if (target / ".podstack-complete").is_file():
        return str(_python_in(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}")
    uv = shutil.which("uv") if spec.use_uv else None
    what = " ".join(spec.packages) + (f" -r {spec.requirements}" if spec.requirements else "")
    progress(f"[podstack] building environment {target.name} with {'uv' if uv else 'pip'}: {what.strip()}")
    try:
        if uv:
            _run([uv, "venv", "--system-site-packages", "--python", sys.executable, str(staging)], progress)
            install = [uv, "pip", "install", "--python", str(_python_in(staging))]
        else:
            _run([sys.executable, "-m", "venv", "--system-site-packages", "--without-pip", str(staging)], progress)
            # pip of the notebook's interpreter installs into the new environment
            install = [sys.executable, "-m", "pip", "--python", str(_python_in(staging)), "install",
                       "--disable-pip-version-check", "--progress-bar", "off"]
        args = list(spec.packages)
        if spec.requirements:
            args += ["-r", str(Path(spec.requirements).resolve())]
        _run(install + args, progress)
        (staging / ".podstack-complete").write_text(what)
        try:
            staging.rename(target)
        except OSError:  # another process finished the same environment first
            shutil.rmtree(staging, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(f"[podstack] environment {target.name} ready")
    return str(_python_in(target))


def _run(command: list[str], progress: Callable[[str], None]):
    tail: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            line = line.rstrip()
            if line:
                progress(line)
                tail = (tail + [line])[-20:]
    if process.returncode != 0:
        raise EnvironmentBuildError(
            f"building the session environment failed ({command[0]} exited with {process.returncode}):\n"
            + "\n".join(tail) + "\nCheck the package names and versions in --pip / --requirements.")
