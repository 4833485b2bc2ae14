"""A real Jupyter server or JupyterLab process for tests, on a free loopback port with a token.

::

    with jupyter_process(["lab"], root, env, token="t", log_path=log) as base:   # "http://127.0.0.1:PORT"
        httpx.get(f"{base}/api/status", headers={"Authorization": "token t"})

``args`` follow ``jupyter`` (``["server"]`` or ``["lab", ...extra options]``); the process runs in
``root`` with ``env`` and is stopped (terminate, then kill) when the block ends.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def jupyter_env(root: Path, **extra) -> dict:
    """os.environ with this interpreter's scripts first on PATH, a config folder in ``root`` and no
    PODSTACK_* store settings leaking in from the outer shell."""
    env = {**os.environ, "JUPYTER_CONFIG_DIR": str(root / ".jupyter"),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}", **extra}
    for name in ("PODSTACK_TRACKING_URI", "PODSTACK_ARTIFACT_ROOT", "PODSTACK_REGISTRY_URL", "PODSTACK_LOCAL_GPUS",
                 "PODSTACK_BACKEND"):
        env.pop(name, None)
    return env


@contextlib.contextmanager
def jupyter_process(args: list[str], root: Path, env: dict, *, token: str, log_path: Path, timeout: float = 90):
    port = free_port()
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "jupyter", *args, "--no-browser", "--allow-root", f"--ServerApp.port={port}",
             "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root}"],
            cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + timeout
            while True:
                try:
                    urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=2).read()
                    break
                except OSError:
                    if process.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError(f"jupyter {args[0]} did not start: {log_path.read_text()[-3000:]}") from None
                    time.sleep(0.3)
            yield base
        finally:
            process.terminate()
            try:
                process.wait(15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@contextlib.contextmanager
def jupyterlab(root: Path, *, token: str, log_path: Path):
    """A real JupyterLab serving ``root`` (its base URL), quiet: no news or update checks, its own
    podstack home, IPython and settings folders under ``root``."""
    settings = root / ".lab-settings" / "@jupyterlab" / "apputils-extension"
    settings.mkdir(parents=True)
    (settings / "notification.jupyterlab-settings").write_text('{"fetchNews": "false", "checkForUpdates": false}')
    env = jupyter_env(root, PODSTACK_HOME=str(root / ".podstack"), IPYTHONDIR=str(root / ".ipython"),
                      JUPYTERLAB_SETTINGS_DIR=str(root / ".lab-settings"))
    args = ["lab", f"--LabApp.workspaces_dir={root / '.ws'}", "--LabApp.news_url=",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"]
    with jupyter_process(args, root, env, token=token, log_path=log_path) as base:
        yield base


@contextlib.contextmanager
def chromium_page(executable: str, output: Path, *, height: int):
    """A page of Debian's headless Chromium (driven by Playwright, never a downloaded browser), 1400 x
    ``height``; on leaving, the page as it was is saved as ``output/last-page.png``."""
    from playwright.sync_api import sync_playwright

    output.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, headless=True,
                                    args=["--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"])
        context = browser.new_context(viewport={"width": 1400, "height": height}, record_video_dir=None)
        page = context.new_page()
        page.set_default_timeout(60_000)
        try:
            yield page
            page.screenshot(path=str(output / "last-page.png"))
        finally:
            context.close()
            browser.close()
