"""The read-only web dashboard: ``GET /`` (the page), ``/dashboard/static/...`` (its bundle) and
``GET /api/v1/project`` (whom the page's key belongs to).

The page holds no data: it signs in with an API key (kept in the browser tab's session storage
and sent as ``Authorization: Bearer``) and reads everything through the same ``/api/v1``
endpoints the SDKs use, so it sees exactly the key's project and nothing else. Its front end
(``server/dashboard/``: the widgets' views, bundled by esbuild at ``pip install``) is built
output and is served from the installed package; nothing is fetched from elsewhere.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

from fastapi import APIRouter, Depends
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse

from ...errors import NotFoundError
from ..accounts import KEY_PREFIX
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON

__all__ = ["router"]

router = APIRouter(tags=["dashboard"])

_SOURCE = Path(__file__).resolve().parents[1] / "dashboard"
_STATIC = _SOURCE / "static"
_BUNDLE = {"dashboard.js": "text/javascript; charset=utf-8", "dashboard.css": "text/css; charset=utf-8"}
# the page runs only its own bundle; downloads leave through signed URLs (S3's or this server's)
_PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; object-src 'none'; base-uri 'none'; "
                               "frame-ancestors 'none'; form-action 'none'",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}


@functools.lru_cache(maxsize=1)
def _page_settings() -> str:
    """What the page needs from Python: the artifact categories of the widgets' type badges."""
    from ...widgets.artifacts import _CATEGORIES

    settings = {"categories": {category: sorted(extensions) for category, extensions in _CATEGORIES.items()}}
    # safe inside <script type="application/json">: no "</script>" can be formed
    return json.dumps(settings).replace("<", "\\u003c")


@router.get("/", include_in_schema=False)
def page():
    """The dashboard page (its sign-in form first)."""
    if not (_STATIC / "dashboard.js").is_file():
        return PlainTextResponse(
            "podstack server: the dashboard's front end is not built in this installation "
            f"({_STATIC / 'dashboard.js'} is missing). Reinstall podstack-jupyter with pip (its build runs npm), "
            "or run `npm install && npm run build` in a checkout. The API under /api/v1 works without it.",
            status_code=503, headers={"Cache-Control": "no-store"})
    html = (_SOURCE / "index.html").read_text(encoding="utf-8").replace("{{settings}}", _page_settings())
    return HTMLResponse(html, headers=_PAGE_HEADERS)


@router.get("/dashboard/static/{name}", include_in_schema=False)
def static(name: str):
    """The dashboard's bundle (two files, nothing else is served from here)."""
    media = _BUNDLE.get(name)
    if media is None or not (_STATIC / name).is_file():
        raise NotFoundError(f"no dashboard file {name!r}")
    return FileResponse(_STATIC / name, media_type=media, headers={"Cache-Control": "no-cache",
                                                                    "X-Content-Type-Options": "nosniff"})


@router.get("/api/v1/project", summary="The API key's project")
def whoami(ctx: ProjectContext = Depends(project)):
    """`{"id", "name", "user", "key"}`: the project this API key reads and writes (what the dashboard
    shows after signing in), its user if any, and the key's public prefix (never the secret)."""
    principal = ctx.principal
    return JSON({"id": principal.project_id, "name": principal.project_name, "user": principal.user_name,
                 "key": f"{KEY_PREFIX}{principal.key_id}"})
