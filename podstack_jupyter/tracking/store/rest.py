"""``RESTStore``: the tracking store of a ``podstack server``, over HTTP.

``podstack.init(registry_url="http://server:8080", api_key="pjt_...", project_id="...")`` (or the
``PODSTACK_REGISTRY_URL`` / ``PODSTACK_API_KEY`` / ``PODSTACK_PROJECT_ID`` variables) makes it
the notebook's store; ``podstack.registry`` then works as embedded. It speaks the REST API of
the official Podstack SDK (``/api/v1``), with the extensions the server documents for what that
API lacks (metrics in packed batches, search, tags, artifacts by content).

What it adds to a plain HTTP client:

* **Metrics in batches.** The metric buffer's batches go out as one request each (many runs and
  keys, arrays packed in base64), never one request per ``log_metrics`` call. Each batch has an
  id the server stores with it: a batch sent again (after an answer that was lost) is stored once.
* **Retries.** A server that cannot be reached, or answers 502/503/504 (restarting, its database
  away), is retried with backoff for ``retry_timeout`` seconds (30) before a ``StoreError``.
  Every write can be repeated safely (runs and versions carry ids chosen here). Metrics the
  store could not send stay in the metric buffer and are sent again, with the same batch ids,
  so a server restarted in the middle of a run loses no point.
* **Artifacts by content through signed URLs.** Bytes go straight to the server's artifact store
  (S3 or the server's own signed URLs), content already there is not sent again, and downloads
  are verified against their sha256.
* **An offline cache.** If the server (or its artifact store) cannot be reached, ``log_artifact``
  keeps the file in ``<artifact folder>/<run_id>/<path>`` (``~/.podstack/artifacts/<run_id>/``, or
  ``$PODSTACK_ARTIFACT_DIR``, as seed 000 says) and uploads it later: from a background thread,
  when the run ends, at exit, or when a later process opens the store. ``download_artifact``
  and ``list_artifacts`` fall back to that cache.

Errors: 401/403 are ``AuthenticationError``, 429 is ``RateLimitError`` (``.retry_after`` from
``Retry-After``), 404 the matching ``NotFoundError``, 400 ``InvalidArgumentError``, the rest
``StoreError``; each with the server's message.
"""

from __future__ import annotations

import array
import atexit
import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
import uuid
import weakref
from pathlib import Path
from urllib.parse import quote

from ... import errors as E
from ...artifacts._base import ArtifactStore, write_verified
from . import _http
from ._base import Store, series_points

__all__ = ["RESTStore", "RESTArtifactStore", "OFFLINE_JOURNAL"]

log = logging.getLogger("podstack.tracking")

_BIG_ENDIAN = sys.byteorder == "big"
_RETRY_STATUSES = frozenset({502, 503, 504})
# the podstack errors a server may name in {"type": ...}
_ERROR_TYPES = {name: getattr(E, name) for name in (
    "InvalidArgumentError", "DuplicateError", "NotFoundError", "ExperimentNotFoundError", "RunNotFoundError", "ModelNotFoundError",
    "ArtifactNotFoundError", "ArtifactIntegrityError", "AuthenticationError", "RateLimitError", "StoreError")}
#: the file in ``<cache>/<run_id>/`` listing that run's artifacts logged while the server was away
OFFLINE_JOURNAL = ".podstack-pending.json"
_STAGING = ".podstack-staging"
_MAX_BATCH_POINTS = 100_000
# the files fields of a model version (the richer registry's)
_VERSION_FILES = ("uri", "model_format_name", "model_format_version", "storage_key", "storage_path", "author")
_PAGE = 1000


class _Unreachable(E.StoreError):
    """The server (or its artifact store) could not be reached within the retry window."""


def _pack(typecode: str, items) -> str:
    packed = array.array(typecode, items)
    if _BIG_ENDIAN:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _q(part: str) -> str:
    """``part`` as one path segment (``/`` encoded; ``.`` and ``..`` too, which URLs would otherwise drop)."""
    quoted = quote(part, safe="")
    return quoted.replace(".", "%2E") if quoted.strip(".") == "" else quoted


def _sha256_file(path) -> tuple[str, int]:
    h, size = hashlib.sha256(), 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
            size += len(chunk)
    return h.hexdigest(), size


class RESTStore(Store):
    """The store of the podstack server at ``url`` (``http(s)://host:port``), as project
    ``project_id`` with ``api_key`` (both default to the podstack settings). ``cache_dir``: where
    artifacts wait while the server cannot be reached (default: see the module docstring)."""

    retry_timeout = 30.0           # seconds a call keeps retrying an unreachable server
    artifact_retry_timeout = 5.0   # ... before an artifact is kept in the offline cache instead
    connect_timeout = 5.0
    read_timeout = 300.0
    drain_interval = 5.0           # seconds between attempts to upload what the offline cache holds

    def __init__(self, url: str, api_key: str | None = None, project_id: str | None = None, *,
                 cache_dir=None):
        import httpx

        from ...config import settings

        if api_key is None or project_id is None:
            resolved = settings()
            api_key = api_key if api_key is not None else resolved.api_key
            project_id = project_id if project_id is not None else resolved.project_id
        base = url.rstrip("/")
        if base.endswith("/api/v1"):
            base = base[:-len("/api/v1")]
        self.url = base
        self.project_id = project_id
        self._api = base + "/api/v1"
        headers = {"User-Agent": "podstack-jupyter"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        if project_id:
            headers["X-Project-ID"] = project_id
        timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
        self._http = httpx.Client(headers=headers, timeout=timeout) if _http.proxied(base) else \
            _http.JSONClient(base, headers, self.connect_timeout, self.read_timeout)
        self._plain = httpx.Client(timeout=timeout)  # signed URLs: no API key goes to the object store
        self._known_runs: set = set()
        self._unacknowledged: list = []  # [(batch id, points)] of a log_metrics call that failed
        self._metrics_lock = threading.Lock()
        self.cache = OfflineArtifacts(Path(cache_dir) if cache_dir is not None else _default_cache_dir(), self)
        self._artifacts = RESTArtifactStore(self)
        self._closed = False
        _open_stores.add(self)
        if self.cache.pending_runs():
            self.cache.start_draining()

    def __repr__(self):
        project = f", project_id={self.project_id!r}" if self.project_id else ""
        return f"RESTStore({self.url!r}{project})"

    def artifact_store(self):
        return self._artifacts

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self.cache.stop()
        self._http.close()
        self._plain.close()

    # -- HTTP ------------------------------------------------------------------------------------
    def _call(self, method: str, path: str, body=None, params=None, *, missing_ok: bool = False,
              retry_for: float | None = None):
        """One API call, retried while the server cannot be reached; the decoded JSON answer
        (``None`` for a 404 when ``missing_ok``)."""
        import httpx

        url = self._api + path
        content = None
        headers = None
        if body is not None:
            content = json.dumps(body, allow_nan=True, separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json"}
        deadline = time.monotonic() + (self.retry_timeout if retry_for is None else retry_for)
        delay = 0.1
        while True:
            problem = None
            try:
                response = self._http.request(method, url, content=content, params=params, headers=headers)
            except (httpx.TransportError, _http.TransportError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code not in _RETRY_STATUSES:
                    return self._answer(response, method, path, missing_ok)
                problem = f"HTTP {response.status_code}: {self._message(response)}"
            if time.monotonic() + delay > deadline:
                raise _Unreachable(f"the podstack server at {self.url} could not be reached for {method} {path} "
                                   f"({problem}); nothing was written by this call. Check that it is running "
                                   "(podstack server) and reachable, then retry")
            time.sleep(delay)
            delay = min(delay * 2, 2.0)

    @staticmethod
    def _message(response) -> str:
        try:
            return str(json.loads(response.content).get("error") or response.text)
        except (ValueError, AttributeError):
            return response.text[:500] or response.reason_phrase

    def _answer(self, response, method: str, path: str, missing_ok: bool):
        status = response.status_code
        if status < 300:
            return json.loads(response.content) if response.content else {}
        if status == 404 and missing_ok:
            return None
        message = self._message(response)
        try:
            kind = json.loads(response.content).get("type")
        except (ValueError, AttributeError):
            kind = None
        if status == 401:
            raise E.AuthenticationError(f"the podstack server at {self.url} refused the API key: {message}. Check "
                                        "podstack.init(api_key=...) / PODSTACK_API_KEY (podstack admin key create "
                                        "makes one)")
        if status == 403:
            raise E.AuthenticationError(f"the podstack server at {self.url} refused this request: {message}")
        if status == 429:
            retry = response.headers.get("retry-after")
            try:
                seconds = float(retry) if retry is not None else None
            except ValueError:
                seconds = None
            raise E.RateLimitError(f"the podstack server at {self.url} is rate limiting this API key: {message}",
                                   retry_after=seconds)
        cls = _ERROR_TYPES.get(kind)
        if status == 404:
            raise (cls if cls is not None and issubclass(cls, E.NotFoundError) else E.NotFoundError)(message)
        if status in (400, 409, 422) and cls is not None and cls not in (E.AuthenticationError, E.RateLimitError):
            raise cls(message)
        if status in (400, 422):
            raise E.InvalidArgumentError(message)
        raise E.StoreError(f"{method} {path}: the podstack server at {self.url} answered {status}: {message}")

    # -- records ---------------------------------------------------------------------------------
    @staticmethod
    def _experiment(j: dict) -> dict:
        return {"id": j["id"], "name": j["name"], "description": j.get("description"), "tags": j.get("tags") or {},
                "created_at": j.get("created")}

    @staticmethod
    def _run(j: dict) -> dict:
        return {"id": j["id"], "experiment_id": j["experiment_id"], "name": j.get("name"),
                "parent_run_id": j.get("parent_run_id"), "status": j["status"], "start_time": j.get("started"),
                "end_time": j.get("ended"), "source": j.get("source"), "gpu": j.get("gpu"),
                "params": j.get("params") or {}, "tags": j.get("tags") or {}, "metrics": j.get("metrics") or {}}

    @staticmethod
    def _dataset(j: dict, context: bool = False) -> dict:
        record = {"id": j["id"], "name": j["name"], "digest": j.get("digest") or "",
                  "source_type": j.get("source_type") or "local", "source": j.get("source") or "",
                  "schema": j.get("schema") or {}, "profile": j.get("profile") or {}, "tags": j.get("tags") or {},
                  "created_at": j.get("created") if j.get("created") is not None else j.get("created_at")}
        if context and "context" in j:
            record["context"] = j["context"]
        return record

    @staticmethod
    def _version(j: dict) -> dict:
        return {"id": j["id"], "model_id": j["model_id"], "version": j["version"], "run_id": j.get("run_id"),
                "stage": j["stage"], "source": j.get("source"), "framework": j.get("framework"),
                "description": j.get("description"), "created_at": j.get("created"), "updated_at": j.get("updated"),
                **(j.get("exact") or {})}

    def _model(self, j: dict) -> dict:
        return {"id": j["id"], "name": j["name"], "description": j.get("description"), "tags": j.get("tags") or {},
                "created_at": j.get("created"), "updated_at": j.get("updated"),
                "versions": [self._version(v) for v in j.get("versions") or []],
                "aliases": {a: int(v) for a, v in (j.get("aliases") or {}).items()}, **(j.get("exact") or {})}

    def _pages(self, path: str, field: str) -> list:
        found, offset = [], 0
        while True:
            page = self._call("GET", path, params={"limit": _PAGE, "offset": offset})[field]
            found += page
            if len(page) < _PAGE:
                return found
            offset += _PAGE

    # -- experiments -------------------------------------------------------------------------------
    def ensure_experiment(self, experiment_id, name, created_at, description=None, tags=None):
        body = {"name": name, "description": description, "tags": tags, "if_exists": "return"}
        return self._experiment(self._call("POST", "/experiments", body)["experiment"])

    def get_experiment(self, experiment_id):
        found = self._call("GET", f"/experiments/{_q(experiment_id)}", missing_ok=True)
        return None if found is None else self._experiment(found)

    def get_experiment_by_name(self, name):
        found = self._call("GET", f"/experiments/name/{_q(name)}", missing_ok=True)
        return None if found is None else self._experiment(found)

    def list_experiments(self):
        return [self._experiment(j) for j in self._pages("/experiments", "experiments")]

    # -- runs ------------------------------------------------------------------------------------
    def create_run(self, run):
        body = {"id": run["id"], "experiment_id": run["experiment_id"], "name": run.get("name"),
                "tags": run.get("tags") or {}, "parent_run_id": run.get("parent_run_id"),
                "source": run.get("source"), "gpu": run.get("gpu")}
        self._call("POST", "/runs", body)
        self._known_runs.add(run["id"])

    def update_run(self, run_id, fields):
        return self._run(self._call("PATCH", f"/runs/{_q(run_id)}", self._run_changes(run_id, fields)))

    def _run_changes(self, run_id, fields) -> dict:
        """The PATCH body of ``fields``; before an end, artifacts logged while the server was away go up."""
        unknown = set(fields) - {"status", "end_time", "name"}
        if unknown:
            raise E.InvalidArgumentError(f"update_run: a podstack server run's {sorted(unknown)} cannot be changed")
        if fields.get("status") not in (None, "running"):
            self.cache.drain(run_id, wait=False)  # artifacts logged while the server was away, before the end
        return {k: fields[k] for k in ("status", "end_time", "name") if k in fields}

    ends_runs_with_series = True

    def end_run_with_series(self, run_id, fields, series):
        """The run's last points ride with its end in one request (unless they need more than one).
        Their batch id is kept for a retry when the request fails, as in ``log_metrics``."""
        if fields.get("status") in (None, "running"):
            raise E.InvalidArgumentError(f"end_run_with_series: fields must end the run, got {fields}")
        with self._metrics_lock:
            batches = self._batches(series_points(series))
            if len(batches) != 1:
                self._send(batches)
            else:
                (batch_id, batch), = batches
                body = {**self._run_changes(run_id, fields),
                        "metrics": {"batch_id": batch_id, "series": self._series(batch)}}
                try:
                    return self._run(self._call("PATCH", f"/runs/{_q(run_id)}", body))
                except BaseException:
                    self._unacknowledged = batches
                    raise
        return self.update_run(run_id, fields)

    def get_runs(self, run_ids):
        run_ids = list(run_ids)
        found = []
        for i in range(0, len(run_ids), _PAGE):
            found += self._call("POST", "/runs/lookup", {"run_ids": run_ids[i:i + _PAGE]})["runs"]
        return [self._run(j) for j in found]

    def get_run(self, run_id):
        found = self._call("GET", f"/runs/{_q(run_id)}", missing_ok=True)
        return None if found is None else self._run(found)

    def has_run(self, run_id):
        if run_id in self._known_runs:  # runs are never deleted: no request (and it works offline)
            return True
        if self.get_run(run_id) is None:
            return False
        self._known_runs.add(run_id)
        return True

    def search_runs(self, query):
        return [self._run(j) for j in self._call("POST", "/runs/search", query)["runs"]]

    def log_params(self, run_id, params):
        self._call("POST", f"/runs/{_q(run_id)}/params", {"params": params, "sdk_tags": False})

    def set_tags(self, run_id, tags):
        self._call("POST", f"/runs/{_q(run_id)}/tags", {"tags": tags})

    def delete_tag(self, run_id, key):
        self._call("DELETE", f"/runs/{_q(run_id)}/tags/{_q(key)}")

    # -- metrics ---------------------------------------------------------------------------------
    def log_metrics(self, points):
        """Send the points in batches (see the module docstring). A call that fails keeps its
        batch ids: the same points sent again go under the same ids, so whatever of them the
        server already stored is not stored twice."""
        points = list(points)
        if not points:
            return
        with self._metrics_lock:
            self._send(self._batches(points))

    def _send(self, batches: list) -> None:
        """POST each of ``_batches``' batches; those not acknowledged are kept for the retry (taken with
        ``_metrics_lock``)."""
        for n, (batch_id, batch) in enumerate(batches):
            try:
                self._call("POST", "/metrics/batch", {"batch_id": batch_id, "series": self._series(batch)})
            except BaseException:
                self._unacknowledged = batches[n:]
                raise

    def _batches(self, points: list) -> list:
        """``points`` as ``[(batch id, points)]``: the ids of a failed call's batches again where the
        same points are sent again, new ids for the rest (taken with ``_metrics_lock``)."""
        batches = []
        while self._unacknowledged:
            batch_id, sent = self._unacknowledged[0]
            if points[:len(sent)] != sent:  # the caller gave up on them: nothing left to match
                self._unacknowledged = []
                break
            batches.append(self._unacknowledged.pop(0))
            points = points[len(sent):]
        for i in range(0, len(points), _MAX_BATCH_POINTS):
            batches.append((uuid.uuid4().hex, points[i:i + _MAX_BATCH_POINTS]))
        return batches

    @staticmethod
    def _series(points) -> list:
        groups: dict = {}
        for p in points:
            group = groups.get((p[0], p[1]))
            if group is None:
                groups[(p[0], p[1])] = group = []
            group.append(p)
        nan = float("nan")
        return [{"run_id": run_id, "key": key, "count": len(group), "encoding": "base64-le",
                 "steps": _pack("q", [p[3] for p in group]),
                 "values": _pack("d", [nan if p[2] is None else p[2] for p in group]),
                 "timestamps": _pack("d", [p[4] for p in group])} for (run_id, key), group in groups.items()]

    def get_metric_history(self, run_id, key):
        return self._call("GET", f"/runs/{_q(run_id)}/metrics/{_q(key)}/history", params={"format": "packed"})["history"]

    # -- datasets --------------------------------------------------------------------------------
    def log_dataset(self, run_id, dataset, context, logged_at):
        body = {k: dataset.get(k) for k in ("name", "digest", "source_type", "source", "schema", "profile", "tags")}
        body.update(context=context, created_at=dataset.get("created_at"))
        path = f"/runs/{_q(run_id)}/datasets" if run_id is not None else "/datasets"
        return self._dataset(self._call("POST", path, body)["dataset"])

    def get_run_datasets(self, run_id):
        return [self._dataset(j, context=True) for j in self._call("GET", f"/runs/{_q(run_id)}/datasets")["datasets"]]

    # -- artifacts index ---------------------------------------------------------------------------
    def log_artifacts(self, run_id, entries):
        entries = [dict(e) for e in entries]
        if self.cache.holds_any(e["digest"] for e in entries):
            self.cache.keep(run_id, entries)  # their bytes could not be uploaded: all wait together
            return
        try:
            self._call("POST", f"/runs/{_q(run_id)}/artifacts", {"artifacts": entries},
                       retry_for=self.artifact_retry_timeout)
        except _Unreachable:
            self.cache.keep(run_id, entries)

    def list_artifacts(self, run_id):
        waiting = self.cache.entries(run_id)
        try:
            found = self._call("GET", f"/runs/{_q(run_id)}/artifacts", retry_for=self.artifact_retry_timeout)
        except _Unreachable:
            if not waiting:
                raise
            return sorted(waiting.values(), key=lambda e: e["path"])
        entries = {j["path"]: {"path": j["path"], "digest": j.get("digest") or j["etag"], "size": j["size"],
                               "created_at": j.get("created")} for j in found["artifacts"]}
        entries.update(waiting)  # logged later, still on their way
        return sorted(entries.values(), key=lambda e: e["path"])

    # -- model registry ----------------------------------------------------------------------------
    def ensure_registered_model(self, model_id, name, created_at, description=None):
        body = {"name": name, "description": description, "if_exists": "return"}
        return self._model(self._call("POST", "/models", body)["model"])

    def get_registered_model(self, name=None, model_id=None):
        if name is not None:
            found = self._call("GET", f"/models/name/{_q(name)}", missing_ok=True)
        else:
            found = self._call("GET", f"/models/{_q(model_id)}", params={"by": "id"}, missing_ok=True)
        return None if found is None else self._model(found["model"])

    def list_registered_models(self):
        return [self._model(j) for j in self._pages("/models", "models")]

    def create_model_version(self, version):
        body = {k: version.get(k) for k in ("id", "run_id", "source", "framework", "description", "name",
                                            *_VERSION_FILES, "properties") if version.get(k) is not None}
        found = self._call("POST", f"/models/{_q(version['model_id'])}/versions", body, params={"by": "id"})
        return self._version(found["version"])

    def update_model_version(self, model_id, version, fields, updated_at):
        if "stage" in fields:
            self._call("PUT", f"/models/{_q(model_id)}/versions/{int(version)}/stage",
                       {"stage": fields["stage"], "archive_existing": bool(fields.get("archive_others_in_stage"))},
                       params={"by": "id"})
        described = {k: fields[k] for k in ("description", *_VERSION_FILES, "properties") if k in fields}
        if described:
            self._call("PATCH", f"/models/{_q(model_id)}/versions/{int(version)}", described, params={"by": "id"})

    def set_model_alias(self, model_id, alias, version):
        self._call("POST", f"/models/{_q(model_id)}/aliases", {"alias": alias, "version": version},
                   params={"by": "id"})

    def delete_model_alias(self, model_id, alias):
        self._call("DELETE", f"/models/{_q(model_id)}/aliases/{_q(alias)}", params={"by": "id"}, missing_ok=True)

    def get_model_lineage(self, model_id):
        return self._call("GET", f"/models/{_q(model_id)}/lineage", params={"by": "id"}, missing_ok=True)

    def update_registered_model(self, model_id, fields, updated_at):
        body = {k: v for k, v in fields.items() if k != "latest_version"}
        if "latest_version" in fields:
            if fields["latest_version"] is None:
                body["unpin_latest"] = True
            else:
                body["latest_version"] = int(fields["latest_version"])
        self._call("PATCH", f"/models/{_q(model_id)}", body, params={"by": "id"})

    def delete_model_version(self, model_id, version):
        self._call("DELETE", f"/models/{_q(model_id)}/versions/{int(version)}", params={"by": "id"})

    def delete_registered_model(self, model_id):
        self._call("DELETE", f"/models/{_q(model_id)}", params={"by": "id"}, missing_ok=True)

    def page_registered_models(self, order_by, ascending, limit, after):
        body = {"order_by": order_by, "ascending": ascending, "limit": limit, "after": after}
        return [self._model(j) for j in self._call("POST", "/models/page", body)["models"]]

    def page_model_versions(self, model_id, order_by, ascending, limit, after):
        body = {"order_by": order_by, "ascending": ascending, "limit": limit, "after": after}
        found = self._call("POST", f"/models/{_q(model_id)}/versions/page", body, params={"by": "id"})
        return [self._version(j) for j in found["versions"]]

    # -- tagged artifact sets ----------------------------------------------------------------------
    def create_artifact_tag(self, name, run_id, created_at):
        return self._call("POST", "/artifact-tags", {"name": name, "run_id": run_id})["tag"]

    def get_artifact_tag(self, name):
        found = self._call("GET", f"/artifact-tags/{_q(name)}", missing_ok=True)
        return None if found is None else found["tag"]

    def list_artifact_tags(self):
        return self._call("GET", "/artifact-tags")["tags"]

    def delete_artifact_tag(self, name):
        return bool(self._call("DELETE", f"/artifact-tags/{_q(name)}")["deleted"])


class RESTArtifactStore(ArtifactStore):
    """Artifact bytes of a :class:`RESTStore`'s project, moved through the server's signed URLs
    (content addressed: bytes the project already holds are not sent). While the server cannot
    be reached, what is stored waits in the store's offline cache."""

    def __init__(self, store: RESTStore):
        self.store = store

    def __repr__(self):
        return f"RESTArtifactStore({self.store.url!r})"

    def put_file(self, path, progress: bool | None = None) -> tuple[str, int]:
        if not isinstance(path, (str, os.PathLike)) or not Path(path).is_file():
            return super().put_file(path, progress)  # the same clear errors
        digest, size = _sha256_file(path)
        self._upload(Path(path), digest, size)
        return digest, size

    def put_stream(self, stream, size_hint: int | None = None, progress: bool | None = None) -> tuple[str, int]:
        cache = self.store.cache
        cache.root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".podstack-upload-", dir=cache.root)
        try:
            h, size = hashlib.sha256(), 0
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
            digest = h.hexdigest()
            self._upload(Path(tmp), digest, size)
            return digest, size
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

    def _upload(self, path: Path, digest: str, size: int, keep_offline: bool = True) -> None:
        """Send a file's bytes (content ``digest``) unless the project holds them; while the server
        cannot be reached, stage them in the offline cache (``keep_offline``) or raise ``_Unreachable``."""
        import httpx

        store = self.store
        try:
            answer = store._call("POST", "/blobs/upload-url", {"digest": digest, "size": size},
                                 retry_for=store.artifact_retry_timeout)
            if answer.get("exists"):
                return
            headers = {k: v for k, v in (answer.get("headers") or {}).items()}
            headers["Content-Length"] = str(size)
            with open(path, "rb") as body:
                response = store._plain.request(answer.get("method") or "PUT", answer["upload_url"], content=body,
                                                headers=headers)
            if response.status_code >= 500:
                raise _Unreachable(f"the artifact store answered {response.status_code}")
            if response.status_code >= 300:
                raise E.StoreError(f"uploading {path.name}: the artifact store refused the signed URL "
                                   f"({response.status_code}: {response.text[:300]})")
            store._call("POST", "/blobs/finalize", {"upload_key": answer["upload_key"], "digest": digest},
                        retry_for=store.artifact_retry_timeout)
        except (_Unreachable, httpx.TransportError) as exc:
            if not keep_offline:
                raise _Unreachable(str(exc)) from None
            log.warning("podstack: the server cannot be reached (%s); %s is kept in %s and uploaded later",
                        exc, path.name, store.cache.root)
            store.cache.stage(path, digest)

    def _download_url(self, digest: str):
        return self.store._call("GET", f"/blobs/{_q(digest)}/download-url", missing_ok=True,
                                retry_for=self.store.artifact_retry_timeout)

    def get_file(self, digest: str, dest_path, progress: bool | None = None) -> Path:
        import httpx

        try:
            answer = self._download_url(digest)
            if answer is None:
                cached = self.store.cache.find(digest)
                if cached is None:
                    raise E.ArtifactNotFoundError(f"the podstack server has no artifact content {digest}")
                return self._from_cache(cached, digest, dest_path)

            def copy(out):
                h = hashlib.sha256()
                with self.store._plain.stream("GET", answer["download_url"]) as response:
                    if response.status_code != 200:
                        if response.status_code >= 500:
                            raise _Unreachable(f"the artifact store answered {response.status_code}")
                        raise E.StoreError(f"downloading {digest}: the artifact store answered "
                                           f"{response.status_code}")
                    for chunk in response.iter_bytes(1 << 20):
                        h.update(chunk)
                        out.write(chunk)
                return h.hexdigest()

            return write_verified(dest_path, digest, copy, where=self.store.url)
        except (_Unreachable, httpx.TransportError):
            cached = self.store.cache.find(digest)
            if cached is None:
                raise
            return self._from_cache(cached, digest, dest_path)

    @staticmethod
    def _from_cache(cached: Path, digest: str, dest_path) -> Path:
        def copy(out):
            h = hashlib.sha256()
            with open(cached, "rb") as f:
                while chunk := f.read(1 << 20):
                    h.update(chunk)
                    out.write(chunk)
            return h.hexdigest()

        return write_verified(dest_path, digest, copy, where=str(cached))

    def open_blob(self, digest: str):
        spool = tempfile.NamedTemporaryFile(prefix="podstack-blob-")
        spool.close()
        self.get_file(digest, spool.name)
        handle = open(spool.name, "rb")
        os.unlink(spool.name)  # stays readable through the open handle
        return handle

    def has(self, digest: str) -> bool:
        return self._download_url(digest) is not None or self.store.cache.find(digest) is not None

    def size(self, digest: str) -> int:
        answer = self._download_url(digest)
        if answer is None:
            cached = self.store.cache.find(digest)
            if cached is None:
                raise E.ArtifactNotFoundError(f"the podstack server has no artifact content {digest}")
            return cached.stat().st_size
        return int(answer["size"])

    def verify(self, digest: str) -> bool:
        with tempfile.TemporaryDirectory(prefix="podstack-verify-") as tmp:
            try:
                self.get_file(digest, Path(tmp) / "blob")
            except E.ArtifactIntegrityError:
                return False
        return True

    def delete(self, digest: str) -> None:
        raise E.InvalidArgumentError("a podstack server's artifacts cannot be deleted by a client")


class OfflineArtifacts:
    """Artifacts logged while the server could not be reached: each in ``<root>/<run_id>/<path>``,
    listed in that folder's ``OFFLINE_JOURNAL``, uploaded (and then removed) once the server
    answers again."""

    def __init__(self, root: Path, store: RESTStore):
        self.root = Path(root).expanduser()
        self._store = weakref.ref(store)
        self._staged: set = set()   # digests staged by this process, not yet placed in a run's folder
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def staging(self) -> Path:
        return self.root / _STAGING

    # -- keeping -----------------------------------------------------------------------------------
    def stage(self, source: Path, digest: str) -> None:
        """Keep a copy of ``source`` (content ``digest``) until ``keep`` places it in a run's folder."""
        with self._lock:
            target = self.staging / digest
            if not target.exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".part-")
                os.close(fd)
                shutil.copyfile(source, tmp)
                if _sha256_file(tmp)[0] != digest:  # the file changed while it was logged
                    os.unlink(tmp)
                    raise E.ArtifactIntegrityError(f"{source} changed while it was being logged; log it again",
                                                   digest=digest)
                os.replace(tmp, target)
            self._staged.add(digest)

    def holds_any(self, digests) -> bool:
        with self._lock:
            return any(d in self._staged for d in digests)

    def keep(self, run_id: str, entries: list) -> None:
        """Record ``entries`` of ``run_id`` for a later upload, placing their staged bytes (if any)
        at ``<root>/<run_id>/<path>``."""
        folder = self.root / run_id
        with self._lock, self._journal(folder) as journal:
            for e in entries:
                staged = self.staging / e["digest"]
                local = e["digest"] in self._staged and staged.is_file()
                if local:
                    target = folder.joinpath(*e["path"].split("/"))
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(staged, target)
                journal[e["path"]] = {**e, "local": local}
            used = {e["digest"] for e in entries}
            for digest in used & self._staged:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.staging / digest)
            self._staged -= used
        log.warning("podstack: %d artifact file(s) of run %s are kept in %s until the podstack server can be "
                    "reached again", len(entries), run_id, folder)
        self.start_draining()

    @contextlib.contextmanager
    def _journal(self, folder: Path):
        """The run's journal ``{path: entry}``, written back (atomically) when the block ends."""
        import fcntl

        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / (OFFLINE_JOURNAL + ".lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            path = folder / OFFLINE_JOURNAL
            try:
                journal = {e["path"]: e for e in json.loads(path.read_text())["entries"]}
            except FileNotFoundError:
                journal = {}
            before = dict(journal)
            yield journal
            if journal != before:
                if journal:
                    tmp = path.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"entries": list(journal.values())}))
                    os.replace(tmp, path)
                else:
                    with contextlib.suppress(FileNotFoundError):
                        path.unlink()

    # -- reading -----------------------------------------------------------------------------------
    def entries(self, run_id: str) -> dict:
        """``{path: entry}`` of a run's artifacts still waiting here."""
        path = self.root / run_id / OFFLINE_JOURNAL
        try:
            return {e["path"]: {k: e[k] for k in ("path", "digest", "size", "created_at")}
                    for e in json.loads(path.read_text())["entries"]}
        except (FileNotFoundError, ValueError, KeyError):
            return {}

    def pending_runs(self) -> list[str]:
        try:
            return sorted(p.parent.name for p in self.root.glob(f"*/{OFFLINE_JOURNAL}"))
        except OSError:
            return []

    def find(self, digest: str) -> Path | None:
        """A file here with content ``digest`` (staged, or waiting in a run's folder)."""
        staged = self.staging / digest
        if staged.is_file():
            return staged
        for run_id in self.pending_runs():
            for e in self.entries_with_files(run_id):
                if e["digest"] == digest:
                    return self.root / run_id / Path(*e["path"].split("/"))
        return None

    def entries_with_files(self, run_id: str) -> list:
        try:
            return [e for e in json.loads((self.root / run_id / OFFLINE_JOURNAL).read_text())["entries"]
                    if e.get("local")]
        except (FileNotFoundError, ValueError, KeyError):
            return []

    # -- uploading later ---------------------------------------------------------------------------
    def drain(self, run_id: str, wait: bool = True) -> bool:
        """Upload what waits for ``run_id``; returns whether nothing is left. Quiet if the server
        still cannot be reached."""
        store = self._store()
        folder = self.root / run_id
        if store is None or not (folder / OFFLINE_JOURNAL).is_file():
            return True
        try:
            with self._journal(folder) as journal:
                for path, e in list(journal.items()):
                    local = folder.joinpath(*path.split("/"))
                    if e.get("local"):
                        if not local.is_file() or _sha256_file(local)[0] != e["digest"]:
                            log.error("podstack: the kept copy of artifact %r of run %s is gone or changed; it "
                                      "cannot be uploaded", path, run_id)
                            del journal[path]
                            continue
                        store._artifacts._upload(local, e["digest"], e["size"], keep_offline=False)
                    entry = {k: e[k] for k in ("path", "digest", "size", "created_at")}
                    store._call("POST", f"/runs/{_q(run_id)}/artifacts", {"artifacts": [entry]},
                                retry_for=store.artifact_retry_timeout if wait else 1.0)
                    del journal[path]
                    if e.get("local"):
                        with contextlib.suppress(FileNotFoundError):
                            local.unlink()
                    log.info("podstack: artifact %r of run %s uploaded to the podstack server", path, run_id)
        except _Unreachable:
            return False
        except E.NotFoundError as exc:  # the run is not (or no longer) the project's: nothing will take them
            log.error("podstack: artifacts kept for run %s cannot be uploaded: %s", run_id, exc.message)
            return False
        return True

    def drain_all(self) -> bool:
        done = True
        for run_id in self.pending_runs():
            done = self.drain(run_id) and done
        return done

    def start_draining(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._stopped.clear()
                self._thread = threading.Thread(target=self._loop, name="podstack-artifact-uploads", daemon=True)
                self._thread.start()
            self._wake.set()

    def _loop(self) -> None:
        store = self._store()
        delay = store.drain_interval if store is not None else 5.0
        del store
        while not self._stopped.is_set():
            self._wake.wait(delay)
            self._wake.clear()
            if self._stopped.is_set():
                return
            try:
                if self.drain_all():
                    delay = 5.0
                    if not self.pending_runs():
                        return
                else:
                    delay = min(delay * 2, 60.0)
            except Exception:  # noqa: BLE001 - the uploader must survive; it tries again later
                log.exception("podstack: uploading kept artifacts failed; trying again later")

    def stop(self) -> None:
        self._stopped.set()
        self._wake.set()


def _default_cache_dir() -> Path:
    from ...config import settings

    explicit = os.environ.get("PODSTACK_ARTIFACT_DIR")
    if explicit:
        return Path(explicit).expanduser()
    resolved = settings()
    url = resolved.artifact_url
    if "://" not in url or url.startswith("file:"):
        return resolved.artifact_dir
    return resolved.home / "artifacts"


_open_stores: "weakref.WeakSet[RESTStore]" = weakref.WeakSet()


@atexit.register
def _upload_kept_artifacts_at_exit():
    for store in list(_open_stores):
        if store._closed or not store.cache.pending_runs():
            continue
        store.artifact_retry_timeout = min(store.artifact_retry_timeout, 2.0)
        try:
            done = store.cache.drain_all()
        except Exception:  # noqa: BLE001 - the interpreter is going away; they stay kept
            done = False
        if not done:
            log.warning("podstack: artifacts kept in %s are uploaded when podstack next opens the server's store",
                        store.cache.root)
