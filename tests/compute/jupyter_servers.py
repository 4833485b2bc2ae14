"""Real Jupyter servers for the tests: a jupyter-kernel-gateway and a jupyter_server on loopback.

Each runs as another machine would: its own HOME, none of the notebook's ``PODSTACK_*``
settings, a token. ``start_*`` returns once ``/api`` answers.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import httpx

TOKEN = "podstack-test-token"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str
    token: str
    process: subprocess.Popen
    log: Path
    home: Path

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def kernels(self) -> list[dict]:
        response = httpx.get(self.url + "/api/kernels", headers={"Authorization": f"token {self.token}"})
        response.raise_for_status()
        return response.json()


def _start(kind: str, args: Callable[[int], list[str]], directory: Path, env_extra: dict | None, timeout: float = 120.0) -> Server:
    directory.mkdir(parents=True, exist_ok=True)
    home = directory / "home"  # another machine's home: the notebook's PODSTACK_HOME is not visible there
    home.mkdir(exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PODSTACK_", "JUPYTER_"))}
    env.update(HOME=str(home), JUPYTER_RUNTIME_DIR=str(directory / "runtime"), PYTHONUNBUFFERED="1",
               **(env_extra or {}))
    log = directory / f"{kind}.log"
    port = free_port()
    with open(log, "wb") as out:  # the child keeps its own copy of the file
        process = subprocess.Popen([sys.executable, "-m", *args(port)], env=env, cwd=directory, stdout=out,
                                   stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{kind} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + "/api", headers={"Authorization": f"token {TOKEN}"}, timeout=2).status_code == 200:
                return Server(url, TOKEN, process, log, home)
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise RuntimeError(f"{kind} did not answer within {timeout:g}s:\n{log.read_text()[-3000:]}")


def start_kernel_gateway(directory: Path, *options: str, env: dict | None = None) -> Server:
    return _start("kernel-gateway", lambda port: [
        "kernel_gateway", "--KernelGatewayApp.ip=127.0.0.1", f"--KernelGatewayApp.port={port}",
        f"--KernelGatewayApp.auth_token={TOKEN}", "--KernelGatewayApp.port_retries=0",
        "--JupyterWebsocketPersonality.list_kernels=True", *options], directory, env)


def start_jupyter_server(directory: Path, *options: str, env: dict | None = None) -> Server:
    return _start("jupyter-server", lambda port: [
        "jupyter_server", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}", f"--IdentityProvider.token={TOKEN}",
        "--ServerApp.open_browser=False", "--ServerApp.port_retries=0", f"--ServerApp.root_dir={directory}",
        "--allow-root", *options], directory, env)
