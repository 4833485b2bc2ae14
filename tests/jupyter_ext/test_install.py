"""The plain install (``pip install -e .`` / a wheel) gives a working lab extension: JupyterLab
lists the prebuilt extension and the server extension as enabled, with nothing else to run."""

from __future__ import annotations

import re
import subprocess
import sys

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jupyter(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "jupyter", *args], capture_output=True, text=True, timeout=120)
    return ANSI.sub("", done.stdout + done.stderr)


def test_labextension_list_shows_the_prebuilt_extension_enabled():
    listing = _jupyter("labextension", "list")
    assert re.search(r"podstack-jupyterlab v\S+ enabled\s+OK", listing), listing[-2000:]


def test_server_extension_list_shows_the_server_extension_enabled():
    listing = _jupyter("server", "extension", "list")
    assert re.search(r"podstack_jupyter\.jupyter_ext enabled", listing), listing[-2000:]
    assert re.search(r"podstack_jupyter\.jupyter_ext\s+OK", listing), listing[-2000:]
