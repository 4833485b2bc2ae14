"""Package environments for local GPU sessions (``--pip``, ``--requirements``, ``--env``).

Each requirement set gets one virtual environment under ``<home>/envs/<key>``,
built once and reused by every session that asks for the same set. It is
*layered* on the notebook's own environment: a ``.pth`` file adds the notebook's
site-packages folders (processing their own ``.pth`` files, so editable installs
work) after the new environment's, so the kernel, cloudpickle and whatever the
notebook already has need not be reinstalled, and the packages asked for win.
This holds when the notebook runs in a virtualenv, whose packages the base
interpreter (what ``venv --system-site-packages`` would layer on) does not have.

The notebook's pip builds it: it sees the layered packages, so it installs only
what is missing and keeps the notebook's versions wherever they satisfy the
request (a value pickled here unpickles there with the same library), and it
never removes a layered package (one outside the new environment), it shadows
it. uv cannot see layered packages (it would install fresh copies of every
dependency, at versions of its choosing), so it builds only when the notebook's
environment has no pip (a virtualenv made by uv). Build output streams into
the cell. The environment is marked complete only after a kernel started in it
answered; a failed build leaves nothing behind. The key covers the notebook's
environment too: two notebooks in different virtualenvs get different layers.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
import site
import subprocess
import sys
from pathlib import Path
from typing import Callable

from ... import config
from ...errors import EnvironmentBuildError
from ..spec import GPUSpec

__all__ = ["ensure_environment", "environment_dir", "notebook_site_dirs"]

_MARKER = ".podstack-complete"
_FORMAT = 2  # bumped when the layout changes: environments of an older format are rebuilt
_LAYERS_PTH = "_podstack_layers.pth"


def notebook_site_dirs() -> list[str]:
    """The site-packages folders this interpreter reads, in order (a virtualenv's, then the base's
    when the virtualenv includes them, and the user's)."""
    dirs = list(site.getsitepackages())
    if site.ENABLE_USER_SITE:
        dirs.append(site.getusersitepackages())
    return [d for d in dict.fromkeys(dirs) if os.path.isdir(d)]


def environment_dir(spec: GPUSpec) -> Path:
    """Where the environment for ``spec`` lives, for this notebook's interpreter and packages."""
    h = hashlib.sha256(spec.environment_key().encode())
    h.update(json.dumps([_FORMAT, sys.version, os.path.realpath(sys.prefix), notebook_site_dirs()]).encode())
    return config.settings().home / "envs" / h.hexdigest()[:16]


def _python_in(env: Path) -> Path:
    return env / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _is_complete(target: Path) -> bool:
    try:
        marker = json.loads((target / _MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("format") == _FORMAT and _python_in(target).exists()


@contextlib.contextmanager
def _locked(path: Path):
    """Hold an exclusive lock on ``path`` (two notebooks building the same environment wait for each other)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        if os.name == "nt":
            import msvcrt

            handle.seek(0)
            msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if os.name == "nt":
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
            else:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def ensure_environment(spec: GPUSpec, progress: Callable[[str], None], check: Callable[[str], None], *,
                       rebuild: bool = False) -> tuple[str, bool]:
    """The interpreter of the environment for ``spec`` and whether it was reused, building it on first
    use (or anew with ``rebuild``). ``check(python)`` must start a kernel there or raise."""
    target = environment_dir(spec)
    with _locked(target.parent.parent / ".locks" / f"env-{target.name}"):
        if _is_complete(target) and not rebuild:
            return str(_python_in(target)), True
        if target.exists():  # a broken or unfinished environment (a crash mid-build, an older format)
            progress(f"[podstack] rebuilding environment {target.name}")
            shutil.rmtree(target)
        try:
            _build(spec, target, progress)
            check(str(_python_in(target)))
            (target / _MARKER).write_text(json.dumps(
                {"format": _FORMAT, "packages": spec.packages, "requirements": spec.requirements,
                 "layers": notebook_site_dirs(), "python": sys.version}))
        except BaseException:
            shutil.rmtree(target, ignore_errors=True)
            raise
    progress(f"[podstack] environment {target.name} ready")
    return str(_python_in(target)), False


def find_uv() -> str | None:
    """uv beside this interpreter (installed in the notebook's virtualenv, activated or not), else on PATH."""
    beside = Path(sys.executable).with_name("uv.exe" if os.name == "nt" else "uv")
    return str(beside) if beside.is_file() else shutil.which("uv")


def pip_available() -> bool:
    """Whether the notebook's environment has pip (a virtualenv made by uv may not)."""
    return importlib.util.find_spec("pip") is not None


def _build(spec: GPUSpec, target: Path, progress: Callable[[str], None]) -> None:
    # Built in place (not renamed into place), so the scripts that packages install keep working shebangs.
    pip_here = pip_available()
    uv = None if pip_here or not spec.use_uv else find_uv()
    what = config.redact(" ".join(spec.packages) + (f" -r {spec.requirements}" if spec.requirements else ""))
    progress(f"[podstack] building environment {target.name} with {'uv' if uv else 'pip'}: {what.strip()}")
    base = getattr(sys, "_base_executable", None) or sys.executable  # the interpreter under any virtualenv
    python = str(_python_in(target))
    if pip_here:
        _run([base, "-m", "venv", "--without-pip", str(target)], progress)
        # the notebook's pip installs into the new environment, resolving against the layered packages
        install = [sys.executable, "-m", "pip", "--python", python, "install", "--disable-pip-version-check",
                   "--progress-bar", "off"]
    elif uv:
        _run([uv, "--color", "never", "venv", "--quiet", "--python", base, str(target)], progress)
        install = [uv, "--color", "never", "pip", "install", "--python", python]
    else:  # neither: the new environment brings its own pip
        _run([base, "-m", "venv", str(target)], progress)
        install = [python, "-m", "pip", "install", "--disable-pip-version-check", "--progress-bar", "off"]
    _layer_on_notebook(python)
    args = list(spec.packages)
    if spec.requirements:
        args += ["-r", str(Path(spec.requirements).resolve())]
    _run(install + args, progress)


def _layer_on_notebook(python: str) -> None:
    """Add the notebook's site-packages after the new environment's own, with their .pth files."""
    own = subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                         capture_output=True, text=True, check=True).stdout.strip()
    Path(own).mkdir(parents=True, exist_ok=True)
    lines = [f"import site; site.addsitedir({d!r})" for d in notebook_site_dirs()]
    Path(own, _LAYERS_PTH).write_text("\n".join(lines) + "\n")


def _run(command: list[str], progress: Callable[[str], None]) -> None:
    tail: list[str] = []
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as process:
        for line in process.stdout:
            line = config.redact(line.rstrip())  # pip echoes the URLs it was given, tokens included
            if line:
                progress(line)
                tail = (tail + [line])[-20:]
    if process.returncode != 0:
        raise EnvironmentBuildError(
            f"building the session environment failed ({Path(command[0]).name} exited with {process.returncode}):\n"
            + "\n".join(tail) + "\nCheck the package names and versions in --pip / --requirements.")
