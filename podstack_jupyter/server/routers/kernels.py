"""Team-mode GPU sessions (``/api/v1/kernels``): started on the server's compute backend, driven
over a websocket that speaks Jupyter's ``v1.kernel.websocket.jupyter.org`` protocol.

See :mod:`podstack_jupyter.server.kernels` for the rules (ownership by project, the grace
period, death, shutdown). Every route checks the API key; a session of another project is
answered 404.
"""

from __future__ import annotations

import asyncio
import json
import struct

from fastapi import APIRouter, Depends, WebSocket
from pydantic import BaseModel, ConfigDict
from starlette.websockets import WebSocketDisconnect

from ...compute.backends._websocket import V1_PROTOCOL, decode_v1
from ...errors import GPUNotAvailableError, NotFoundError, SessionDiedError
from ..deps import _token, project
from ..kernels import CLOSE, ConflictError, TeamKernels, spec_from_request
from ..state import ProjectContext, ServerState
from ..wire import JSON

__all__ = ["router", "team_kernels"]

router = APIRouter(tags=["team sessions"])

_TO_KERNEL = ("shell", "stdin", "control")
KEY_RECHECK = 10.0  # seconds between two checks that an attached websocket's API key is still valid


def team_kernels(state: ServerState) -> TeamKernels:
    """The server's team sessions (started on first use, on ``--backend``)."""
    def make():
        from ...config import settings

        return TeamKernels(state.config.backend or _default_backend(settings().backend), state.config.kernel_grace)

    return state.service("team-kernels", make)


def _default_backend(configured: str) -> str:
    return "local" if configured == "team" else configured


class SessionRequest(BaseModel):
    """What a session asks for (``%%gpu TYPE --count N --fraction P``)."""

    model_config = ConfigDict(extra="forbid")
    type: str | None = None
    count: int = 1
    fraction: int = 100
    # refused with what to do instead (the server builds no per-session environment)
    env: str | None = None
    pip: list[str] = []
    conda: list[str] = []
    requirements: str | None = None


@router.post("/kernels", status_code=201, summary="Start a GPU session")
def start_kernel(body: SessionRequest | None = None, ctx: ProjectContext = Depends(project)):
    """Place a session on the server's compute backend: body ``{"type": "L40S", "count": 1,
    "fraction": 100}`` (all optional: no type takes any free GPU, else the CPU). Answers the
    session (``id``, ``gpus``, ``gpu_type``, ``fraction``); 409 with ``available`` when the
    GPUs cannot be had."""
    spec = spec_from_request(body.model_dump(exclude_defaults=True) if body is not None else {})
    kernels = team_kernels(ctx.state)
    try:
        kernel = kernels.start(ctx.project_id, ctx.principal.who, spec)
    except GPUNotAvailableError as exc:
        return JSON({"error": exc.message, "type": "GPUNotAvailableError", "available": exc.available},
                    status_code=409)
    except SessionDiedError as exc:
        return JSON({"error": exc.message, "type": "SessionDiedError"}, status_code=503)
    return JSON(kernel.describe(), status_code=201)


@router.get("/kernels", summary="This project's GPU sessions")
def list_kernels(ctx: ProjectContext = Depends(project)):
    return JSON([k.describe() for k in team_kernels(ctx.state).of_project(ctx.project_id)])


@router.get("/gpus", summary="The GPUs team sessions are placed on")
def list_gpus(ctx: ProjectContext = Depends(project)):
    """``[{"index", "type", "name", "used_percent", "node"?}]`` of the server's compute backend."""
    return JSON(team_kernels(ctx.state).backend.inventory())


@router.get("/kernels/{kernel_id}", summary="One GPU session")
def get_kernel(kernel_id: str, ctx: ProjectContext = Depends(project)):
    return JSON(team_kernels(ctx.state).get(kernel_id, ctx.project_id).describe())


@router.post("/kernels/{kernel_id}/interrupt", status_code=204, summary="Interrupt what a GPU session runs")
def interrupt_kernel(kernel_id: str, ctx: ProjectContext = Depends(project)):
    team_kernels(ctx.state).get(kernel_id, ctx.project_id).interrupt()


@router.delete("/kernels/{kernel_id}", status_code=204, summary="Stop a GPU session")
def delete_kernel(kernel_id: str, ctx: ProjectContext = Depends(project)):
    team_kernels(ctx.state).delete(kernel_id, ctx.project_id)


@router.websocket("/kernels/{kernel_id}/channels")
async def kernel_channels(websocket: WebSocket, kernel_id: str, ctx: ProjectContext = Depends(project)):
    """The session's channels, relayed as Jupyter's v1 kernel websocket protocol (binary messages)."""
    try:
        kernel = team_kernels(ctx.state).get(kernel_id, ctx.project_id)
    except NotFoundError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    if V1_PROTOCOL not in websocket.scope.get("subprotocols", ()):
        await websocket.close(code=1002, reason=f"only the {V1_PROTOCOL} subprotocol is spoken here")
        return
    try:
        queue = kernel.attach(asyncio.get_running_loop())
    except ConflictError as exc:
        await websocket.close(code=1008, reason=exc.message[:120])
        return
    await websocket.accept(subprotocol=V1_PROTOCOL)
    sending = asyncio.create_task(_send(websocket, queue))
    checking = asyncio.create_task(_check_key(websocket, ctx.state, _token(websocket)))
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                break
            data = message.get("bytes")
            if data is None:
                await websocket.close(code=1003, reason="binary v1 kernel messages only")
                break
            try:
                channel, parts = decode_v1(data)
                header, parent, metadata, content = (json.loads(bytes(p)) for p in parts[:4])
                if channel not in _TO_KERNEL or not all(isinstance(d, dict) for d in (header, parent, metadata,
                                                                                      content)):
                    raise ValueError(channel)
            except (ValueError, IndexError, struct.error):
                await websocket.close(code=1003, reason="not a v1 kernel message for shell, stdin or control")
                break
            msg = {"header": header, "parent_header": parent, "metadata": metadata, "content": content,
                   "buffers": parts[4:]}
            if kernel.relays_on_its_thread:
                kernel.forward(channel, msg)
            else:
                await asyncio.to_thread(kernel.forward, channel, msg)
    except (WebSocketDisconnect, RuntimeError):  # the notebook went away
        pass
    finally:
        kernel.detach(queue)
        sending.cancel()
        checking.cancel()


async def _send(websocket: WebSocket, queue: asyncio.Queue) -> None:
    try:
        while True:
            item = await queue.get()
            if item is CLOSE:
                await websocket.close(code=1011, reason="the GPU session ended")
                return
            await websocket.send_bytes(item)
    except (WebSocketDisconnect, RuntimeError):  # closed under us
        pass


async def _check_key(websocket: WebSocket, state: ServerState, token: str | None) -> None:
    """Close the websocket once its API key is revoked (the session is then reaped after the grace)."""
    while True:
        await asyncio.sleep(KEY_RECHECK)
        if await asyncio.to_thread(state.accounts.authenticate, token) is None:
            try:
                await websocket.close(code=1008, reason="the API key was revoked")
            except RuntimeError:
                pass
            return
