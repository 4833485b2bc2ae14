"""Executions: code run on the server's compute backend (the official SDK's ``run_on_gpu`` and
``@podstack.gpu``, ``reference/podstack-sdk-rest.md`` C1-C5).

Point the SDK at the server with ``PODSTACK_NOTEBOOK_SERVICE_URL=http://server:8080`` (or
``podstack.init(api_url=...)``), the same root as ``PODSTACK_REGISTRY_URL``. The GPU options travel
in the code's ``#@podstack`` line (:mod:`..annotation`); what runs where, and the statuses, are
:mod:`..executions`'. Executions belong to the project of the key that submitted them: another
project's key finds none of them (404).
"""

from __future__ import annotations

import contextlib
import json
import time
from typing import Optional

from fastapi import APIRouter, Body, Depends, Header, Query, Request
from pydantic import Field
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from ...errors import ConfigurationError, InvalidArgumentError
from ..annotation import parse_annotation
from ..deps import ForbiddenError, project
from ..executions import TERMINAL, ExecutionManager
from ..state import ProjectContext
from ..wire import JSON, _Body

__all__ = ["router"]

HEARTBEAT = 15.0  # seconds between the stream's keep-alive comments
_CODE_LIMIT = 16 << 20  # characters of code one submission may carry
_CANCEL_WAIT = 10.0  # seconds cancel waits for the execution to stop before it answers


@contextlib.asynccontextmanager
async def _lifespan(app):
    """The server's execution manager lives as long as the server; shutting down cancels what runs."""
    from ...config import settings

    config = app.state.podstack.config
    manager = ExecutionManager(config.backend, max_running=config.max_executions,
                               requirements_folder=settings().home / "server-requirements")
    app.state.executions = manager
    try:
        yield
    finally:
        await run_in_threadpool(manager.close)


router = APIRouter(tags=["executions"], lifespan=_lifespan)


class SubmitIn(_Body):
    code: str = Field(description="Python code; its first line starting `#@podstack` holds the GPU options "
                                  "(`gpu=L40S count=1 fraction=100 timeout=3600 env= pip= uv= requirements=`)")
    project_id: Optional[str] = Field(None, description="the key's project (its id or name); another is refused "
                                                        "with 403")


def _manager(request: Request) -> ExecutionManager:
    manager = getattr(request.app.state, "executions", None)
    if manager is None:
        raise ConfigurationError("the server's compute backend is not running (the server is starting or stopping)")
    return manager


def _public(event: dict) -> dict:
    return {k: v for k, v in event.items() if k != "gap"}


@router.post("/executions/submit", status_code=202, summary="Run code on a GPU session")
def submit(request: Request, body: Optional[SubmitIn] = Body(None),
           code: Optional[str] = Query(None, description="the code, when sent as a query parameter (the legacy "
                                                         "podstack_gpu client)"),
           project_id: Optional[str] = Query(None, description="with `code` as a query parameter"),
           ctx: ProjectContext = Depends(project)):
    """Accept code for execution: `{"execution_id", "status"}` (202). It runs in a fresh session of the
    server's compute backend with the GPUs its `#@podstack` line asks for; follow it with `status`,
    `stream` or `result`. A malformed `#@podstack` line, empty code or options this server cannot
    serve are refused with 400 naming what was wrong."""
    if body is not None:
        code, project_id = body.code, body.project_id if body.project_id is not None else project_id
    if code is None:
        raise InvalidArgumentError('no code: send {"code": "...", "project_id": "..."}')
    if not code.strip():
        raise InvalidArgumentError("the code is empty: there is nothing to run")
    if len(code) > _CODE_LIMIT:
        raise InvalidArgumentError(f"the code has {len(code):,} characters; at most {_CODE_LIMIT:,} are accepted "
                                   f"(send data through artifacts, not inside the code)")
    principal = ctx.principal
    if project_id not in (None, "", principal.project_id, principal.project_name):
        raise ForbiddenError(f"this API key is for project {principal.project_name!r} ({principal.project_id}), "
                             f"not {project_id!r}")
    manager = _manager(request)
    annotation = parse_annotation(code, requirements_folder=manager.requirements_folder)
    execution = manager.submit(principal.project_id, code, annotation.spec, annotation.options)
    return JSON(dict(execution.facts(), message=f"accepted; GPUs asked for: {annotation.spec.describe()}"),
                status_code=202)


@router.get("/executions", summary="This project's executions, newest first")
def list_executions(request: Request, limit: int = Query(50, ge=1, le=1000),
                    status: Optional[str] = Query(None, description="only those in this status"),
                    ctx: ProjectContext = Depends(project)):
    """`{"executions": [status object]}` of the key's project, newest first."""
    found = _manager(request).list(ctx.project_id, status)[:limit]
    return JSON({"executions": [e.facts() for e in found]})


@router.get("/executions/{execution_id}/status", summary="An execution's status")
def execution_status(execution_id: str, request: Request, ctx: ProjectContext = Depends(project)):
    """`status` (pending, queued, provisioning, running, completed, failed, timeout, cancelled),
    `queue_position`, `gpu_type`, `gpu_count`, `gpu_fraction`, times, `gpu_seconds` and `error`."""
    return JSON(_manager(request).get(ctx.project_id, execution_id).facts())


@router.get("/executions/{execution_id}/stream", summary="An execution's events, as server-sent events",
            response_class=StreamingResponse)
async def execution_stream(execution_id: str, request: Request,
                           last_event_id: Optional[str] = Header(None, description="resume after this event"),
                           ctx: ProjectContext = Depends(project)):
    """`text/event-stream`: one `data: {json}` line per event, from the first (or after
    `Last-Event-ID`) as they happen: status events (`status`, `queue_position`, ...) and output
    events (`type`: stdout, stderr or output; `content`). It ends after the last status
    (completed, failed, timeout, cancelled); a `: heartbeat` comment comes every 15 s of silence.
    The key may come as `?token=` (browsers' EventSource cannot send headers)."""
    execution = _manager(request).get(ctx.project_id, execution_id)
    try:
        cursor = int(last_event_id) if last_event_id else 0
    except ValueError:
        raise InvalidArgumentError(f"Last-Event-ID must be an event's number, got {last_event_id!r}") from None

    async def events():
        nonlocal cursor
        yield ": podstack execution stream\n\n"
        while True:
            for event in execution.log.events(after=cursor):
                cursor = max(cursor, event["seq"])
                yield f"id: {event['seq']}\ndata: {json.dumps(_public(event), default=str)}\n\n"
                if event.get("status") in TERMINAL:
                    return
            if execution.terminal and cursor >= execution.log.last_seq:
                return
            if not await execution.log.wait_async(cursor, HEARTBEAT):
                yield ": heartbeat\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


@router.get("/executions/{execution_id}/result", summary="An execution's result (waits for its end)")
async def execution_result(execution_id: str, request: Request,
                           wait: float = Query(3600.0, ge=0, le=86400,
                                               description="seconds to wait for the end (0: answer at once)"),
                           ctx: ProjectContext = Depends(project)):
    """Once the execution has ended (or after `wait` seconds): its status, `output` (everything it
    printed, in order, verbatim), `error` (a failed execution's traceback, or why it could not
    run), `gpu_type`, `gpu_count`, `gpu_seconds`, `duration_seconds`."""
    execution = _manager(request).get(ctx.project_id, execution_id)
    deadline = time.monotonic() + wait
    while not execution.terminal and time.monotonic() < deadline:
        await execution.log.wait_async(execution.log.last_seq, min(30.0, max(0.0, deadline - time.monotonic())))
    return JSON(execution.result())


@router.post("/executions/{execution_id}/cancel", summary="Cancel an execution")
async def cancel_execution(execution_id: str, request: Request, ctx: ProjectContext = Depends(project)):
    """Take a queued execution out of the queue, or interrupt a running one (its kernel is shut
    down if it does not stop within seconds); answers its status once it has stopped
    (`cancelled`), or as it is if it had already ended."""
    manager = _manager(request)
    execution = manager.get(ctx.project_id, execution_id)
    await run_in_threadpool(manager.cancel, execution, f"cancelled by {ctx.principal.who}")
    deadline = time.monotonic() + _CANCEL_WAIT
    while not execution.terminal and time.monotonic() < deadline:
        await execution.log.wait_async(execution.log.last_seq, max(0.0, deadline - time.monotonic()))
    return JSON(execution.facts())
