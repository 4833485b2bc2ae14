"""A real ``podstack server`` process for tests and benchmarks, and its accounts.

::

    server = LiveServer(db_url, artifacts_url, home=folder, env=s3.env())
    server.start()                        # `podstack server` in a subprocess; returns once /health answers
    project_id, key = server.new_project()  # a fresh project and an API key of it
    server.kill(); server.start()         # SIGKILL and restart on the same port (fault tests)
    server.stop()                         # SIGTERM: a graceful shutdown

The server's secret is given through ``PODSTACK_SERVER_SECRET``, so this process can make
projects and keys in the same database (``accounts``) without a ``podstack admin`` subprocess.
"""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

__all__ = ["LiveServer", "free_port", "point_registry_at", "env_without_podstack", "leave_registry_clean"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LiveServer:
    startup_timeout = 90.0  # seconds (about 2 alone; the machine's cores are shared)

    def __init__(self, db: str, artifacts: str, home, env: dict | None = None, port: int | None = None,
                 extra_args: tuple = ()):
        self.db, self.artifacts, self.home = db, artifacts, Path(home)
        self.port = port or free_port()
        self.secret = secrets.token_hex(32)
        self.extra_args = tuple(extra_args)
        self.env = {**os.environ, **(env or {}), "PODSTACK_HOME": str(self.home), "PODSTACK_SERVER_SECRET": self.secret}
        for name in ("PODSTACK_REGISTRY_URL", "PODSTACK_TRACKING_URI", "PODSTACK_ARTIFACT_ROOT", "PODSTACK_API_KEY",
                     "PODSTACK_PROJECT_ID"):
            self.env.pop(name, None)
        self.process: subprocess.Popen | None = None
        self.log_path = self.home / f"server-{self.port}.log"
        self._accounts = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LiveServer":
        self.home.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "podstack_jupyter.cli", "server", "--port", str(self.port),
                   "--db", self.db, "--artifacts", self.artifacts, *self.extra_args]
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(command, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, start_new_session=True)
        self.wait_ready()
        return self

    def wait_ready(self) -> None:
        import httpx

        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"podstack server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                if httpx.get(self.url + "/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"podstack server not ready after {self.startup_timeout:.0f} s:\n{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    def kill(self) -> None:
        """SIGKILL: no chance to finish anything (a crash)."""
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(30)

    def stop(self) -> int | None:
        """SIGTERM (a graceful shutdown); returns the exit status."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)
        return process.returncode

    @property
    def accounts(self):
        """The server's accounts, from this process (same database, same secret)."""
        if self._accounts is None:
            from podstack_jupyter.server.accounts import Accounts
            from podstack_jupyter.tracking.store.sql import SQLStore

            self._store = SQLStore(self.db)
            self._accounts = Accounts(self._store.engine, bytes.fromhex(self.secret))
        return self._accounts

    def new_project(self, name: str | None = None, user: str | None = None) -> tuple[str, str]:
        """A new project and an API key of it: ``(project id, key)``."""
        project = self.accounts.create_project(name or f"p-{uuid.uuid4().hex[:10]}")
        return project["id"], self.accounts.create_key(project["id"], user)

    def close_accounts(self) -> None:
        if self._accounts is not None:
            self._store.close()
            self._accounts = None


def point_registry_at(server: LiveServer, monkeypatch, project_id: str, key: str) -> None:
    """Make this process's podstack settings name ``server`` (as PODSTACK_* variables)."""
    from podstack_jupyter import config
    from podstack_jupyter.tracking import registry

    monkeypatch.setenv("PODSTACK_REGISTRY_URL", server.url)
    monkeypatch.setenv("PODSTACK_API_KEY", key)
    monkeypatch.setenv("PODSTACK_PROJECT_ID", project_id)
    config.reset()
    registry._reset_store()
    registry._set_current_experiment((None, None))


def env_without_podstack() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("PODSTACK_")}


def leave_registry_clean() -> None:
    """After a test: no store in use, no run left active (a failed test's are ended as killed), no
    current experiment, so the next test starts as a fresh notebook would."""
    from podstack_jupyter.tracking import registry, use_store
    from podstack_jupyter.tracking.runs import active_runs

    use_store(None)
    while active_runs.top() is not None:
        try:
            registry.end_run("killed")
        except Exception:  # noqa: BLE001 - the test already failed; leave a clean state
            active_runs.clear()
    registry._reset_store()
    registry._set_current_experiment((None, None))
