"""The server's routers, one module per area, each defining ``router`` (a FastAPI ``APIRouter``).

``API_ROUTERS`` are mounted under ``/api/v1`` behind the API key (each route may take
``ctx: ProjectContext = Depends(project)`` for its project's tracking and model-registry
clients). ``PUBLIC_ROUTERS`` are mounted as they are and authenticate themselves.

Adding an area (the compute executions, the dashboard) is one module and one line here::

    # podstack_jupyter/server/routers/executions.py
    router = APIRouter(tags=["executions"])

    @router.post("/executions/submit")
    def submit(body: SubmitIn, ctx: ProjectContext = Depends(project)): ...

Paths must not collide with the registry's (``/experiments``, ``/runs``, ``/metrics``,
``/datasets``, ``/blobs``, ``/models``, ``/artifact-tags``, ``/project``) or the public ones (``/health``,
``/files``, the dashboard's ``/`` and ``/dashboard/``).
"""

from starlette.convertors import Convertor, register_url_convertor


class _AnyText(Convertor):
    """``{name:text}``: the rest of the path, ``/`` included, and any character (Starlette's own
    ``path`` stops at a newline, which metric keys, tags and names may hold)."""

    regex = "(?s:.+)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("text", _AnyText())

API_ROUTERS = [
    "podstack_jupyter.server.routers.experiments",
    "podstack_jupyter.server.routers.runs",
    "podstack_jupyter.server.routers.metrics",
    "podstack_jupyter.server.routers.datasets",
    "podstack_jupyter.server.routers.artifacts",
    "podstack_jupyter.server.routers.models",
    "podstack_jupyter.server.routers.artifact_tags",
    "podstack_jupyter.server.routers.kernels",
    "podstack_jupyter.server.routers.executions",
]

PUBLIC_ROUTERS = [
    "podstack_jupyter.server.routers.health",
    "podstack_jupyter.server.routers.files",
    "podstack_jupyter.server.routers.dashboard",
]
