"""What a running server holds: the tracking database, the artifact store, accounts, rate limits,
and what each request works with (:class:`ProjectContext`: the tracking and model-registry
clients of the request's project).

Artifacts of a project live under ``projects/<project id>/`` of the artifact root (a folder or
a bucket prefix), so a key of one project can neither read nor probe another's bytes; the
project ``default`` (what was logged without a server) uses the root itself, where the
embedded store keeps them.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
import uuid

import sqlalchemy as sa

from ..artifacts import LocalArtifactStore, open_repository
from ..models import ModelRegistryClient
from ..tracking import TrackingClient
from ..tracking.store import _schema as S
from ..tracking.store.sql import SQLStore, reading
from .accounts import Accounts, Principal, load_secret
from .config import ServerConfig
from .ratelimit import RateLimiter

__all__ = ["ServerState", "ProjectContext"]

log = logging.getLogger("podstack.server")

_BATCH_IDS_KEPT = 7 * 24 * 3600  # seconds a metric batch id is remembered (a client retries within minutes)


@dataclasses.dataclass
class ProjectContext:
    """One request's view: its ``principal``, the project's ``tracking`` and ``models`` clients,
    its ``artifacts`` store, and the server ``state``."""

    principal: Principal
    tracking: TrackingClient
    models: ModelRegistryClient
    artifacts: object
    state: "ServerState"

    @property
    def project_id(self) -> str:
        return self.principal.project_id

    @property
    def store(self) -> SQLStore:
        return self.tracking.store


class ServerState:
    """Opened at start-up (``open()``: migrations, artifact store check), closed at shutdown."""

    def __init__(self, config: ServerConfig):
        self.config = config.resolved()
        self.store: SQLStore | None = None
        self.accounts: Accounts | None = None
        self.artifacts = None
        self.limiter = RateLimiter(self.config.rate, self.config.burst)
        self._project_artifacts: dict[str, object] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._sweeper: threading.Thread | None = None
        self._services: dict[str, object] = {}  # long-lived parts made on first use (team kernels, ...)
        # (project, run) -> uploads issued, of the runs that may have pending uploads: ending a run or
        # listing its artifacts asks the database only for these (one process issues every upload URL)
        self._pending_runs: dict[tuple[str, str], int] = {}

    # -- life ----------------------------------------------------------------------------------
    def open(self) -> "ServerState":
        """Open the database (bringing its schema to the newest revision) and the artifact store,
        checking that both can be used."""
        self.store = SQLStore(self.config.db)
        self.accounts = Accounts(self.store.engine, load_secret(self.config.secret_file))
        self.accounts.keep_checked_keys()
        self.artifacts = open_repository(self.config.artifacts)
        self.artifacts.check()
        P = S.pending_uploads
        with reading(self.store.engine) as conn:
            self._pending_runs = {tuple(r): 1 for r in conn.execute(sa.select(P.c.project_id, P.c.run_id).distinct())}
        if self.config.sweep_interval > 0:
            self._sweeper = threading.Thread(target=self._sweep_loop, name="podstack-server-sweep", daemon=True)
            self._sweeper.start()
        return self

    def service(self, name: str, factory):
        """The long-lived part ``name`` of this server (e.g. the team sessions), made by ``factory()``
        on first use; its ``close()`` is called when the server stops."""
        with self._lock:
            found = self._services.get(name)
            if found is None:
                if self._stop.is_set():
                    from ..errors import PodstackError

                    raise PodstackError("the server is stopping")
                found = self._services[name] = factory()
            return found

    def close(self) -> None:
        self._stop.set()
        with self._lock:
            services, self._services = list(self._services.values()), {}
        for part in services:
            try:
                part.close()
            except Exception:  # noqa: BLE001 - the others must close too
                log.exception("podstack server: closing %r failed", part)
        if self._sweeper is not None:
            self._sweeper.join(5)
        if self.accounts is not None:
            self.accounts.close()
        if self.store is not None:
            self.store.close()

    @property
    def local_artifacts(self) -> bool:
        """Whether artifacts are in a folder (whose signed URLs this server serves itself)."""
        return isinstance(self.artifacts, LocalArtifactStore)

    # -- projects ------------------------------------------------------------------------------
    def artifacts_of(self, project_id: str):
        """The artifact store of a project (made on first use and kept)."""
        store = self._project_artifacts.get(project_id)
        if store is not None:
            return store
        with self._lock:
            store = self._project_artifacts.get(project_id)
            if store is None:
                store = self.artifacts if project_id == S.DEFAULT_PROJECT else \
                    self.artifacts.child(f"projects/{project_id}")
                if isinstance(store, LocalArtifactStore):
                    if store is self.artifacts:  # a view of its own, so the root keeps no URL settings
                        store = LocalArtifactStore(store.root)
                    store.serve_signed_urls(f"/files/{project_id}",
                                            self.accounts.url_secret(f"artifact urls of project {project_id}"))
                self._project_artifacts[project_id] = store
            return store

    def context(self, principal: Principal) -> ProjectContext:
        """The clients a request of ``principal`` works with (its project's)."""
        artifacts = self.artifacts_of(principal.project_id)
        tracking = TrackingClient(self.store.for_project(principal.project_id), artifacts)
        return ProjectContext(principal, tracking, ModelRegistryClient(tracking), artifacts, self)

    # -- the server's own records ------------------------------------------------------------------
    def experiment_stats(self, project_id: str) -> dict:
        """``{experiment id: (run count, latest start time)}`` of a project."""
        R = S.runs
        with reading(self.store.engine) as conn:
            rows = conn.execute(sa.select(R.c.experiment_id, sa.func.count(), sa.func.max(R.c.start_time))
                                .where(R.c.project_id == project_id).group_by(R.c.experiment_id)).all()
        return {r[0]: (r[1], r[2]) for r in rows}

    def latest_metrics(self, run_id: str) -> list:
        """``(key, value, step, timestamp)`` of each metric of a run (its latest point)."""
        L = S.latest_metrics
        with reading(self.store.engine) as conn:
            return [tuple(r) for r in conn.execute(sa.select(L.c.key, L.c.value, L.c.step, L.c["timestamp"])
                                                   .where(L.c.run_id == run_id).order_by(L.c.key))]

    def add_pending_upload(self, project_id: str, run_id: str, path: str, key: str, expires_at: float) -> None:
        with self._lock:  # (before the row is written: a reader meanwhile looks in the database)
            self._pending_runs[(project_id, run_id)] = self._pending_runs.get((project_id, run_id), 0) + 1
        with self.store.engine.begin() as conn:
            conn.execute(S.pending_uploads.insert().values(key=key, project_id=project_id, run_id=run_id, path=path,
                                                           expires_at=expires_at, created_at=time.time()))

    def pending_uploads(self, project_id: str, run_id: str) -> list[dict]:
        issued = self._pending_runs.get((project_id, run_id))
        if issued is None:
            return []
        P = S.pending_uploads
        with reading(self.store.engine) as conn:
            found = [dict(r._mapping) for r in conn.execute(
                sa.select(P).where(P.c.run_id == run_id, P.c.project_id == project_id).order_by(P.c.created_at))]
        if not found:
            with self._lock:  # none left, unless one was issued while the database was asked
                if self._pending_runs.get((project_id, run_id)) == issued:
                    del self._pending_runs[(project_id, run_id)]
        return found

    def drop_pending_upload(self, key: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(S.pending_uploads.delete().where(S.pending_uploads.c.key == key))

    def add_transition(self, project_id: str, model_id: str, version: dict, from_stage: str | None, to_stage: str,
                       comment: str | None, by: str) -> None:
        with self.store.engine.begin() as conn:
            conn.execute(S.stage_transitions.insert().values(
                id=str(uuid.uuid4()), project_id=project_id, model_id=model_id, model_version_id=version.get("id"),
                version=version["version"], from_stage=from_stage, to_stage=to_stage, comment=comment,
                transitioned_by=by, created_at=time.time()))

    def transitions(self, project_id: str, model_id: str, version: int | None = None) -> list[dict]:
        T = S.stage_transitions
        query = sa.select(T).where(T.c.project_id == project_id, T.c.model_id == model_id)
        if version is not None:
            query = query.where(T.c.version == version)
        with reading(self.store.engine) as conn:
            return [dict(r._mapping) for r in conn.execute(query.order_by(T.c.created_at))]

    # -- housekeeping ----------------------------------------------------------------------------
    def sweep(self) -> None:
        """Remove what nobody will come back for: upload URLs expired unused, metric batch ids past
        the time a client retries, and cut-off uploads in the artifact store."""
        now = time.time()
        P = S.pending_uploads
        with reading(self.store.engine) as conn:
            # an upload URL may still be PUT to until it expires; give the PUT an hour to finish
            expired = [dict(r._mapping) for r in conn.execute(sa.select(P).where(P.c.expires_at < now - 3600))]
        for row in expired:
            try:
                self.artifacts_of(row["project_id"]).discard(row["key"])
            except Exception as exc:  # noqa: BLE001 - the store's own sweep removes it later
                log.warning("podstack server: could not remove the unused upload %s: %s", row["key"], exc)
            self.drop_pending_upload(row["key"])
        with self.store.engine.begin() as conn:
            conn.execute(S.metric_batches.delete().where(S.metric_batches.c.created_at < now - _BATCH_IDS_KEPT))
        for store in [self.artifacts, *self._project_artifacts.values()]:
            try:
                store.sweep()
            except Exception as exc:  # noqa: BLE001 - tried again at the next sweep
                log.warning("podstack server: sweeping %r failed: %s", store, exc)

    def _sweep_loop(self) -> None:
        while not self._stop.wait(self.config.sweep_interval):
            try:
                self.sweep()
            except Exception:  # noqa: BLE001 - the sweeper must survive a bad moment of the database
                log.exception("podstack server: housekeeping failed; trying again later")
