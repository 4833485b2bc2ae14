"""``podstack.Client``: direct access to notebooks (GPU sessions) and executions, as in seed 000."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from . import config
from .compute import GPUSpec, run_on_gpu, sessions
from .compute.api import GPURunResult

__all__ = ["Client", "Notebook"]


@dataclass
class Notebook:
    """A live GPU session created by :meth:`Client.sync_create_notebook`.

    ``connection_file`` attaches any Jupyter client to its kernel
    (``jupyter console --existing FILE``); ``jupyter_url`` is set only by
    backends that serve JupyterLab (None for the embedded backend).
    """

    id: str
    name: str
    gpu_type: str | None
    connection_file: str | None
    jupyter_url: str | None = None

    def stop(self) -> None:
        sessions.stop(self.id)


class Client:
    """Run code and create notebooks on GPU sessions.

    ``api_key`` / ``api_url`` override the configured ones (``podstack.init``,
    ``PODSTACK_API_KEY``); with none, sessions run on the embedded backend.
    """

    def __init__(self, api_key: str | None = None, api_url: str | None = None):
        if api_key or api_url:
            config.init(api_key=api_key, api_url=api_url)

    def sync_run(self, code: str, gpu_type: str | None = None, timeout: float = 3600.0, **spec) -> GPURunResult:
        """Run ``code`` on a session with ``gpu_type``; returns output, success, duration."""
        return run_on_gpu(code, gpu=gpu_type, timeout=timeout, **spec)

    async def run(self, code: str, gpu_type: str | None = None, timeout: float = 3600.0, **spec) -> GPURunResult:
        return await asyncio.to_thread(self.sync_run, code, gpu_type, timeout, **spec)

    def sync_create_notebook(self, name: str, gpu_type: str | None = None, **spec) -> Notebook:
        """Start (or reuse) a warm session for ``gpu_type`` and describe it."""
        session = sessions.get(GPUSpec(type=gpu_type, **spec))
        return Notebook(id=session.id, name=name, gpu_type=session.allocation.gpu_type,
                        connection_file=getattr(session.kernel, "connection_file", None))

    async def create_notebook(self, name: str, gpu_type: str | None = None, **spec) -> Notebook:
        return await asyncio.to_thread(self.sync_create_notebook, name, gpu_type, **spec)

    def list_notebooks(self) -> list[dict]:
        return sessions.list()
