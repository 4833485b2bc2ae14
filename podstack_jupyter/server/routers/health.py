"""``GET /health`` (and ``/api/v1/health``): whether the server can use its database, with no key."""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Request

from ... import __version__
from ..wire import JSON

__all__ = ["router"]

router = APIRouter(tags=["health"])


@router.get("/health", summary="Health check")
@router.get("/api/v1/health", summary="Health check", include_in_schema=False)
def health(request: Request):
    """`{"status": "ok", "version", "database": "ok"}` (200), or `"status": "unavailable"` with the
    database's error (503). Needs no API key."""
    state = request.app.state.podstack
    try:
        with state.store.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # noqa: BLE001 - the answer is the error, not a 500
        database = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    ok = database == "ok"
    return JSON({"status": "ok" if ok else "unavailable", "version": __version__, "database": database},
                status_code=200 if ok else 503)
