"""The Jupyter server extension: runs, metric histories and registered models of the configured
store, as JSON under ``/podstack-lab/api/`` for the lab extension's sidebar.

Every handler requires an authenticated user (the server's token or login). Reads go through
the public face :mod:`podstack_jupyter.registry` and run in a worker thread, so a slow store does
not block the server.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import tornado.web
from jupyter_server.base.handlers import APIHandler
from jupyter_server.extension.application import ExtensionApp
from jupyter_server.extension.handler import ExtensionHandlerMixin
from traitlets import Int, Unicode

from .. import __version__
from ..errors import InvalidArgumentError, NotFoundError, PodstackError
from . import URL_PREFIX

__all__ = ["PodstackLabApp"]


def _registry():
    from .. import registry

    return registry


def public_url(url: str) -> str:
    """A store URL with its password (if any) replaced by ``***``: safe to show in a browser."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = netloc[0].split(":", 1)[0]
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[1]}"))


def _f64(values) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=np.float64).tobytes()).decode("ascii")


def _number(value):
    """JSON has no NaN or infinity: those travel as the strings "NaN", "Infinity", "-Infinity"
    (what JavaScript's ``Number()`` reads back), never as a silently different number."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    return value


def _run_summary(run: dict) -> dict:
    return {"id": run["id"], "name": run.get("name") or run["id"][:8], "status": run["status"],
            "experiment_id": run["experiment_id"], "start_time": run.get("start_time"),
            "end_time": run.get("end_time"), "metrics": {k: _number(v) for k, v in (run.get("metrics") or {}).items()},
            "params": {k: v for k, v in (run.get("params") or {}).items() if not k.startswith("podstack.")}}


class _Handler(ExtensionHandlerMixin, APIHandler):
    """Errors come back as JSON ``{"message": ...}`` with 400 (bad input), 404 (not found) or 500."""

    async def _reply(self, work, *args) -> None:
        try:
            result = await asyncio.to_thread(work, *args)
        except InvalidArgumentError as exc:
            raise tornado.web.HTTPError(400, str(exc)) from exc
        except NotFoundError as exc:
            raise tornado.web.HTTPError(404, str(exc)) from exc
        except PodstackError as exc:
            raise tornado.web.HTTPError(500, str(exc)) from exc
        self.set_header("Content-Type", "application/json")
        self.finish(json.dumps(result, allow_nan=False, default=str))


class StatusHandler(_Handler):
    @tornado.web.authenticated
    async def get(self):
        def status():
            from .. import config

            settings = config.settings()
            return {"version": __version__, "store": public_url(settings.tracking_url),
                    "artifacts": public_url(settings.artifact_url)}

        await self._reply(status)


class RunsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self):
        experiment_id = self.get_query_argument("experiment_id", None) or None
        try:
            limit = int(self.get_query_argument("max", str(self.extensionapp.max_runs)))
        except ValueError:
            raise tornado.web.HTTPError(400, "max must be a whole number of runs") from None
        if not 1 <= limit <= 1000:
            raise tornado.web.HTTPError(400, f"max must be between 1 and 1000, got {limit}")

        def runs():
            client = _registry().client()
            experiment = client.get_experiment(experiment_id) if experiment_id else None
            found = client.search_runs(experiment_ids=[experiment_id] if experiment_id else None, max_results=limit)
            return {"experiment": {"id": experiment.id, "name": experiment.name} if experiment else None,
                    "runs": [_run_summary(r) for r in found]}

        await self._reply(runs)


class MetricsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self, run_id):
        def metrics():
            client = _registry().client()
            run = client.get_run(run_id)
            series = []
            for key in sorted(run.get("metrics") or {}):
                steps, values, times = client.get_metric_history(run_id, key).to_numpy()
                series.append({"key": key, "n": len(values), "steps": _f64(steps), "values": _f64(values),
                               "times": _f64(times)})
            return {"run": _run_summary(run), "series": series}

        await self._reply(metrics)


class ModelsHandler(_Handler):
    @tornado.web.authenticated
    async def get(self):
        def models():
            found = _registry().model_client().list_registered_models()
            return {"models": [{"id": m.id, "name": m.name, "aliases": dict(m.aliases),
                                "versions": [{"version": v.version, "stage": v.stage, "aliases": list(v.aliases),
                                              "run_id": v.run_id, "created_at": v.created_at} for v in m.versions]}
                               for m in found]}

        await self._reply(models)


class PodstackLabApp(ExtensionApp):
    """Serves the podstack store to the JupyterLab sidebar (``/podstack-lab/api/...``)."""

    name = "podstack_lab"
    description = __doc__

    tracking_uri = Unicode(
        "", config=True,
        help="URL of the tracking store the sidebar shows (sqlite:///path or postgresql://...). Empty: the "
             "store the podstack settings choose (PODSTACK_TRACKING_URI, ~/.podstack/config.toml, else the "
             "SQLite file in PODSTACK_HOME), the same one a notebook uses by default.")
    max_runs = Int(
        50, config=True,
        help="How many of the newest runs the sidebar lists when it does not ask for a number (1-1000).")

    def initialize_settings(self):
        if self.tracking_uri:
            from .. import config

            config.init(tracking_uri=self.tracking_uri)

    def initialize_handlers(self):
        base = f"/{URL_PREFIX}/api"
        self.handlers.extend([
            (f"{base}/status", StatusHandler),
            (f"{base}/runs", RunsHandler),
            (rf"{base}/runs/(?P<run_id>[^/]+)/metrics", MetricsHandler),
            (f"{base}/models", ModelsHandler),
        ])
