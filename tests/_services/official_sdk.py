"""The official Podstack SDK (``podstack`` 1.7.0 from the package index) in a virtualenv of its own:
it is also a top-level ``podstack`` package, so it cannot share this project's environment.

::

    python = official_sdk_python(tmp_path_factory)   # made once per test session, or pytest.skip
"""

from __future__ import annotations

import subprocess
import venv
from pathlib import Path

import pytest

__all__ = ["SDK", "official_sdk_python"]

SDK = "podstack==1.7.0"
_made: dict[str, Path] = {}


def official_sdk_python(tmp_path_factory) -> Path:
    """The Python of a virtualenv holding the official SDK (made once per session; skipped if it
    cannot be installed)."""
    if "python" in _made:
        return _made["python"]
    folder = tmp_path_factory.mktemp("official-sdk") / "venv"
    venv.EnvBuilder(with_pip=True).create(folder)
    python = folder / "bin" / "python"
    done = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", SDK],
                          capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.skip(f"could not install the official SDK ({SDK}) from the package index: {done.stderr[-500:]}")
    _made["python"] = python
    return python
