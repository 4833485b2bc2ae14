"""Projects, users, memberships and API keys, in the tracking database (what ``podstack admin`` manages).

An API key is ``pjt_<id>_<secret>``: ``id`` (12 characters) is stored as it is and indexed, so a
key is found with one lookup; ``secret`` (43 characters, 256 random bits) is stored only as an
HMAC-SHA256 keyed with the server's secret, so the database alone does not give anyone a key.
A key belongs to one project (and, with ``--user``, to a user who is a member of it); revoking
it, or removing the user from the project, refuses it from the next request on.

On PostgreSQL a server keeps the keys it has checked in memory (no lookup per request) for as long
as it listens to the database's notifications of changes to keys, memberships, users and projects
(sent by triggers, migration 0004, whoever writes): each one forgets every key it kept. While it is
not listening (the connection lost, not yet back) every request looks its key up.

The server's secret comes from ``PODSTACK_SERVER_SECRET`` (64 hex characters) or the file
``<podstack home>/server-secret`` (created, readable by its owner only, on first use). The
database remembers a fingerprint of it, so a server or ``podstack admin`` started with another
secret says so instead of refusing every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import os
import logging
import secrets
import select
import threading
import time
import uuid
from pathlib import Path

import sqlalchemy as sa

from ..errors import ConfigurationError, InvalidArgumentError, NotFoundError
from ..tracking import _validate as V
from ..tracking.store import _schema as S
from ..tracking.store.sql import reading

__all__ = ["Accounts", "Principal", "load_secret", "KEY_PREFIX", "SECRET_ENV"]

KEY_PREFIX = "pjt_"
SECRET_ENV = "PODSTACK_SERVER_SECRET"
_ID_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789"
_ID_LENGTH = 12
_SECRET_LENGTH = 43  # token_urlsafe(32)
_LAST_USED_EVERY = 60.0  # seconds between writes of a key's last use
_CHANNEL = "podstack_accounts"  # what migration 0004's triggers notify
_WATCHER_NAME = "podstack-accounts-watch"
_PROOF_EVERY = 1.0  # seconds between the listening connection's proofs of life
_PROOF_WITHIN = 3.0  # ... and how old the last proof may be for kept keys to be trusted

log = logging.getLogger("podstack.server")


def load_secret(path: str | os.PathLike | None = None) -> bytes:
    """The server's secret: ``$PODSTACK_SERVER_SECRET``, else the file ``path`` (default
    ``<podstack home>/server-secret``), created with 32 random bytes if it does not exist."""
    text = os.environ.get(SECRET_ENV)
    if text:
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            raise ConfigurationError(f"{SECRET_ENV} must be hex (64 characters: 32 random bytes)") from None
        if len(secret) < 16:
            raise ConfigurationError(f"{SECRET_ENV} is too short: give 32 random bytes as 64 hex characters")
        return secret
    if path is None:
        from ..config import settings

        path = settings().home / "server-secret"
    path = Path(path).expanduser()
    try:
        return bytes.fromhex(path.read_text().strip())
    except FileNotFoundError:
        pass
    except ValueError:
        raise ConfigurationError(f"{path} does not hold a hex secret; remove it to make a new one "
                                 "(every API key made with the old one stops working)") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret.hex() + "\n")
    return secret


@dataclasses.dataclass(frozen=True)
class Principal:
    """Who a request comes from: the key's id, its project (id and name) and its user (if any)."""

    key_id: str
    project_id: str
    project_name: str
    user_id: str | None
    user_name: str | None

    @property
    def who(self) -> str:
        return self.user_name or f"key {KEY_PREFIX}{self.key_id}"


def _parse_key(token) -> tuple[str, str] | None:
    if not isinstance(token, str) or len(token) != len(KEY_PREFIX) + _ID_LENGTH + 1 + _SECRET_LENGTH:
        return None
    if not token.startswith(KEY_PREFIX) or token[len(KEY_PREFIX) + _ID_LENGTH] != "_":
        return None
    key_id = token[len(KEY_PREFIX):len(KEY_PREFIX) + _ID_LENGTH]
    if not all(c in _ID_CHARS for c in key_id):
        return None
    return key_id, token[len(KEY_PREFIX) + _ID_LENGTH + 1:]


class _CheckedKeys:
    """Keys checked recently (``key id -> (secret hash, Principal)``), trusted only while a
    connection of their own LISTENs to the accounts' changes on PostgreSQL.

    ``generation`` moves on with every notification and every lost or new connection, each time
    forgetting every key; a key looked up in the database is kept only if the generation did not
    move meanwhile (a revocation committed during the lookup is not undone by keeping its result)."""

    def __init__(self, engine: sa.engine.Engine):
        self._engine = engine
        self._keys: dict[str, tuple[str, Principal]] = {}
        self._lock = threading.Lock()
        self.generation = 0
        self._proved_at: float | None = None  # monotonic time of the last proof of life (None: not listening)
        self._socket: int | None = None  # the listening connection's
        self._socket_was_open = False  # (the last attempt listened: a new loss is worth a warning)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, name=_WATCHER_NAME, daemon=True)
        self._thread.start()

    def get(self, key_id: str) -> tuple[str, Principal] | None:
        proved_at = self._proved_at
        if proved_at is None or time.monotonic() - proved_at > _PROOF_WITHIN or self._news_waiting():
            return None
        return self._keys.get(key_id)

    def _news_waiting(self) -> bool:
        """Whether a notification arrived that the watching thread has not taken in yet (a key
        revoked a moment ago: not trusted until it has)."""
        fd = self._socket
        if fd is None:
            return True
        try:
            poll = select.poll()
            poll.register(fd, select.POLLIN)
            return bool(poll.poll(0))
        except (OSError, ValueError):
            return True

    def keep(self, generation: int, key_id: str, entry: tuple[str, Principal]) -> None:
        with self._lock:
            if generation == self.generation and self._proved_at is not None:
                self._keys[key_id] = entry

    def _forget(self) -> None:
        with self._lock:
            self.generation += 1
            self._keys.clear()

    def _watch(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # noqa: BLE001 - lost: look keys up until listening again
                failures = 1 if self._socket_was_open else failures + 1
                if failures == 1:
                    log.warning("podstack server: not listening to API key changes (%s); every request looks "
                                "its key up until the database is back", exc)
            self._proved_at = None
            self._forget()
            self._stop.wait(min(1.0 * failures, 5.0))

    def _listen(self) -> None:
        self._socket_was_open = False
        pooled = self._engine.raw_connection()
        conn = pooled.driver_connection
        pooled.detach()  # a connection of its own, made with the engine's settings
        try:
            conn.autocommit = True
            conn.execute(f"SET application_name = '{_WATCHER_NAME}'")  # (seen so in pg_stat_activity)
            conn.execute(f"LISTEN {_CHANNEL}")
            self._forget()  # what was kept before this connection listened is not trusted
            self._socket = conn.fileno()
            self._socket_was_open = True
            while not self._stop.is_set():
                self._proved_at = time.monotonic()
                for _ in conn.notifies(timeout=_PROOF_EVERY):
                    self._forget()
                conn.execute("SELECT 1")
        finally:
            self._socket = None
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._proved_at = None
        self._thread.join(_PROOF_EVERY + 2)


class Accounts:
    """The accounts tables of the database behind ``engine``, with keys hashed under ``secret``."""

    def __init__(self, engine: sa.engine.Engine, secret: bytes):
        self.engine = engine
        self._secret = secret
        self._last_used: dict[str, float] = {}
        self._checked: _CheckedKeys | None = None
        self._check_fingerprint()
        self._lookup = sa.text(
            "SELECT k.secret_hash, k.project_id, p.name, k.user_id, u.name, k.revoked_at, "
            "(k.user_id IS NULL OR m.user_id IS NOT NULL) "
            "FROM api_keys k JOIN projects p ON p.id = k.project_id "
            "LEFT JOIN users u ON u.id = k.user_id "
            "LEFT JOIN memberships m ON m.project_id = k.project_id AND m.user_id = k.user_id "
            "WHERE k.id = :id")

    # -- the secret ----------------------------------------------------------------------------
    def _hash(self, secret_part: str) -> str:
        return hmac.new(self._secret, secret_part.encode(), hashlib.sha256).hexdigest()

    def _check_fingerprint(self) -> None:
        fingerprint = hmac.new(self._secret, b"podstack server secret fingerprint", hashlib.sha256).hexdigest()
        T = S.server_settings
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(T.c.value).where(T.c.key == "secret_fingerprint")).first()
            if row is None:
                try:
                    conn.execute(T.insert().values(key="secret_fingerprint", value=fingerprint))
                except sa.exc.IntegrityError:  # another process wrote it first
                    row = conn.execute(sa.select(T.c.value).where(T.c.key == "secret_fingerprint")).first()
            if row is not None and row.value != fingerprint:
                raise ConfigurationError(
                    "this database's API keys were made with another server secret than the one in use "
                    f"({SECRET_ENV} or <podstack home>/server-secret): start the server and podstack admin with the "
                    "same secret (the same PODSTACK_HOME or --secret-file)")

    def url_secret(self, purpose: str) -> bytes:
        """A secret for ``purpose`` (e.g. signing a project's artifact URLs), derived from the server's."""
        return hmac.new(self._secret, f"podstack {purpose}".encode(), hashlib.sha256).digest()

    # -- projects and users -----------------------------------------------------------------------
    def create_project(self, name: str) -> dict:
        """A new project called ``name``: ``{"id", "name", "created_at"}``."""
        name = V.name("project name", name)
        P = S.projects
        record = {"id": str(uuid.uuid4()), "name": name, "created_at": time.time()}
        try:
            with self.engine.begin() as conn:
                conn.execute(P.insert().values(**record))
        except sa.exc.IntegrityError:
            raise InvalidArgumentError(f"project {name!r} already exists") from None
        return record

    def find_project(self, name_or_id: str) -> dict:
        """The project with this id or name (``NotFoundError`` listing the projects otherwise)."""
        name_or_id = V.name("project", name_or_id)
        P = S.projects
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(P).where(P.c.id == name_or_id)).first() or \
                conn.execute(sa.select(P).where(P.c.name == name_or_id)).first()
        if row is None:
            names = [p["name"] for p in self.list_projects()]
            raise NotFoundError(f"no project {name_or_id!r}; projects: {names[:20]} "
                                "(podstack admin project create NAME makes one)")
        return dict(row._mapping)

    def list_projects(self) -> list[dict]:
        P = S.projects
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.select(P).order_by(P.c.created_at, P.c.name))]

    def ensure_member(self, project_id: str, user_name: str, role: str = "member") -> dict:
        """The user called ``user_name`` (created if needed), made a member of the project."""
        user_name = V.name("user name", user_name)
        U, M = S.users, S.memberships
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(U).where(U.c.name == user_name)).first()
            if row is None:
                user = {"id": str(uuid.uuid4()), "name": user_name, "created_at": time.time()}
                conn.execute(U.insert().values(**user))
            else:
                user = dict(row._mapping)
            if conn.execute(sa.select(M.c.user_id).where(M.c.project_id == project_id, M.c.user_id == user["id"])
                            ).first() is None:
                conn.execute(M.insert().values(project_id=project_id, user_id=user["id"], role=role,
                                               created_at=time.time()))
        return user

    def remove_member(self, project_id: str, user_name: str) -> None:
        """Take a user out of a project (its keys for the project are refused from then on)."""
        U, M = S.users, S.memberships
        with self.engine.begin() as conn:
            row = conn.execute(sa.select(U.c.id).where(U.c.name == user_name)).first()
            if row is None or conn.execute(M.delete().where(M.c.project_id == project_id,
                                                            M.c.user_id == row.id)).rowcount == 0:
                raise NotFoundError(f"user {user_name!r} is not a member of the project")

    # -- keys ----------------------------------------------------------------------------------
    def create_key(self, project: str, user: str | None = None) -> str:
        """A new API key for ``project`` (its name or id), of ``user`` when given (created and made
        a member if needed). Returns the key itself: it is stored only hashed, so this is the one
        time it can be shown."""
        record = self.find_project(project)
        user_id = self.ensure_member(record["id"], user)["id"] if user is not None else None
        K = S.api_keys
        for _ in range(5):
            key_id = "".join(secrets.choice(_ID_CHARS) for _ in range(_ID_LENGTH))
            secret_part = secrets.token_urlsafe(32)
            try:
                with self.engine.begin() as conn:
                    conn.execute(K.insert().values(id=key_id, secret_hash=self._hash(secret_part),
                                                   project_id=record["id"], user_id=user_id, created_at=time.time()))
            except sa.exc.IntegrityError:  # that id is taken (one chance in 36**12): draw another
                continue
            return f"{KEY_PREFIX}{key_id}_{secret_part}"
        raise RuntimeError("could not draw a free API key id")

    def _key_ids(self, key_or_prefix: str) -> list[str]:
        parsed = _parse_key(key_or_prefix)
        if parsed is not None:
            return [parsed[0]]
        text = key_or_prefix[len(KEY_PREFIX):] if key_or_prefix.startswith(KEY_PREFIX) else key_or_prefix
        text = text.split("_", 1)[0].lower()
        if len(text) < 4 or not all(c in _ID_CHARS for c in text):
            raise InvalidArgumentError(f"{key_or_prefix!r} is neither an API key nor the start of one's id "
                                       "(podstack admin key list shows them; give at least 4 characters)")
        K = S.api_keys
        with self.engine.connect() as conn:
            return list(conn.execute(sa.select(K.c.id).where(K.c.id.startswith(text, autoescape=True))).scalars())

    def revoke_key(self, key_or_prefix: str) -> str:
        """Revoke the key given whole, or the one whose id starts with ``key_or_prefix``; returns its id."""
        ids = self._key_ids(key_or_prefix)
        if not ids:
            raise NotFoundError(f"no API key matches {key_or_prefix!r} (podstack admin key list shows them)")
        if len(ids) > 1:
            raise InvalidArgumentError(f"{key_or_prefix!r} matches {len(ids)} keys; give more of its id")
        K = S.api_keys
        with self.engine.begin() as conn:
            conn.execute(K.update().where(K.c.id == ids[0], K.c.revoked_at.is_(None)).values(revoked_at=time.time()))
        return ids[0]

    def list_keys(self, project: str | None = None) -> list[dict]:
        """Every key (of ``project`` if given): id, project, user, created, last used, revoked."""
        K, P, U = S.api_keys, S.projects, S.users
        query = (sa.select(K.c.id, P.c.name.label("project"), U.c.name.label("user"), K.c.created_at,
                           K.c.last_used_at, K.c.revoked_at)
                 .select_from(K.join(P, P.c.id == K.c.project_id).outerjoin(U, U.c.id == K.c.user_id))
                 .order_by(K.c.created_at))
        if project is not None:
            query = query.where(K.c.project_id == self.find_project(project)["id"])
        with self.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def keep_checked_keys(self) -> None:
        """Keep the keys checked in memory (PostgreSQL only: see the module docstring); a server
        calls this once, and ``close()`` when it stops."""
        if self._checked is None and self.engine.dialect.name == "postgresql":
            self._checked = _CheckedKeys(self.engine)

    def close(self) -> None:
        if self._checked is not None:
            self._checked.close()

    def known(self, token) -> Principal | None:
        """The principal of a key checked moments ago, without a lookup; ``None``: call :meth:`authenticate`."""
        parsed = _parse_key(token) if self._checked is not None else None
        if parsed is None:
            return None
        key_id, secret_part = parsed
        entry = self._checked.get(key_id)
        if entry is None or time.time() - self._last_used.get(key_id, 0.0) > _LAST_USED_EVERY:
            return None
        secret_hash, principal = entry
        return principal if hmac.compare_digest(secret_hash, self._hash(secret_part)) else None

    def authenticate(self, token) -> Principal | None:
        """The principal of a valid, unrevoked key (whose user is still a project member), else ``None``."""
        parsed = _parse_key(token)
        if parsed is None:
            return None
        key_id, secret_part = parsed
        generation = self._checked.generation if self._checked is not None else None
        with reading(self.engine) as conn:
            row = conn.execute(self._lookup, {"id": key_id}).first()
        if row is None:
            return None
        secret_hash, project_id, project_name, user_id, user_name, revoked_at, member = row
        if revoked_at is not None or not member or not hmac.compare_digest(secret_hash, self._hash(secret_part)):
            return None
        principal = Principal(key_id, project_id, project_name, user_id, user_name)
        now = time.time()
        if now - self._last_used.get(key_id, 0.0) > _LAST_USED_EVERY:
            self._last_used[key_id] = now
            with self.engine.begin() as conn:
                conn.execute(S.api_keys.update().where(S.api_keys.c.id == key_id).values(last_used_at=now))
        if self._checked is not None:
            self._checked.keep(generation, key_id, (secret_hash, principal))
        return principal
