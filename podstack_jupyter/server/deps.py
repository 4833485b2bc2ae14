"""What every authenticated route depends on: the API key checked, the rate limit taken, the
project resolved (``project`` gives the request's :class:`~.state.ProjectContext`).

The key comes as ``Authorization: Bearer <key>`` (or ``?token=<key>``, which server-sent-event
clients use). ``X-Project-ID``, when sent, must name the key's project (its id or its name):
a key of project A asking for project B is refused with 403; the resources of another project
are simply not found (404).
"""

from __future__ import annotations

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection

from ..errors import AuthenticationError, RateLimitError
from .state import ProjectContext

__all__ = ["project", "ForbiddenError"]


class ForbiddenError(AuthenticationError):
    """The key is valid but not for what was asked (another project): answered with 403."""


def _token(request: HTTPConnection) -> str | None:
    header = request.headers.get("authorization")
    if header:
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return value.strip()
        raise AuthenticationError("the Authorization header must be 'Bearer <API key>'")
    return request.query_params.get("token") or None


async def project(request: HTTPConnection) -> ProjectContext:
    """The request's project context (see the module docstring); websockets are checked the same way."""
    state = request.app.state.podstack
    token = _token(request)
    if token is None:
        raise AuthenticationError("no API key: send 'Authorization: Bearer <key>' (podstack admin key create makes "
                                  "one; podstack.init(api_key=...) or PODSTACK_API_KEY on the client)")
    # a key checked moments ago is answered here; a lookup in the database waits in a worker thread
    principal = state.accounts.known(token) or await run_in_threadpool(state.accounts.authenticate, token)
    if principal is None:
        raise AuthenticationError("invalid or revoked API key")
    request.state.principal = principal
    wait = state.limiter.acquire(principal.key_id)
    if wait > 0:
        raise RateLimitError(f"too many requests with this API key (limit {state.limiter.rate:g}/s); "
                             f"retry after {wait:.2f} s", retry_after=wait)
    asked = request.headers.get("x-project-id")
    if asked and asked not in (principal.project_id, principal.project_name):
        raise ForbiddenError(f"this API key is for project {principal.project_name!r} ({principal.project_id}), "
                             f"not {asked!r}")
    return state.context(principal)
