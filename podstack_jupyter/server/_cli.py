"""``podstack server`` and ``podstack admin``.

::

    podstack server [--host 127.0.0.1] [--port 8080] [--db URL] [--artifacts URL] [--rate-limit N] [--burst N]
                    [--url-expires SECONDS] [--backend NAME] [--kernel-grace SECONDS] [--max-executions N]
    podstack admin project create NAME              # the new project's id, alone on the last line
    podstack admin project list
    podstack admin key create --project NAME_OR_ID [--user NAME]   # the new key, alone on the last line
    podstack admin key revoke KEY_OR_PREFIX
    podstack admin key list [--project NAME_OR_ID]

Every ``admin`` command takes the server's ``--db URL`` (default: the podstack home's SQLite
file, as ``podstack server``) and ``--secret-file`` (default: ``<home>/server-secret``).
"""

from __future__ import annotations

import logging
import sys

__all__ = ["add_parser", "serve"]

_DB_HELP = "tracking database URL: sqlite:///path.db or postgresql://user@host/db (default: the podstack home's)"


def _config(args):
    from .config import ServerConfig

    return ServerConfig(db=args.db, artifacts=getattr(args, "artifacts", None), secret_file=args.secret_file,
                        host=getattr(args, "host", "127.0.0.1"), port=getattr(args, "port", 8080)).resolved()


def serve(config, log_level: str = "info") -> None:
    """Run the server for ``config`` until SIGINT/SIGTERM (in-flight requests are finished first, then
    the process exits with status 0)."""
    import uvicorn

    from .app import create_app

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    for name in ("podstack.server", "podstack.server.access"):
        logger = logging.getLogger(name)
        logger.setLevel(log_level.upper())
        if not logger.handlers:
            logger.addHandler(handler)
        logger.propagate = False
    app = create_app(config)

    class GracefulServer(uvicorn.Server):
        # uvicorn raises SIGTERM/SIGINT again once it has shut down, so a clean stop ended with status
        # -15 (a crash, to a supervisor): here it ends with 0 once the requests in flight are finished;
        # a second signal stops at once
        def handle_exit(self, sig, frame) -> None:
            if self.should_exit:
                self.force_exit = True
            self.should_exit = True

    server = GracefulServer(uvicorn.Config(app, host=config.host, port=config.port, log_level=log_level,
                                           access_log=False, timeout_graceful_shutdown=config.graceful_timeout,
                                           lifespan="on", proxy_headers=True))
    server.run()


def _server(args) -> int:
    config = _config(args)
    config.rate, config.burst = args.rate_limit, args.burst
    config.backend, config.kernel_grace, config.max_executions = args.backend, args.kernel_grace, args.max_executions
    if args.kernel_grace <= 0:
        print(f"--kernel-grace must be above 0 seconds, got {args.kernel_grace:g}", file=sys.stderr)
        return 2
    if args.max_executions < 1:
        print(f"--max-executions must be at least 1, got {args.max_executions}", file=sys.stderr)
        return 2
    if args.backend is not None:
        from ..compute.backends import available_backends

        choices = [name for name in available_backends() if name != "team"]
        if args.backend not in choices:
            print(f"--backend must be one of {', '.join(choices)}, got {args.backend!r}", file=sys.stderr)
            return 2
    if args.url_expires is not None:
        if not 1 <= args.url_expires <= 7 * 24 * 3600:
            print(f"--url-expires must be 1 to 604800 seconds, got {args.url_expires}", file=sys.stderr)
            return 2
        config.upload_expires = config.download_expires = args.url_expires
    try:
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError:
        print("podstack server needs its extra: pip install 'podstack-jupyter[server]'", file=sys.stderr)
        return 1
    print(f"podstack server on http://{config.host}:{config.port} (database {_safe(config.db)}, "
          f"artifacts {config.artifacts})", file=sys.stderr, flush=True)
    serve(config, args.log_level)
    return 0


def _safe(url: str) -> str:
    from ..tracking.store import _safe

    return _safe(url)


def _accounts(args):
    from ..tracking.store.sql import SQLStore
    from .accounts import Accounts, load_secret

    config = _config(args)
    store = SQLStore(config.db)
    return store, Accounts(store.engine, load_secret(config.secret_file))


def _project_create(args) -> int:
    store, accounts = _accounts(args)
    try:
        project = accounts.create_project(args.name)
    finally:
        store.close()
    print(f"project {project['name']!r} created; its id (PODSTACK_PROJECT_ID for clients):", file=sys.stderr)
    print(project["id"])
    return 0


def _project_list(args) -> int:
    from ..tracking._cli import table, to_json, when

    store, accounts = _accounts(args)
    try:
        projects = accounts.list_projects()
    finally:
        store.close()
    if args.json:
        print(to_json(projects))
    else:
        print(table([[p["id"], p["name"], when(p["created_at"])] for p in projects], ["ID", "NAME", "CREATED"],
                    empty="no projects"))
    return 0


def _key_create(args) -> int:
    store, accounts = _accounts(args)
    try:
        project = accounts.find_project(args.project)
        key = accounts.create_key(project["id"], args.user)
    finally:
        store.close()
    who = f" (user {args.user})" if args.user else ""
    print(f"API key for project {project['name']!r}{who}; it is shown only this once (PODSTACK_API_KEY for "
          "clients):", file=sys.stderr)
    print(key)
    return 0


def _key_revoke(args) -> int:
    store, accounts = _accounts(args)
    try:
        key_id = accounts.revoke_key(args.key)
    finally:
        store.close()
    print(f"revoked pjt_{key_id}")
    return 0


def _key_list(args) -> int:
    from ..tracking._cli import table, to_json, when

    store, accounts = _accounts(args)
    try:
        keys = accounts.list_keys(args.project)
    finally:
        store.close()
    if args.json:
        print(to_json(keys))
    else:
        print(table([[f"pjt_{k['id']}", k["project"], k["user"] or "-", when(k["created_at"]),
                      when(k["last_used_at"]), "revoked " + when(k["revoked_at"]) if k["revoked_at"] else "active"]
                     for k in keys], ["KEY", "PROJECT", "USER", "CREATED", "LAST USED", "STATE"], empty="no keys"))
    return 0


def add_parser(subparsers) -> None:
    """``podstack server`` and ``podstack admin``."""
    from ..tracking._cli import arg

    parser = subparsers.add_parser(
        "server", help="run the team server (REST API of the Podstack SDK, API keys, projects)",
        description="Serve the tracker and model registry over HTTP to every notebook of a team (and to the "
                    "official Podstack SDK). Artifact bytes go through signed URLs, never through the API.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--db", metavar="URL", default=None, help=_DB_HELP)
    parser.add_argument("--artifacts", metavar="URL", default=None,
                        help="artifact root: a folder, or s3://bucket/prefix (endpoint and credentials from the AWS "
                             "variables; default: the podstack home's artifact folder)")
    parser.add_argument("--secret-file", metavar="PATH", default=None,
                        help="the secret API keys are hashed and URLs signed with (default <home>/server-secret)")
    parser.add_argument("--rate-limit", type=float, default=200.0, metavar="N",
                        help="requests a second per API key (default 200; 0: no limit)")
    parser.add_argument("--burst", type=float, default=1000.0, metavar="N", help="burst allowed per key (default 1000)")
    parser.add_argument("--url-expires", type=int, default=None, metavar="SECONDS",
                        help="how long a signed artifact URL lives (default: 900 to upload, 300 to download)")
    parser.add_argument("--backend", default=None, metavar="NAME",
                        help="compute backend of team-mode sessions and of submitted code (run_on_gpu, "
                             "@podstack.gpu): local, ray, jupyter (default: PODSTACK_BACKEND of the server, else local)")
    parser.add_argument("--kernel-grace", type=float, default=60.0, metavar="SECONDS",
                        help="how long a team session lives on after its notebook's connection is gone (default 60)")
    parser.add_argument("--max-executions", type=int, default=4, metavar="N",
                        help="executions that run at once; the others wait, queued (default 4)")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    parser.set_defaults(func=_server)

    admin = subparsers.add_parser("admin", help="projects, users and API keys of a podstack server",
                                  description="Manage the projects and API keys of a podstack server (run where "
                                              "its database and secret are reachable).")
    groups = admin.add_subparsers(title="commands", metavar="COMMAND")
    admin.set_defaults(func=lambda args: admin.print_help() or 2)

    def group(name, help_text):
        parser = groups.add_parser(name, help=help_text)
        commands = parser.add_subparsers(title="commands", metavar="COMMAND")
        parser.set_defaults(func=lambda args: parser.print_help() or 2)

        def command(command_name, command_help, func, *arguments):
            sub = commands.add_parser(command_name, help=command_help)
            for a, kw in arguments:
                sub.add_argument(*a, **kw)
            sub.add_argument("--db", metavar="URL", default=None, help=_DB_HELP)
            sub.add_argument("--secret-file", metavar="PATH", default=None, help="the server's secret (as podstack "
                                                                                 "server's)")
            sub.add_argument("--json", action="store_true", help="print JSON instead of a table")
            sub.set_defaults(func=func)

        return command

    command = group("project", "create and list projects")
    command("create", "a new project; prints its id", _project_create, arg("name", metavar="NAME"))
    command("list", "every project", _project_list)
    command = group("key", "create, revoke and list API keys")
    command("create", "a new API key for a project; prints it (shown once)", _key_create,
            arg("--project", required=True, metavar="NAME_OR_ID"),
            arg("--user", metavar="NAME", help="the key's user (created and made a member if needed)"))
    command("revoke", "revoke a key (refused from the next request on)", _key_revoke,
            arg("key", metavar="KEY_OR_PREFIX", help="the key, or the start of its id (pjt_ab12...)"))
    command("list", "every key: id, project, user, created, last used, state", _key_list,
            arg("--project", metavar="NAME_OR_ID", help="only this project's keys"))
