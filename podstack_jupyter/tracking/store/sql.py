"""``SQLStore``: the tracking store on SQLAlchemy Core (SQLite file by default, PostgreSQL for teams).

Opening a store brings its schema to the newest Alembic revision (the scripts
ship in ``migrations/``), under a lock so that two processes opening a fresh
database at once do not both create it.

SQLite runs in WAL mode, and every write transaction starts with ``BEGIN
IMMEDIATE``: two processes logging into the same file wait for each other
instead of failing. A database another process keeps locked is waited for
(``lock_timeout``, 60 s by default, with a warning every ``busy_timeout``), then
reported as a ``StoreError``; every failure of the database is a ``StoreError``
saying what happened, and the failed call has written nothing (one transaction
per call). Writes that name a run, experiment or model that does not exist raise
the matching ``NotFoundError`` and write nothing.

A store sees one project (``project_id``, ``"default"`` unless given): experiments, runs,
datasets and models of other projects do not exist for it, and names are unique within
it. ``for_project(id)`` is a view of the same database for another project, sharing its
connections (what the team server makes per request).

The calls a run makes on its way (create, params, tags, end, read back) use the
driver's cursor directly: SQLAlchemy's statement layer cost more than the
database itself. Metric points are appended with one row per (run, key) and
batch: packed arrays of steps, values and timestamps.
"""

from __future__ import annotations

import array
import base64
import contextlib
import functools
import hashlib
import json
import logging
import math
import operator
import sys
import threading
import time
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy import event, func, select
from sqlalchemy.engine import make_url

from ...errors import (ConfigurationError, DuplicateError, ExperimentNotFoundError, InvalidArgumentError,
                       ModelNotFoundError,
                       PodstackError, RunNotFoundError, StoreError)
from . import _schema as S
from ._base import MUTABLE_PARAM_PREFIXES, Store

__all__ = ["SQLStore", "upgrade", "reading"]

log = logging.getLogger("podstack.tracking")

_MIGRATIONS = Path(__file__).parent / "migrations"
_CHUNK = 500  # ids per IN (...) list
_BUSY_TIMEOUT = 5.0   # seconds SQLite waits for a lock within one attempt
_LOCK_TIMEOUT = 60.0  # seconds a call waits in all for a database another process keeps locked
_PG_MIGRATION_LOCK = 0x706F6473  # "pods": advisory lock id held while migrating
_WAL_CHECKPOINT_BYTES = 4 * 1024 * 1024  # a WAL this large is copied back by the background thread
_WAL_AUTOCHECKPOINT_PAGES = 20_000       # SQLite's own checkpoint (80 MB), should that thread fall behind
_PING_AFTER_IDLE = 5.0  # seconds a pooled PostgreSQL connection sits unused before it is checked on checkout


def _dumps(value):
    return None if value is None else json.dumps(value, sort_keys=True, default=str)


def _loads(text, default=None):
    return default if text is None else json.loads(text)


def _number(text: str):
    """``text`` as a finite float when it reads as a number, else ``None``."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


_BIG_ENDIAN = sys.byteorder == "big"


def _pack(typecode: str, items) -> bytes:
    packed = array.array(typecode, items)
    if _BIG_ENDIAN:
        packed.byteswap()
    return packed.tobytes()


def _b64(packed: array.array) -> str:
    return base64.b64encode(packed.tobytes()).decode("ascii")


def _chunks(items, size=_CHUNK):
    items = list(items)
    for i in range(0, len(items), size):
        yield items[i:i + size]


def _private_database(path: Path) -> None:
    """The database file private to the user (0600) before SQLite opens it: SQLite gives its WAL
    and shared-memory files the database file's mode when it creates them."""
    from ...config import private_file, private_folder

    private_folder(path.parent, tighten=False)
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file is path or file.exists():
            private_file(file)


def _engine_for(url_text: str, busy_timeout: float = _BUSY_TIMEOUT) -> sa.engine.Engine:
    try:
        url = make_url(url_text)
    except sa.exc.ArgumentError as exc:
        raise ConfigurationError(f"tracking URI {url_text!r} is not a SQLAlchemy URL: {exc}") from None
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigurationError(f"tracking store: {url.get_backend_name()} is not supported; "
                                 "use a sqlite:/// or postgresql:// URL")
    if url.get_backend_name() == "sqlite":
        database = url.database or ""
        memory = database in ("", ":memory:") or database.startswith("file::memory:")
        if not memory and not database.startswith("file:"):
            _private_database(Path(database).expanduser())
        kwargs = {"connect_args": {"check_same_thread": False, "timeout": busy_timeout}}
        if memory:
            kwargs["poolclass"] = sa.pool.StaticPool
        # every transaction here ends with a commit or a rollback of its own: no reset on return
        engine = sa.create_engine(url, pool_reset_on_return=None, **kwargs)

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_connection, _record):
            # Let SQLAlchemy's "begin" event below issue BEGIN itself (pysqlite's own is deferred-only).
            dbapi_connection.isolation_level = None
            cursor = dbapi_connection.cursor()
            cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            if not memory:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
                # the background _Checkpointer copies the WAL back; SQLite's own is the fallback
                cursor.execute(f"PRAGMA wal_autocheckpoint = {_WAL_AUTOCHECKPOINT_PAGES}")
            cursor.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # A write takes the write lock up front: a deferred transaction that read first
            # could fail at once with SQLITE_BUSY instead of waiting for the other writer.
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("podstack_write")
                                 else "BEGIN")

        return engine
    if url.drivername == "postgresql":
        # SQLAlchemy's default PostgreSQL driver is psycopg2; podstack depends on psycopg 3.
        try:
            import psycopg  # noqa: F401

            url = url.set(drivername="postgresql+psycopg")
        except ImportError:
            pass
    try:
        engine = sa.create_engine(url)
    except (ImportError, sa.exc.NoSuchModuleError) as exc:
        raise ConfigurationError(
            f"cannot open tracking store {url.render_as_string(hide_password=True)}: {exc}. "
            "For PostgreSQL install the driver: pip install 'podstack-jupyter[postgres]'") from None
    _ping_idle_connections(engine)
    return engine


@contextlib.contextmanager
def reading(engine: sa.engine.Engine):
    """A connection of ``engine`` for reads only. On PostgreSQL each statement runs on its own
    (autocommit): at READ COMMITTED a transaction gives reads no more consistency than that, and its
    BEGIN and ROLLBACK cost two more round trips. On SQLite the reads share one snapshot."""
    with engine.connect() as conn:
        if conn.dialect.name != "sqlite":
            conn.execution_options(isolation_level="AUTOCOMMIT")
        try:
            yield conn
        finally:
            conn.rollback()


def _ping_idle_connections(engine: sa.engine.Engine) -> None:
    """Check a pooled connection on checkout only when it sat unused for ``_PING_AFTER_IDLE``.

    ``pool_pre_ping`` pings on every checkout: a round trip in every store call, a fifth of a small
    server request. A connection used moments ago is alive; one that sat idle may have been closed
    by a database restart or an idle timeout, and is replaced before anything is sent on it."""

    @event.listens_for(engine, "checkin")
    def _used(dbapi_connection, record):
        record.info["podstack_used"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection, record, proxy):
        if time.monotonic() - record.info.get("podstack_used", -math.inf) <= _PING_AFTER_IDLE:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except engine.dialect.loaded_dbapi.Error as exc:  # the pool replaces it and checks out again
            raise sa.exc.DisconnectionError(f"a pooled connection was closed: {exc}") from exc
        record.info["podstack_used"] = time.monotonic()


class _Statistics:
    """Keeps PostgreSQL's planner statistics of the run tables current while they first fill up.

    Autovacuum analyzes a table only after 50 rows plus a tenth of it changed, and looks once a
    minute. Until then the planner guesses one row per table: a search joining 500 runs to their
    metrics ran a nested loop that rescanned the metric index per run (25 ms instead of 0.5), and
    reading 100 runs cost 6.5 ms instead of 1.7. So the store analyzes those tables itself, in the
    background, each time the rows it wrote double (from 100); autovacuum takes over as they grow."""

    first = 100
    tables = "runs, params, tags, latest_metrics"

    def __init__(self, engine: sa.engine.Engine):
        self.engine = engine
        self.written, self.next, self.running = 0, self.first, False
        self.lock = threading.Lock()

    def wrote(self, rows: int) -> None:
        with self.lock:
            self.written += rows
            if self.written < self.next or self.running:
                return
            self.next, self.running = self.written * 2, True
        threading.Thread(target=self._analyze, name="podstack-analyze", daemon=True).start()

    def _analyze(self) -> None:
        try:
            with reading(self.engine) as conn:  # (no owner rights: PostgreSQL skips with a warning)
                conn.exec_driver_sql(f"ANALYZE {self.tables}")
        except Exception as exc:  # noqa: BLE001 - autovacuum will do it later
            log.debug("podstack: ANALYZE of the run tables failed: %s", exc)
        finally:
            with self.lock:
                self.running = False


class _Checkpointer(threading.Thread):
    """Copies a SQLite WAL back into the database file from a background thread.

    SQLite's automatic checkpoint runs inside the commit that crosses its threshold, and
    its copy and fsync made that commit cost milliseconds: creating a run was 2x slower on
    average. A passive checkpoint here does the same work beside the writers, which go on
    appending to the WAL meanwhile.
    """

    def __init__(self, path: str, busy_timeout: float):
        super().__init__(name="podstack-wal-checkpoint", daemon=True)
        self.path, self.wal, self.busy_timeout = path, path + "-wal", busy_timeout
        self.stopped = threading.Event()

    def run(self):
        import os
        import sqlite3

        connection = None
        try:
            while not self.stopped.wait(0.5):
                try:
                    if os.path.getsize(self.wal) < _WAL_CHECKPOINT_BYTES:
                        continue
                    if connection is None:
                        connection = sqlite3.connect(self.path, timeout=self.busy_timeout, isolation_level=None)
                    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                except (OSError, sqlite3.Error) as exc:  # the next commit's automatic checkpoint will do
                    log.debug("podstack: background WAL checkpoint of %s failed: %s", self.path, exc)
        finally:
            if connection is not None:
                connection.close()


def _alembic_config(connection=None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(_MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(engine: sa.engine.Engine) -> str:
    """Bring the database behind ``engine`` to the newest schema revision; returns the revision."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
        conn.rollback()
    if current == head:
        return head
    with engine.connect().execution_options(podstack_write=True) as conn, conn.begin():
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        # SQLite: BEGIN IMMEDIATE already holds the write lock. Someone may have migrated meanwhile.
        if MigrationContext.configure(conn).get_current_revision() != head:
            command.upgrade(_alembic_config(conn), "head")
    return head


def _is_lock_error(exc: BaseException) -> bool:
    text = str(getattr(exc, "orig", exc)).lower()
    return "database is locked" in text or "database table is locked" in text or "database is busy" in text


def _from_the_database(exc: BaseException) -> bool:
    """Whether ``exc`` is the database driver's (SQLAlchemy's, sqlite3's, psycopg's), not this code's."""
    import sqlite3

    return isinstance(exc, (sa.exc.SQLAlchemyError, sqlite3.Error)) or type(exc).__module__.startswith("psycopg")


_NEW_BATCH = ("INSERT INTO metric_batches (id, project_id, created_at) VALUES (?, ?, ?) "
              "ON CONFLICT (id) DO NOTHING")
_FOREIGN_KEY_VIOLATION = "23503"  # PostgreSQL's SQLSTATE


class _AlreadyStored(Exception):
    """A metric batch whose id is stored already: what was written of it again is undone."""


class _RunMissing(Exception):
    """A write named a run that does not exist (PostgreSQL's foreign key error is its cause)."""


def _guarded(method):
    """Run a store call as one attempt after another while the database is locked by another
    process (up to ``lock_timeout``), and turn the database's own errors into ``StoreError``
    (errors of this code itself stay what they are)."""

    @functools.wraps(method)
    def call(self, *args, **kwargs):
        deadline = None
        while True:
            try:
                return method(self, *args, **kwargs)
            except Exception as exc:
                if not _from_the_database(exc):
                    raise
                if not _is_lock_error(exc):
                    raise self._store_error(method.__name__, exc) from exc
                now = time.monotonic()
                if deadline is None:
                    deadline = now - self.busy_timeout + self.lock_timeout
                if now >= deadline:
                    raise StoreError(
                        f"{method.__name__}: the tracking database {self._safe_url()} stayed locked by another "
                        f"process for {self.lock_timeout:.0f} s; nothing was written by this call. Another program "
                        "holds a write transaction open on it: end that program (or its transaction) and retry.") \
                        from None
                log.warning("podstack: the tracking database %s is locked by another process; still waiting "
                            "(%s, up to %.0f s in all)", self._safe_url(), method.__name__, self.lock_timeout)

    return call


def _open_schema(store) -> None:
    upgrade(store._engine)


class SQLStore(Store):
    """The tracking store in a SQL database: ``SQLStore("sqlite:////path/podstack.db")`` or
    ``SQLStore("postgresql://user@host/db")``. The schema is created or upgraded on open.

    ``busy_timeout``: seconds SQLite waits for another writer within one attempt;
    ``lock_timeout``: seconds a call waits in all before a ``StoreError``;
    ``project_id``: the project this store sees (see the module docstring)."""

    def __init__(self, url: str, *, busy_timeout: float = _BUSY_TIMEOUT, lock_timeout: float = _LOCK_TIMEOUT,
                 project_id: str = S.DEFAULT_PROJECT):
        self.url = url
        self.project_id = project_id
        self._view_of: SQLStore | None = None
        self.busy_timeout, self.lock_timeout = float(busy_timeout), float(lock_timeout)
        self._engine = _engine_for(url, self.busy_timeout)
        self.dialect = self._engine.dialect.name
        self._sqlite = self.dialect == "sqlite"
        self._statistics = None if self._sqlite else _Statistics(self._engine)
        database = self._engine.url.database or ""
        self._wal_path = database if self._sqlite and database not in ("", ":memory:") and \
            not database.startswith("file:") else None
        self._checkpointer: _Checkpointer | None = None
        self._ph = "?" if self._engine.dialect.paramstyle == "qmark" else "%s"
        try:
            _guarded(_open_schema)(self)
        except PodstackError as exc:
            self._engine.dispose()
            reason = exc.message.partition(": ")[2] or exc.message  # without the "_open_schema:" of the call
            raise ConfigurationError(f"cannot open tracking store {self._safe_url()}: {reason}") from None
        self._latest_sql = self._sql(
            'INSERT INTO latest_metrics (run_id, key, value, step, "timestamp") VALUES (?, ?, ?, ?, ?) '
            'ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, step = excluded.step, '
            '"timestamp" = excluded."timestamp" WHERE excluded.step > latest_metrics.step OR '
            '(excluded.step = latest_metrics.step AND excluded."timestamp" >= latest_metrics."timestamp")')

    def __repr__(self):
        project = "" if self.project_id == S.DEFAULT_PROJECT else f", project_id={self.project_id!r}"
        return f"SQLStore({self._safe_url()!r}{project})"

    def for_project(self, project_id: str) -> "SQLStore":
        """The same database seen by project ``project_id`` (sharing this store's connections;
        closing the view leaves them open)."""
        if not isinstance(project_id, str) or not project_id or len(project_id) > 36:
            raise InvalidArgumentError(f"project_id must be a project's id (at most 36 characters), got {project_id!r}")
        view = object.__new__(type(self))
        view.__dict__.update(self.__dict__)
        view.project_id = project_id
        view._view_of = self._view_of or self
        return view

    @property
    def engine(self) -> sa.engine.Engine:
        """The SQLAlchemy engine (for the team server's own tables in the same database)."""
        return self._engine

    def _safe_url(self):
        return make_url(self.url).render_as_string(hide_password=True)

    def _store_error(self, what: str, exc: BaseException) -> StoreError:
        orig = getattr(exc, "orig", None) or exc
        kind = type(orig).__name__
        text = str(orig).strip().splitlines()[0] if str(orig).strip() else kind
        if isinstance(exc, (sa.exc.OperationalError, sa.exc.InterfaceError)) or kind in ("OperationalError",
                                                                                       "InterfaceError"):
            hint = "the database could not be reached or used; check that it is running and reachable, then retry"
        else:
            hint = "the database refused the call; nothing was written"
        return StoreError(f"{what}: {hint} ({self._safe_url()}: {kind}: {text})")

    def _sql(self, text: str) -> str:
        return text if self._ph == "?" else text.replace("?", "%s")

    @contextlib.contextmanager
    def _cursor(self, write: bool, one_statement: bool = False):
        """A driver cursor in one transaction (SQLite writes: ``BEGIN IMMEDIATE``), committed when
        the block ends and rolled back if it raises. On PostgreSQL, reads and blocks of
        ``one_statement`` (atomic on its own) run in autocommit: no BEGIN and COMMIT round trips."""
        if write and self._wal_path is not None and (self._checkpointer is None or not self._checkpointer.is_alive()):
            self._checkpointer = _Checkpointer(str(Path(self._wal_path).expanduser()), self.busy_timeout)
            self._checkpointer.start()
        conn = self._engine.raw_connection()
        autocommit = (one_statement or not write) and not self._sqlite
        try:
            if autocommit:  # see _read
                conn.driver_connection.autocommit = True
            cur = conn.cursor()
            try:
                if self._sqlite:
                    cur.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                yield cur
                conn.commit()
            except BaseException:
                conn.rollback()
                raise
            finally:
                cur.close()
        finally:
            if autocommit and not conn.driver_connection.closed:
                conn.driver_connection.autocommit = False
            conn.close()

    def _require_run(self, cur, run_id) -> None:
        cur.execute(self._sql("SELECT 1 FROM runs WHERE id = ? AND project_id = ?"), (run_id, self.project_id))
        if cur.fetchone() is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")

    @contextlib.contextmanager
    def _write(self):
        with self._engine.connect().execution_options(podstack_write=True) as conn, conn.begin():
            yield conn

    def _read(self):
        return reading(self._engine)

    def _wrote(self, rows: int) -> None:
        if self._statistics is not None:
            self._statistics.wrote(rows)

    @property
    def checks_runs_on_write(self) -> bool:
        return self._view_of is not None  # a project's view checks that each run is the project's

    def _require_run_core(self, conn, run_id) -> None:
        if conn.execute(select(S.runs.c.id).where(S.runs.c.id == run_id, S.runs.c.project_id == self.project_id)
                        ).first() is None:
            raise RunNotFoundError(f"no run with id {run_id!r}")

    def _upsert(self, conn, table, rows: list, keys: tuple, update: tuple):
        if not rows:
            return
        if self.dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert
        stmt = insert(table)
        stmt = stmt.on_conflict_do_update(index_elements=list(keys),
                                          set_={c: stmt.excluded[c] for c in update})
        conn.execute(stmt, rows)

    def close(self) -> None:
        if self._view_of is not None:  # a project's view: the connections are its store's
            return
        if self._checkpointer is not None:
            self._checkpointer.stopped.set()
        self._engine.dispose()

    # -- experiments ---------------------------------------------------------------------------
    @staticmethod
    def _experiment(row) -> dict:
        return {"id": row.id, "name": row.name, "description": row.description,
                "tags": _loads(row.tags, {}), "created_at": row.created_at}

    def ensure_experiment(self, experiment_id, name, created_at, description=None, tags=None):
        existing = self.get_experiment_by_name(name)
        if existing is not None:
            return existing
        E = S.experiments
        try:
            with self._write() as conn:
                row = conn.execute(select(E).where(E.c.project_id == self.project_id, E.c.name == name)).first()
                if row is not None:
                    return self._experiment(row)
                conn.execute(E.insert().values(id=experiment_id, project_id=self.project_id, name=name,
                                               description=description, tags=_dumps(tags or {}),
                                               created_at=created_at))
        except sa.exc.IntegrityError:  # another process created it first
            pass
        return self.get_experiment_by_name(name)

    def get_experiment(self, experiment_id):
        E = S.experiments
        with self._read() as conn:
            row = conn.execute(select(E).where(E.c.id == experiment_id, E.c.project_id == self.project_id)).first()
        return None if row is None else self._experiment(row)

    def get_experiment_by_name(self, name):
        E = S.experiments
        with self._read() as conn:
            row = conn.execute(select(E).where(E.c.project_id == self.project_id, E.c.name == name)).first()
        return None if row is None else self._experiment(row)

    def list_experiments(self):
        E = S.experiments
        with self._read() as conn:
            rows = conn.execute(select(E).where(E.c.project_id == self.project_id)
                                .order_by(E.c.created_at, E.c.name)).all()
        return [self._experiment(r) for r in rows]

    # -- runs ----------------------------------------------------------------------------------
    def create_run(self, run):
        sql = self._sql
        tags = run.get("tags") or {}
        parent = run.get("parent_run_id")
        # inserted only where its experiment (and parent run) are this project's: one statement, atomic alone
        where = "EXISTS (SELECT 1 FROM experiments WHERE id = ? AND project_id = ?)"
        checked = [run["experiment_id"], self.project_id]
        if parent is not None:
            where += " AND EXISTS (SELECT 1 FROM runs WHERE id = ? AND project_id = ?)"
            checked += [parent, self.project_id]
        with self._cursor(write=True, one_statement=not tags) as cur:
            cur.execute(sql("INSERT INTO runs (id, experiment_id, project_id, name, parent_run_id, status, start_time, "
                            f"end_time, source, gpu) SELECT ?, ?, ?, ?, ?, ?, ?, ?, ?, ? WHERE {where}"),
                        [run["id"], run["experiment_id"], self.project_id, run.get("name"), parent,
                         run.get("status", "running"), run["start_time"], run.get("end_time"), run.get("source"),
                         _dumps(run.get("gpu"))] + checked)
            if cur.rowcount == 0:
                cur.execute(sql("SELECT 1 FROM experiments WHERE id = ? AND project_id = ?"),
                            (run["experiment_id"], self.project_id))
                if cur.fetchone() is None:
                    raise ExperimentNotFoundError(f"no experiment with id {run['experiment_id']!r}")
                raise RunNotFoundError(f"no run with id {parent!r} (the parent run)")
            if tags:
                cur.executemany(sql("INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?)"),
                                [(run["id"], k, str(v)) for k, v in tags.items()])
        self._wrote(1 + len(tags))

    _RUN_FIELDS = ("status", "end_time", "name", "source", "gpu")

    def update_run(self, run_id, fields):
        unknown = set(fields) - set(self._RUN_FIELDS)
        if unknown:
            raise InvalidArgumentError(f"update_run: cannot set {sorted(unknown)}; fields are {self._RUN_FIELDS}")
        if not fields:
            return
        values = dict(fields)
        if "gpu" in values:
            values["gpu"] = _dumps(values["gpu"])
        names = sorted(values)
        update = self._sql(f"UPDATE runs SET {', '.join(n + ' = ?' for n in names)} WHERE id = ? AND project_id = ?")
        arguments = [values[n] for n in names] + [run_id, self.project_id]
        with self._cursor(write=True, one_statement=True) as cur:
            if self._sqlite:
                cur.execute(update, arguments)
                if cur.rowcount == 0:
                    raise RunNotFoundError(f"no run with id {run_id!r}")
                return None
            with cur.connection.pipeline():  # PostgreSQL: the updated run read back in the same round trip
                cur.execute(update + f" RETURNING {self._RUN_COLUMNS}", arguments)
                side = cur.connection.cursor()
                side.execute(*self._details_query([run_id]))
            found, details = self._run_records(cur.fetchall()), side.fetchall()
        if not found:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        self._add_details(found, details)
        return found[run_id]

    def has_run(self, run_id):
        with self._cursor(write=False) as cur:
            cur.execute(self._sql("SELECT 1 FROM runs WHERE id = ? AND project_id = ?"), (run_id, self.project_id))
            return cur.fetchone() is not None

    def _among(self, column: str, ids: list, times: int = 1) -> tuple[str, list | dict]:
        """SQL for ``column`` among ``ids`` and its parameters, for a statement that says it
        ``times`` times: ``IN (?, ...)`` on SQLite; on PostgreSQL a semi-join with one array (a short
        statement the driver prepares once, whatever the count; before a table's first ANALYZE,
        ``= ANY(array)`` compared each row with every id: 2-3 ms instead of 0.6-0.8 for 100 ids)."""
        if self._sqlite:
            return f"{column} IN ({', '.join('?' * len(ids))})", list(ids) * times
        return f"{column} IN (SELECT unnest(%(ids)s::text[]))", {"ids": list(ids)}

    _RUN_COLUMNS = "id, experiment_id, name, parent_run_id, status, start_time, end_time, source, gpu"

    @staticmethod
    def _run_records(rows) -> dict:
        """``{id: record}`` of rows of ``_RUN_COLUMNS``, without their params, tags and metrics yet."""
        return {r[0]: {"id": r[0], "experiment_id": r[1], "name": r[2], "parent_run_id": r[3], "status": r[4],
                       "start_time": r[5], "end_time": r[6], "source": r[7], "gpu": _loads(r[8]),
                       "params": {}, "tags": {}, "metrics": {}} for r in rows}

    def _details_query(self, run_ids: list) -> tuple[str, list | dict]:
        """The params, tags and latest metrics of runs (of this project: the caller read them) in one query."""
        among, ids = self._among("run_id", run_ids, times=3)
        return self._sql(f"SELECT 'params', run_id, key, value, CAST(NULL AS DOUBLE PRECISION) FROM params "
                         f"WHERE {among} UNION ALL SELECT 'tags', run_id, key, value, NULL FROM tags "
                         f"WHERE {among} UNION ALL SELECT 'metrics', run_id, key, NULL, value "
                         f"FROM latest_metrics WHERE {among}"), ids

    @staticmethod
    def _add_details(found: dict, rows) -> None:
        for field, run_id, key, text, number in rows:
            if field == "metrics":
                found[run_id]["metrics"][key] = math.nan if number is None else number
            else:
                found[run_id][field][key] = text

    def get_runs(self, run_ids):
        run_ids = list(dict.fromkeys(run_ids))
        found: dict = {}
        with self._cursor(write=False) as cur:
            # (SQLite: the second query names each id thrice, within its limit on parameters; PostgreSQL
            # sends them as one array)
            for chunk in _chunks(run_ids, _CHUNK // 3 if self._sqlite else _CHUNK):
                among, ids = self._among("id", chunk)
                if self._sqlite:
                    project, ids = "?", ids + [self.project_id]
                else:
                    project, ids = "%(project)s", {**ids, "project": self.project_id}
                cur.execute(self._sql(f"SELECT {self._RUN_COLUMNS} FROM runs WHERE {among} AND project_id = {project}"),
                            ids)
                records = self._run_records(cur.fetchall())
                if not records:
                    continue
                found.update(records)
                # only this project's runs (another's share nothing, not even params)
                cur.execute(*self._details_query(list(records)))
                self._add_details(found, cur.fetchall())
        return [found[i] for i in run_ids if i in found]

    def log_params(self, run_id, params):
        if not params:
            return
        sql = self._sql
        existing_sql = sql("SELECT p.key, p.value FROM runs r LEFT JOIN params p ON p.run_id = r.id "
                           "WHERE r.id = ? AND r.project_id = ?")
        with self._cursor(write=True) as cur:
            if self._sqlite:
                cur.execute(existing_sql, (run_id, self.project_id))
                existing = self._check_params(run_id, params, cur.fetchall())
                cur.executemany(sql("INSERT INTO params (run_id, key, value, value_num) VALUES (?, ?, ?, ?) "
                                    "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value, "
                                    "value_num = excluded.value_num"),
                                [(run_id, k, v, _number(v)) for k, v in params.items() if existing.get(k) != v])
            else:
                # PostgreSQL: one round trip (and the COMMIT); the writes are undone when the checks fail.
                # Rows are written only with their run in this project: no foreign key error to tell apart.
                with cur.connection.pipeline():
                    cur.execute(existing_sql, (run_id, self.project_id))
                    cur.connection.cursor().execute(
                        "INSERT INTO params (run_id, key, value, value_num) SELECT r.id, u.key, u.value, u.num "
                        "FROM runs r CROSS JOIN unnest(%s::text[], %s::text[], %s::float8[]) AS u(key, value, num) "
                        "WHERE r.id = %s AND r.project_id = %s ON CONFLICT (run_id, key) DO UPDATE SET "
                        "value = excluded.value, value_num = excluded.value_num "
                        "WHERE params.value IS DISTINCT FROM excluded.value",
                        (list(params), list(params.values()), [_number(v) for v in params.values()], run_id,
                         self.project_id))
                self._check_params(run_id, params, cur.fetchall())
        self._wrote(len(params))

    @staticmethod
    def _check_params(run_id, params: dict, found: list) -> dict:
        """The params the run has (``found``: its ``(key, value)`` rows, one ``(None, None)`` for a
        run without any); raises unless it was found and no param changes."""
        if not found:
            raise RunNotFoundError(f"no run with id {run_id!r}")
        existing = {key: value for key, value in found if key is not None}
        conflicts = {k: (existing[k], v) for k, v in params.items()
                     if k in existing and existing[k] != v and not k.startswith(MUTABLE_PARAM_PREFIXES)}
        if conflicts:
            shown = ", ".join(f"{k}: logged {old!r}, now {new!r}" for k, (old, new) in conflicts.items())
            raise InvalidArgumentError(
                f"params cannot change once logged ({shown}); nothing was logged. "
                "Log the new value under another name, as a tag, or in a new run.")
        return existing

    def set_tags(self, run_id, tags):
        if not tags:
            return
        with self._cursor(write=True) as cur:
            self._require_run(cur, run_id)
            cur.executemany(self._sql("INSERT INTO tags (run_id, key, value) VALUES (?, ?, ?) "
                                      "ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value"),
                            [(run_id, k, v) for k, v in tags.items()])
        self._wrote(len(tags))

    def delete_tag(self, run_id, key):
        with self._cursor(write=True) as cur:
            self._require_run(cur, run_id)
            cur.execute(self._sql("DELETE FROM tags WHERE run_id = ? AND key = ?"), (run_id, key))

    def log_metrics(self, points, batch_id: str | None = None) -> bool:
        """See ``Store.log_metrics``. ``batch_id``: an id the sender gave this batch (at most 64
        characters); a batch with an id already stored is not stored again. Returns whether the
        points were written (``False``: that batch was already there)."""
        if not points:
            return True
        groups: dict = {}
        for p in points:
            key = (p[0], p[1])
            group = groups.get(key)
            if group is None:
                groups[key] = [p]
            else:
                group.append(p)
        return self.log_metric_series(
            [(run_id, key, [p[3] for p in group], [p[2] for p in group], [p[4] for p in group])
             for (run_id, key), group in groups.items()], batch_id=batch_id)

    def log_metric_series(self, series, batch_id: str | None = None) -> bool:
        """See ``Store.log_metric_series``; ``batch_id`` and the result as for ``log_metrics``."""
        chunks, latest = [], []
        for run_id, key, steps, values, stamps in series:
            if not steps:
                continue
            if not all(map(operator.le, steps, steps[1:])):
                order = sorted(range(len(steps)), key=steps.__getitem__)  # stable: equal steps keep logging order
                steps, values, stamps = ([column[i] for i in order] for column in (steps, values, stamps))
            latest.append((run_id, key, values[-1], steps[-1], stamps[-1]))
            try:
                packed_values = _pack("d", values)
            except TypeError:  # None (NaN read back from SQLite) among them
                packed_values = _pack("d", [math.nan if v is None else v for v in values])
            chunks.append((run_id, key, len(steps), steps[0], steps[-1], _pack("q", steps), packed_values,
                           _pack("d", stamps)))
        if not chunks:
            return True
        run_ids = sorted({chunk[0] for chunk in chunks})
        chunks_sql = self._sql('INSERT INTO metric_chunks (run_id, key, count, first_step, last_step, steps, '
                               '"values", timestamps) VALUES (?, ?, ?, ?, ?, ?, ?, ?)')
        try:
            with self._cursor(write=True) as cur:
                if self._sqlite:
                    if batch_id is not None:
                        cur.execute(self._sql(_NEW_BATCH), (batch_id, self.project_id, time.time()))
                        if cur.rowcount == 0:
                            return False
                    if self._view_of is not None:  # a project's view (the team server): every run must be the project's
                        self._require_runs(cur, run_ids)
                    cur.executemany(self._latest_sql, latest)
                    cur.executemany(chunks_sql, chunks)
                else:
                    self._write_series_at_once(cur, batch_id, run_ids, latest, chunks_sql, chunks)
        except _AlreadyStored:
            return False
        except _RunMissing as missing:
            with self._cursor(write=False) as cur:
                self._require_runs(cur, run_ids)  # names the missing run
            raise missing.__cause__  # (they are all there now: created meanwhile) the database's error
        self._wrote(len(latest))
        return True

    def _write_series_at_once(self, cur, batch_id, run_ids, latest, chunks_sql, chunks) -> None:
        """PostgreSQL: the batch id, the runs' check and the writes in one round trip (then the
        COMMIT); raising after it undoes the writes."""
        conn = cur.connection
        batch = conn.cursor() if batch_id is not None else None
        runs = conn.cursor() if self._view_of is not None else None
        try:
            with conn.pipeline():
                if batch is not None:
                    batch.execute(self._sql(_NEW_BATCH), (batch_id, self.project_id, time.time()))
                if runs is not None:  # a project's view (the team server): every run must be the project's
                    among, ids = self._among("id", run_ids)
                    runs.execute(f"SELECT id FROM runs WHERE {among} AND project_id = %(project)s",
                                 {**ids, "project": self.project_id})
                cur.executemany(self._latest_sql, latest)
                cur.executemany(chunks_sql, chunks)
        except Exception as exc:
            if runs is not None and getattr(exc, "sqlstate", None) == _FOREIGN_KEY_VIOLATION:
                raise _RunMissing() from exc
            raise
        if batch is not None and batch.rowcount == 0:
            raise _AlreadyStored()
        if runs is not None:
            missing = set(run_ids) - {r[0] for r in runs.fetchall()}
            if missing:
                raise RunNotFoundError(f"no run with id {min(missing)!r}")

    def _require_runs(self, cur, run_ids) -> None:
        for chunk in _chunks(sorted(run_ids)):
            cur.execute(self._sql(f"SELECT id FROM runs WHERE id IN ({', '.join('?' * len(chunk))}) "
                                  "AND project_id = ?"), chunk + [self.project_id])
            missing = set(chunk) - {r[0] for r in cur.fetchall()}
            if missing:
                raise RunNotFoundError(f"no run with id {min(missing)!r}")

    def get_metric_history(self, run_id, key):
        C = S.metric_chunks
        with self._read() as conn:
            if self._view_of is not None:
                self._require_run_core(conn, run_id)
            rows = conn.execute(select(C.c.first_step, C.c.last_step, C.c.steps, C.c["values"], C.c.timestamps)
                                .where(C.c.run_id == run_id, C.c.key == key).order_by(C.c.id)).all()
        steps, values, stamps = array.array("q"), array.array("d"), array.array("d")
        ordered, last = True, None
        for r in rows:
            ordered = ordered and (last is None or r.first_step >= last)
            last = r.last_step if last is None else max(last, r.last_step)
            steps.frombytes(r.steps)
            values.frombytes(r.values)
            stamps.frombytes(r.timestamps)
        if _BIG_ENDIAN:
            for a in (steps, values, stamps):
                a.byteswap()
        if not ordered:  # chunks from several writers interleave: one stable sort by step
            order = sorted(range(len(steps)), key=steps.__getitem__)
            steps = array.array("q", [steps[i] for i in order])
            values = array.array("d", [values[i] for i in order])
            stamps = array.array("d", [stamps[i] for i in order])
        return {"count": len(steps), "encoding": "base64-le",
                "steps": _b64(steps), "values": _b64(values), "timestamps": _b64(stamps)}

    # -- search --------------------------------------------------------------------------------
    _ATTRIBUTES = {"id": "id", "run_id": "id", "name": "name", "run_name": "name", "status": "status",
                   "start_time": "start_time", "end_time": "end_time", "experiment_id": "experiment_id",
                   "parent_run_id": "parent_run_id"}
    _DATASET_FIELDS = ("name", "digest", "source", "source_type", "id", "context")
    _OPS = ("=", "!=", "<", "<=", ">", ">=", "LIKE", "ILIKE", "IN", "NOT IN")

    @staticmethod
    def _compare(column, op, value):
        if op == "=":
            return column == value
        if op == "!=":
            return column != value
        if op == "<":
            return column < value
        if op == "<=":
            return column <= value
        if op == ">":
            return column > value
        if op == ">=":
            return column >= value
        if op == "LIKE":
            return column.like(value)
        if op == "ILIKE":
            return column.ilike(value)
        if op == "IN":
            return column.in_(list(value))
        if op == "NOT IN":
            return column.not_in(list(value))
        raise InvalidArgumentError(f"search: unknown operator {op!r}; use one of {SQLStore._OPS}")

    @staticmethod
    def _is_number(value) -> bool:
        values = value if isinstance(value, (list, tuple)) else [value]
        return bool(values) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)

    def search_runs(self, query):
        runs = S.runs
        stmt = select(runs.c.id).select_from(runs)
        froms = runs
        conditions = []
        filtered: dict = {}  # metric key -> the latest_metrics alias a filter joined (ordering reuses it)
        conditions.append(runs.c.project_id == self.project_id)
        if query.get("experiment_ids"):
            conditions.append(runs.c.experiment_id.in_(list(query["experiment_ids"])))
        if query.get("statuses"):
            conditions.append(runs.c.status.in_(list(query["statuses"])))
        for n, clause in enumerate(query.get("clauses") or ()):
            kind, key, op, value = clause["kind"], clause["key"], clause["op"], clause["value"]
            if kind == "metric":
                lm = filtered.get(key)
                if lm is None:
                    lm = filtered[key] = S.latest_metrics.alias(f"m{n}")
                    froms = froms.join(lm, sa.and_(lm.c.run_id == runs.c.id, lm.c.key == key))
                conditions.append(self._compare(lm.c.value, op, value))
            elif kind == "param":
                p = S.params.alias(f"p{n}")
                froms = froms.join(p, sa.and_(p.c.run_id == runs.c.id, p.c.key == key))
                numeric = self._is_number(value) and op not in ("LIKE", "ILIKE")
                conditions.append(self._compare(p.c.value_num if numeric else p.c.value, op,
                                                value if numeric or op in ("IN", "NOT IN")
                                                else str(value)))
            elif kind == "tag":
                t = S.tags.alias(f"t{n}")
                froms = froms.join(t, sa.and_(t.c.run_id == runs.c.id, t.c.key == key))
                conditions.append(self._compare(t.c.value, op, value))
            elif kind == "attribute":
                if key not in self._ATTRIBUTES:
                    raise InvalidArgumentError(f"search: unknown run attribute {key!r}; "
                                               f"use one of {sorted(self._ATTRIBUTES)}")
                conditions.append(self._compare(runs.c[self._ATTRIBUTES[key]], op, value))
            elif kind == "dataset":
                if key not in self._DATASET_FIELDS:
                    raise InvalidArgumentError(f"search: unknown dataset field {key!r}; "
                                               f"use one of {list(self._DATASET_FIELDS)}")
                rd, d = S.run_datasets.alias(f"rd{n}"), S.datasets.alias(f"d{n}")
                column = rd.c.context if key == "context" else d.c[key]
                conditions.append(sa.exists(select(sa.literal(1)).select_from(
                    rd.join(d, d.c.id == rd.c.dataset_id)).where(rd.c.run_id == runs.c.id,
                                                                 self._compare(column, op, value))))
            else:
                raise InvalidArgumentError(f"search: unknown clause kind {kind!r}")
        order = []
        for n, item in enumerate(query.get("order_by") or ()):
            kind, key, ascending = item["kind"], item["key"], item.get("ascending", True)
            if kind == "metric":
                lm = filtered.get(key)
                if lm is None:
                    lm = S.latest_metrics.alias(f"om{n}")
                    froms = froms.outerjoin(lm, sa.and_(lm.c.run_id == runs.c.id, lm.c.key == key))
                columns = [lm.c.value]
            elif kind == "param":
                p = S.params.alias(f"op{n}")
                froms = froms.outerjoin(p, sa.and_(p.c.run_id == runs.c.id, p.c.key == key))
                columns = [p.c.value_num, p.c.value]
            elif kind == "tag":
                t = S.tags.alias(f"ot{n}")
                froms = froms.outerjoin(t, sa.and_(t.c.run_id == runs.c.id, t.c.key == key))
                columns = [t.c.value]
            elif kind == "attribute" and key in self._ATTRIBUTES:
                columns = [runs.c[self._ATTRIBUTES[key]]]
            else:
                raise InvalidArgumentError(f"search: cannot order by {kind} {key!r}")
            order += [(c.asc() if ascending else c.desc()).nulls_last() for c in columns]
        order += [runs.c.start_time.desc(), runs.c.id]
        stmt = stmt.select_from(froms).where(*conditions).order_by(*order)
        if query.get("max_results") is not None:
            stmt = stmt.limit(int(query["max_results"]))
        with self._read() as conn:
            if query.get("experiment_ids"):  # an unknown id would find nothing without a word
                wanted = list(query["experiment_ids"])
                known = {r[0] for r in conn.execute(select(S.experiments.c.id).where(
                    S.experiments.c.id.in_(wanted), S.experiments.c.project_id == self.project_id))}
                missing = [e for e in wanted if e not in known]
                if missing:
                    raise ExperimentNotFoundError(f"search_runs: no experiment with id {missing[0]!r}")
            ids = [r[0] for r in conn.execute(stmt)]
        return self.get_runs(ids)

    # -- datasets ------------------------------------------------------------------------------
    @staticmethod
    def _dataset(row, context=None) -> dict:
        record = {"id": row.id, "name": row.name, "digest": row.digest, "source_type": row.source_type,
                  "source": row.source or "", "schema": _loads(row.schema, {}), "profile": _loads(row.profile, {}),
                  "tags": _loads(row.tags, {}), "created_at": row.created_at}
        if context is not None:
            record["context"] = context
        return record

    def _dedup_key(self, name, digest, source):
        if digest:
            basis = f"digest\0{name}\0{digest}"
        elif source:
            basis = f"source\0{name}\0{source}"
        else:
            return None
        if self.project_id != S.DEFAULT_PROJECT:  # (the default project's keys are as before projects)
            basis = f"project\0{self.project_id}\0{basis}"
        return hashlib.sha256(basis.encode()).hexdigest()

    def log_dataset(self, run_id, dataset, context, logged_at):
        for attempt in range(3):
            try:
                return self._log_dataset_once(run_id, dataset, context, logged_at)
            except sa.exc.IntegrityError:  # a concurrent writer created the same dataset or link
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _log_dataset_once(self, run_id, dataset, context, logged_at):
        D = S.datasets
        key = self._dedup_key(dataset["name"], dataset.get("digest") or "", dataset.get("source") or "")
        with self._write() as conn:
            if run_id is not None:
                self._require_run_core(conn, run_id)
            row = None if key is None else conn.execute(select(D).where(D.c.dedup_key == key)).first()
            if row is None:
                conn.execute(D.insert().values(
                    id=dataset["id"], project_id=self.project_id, name=dataset["name"],
                    digest=dataset.get("digest") or "",
                    source_type=dataset.get("source_type") or "local", source=dataset.get("source") or "",
                    schema=_dumps(dataset.get("schema") or {}), profile=_dumps(dataset.get("profile") or {}),
                    tags=_dumps(dataset.get("tags") or {}), created_at=dataset.get("created_at") or logged_at,
                    dedup_key=key))
                dataset_id = dataset["id"]
            else:
                dataset_id = row.id
                # a later log may know more (a DataFrame's schema, new tags): keep the union
                merged = {}
                for field in ("schema", "profile", "tags"):
                    old, new = _loads(getattr(row, field), {}), dataset.get(field) or {}
                    if new and {**old, **new} != old:
                        merged[field] = _dumps({**old, **new})
                if merged:
                    conn.execute(D.update().where(D.c.id == dataset_id).values(**merged))
            if run_id is not None:
                RD = S.run_datasets
                linked = conn.execute(select(RD.c.position).where(
                    RD.c.run_id == run_id, RD.c.dataset_id == dataset_id, RD.c.context == context)).first()
                if linked is None:
                    position = conn.execute(select(func.count()).select_from(RD).where(RD.c.run_id == run_id)
                                            ).scalar_one()
                    conn.execute(RD.insert().values(run_id=run_id, dataset_id=dataset_id, context=context,
                                                    position=position, created_at=logged_at))
            row = conn.execute(select(D).where(D.c.id == dataset_id)).first()
            return self._dataset(row)

    def get_run_datasets(self, run_id):
        D, RD = S.datasets, S.run_datasets
        with self._read() as conn:
            if self._view_of is not None:
                self._require_run_core(conn, run_id)
            rows = conn.execute(select(D, RD.c.context).select_from(RD.join(D, D.c.id == RD.c.dataset_id))
                                .where(RD.c.run_id == run_id).order_by(RD.c.position, RD.c.created_at)).all()
        return [self._dataset(r, r.context) for r in rows]

    # -- artifacts -----------------------------------------------------------------------------
    def log_artifacts(self, run_id, entries):
        rows = [{"run_id": run_id, "path": e["path"], "digest": e["digest"], "size": int(e["size"]),
                 "created_at": e["created_at"]} for e in entries]
        with self._write() as conn:
            self._require_run_core(conn, run_id)
            self._upsert(conn, S.artifacts, rows, ("run_id", "path"), ("digest", "size", "created_at"))

    def list_artifacts(self, run_id):
        A = S.artifacts
        with self._read() as conn:
            if self._view_of is not None:
                self._require_run_core(conn, run_id)
            rows = conn.execute(select(A.c.path, A.c.digest, A.c.size, A.c.created_at)
                                .where(A.c.run_id == run_id).order_by(A.c.path)).all()
        return [{"path": r.path, "digest": r.digest, "size": r.size, "created_at": r.created_at} for r in rows]

    # -- model registry -------------------------------------------------------------------------
    @staticmethod
    def _version(row) -> dict:
        return {"id": row.id, "model_id": row.model_id, "version": row.version, "run_id": row.run_id,
                "stage": row.stage, "source": row.source, "framework": row.framework,
                "description": row.description, "created_at": row.created_at, "updated_at": row.updated_at,
                **_richer_version(row)}

    def _model(self, conn, row) -> dict:
        V, A = S.model_versions, S.model_aliases
        versions = conn.execute(select(V).where(V.c.model_id == row.id).order_by(V.c.version)).all()
        aliases = conn.execute(select(A.c.alias, A.c.version).where(A.c.model_id == row.id)
                               .order_by(A.c.alias)).all()
        return {"id": row.id, "name": row.name, "description": row.description, "tags": _loads(row.tags, {}),
                "created_at": row.created_at, "updated_at": row.updated_at,
                "versions": [self._version(v) for v in versions], "aliases": {a.alias: a.version for a in aliases},
                **_richer_model(row)}

    def ensure_registered_model(self, model_id, name, created_at, description=None):
        M = S.registered_models
        try:
            with self._write() as conn:
                if conn.execute(select(M.c.id).where(M.c.project_id == self.project_id, M.c.name == name)
                                ).first() is None:
                    conn.execute(M.insert().values(id=model_id, project_id=self.project_id, name=name,
                                                   description=description, tags="{}", created_at=created_at,
                                                   updated_at=created_at))
        except sa.exc.IntegrityError:  # created concurrently
            pass
        return self.get_registered_model(name=name)

    def get_registered_model(self, name=None, model_id=None):
        M = S.registered_models
        where = M.c.name == name if name is not None else M.c.id == model_id
        with self._read() as conn:
            row = conn.execute(select(M).where(where, M.c.project_id == self.project_id)).first()
            return None if row is None else self._model(conn, row)

    def list_registered_models(self):
        M = S.registered_models
        with self._read() as conn:
            return [self._model(conn, r) for r in conn.execute(select(M).where(M.c.project_id == self.project_id)
                                                                .order_by(M.c.name)).all()]

    def create_model_version(self, version):
        V, M = S.model_versions, S.registered_models
        for attempt in range(5):
            try:
                with self._write() as conn:
                    model = conn.execute(select(M.c.id, M.c.last_version).where(
                        M.c.id == version["model_id"], M.c.project_id == self.project_id)).first()
                    if model is None:
                        raise ModelNotFoundError(f"no registered model with id {version['model_id']!r}")
                    if version.get("run_id") is not None:
                        self._require_run_core(conn, version["run_id"])
                    highest = conn.execute(select(func.coalesce(func.max(V.c.version), 0))
                                           .where(V.c.model_id == version["model_id"])).scalar_one()
                    # numbers are never reused, even after the newest version was deleted
                    number = max(highest, model.last_version or 0) + 1
                    name = version.get("name")
                    if name is None:
                        name = f"_v{number}"
                    elif conn.execute(select(V.c.version).where(V.c.model_id == version["model_id"],
                                                                V.c.name == name)).first() is not None:
                        raise DuplicateError(f"model version {name!r} already exists for this model; "
                                             "version names are unique per model")
                    conn.execute(V.insert().values(
                        id=version["id"], model_id=version["model_id"], version=number, run_id=version.get("run_id"),
                        stage=version.get("stage") or "development", source=version.get("source"),
                        framework=version.get("framework"), description=version.get("description"),
                        created_at=version["created_at"], updated_at=version["created_at"], name=name,
                        properties=_dumps(version.get("properties") or {}),
                        **{k: version.get(k) for k in _VERSION_TEXT_FIELDS}))
                    if version.get("description") is not None:
                        conn.execute(M.update().where(M.c.id == version["model_id"], M.c.description.is_(None))
                                     .values(description=version["description"]))
                    # the new version is the latest: a pinned pointer is cleared
                    conn.execute(M.update().where(M.c.id == version["model_id"])
                                 .values(updated_at=version["created_at"], last_version=number, latest_version=None))
                    return self._version(conn.execute(select(V).where(V.c.id == version["id"])).first())
            except sa.exc.IntegrityError:  # another writer took this number or name (PostgreSQL): try again
                if attempt == 4:
                    raise
        raise AssertionError("unreachable")

    def update_model_version(self, model_id, version, fields, updated_at):
        V = S.model_versions
        values = {k: fields[k] for k in ("stage", "description", *_VERSION_TEXT_FIELDS) if k in fields}
        if "properties" in fields:
            values["properties"] = _dumps(fields["properties"] or {})
        with self._write() as conn:
            self._require_model(conn, model_id)
            if fields.get("archive_others_in_stage") and "stage" in values:
                conn.execute(V.update().where(V.c.model_id == model_id, V.c.stage == values["stage"],
                                              V.c.version != version)
                             .values(stage="archived", updated_at=updated_at))
            done = conn.execute(V.update().where(V.c.model_id == model_id, V.c.version == version)
                                .values(updated_at=updated_at, **values))
            if done.rowcount == 0:
                raise ModelNotFoundError(f"registered model {model_id!r} has no version {version}")

    def _require_model(self, conn, model_id) -> None:
        M = S.registered_models
        if conn.execute(select(M.c.id).where(M.c.id == model_id, M.c.project_id == self.project_id)).first() is None:
            raise ModelNotFoundError(f"no registered model with id {model_id!r}")

    def set_model_alias(self, model_id, alias, version):
        V = S.model_versions
        with self._write() as conn:
            self._require_model(conn, model_id)
            if conn.execute(select(V.c.id).where(V.c.model_id == model_id, V.c.version == version)).first() is None:
                raise ModelNotFoundError(f"registered model {model_id!r} has no version {version}")
            self._upsert(conn, S.model_aliases, [{"model_id": model_id, "alias": alias, "version": version}],
                         ("model_id", "alias"), ("version",))

    def delete_model_alias(self, model_id, alias):
        A = S.model_aliases
        with self._write() as conn:
            self._require_model(conn, model_id)
            conn.execute(A.delete().where(A.c.model_id == model_id, A.c.alias == alias))

    def get_model_lineage(self, model_id):
        V, R = S.model_versions, S.runs
        with self._read() as conn:
            M = S.registered_models
            if conn.execute(select(M.c.id).where(M.c.id == model_id, M.c.project_id == self.project_id)
                            ).first() is None:
                return None
            rows = conn.execute(select(V.c.version, V.c.stage, V.c.run_id, R.c.name.label("run_name"))
                                .select_from(V.outerjoin(R, R.c.id == V.c.run_id))
                                .where(V.c.model_id == model_id).order_by(V.c.version.desc())).all()
        versions = []
        cache: dict = {}
        for r in rows:
            if r.run_id and r.run_id not in cache:
                cache[r.run_id] = [{k: v for k, v in d.items() if k != "context"}
                                   for d in self.get_run_datasets(r.run_id)]
            versions.append({"version": r.version, "stage": r.stage, "run_id": r.run_id or "",
                             "run_name": r.run_name or "", "datasets": list(cache.get(r.run_id, []))})
        return {"model_id": model_id, "versions": versions}


    # -- model registry, richer (issue 12) ------------------------------------------------------
    _MODEL_FIELDS = ("description", "owner", "category", "tags", "state", "latest_version", "properties")
    _PAGE_ORDER = ("created_at", "updated_at", "id")

    def update_registered_model(self, model_id, fields, updated_at):
        M, V = S.registered_models, S.model_versions
        unknown = set(fields) - set(self._MODEL_FIELDS)
        if unknown:
            raise InvalidArgumentError(f"update_registered_model: cannot set {sorted(unknown)}; "
                                       f"fields are {self._MODEL_FIELDS}")
        values = dict(fields)
        for name in ("tags", "properties"):
            if name in values:
                values[name] = _dumps(values[name] or {})
        with self._write() as conn:
            self._require_model(conn, model_id)
            if values.get("latest_version") is not None and conn.execute(select(V.c.id).where(
                    V.c.model_id == model_id, V.c.version == values["latest_version"])).first() is None:
                raise ModelNotFoundError(f"registered model {model_id!r} has no version {values['latest_version']}")
            done = conn.execute(M.update().where(M.c.id == model_id).values(updated_at=updated_at, **values))
            if done.rowcount == 0:
                raise ModelNotFoundError(f"no registered model with id {model_id!r}")

    def delete_model_version(self, model_id, version):
        M, V, A = S.registered_models, S.model_versions, S.model_aliases
        with self._write() as conn:
            self._require_model(conn, model_id)
            done = conn.execute(V.delete().where(V.c.model_id == model_id, V.c.version == version))
            if done.rowcount == 0:
                raise ModelNotFoundError(f"registered model {model_id!r} has no version {version}")
            conn.execute(A.delete().where(A.c.model_id == model_id, A.c.version == version))
            conn.execute(M.update().where(M.c.id == model_id, M.c.latest_version == version)
                         .values(latest_version=None))
            conn.execute(M.update().where(M.c.id == model_id).values(updated_at=time.time()))

    def delete_registered_model(self, model_id):
        M, V, A = S.registered_models, S.model_versions, S.model_aliases
        with self._write() as conn:
            if conn.execute(select(M.c.id).where(M.c.id == model_id, M.c.project_id == self.project_id)
                            ).first() is None:
                return
            conn.execute(A.delete().where(A.c.model_id == model_id))
            conn.execute(V.delete().where(V.c.model_id == model_id))
            conn.execute(M.delete().where(M.c.id == model_id))

    def _page(self, table, where, order_by, ascending, limit, after):
        if order_by not in self._PAGE_ORDER:
            raise InvalidArgumentError(f"order_by must be one of {list(self._PAGE_ORDER)}, got {order_by!r}")
        column, ident = table.c[order_by], table.c.id
        later = (lambda c, v: c > v) if ascending else (lambda c, v: c < v)
        conditions = list(where)
        if after is not None:
            value, last_id = self._page_after(order_by, after)
            conditions.append(later(ident, last_id) if order_by == "id" else
                              sa.or_(later(column, value), sa.and_(column == value, later(ident, last_id))))
        order = [column, ident] if order_by != "id" else [ident]
        return (select(table).where(*conditions)
                .order_by(*[(c.asc() if ascending else c.desc()) for c in order]).limit(int(limit)))

    @staticmethod
    def _page_after(order_by, after) -> tuple:
        """``after`` as ``(value, id)``, or InvalidArgumentError naming what a page cursor must be."""
        numeric = order_by != "id"
        valid = (isinstance(after, (list, tuple)) and len(after) == 2 and isinstance(after[1], str)
                 and (isinstance(after[0], (int, float)) and not isinstance(after[0], bool) if numeric
                      else isinstance(after[0], str)))
        if not valid:
            raise InvalidArgumentError(
                f"after must be [{'a number' if numeric else 'an id'}, an id] as returned with the previous page "
                f"(ordered by {order_by}), got {after!r:.200}")
        return after[0], after[1]

    def page_registered_models(self, order_by, ascending, limit, after):
        M = S.registered_models
        with self._read() as conn:
            rows = conn.execute(self._page(M, (M.c.project_id == self.project_id,), order_by, ascending, limit,
                                           after)).all()
            return [self._model(conn, r) for r in rows]

    def page_model_versions(self, model_id, order_by, ascending, limit, after):
        V = S.model_versions
        with self._read() as conn:
            self._require_model(conn, model_id)
            rows = conn.execute(self._page(V, (V.c.model_id == model_id,), order_by, ascending, limit, after)).all()
        return [self._version(r) for r in rows]

    # -- tagged artifact sets (issue 12) ---------------------------------------------------------
    @staticmethod
    def _artifact_tag(row) -> dict:
        return {"name": row.name, "run_id": row.run_id, "created_at": row.created_at}

    def create_artifact_tag(self, name, run_id, created_at):
        T = S.artifact_tags
        taken = DuplicateError(f"tag {name!r} already exists; a tag names one upload and is never moved "
                               f"(podstack.artifacts.delete_tag({name!r}) frees the name)")
        try:
            with self._write() as conn:
                self._require_run_core(conn, run_id)
                if conn.execute(select(T.c.name).where(T.c.project_id == self.project_id, T.c.name == name)
                                ).first() is not None:
                    raise taken
                conn.execute(T.insert().values(project_id=self.project_id, name=name, run_id=run_id,
                                               created_at=created_at))
        except sa.exc.IntegrityError:  # bound by another writer meanwhile
            raise taken from None
        return {"name": name, "run_id": run_id, "created_at": created_at}

    def get_artifact_tag(self, name):
        T = S.artifact_tags
        with self._read() as conn:
            row = conn.execute(select(T).where(T.c.project_id == self.project_id, T.c.name == name)).first()
        return None if row is None else self._artifact_tag(row)

    def list_artifact_tags(self):
        T = S.artifact_tags
        with self._read() as conn:
            return [self._artifact_tag(r) for r in conn.execute(
                select(T).where(T.c.project_id == self.project_id).order_by(T.c.name)).all()]

    def delete_artifact_tag(self, name):
        T = S.artifact_tags
        with self._write() as conn:
            return conn.execute(T.delete().where(T.c.project_id == self.project_id, T.c.name == name)).rowcount > 0


# -- model registry, richer (issue 12): the columns migration 0003m added ---------------------------------------------
_VERSION_TEXT_FIELDS = ("uri", "model_format_name", "model_format_version", "storage_key", "storage_path", "author")


def _richer_version(row) -> dict:
    return {"name": row.name, **{k: getattr(row, k) for k in _VERSION_TEXT_FIELDS},
            "properties": _loads(row.properties, {})}


def _richer_model(row) -> dict:
    return {"owner": row.owner, "category": row.category, "state": row.state or "LIVE",
            "latest_version": row.latest_version, "last_version": row.last_version or 0,
            "properties": _loads(row.properties, {})}



for _name in sorted(Store.__abstractmethods__ | {"get_run", "has_run"}):
    setattr(SQLStore, _name, _guarded(getattr(SQLStore, _name)))
