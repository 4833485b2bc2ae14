"""The ASGI application: ``create_app(config)``.

Routers (``routers/``) are mounted under ``/api/v1``; those listed in ``routers.API_ROUTERS``
depend on :func:`.deps.project` (every route authenticated and scoped to the key's project).
``routers.PUBLIC_ROUTERS`` authenticate themselves (the health check needs nothing; the signed
artifact URLs carry their own signature). Errors of every kind are answered as
``{"error": ..., "type": ...}``; each request is logged as one JSON line on the logger
``podstack.server.access``.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import time
import traceback
import uuid

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from .. import __version__
from ..errors import (ArtifactIntegrityError, AuthenticationError, ConfigurationError, InvalidArgumentError,
                      NotFoundError, PodstackError, RateLimitError, StoreError)
from . import routers
from .config import ServerConfig
from .deps import ForbiddenError, project
from .ratelimit import RateLimiter
from .state import ServerState
from .wire import JSON

__all__ = ["create_app", "status_of"]

log = logging.getLogger("podstack.server")
access_log = logging.getLogger("podstack.server.access")

API_PREFIX = "/api/v1"
# query parameters never written to the access log
_SECRET_QUERY = frozenset({"token", "signature", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Security-Token"})


def status_of(exc: BaseException) -> int:
    """The HTTP status a podstack error is answered with."""
    if isinstance(exc, ForbiddenError):
        return 403
    if isinstance(exc, AuthenticationError):
        return 401
    if isinstance(exc, RateLimitError):
        return 429
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, (InvalidArgumentError, ValueError, TypeError)):
        return 400
    if isinstance(exc, PermissionError):
        return 403
    if isinstance(exc, ArtifactIntegrityError):
        return 409
    if isinstance(exc, (StoreError, ConfigurationError)):
        return 503
    return 500


def _error(status: int, message: str, kind: str, headers: dict | None = None) -> JSON:
    return JSON({"error": message, "type": kind}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PodstackError)
    async def podstack_error(request: Request, exc: PodstackError):
        status = status_of(exc)
        headers = None
        if isinstance(exc, RateLimitError) and exc.retry_after is not None:
            headers = {"Retry-After": RateLimiter.retry_after_header(exc.retry_after)}
        if status >= 500:
            log.error("podstack server: %s %s: %s: %s", request.method, request.url.path, type(exc).__name__,
                      exc.message)
        kind = "AuthenticationError" if isinstance(exc, ForbiddenError) else type(exc).__name__
        return _error(status, exc.message, kind, headers)

    @app.exception_handler(PermissionError)
    async def forbidden(request: Request, exc: PermissionError):
        return _error(403, str(exc), "PermissionError")

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError):
        problems = []
        for error in exc.errors()[:5]:
            where = ".".join(str(p) for p in error.get("loc", ()) if p != "body") or "body"
            problems.append(f"{where}: {error.get('msg', 'invalid')}")
        return _error(400, "invalid request: " + "; ".join(problems), "InvalidArgumentError")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException):
        message = exc.detail if isinstance(exc.detail, str) else json.dumps(exc.detail)
        if exc.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (GET /docs lists them)"
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return _error(exc.status_code, message, "HTTPError", getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception):
        incident = uuid.uuid4().hex[:12]
        log.error("podstack server: internal error %s on %s %s:\n%s", incident, request.method, request.url.path,
                  "".join(traceback.format_exception(exc)))
        return _error(500, f"internal server error (logged as {incident})", "InternalError")


class AccessLog:
    """ASGI middleware: one JSON line per request (method, path without secrets, status, time,
    bytes, key and project) on ``podstack.server.access``."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        start = time.perf_counter()
        facts = {"status": 500, "bytes": 0}

        async def sending(message):
            if message["type"] == "http.response.start":
                facts["status"] = message["status"]
            elif message["type"] == "http.response.body":
                facts["bytes"] += len(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            if access_log.isEnabledFor(logging.INFO):
                access_log.info(self._line(scope, facts, time.perf_counter() - start))

    @staticmethod
    def _line(scope, facts, elapsed) -> str:
        from urllib.parse import parse_qsl, urlencode

        query = scope.get("query_string", b"").decode("latin-1")
        if query:
            pairs = [(k, "***" if k in _SECRET_QUERY else v) for k, v in parse_qsl(query, keep_blank_values=True)]
            query = urlencode(pairs)
        state = scope.get("state") or {}
        principal = state.get("principal")
        client = scope.get("client")
        entry = {"time": round(time.time(), 3), "method": scope.get("method"), "path": scope.get("path"),
                 "query": query or None, "status": facts["status"], "ms": round(elapsed * 1000, 2),
                 "bytes": facts["bytes"], "client": client[0] if client else None,
                 "key": f"pjt_{principal.key_id}" if principal else None,
                 "project": principal.project_id if principal else None}
        return json.dumps(entry, separators=(",", ":"))


def create_app(config: ServerConfig | None = None, *, state: ServerState | None = None) -> FastAPI:
    """The server's ASGI app for ``config`` (opened at start-up: migrations run, stores checked)."""
    state = state or ServerState(config or ServerConfig())

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if state.store is None:
            state.open()
        log.info("podstack server: database %r, artifacts %r", state.store, state.artifacts)
        try:
            yield
        finally:
            state.close()

    app = FastAPI(
        title="podstack server",
        version=__version__,
        description="The team tracker of podstack-jupyter: experiments, runs, metrics, datasets, artifacts and "
                    "models per project, behind API keys. It speaks the REST API of the official Podstack SDK "
                    "(under /api/v1) and the extensions this project's REST store uses. Send `Authorization: "
                    "Bearer <API key>` (and optionally `X-Project-ID`). Errors are `{\"error\": ..., \"type\": ...}`.",
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.podstack = state
    _install_error_handlers(app)
    app.add_middleware(AccessLog)
    for name in routers.API_ROUTERS:
        module = importlib.import_module(name)
        app.include_router(module.router, prefix=API_PREFIX, dependencies=[Depends(project)])
    for name in routers.PUBLIC_ROUTERS:
        module = importlib.import_module(name)
        app.include_router(module.router)
    return app
