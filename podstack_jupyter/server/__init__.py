"""``podstack server``: the team tracker over HTTP, on PostgreSQL and S3, with API keys and projects.

::

    podstack admin project create nlp                 # prints the project's id
    podstack admin key create --project nlp --user ada  # prints the API key (shown once)
    podstack server --host 0.0.0.0 --port 8080 --db postgresql://u@db/podstack --artifacts s3://bucket/podstack

Then, in every notebook::

    podstack.init(registry_url="http://server:8080", api_key="pjt_...", project_id="<project id>")

and ``podstack.registry`` works against the server exactly as embedded. The official Podstack
SDK works against it unmodified (it is its REST API: ``reference/podstack-sdk-rest.md``).

Structure:

``app``       ``create_app(config)``: the FastAPI app (errors as ``{"error", "type"}``, access log, OpenAPI at
              ``/openapi.json`` and ``/docs``), routers mounted from ``routers.API_ROUTERS`` (under
              ``/api/v1``, behind the API key) and ``routers.PUBLIC_ROUTERS``
``state``     ``ServerState``: the database (migrated on start), the artifact store (checked on start),
              accounts, rate limits, housekeeping; ``ProjectContext``: one request's project clients
``deps``      ``project``: the dependency that checks the key, the rate limit and the project
``accounts``  projects, users, memberships, API keys (keyed hashes), the server secret
``wire``      request bodies and the JSON of each entity (the SDK's fields, plus exact ones)
``routers/``  experiments, runs, metrics, datasets, artifacts, models, health, files (signed URLs), kernels
``kernels``   team mode: GPU sessions on the server's compute backend (``--backend``), relayed to notebooks
              over Jupyter's v1 kernel websocket protocol
``_cli``      ``podstack server`` and ``podstack admin``

Needs the ``server`` extra: ``pip install 'podstack-jupyter[server]'``.
"""

from __future__ import annotations

__all__ = ["create_app", "ServerConfig", "ServerState", "Accounts", "serve"]


def __getattr__(name):
    if name == "create_app":
        from .app import create_app

        return create_app
    if name == "ServerState":
        from .state import ServerState

        return ServerState
    if name == "Accounts":
        from .accounts import Accounts

        return Accounts
    if name == "ServerConfig":
        from .config import ServerConfig

        return ServerConfig
    if name == "serve":
        from ._cli import serve

        return serve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
