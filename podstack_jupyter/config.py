"""Settings: ``init()`` arguments > ``PODSTACK_*`` environment > ``~/.podstack/config.toml`` > defaults.

With nothing configured everything runs embedded: a local kernel for ``%%gpu``,
a SQLite file and an artifact folder under the podstack home (``~/.podstack``
or ``PODSTACK_HOME``).

A setting is refused when nothing would use it, rather than accepted and ignored: each plane
checks the settings it serves (entry points ``podstack.settings_checks``; the tracking plane
refuses a store URL whose scheme no store serves, and ``api_key``/``project_id`` given for a
store that has no use for them; the artifact plane an artifact root no repository serves).
A check's ``ConfigurationError`` may carry ``setting``: the field it is about.

Environment variables (each also a key of the config file, lower-case, without
the ``PODSTACK_`` prefix):

=========================  ==========================================================
``PODSTACK_HOME``          folder for the database, artifacts, environments (~/.podstack)
``PODSTACK_API_KEY``       API key for ``podstack server`` (used with a registry URL)
``PODSTACK_PROJECT_ID``    project on the server (used with a registry URL)
``PODSTACK_API_URL``       compute API URL
``PODSTACK_REGISTRY_URL``  URL of a ``podstack server``: the tracking store when set
``PODSTACK_TRACKING_URI``  URL of the tracking store: ``sqlite:///...`` (default: a file in
                           the home) or ``postgresql://...``
``PODSTACK_ARTIFACT_ROOT`` where artifact files go: a folder or a URL (``file://``,
                           ``s3://bucket/prefix``; default <home>/artifacts)
``PODSTACK_BACKEND``       compute backend for ``%%gpu``: ``local`` (default), ``ray``, ``jupyter``,
                           ``team`` (sessions from the ``podstack server`` at the registry URL)
``PODSTACK_LOCAL_GPUS``    declared GPU inventory for the local backend, e.g. ``L40S:2,T4``
``PODSTACK_RAY_ADDRESS``   Ray cluster for the ``ray`` backend (``host:6379``, ``ray://host:10001``,
                           ``auto``); unset: a cluster this process already joined, else Ray's default
``PODSTACK_RAY_PLACEMENT_TIMEOUT``  seconds a ``ray`` session waits for its GPUs before
                           ``GPUNotAvailableError`` (default 60)
``PODSTACK_RAY_CONNECT``   how the notebook reaches a Ray session's kernel: ``auto`` (its ports
                           if reachable, else through the session's actor), ``direct``, ``tunnel``
``PODSTACK_JUPYTER_URL``   Jupyter Server / Kernel Gateway / Enterprise Gateway for the ``jupyter``
                           backend, e.g. ``http://gpu-box:8888`` (a JupyterHub user server's URL too)
``PODSTACK_JUPYTER_TOKEN`` its API token
``PODSTACK_JUPYTER_KERNEL`` kernel spec to start there (default: the server's default kernel)
``PODSTACK_JUPYTER_GPUS``  the server machine's GPUs, e.g. ``A100-80G:4`` (default: asked of a kernel)
``PODSTACK_IDLE_TIMEOUT``  seconds after which an idle GPU session is stopped (0 = never)
``PODSTACK_AUTO_INIT``     ``1``: initialise from the environment at import time
=========================  ==========================================================

Secrets stay secret: the settings' repr, ``describe()`` (``%podstack``, ``podstack info``) and
podstack's messages show ``api_key`` as ``***`` and URLs through :func:`redact` (no password, no
token). The home is private to the user (a folder only they can enter, mode 0700), and so are
the files podstack keeps there (the database and its WAL, blobs, keys: 0600 or read-only 0400):
:func:`private_folder` and :func:`private_file` make them so.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["Settings", "settings", "init", "reset", "describe", "redact", "private_folder", "private_file",
           "CHECKS_GROUP"]

log = logging.getLogger("podstack.config")

#: entry-point group of the planes' settings checks: ``check(settings, given)`` raises
#: ``ConfigurationError`` for a setting the plane cannot serve (``given``: the names ``init()``
#: set explicitly in this call; empty when the settings came from the environment)
CHECKS_GROUP = "podstack.settings_checks"

_FIELDS_FROM_ENV = (
    "home", "api_key", "project_id", "api_url", "registry_url", "tracking_uri",
    "artifact_root", "backend", "local_gpus", "idle_timeout",
    "ray_address", "ray_placement_timeout", "ray_connect",
    "jupyter_url", "jupyter_token", "jupyter_kernel", "jupyter_gpus",
)
RAY_CONNECT_MODES = ("auto", "direct", "tunnel")
_SECRET_FIELDS = ("api_key", "jupyter_token")
_URL_FIELDS = ("api_url", "registry_url", "tracking_uri", "artifact_root", "jupyter_url", "ray_address")

# scheme://user:password@  and  scheme://token@ (http(s) URLs carry tokens in place of a user)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.\-]*://)([^\s/@:?#]*)(?::([^\s/@?#]*))?@")
# ?token=...&X-Amz-Signature=...: query values whose name says they are secret
_SECRET_QUERY = re.compile(
    r"(?i)([?&;](?:[\w.\-]*(?:token|key|secret|passw(?:or)?d|pwd|signature|sig|credential|auth)[\w.\-]*)=)"
    r"[^&;#\s'\"]+")


def redact(text) -> str:
    """``text`` with the secrets that URLs in it carry masked: ``https://user:***@host``,
    ``https://***@host`` (a token in place of a user), ``?token=***`` (any query value whose name
    says token, key, secret, password, signature, credential or auth). Database users stay
    visible (``postgresql://podstack:***@host/db``)."""
    text = str(text)
    if "://" in text:
        def userinfo(match):
            scheme, user, password = match.group(1), match.group(2), match.group(3)
            if password is not None:
                return f"{scheme}{user}:***@"
            return f"{scheme}***@" if "http" in scheme.lower() and user else match.group(0)

        text = _USERINFO.sub(userinfo, text)
    if "=" in text:
        text = _SECRET_QUERY.sub(lambda m: m.group(1) + "***", text)
    return text


def private_folder(path, *, tighten: bool = True) -> Path:
    """``path`` as a folder only this user can enter: made with mode 0700 if missing (its missing
    parents too), and with ``tighten`` set back to 0700 if it is this user's and looser. Where
    the file system will not (a read-only or foreign folder), it is left as it is."""
    path = Path(path)
    missing = []
    probe = path
    while not probe.exists() and probe != probe.parent:
        missing.append(probe)
        probe = probe.parent
    for folder in reversed(missing):
        try:
            folder.mkdir(mode=0o700)
        except FileExistsError:
            pass
        except OSError:
            return path  # the caller's own use of it says what is wrong
    if tighten and not missing:
        try:
            status = path.stat()
            if status.st_uid == os.getuid() and status.st_mode & 0o077:
                os.chmod(path, status.st_mode & 0o700)
        except (OSError, AttributeError):  # AttributeError: no getuid (Windows)
            pass
    return path


def private_file(path) -> Path:
    """``path`` as a file only this user can read and write (0600): created empty with that mode
    if missing, set back to it if it is this user's and looser."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        try:
            status = path.stat()
            if status.st_uid == os.getuid() and status.st_mode & 0o077:
                os.chmod(path, status.st_mode & 0o600)
        except (OSError, AttributeError):
            pass
    except OSError:
        pass  # the caller's own use of it says what is wrong
    else:
        os.close(fd)
    return path


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings. Read them with ``podstack.config.settings()``."""

    home: Path
    api_key: str | None = None
    project_id: str | None = None
    api_url: str | None = None
    registry_url: str | None = None
    tracking_uri: str | None = None
    artifact_root: str | None = None
    backend: str = "local"
    local_gpus: str | None = None
    idle_timeout: float = 0.0
    ray_address: str | None = None
    ray_placement_timeout: float = 60.0
    ray_connect: str = "auto"
    jupyter_url: str | None = None
    jupyter_token: str | None = None
    jupyter_kernel: str | None = None
    jupyter_gpus: str | None = None

    def __repr__(self):
        shown = []
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if value is not None and field.name in _SECRET_FIELDS:
                text = "'***'"
            elif isinstance(value, str) and field.name in _URL_FIELDS:
                text = repr(redact(value))
            else:
                text = repr(value)
            shown.append(f"{field.name}={text}")
        return f"Settings({', '.join(shown)})"

    @property
    def tracking_url(self) -> str:
        """URL of the tracking store: the registry URL (a ``podstack server``) when set, else the
        tracking URI, else the SQLite file in the home."""
        return self.registry_url or self.tracking_uri or f"sqlite:///{self.home / 'podstack.db'}"

    @property
    def database_url(self) -> str:
        """The same as ``tracking_url`` (its older name)."""
        return self.tracking_url

    @property
    def artifact_url(self) -> str:
        """Where artifact files go, as given: a folder or a URL (default ``<home>/artifacts``)."""
        return self.artifact_root or str(self.home / "artifacts")

    @property
    def artifact_dir(self) -> Path:
        """The artifact folder, when artifacts go to a local folder (a path or a ``file:`` URL)."""
        root = self.artifact_url
        if root.startswith("file://"):
            from urllib.parse import unquote, urlsplit

            return Path(unquote(urlsplit(root).path))
        if "://" in root:
            raise ConfigurationError(f"artifacts go to {root}, not to a local folder")
        return Path(root).expanduser()


_lock = threading.Lock()
_overrides: dict = {}
_current: Settings | None = None


def _config_file_values(home: Path) -> dict:
    path = home / "config.toml"
    if not path.is_file():
        return {}
    try:
        import tomllib
    except ImportError:  # Python 3.10
        import tomli as tomllib
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read {path}: {exc}. Fix or remove the file.") from exc
    unknown = set(data) - set(_FIELDS_FROM_ENV)
    if unknown:
        raise ConfigurationError(
            f"{path}: unknown setting(s) {sorted(unknown)}; valid keys are {list(_FIELDS_FROM_ENV)}")
    return data


def _resolve() -> Settings:
    env = os.environ
    home = Path(_overrides.get("home") or env.get("PODSTACK_HOME") or Path.home() / ".podstack").expanduser()
    values = dict(_config_file_values(home))
    for field in _FIELDS_FROM_ENV:
        value = env.get("PODSTACK_" + field.upper())
        if value not in (None, ""):
            values[field] = value
    values.update({k: v for k, v in _overrides.items() if v is not None})
    values["home"] = home
    for name, default in (("idle_timeout", 0.0), ("ray_placement_timeout", 60.0)):
        try:
            values[name] = float(default if values.get(name) in (None, "") else values[name])
        except (TypeError, ValueError):
            raise ConfigurationError(
                f"PODSTACK_{name.upper()} must be a number of seconds, got {values[name]!r}") from None
    if values["ray_placement_timeout"] <= 0:
        raise ConfigurationError(f"PODSTACK_RAY_PLACEMENT_TIMEOUT must be above 0 seconds, got "
                                 f"{values['ray_placement_timeout']:g}")
    if values.get("ray_connect", "auto") not in RAY_CONNECT_MODES:
        raise ConfigurationError(f"PODSTACK_RAY_CONNECT must be one of {', '.join(RAY_CONNECT_MODES)}, "
                                 f"got {values['ray_connect']!r}")
    private_folder(home)  # the database, artifacts and keys live here: only this user may look in
    for field in ("api_key", "project_id", "api_url", "registry_url", "tracking_uri", "artifact_root",
                  "backend", "local_gpus", "ray_address", "ray_connect", "jupyter_url", "jupyter_token",
                  "jupyter_kernel", "jupyter_gpus"):
        value = values.get(field)
        if value is not None and not isinstance(value, (str, os.PathLike)):
            raise ConfigurationError(f"setting {field} must be text, got {type(value).__name__} {value!r}")
        if value is not None:
            values[field] = os.fspath(value)
    if values.get("artifact_root") and "://" not in values["artifact_root"]:
        values["artifact_root"] = str(Path(values["artifact_root"]).expanduser())
    if values.get("registry_url") and values.get("tracking_uri") and values["registry_url"] != values["tracking_uri"]:
        raise ConfigurationError(
            f"both registry_url ({values['registry_url']}) and tracking_uri ({values['tracking_uri']}) name the "
            "tracking store; set one of them")
    return Settings(**values)


def settings() -> Settings:
    """The current settings, resolved once and cached until ``init()``/``reset()``."""
    global _current
    with _lock:
        if _current is None:
            _current = _resolve()
        return _current


def _checks() -> list:
    from importlib.metadata import entry_points

    found = []
    for entry in entry_points(group=CHECKS_GROUP):
        try:
            found.append(entry.load())
        except Exception:  # noqa: BLE001 - a broken plugin must not stop configuration
            log.exception("podstack: settings check %s could not be loaded", entry.value)
    return found


def check(resolved: Settings, given=()) -> None:
    """Run every plane's settings check; ``ConfigurationError`` names what no plane can use."""
    for plane_check in _checks():
        plane_check(resolved, frozenset(given))


def init(**overrides) -> Settings:
    """Set settings for this process (highest precedence) and return the result.

    Accepts every field of :class:`Settings`; ``None`` leaves a field to the
    environment, config file or default. A setting that nothing in this version
    would use (a registry URL no tracking store serves, an API key for a store that
    takes none) is a ``ConfigurationError``, and then nothing changes.
    """
    global _current
    unknown = set(overrides) - set(_FIELDS_FROM_ENV)
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {sorted(unknown)}; valid: {list(_FIELDS_FROM_ENV)}")
    given = {k for k, v in overrides.items() if v is not None}
    with _lock:
        previous = (dict(_overrides), _current)
        _overrides.update(overrides)
        _current = None
        try:
            candidate = _current = _resolve()
        except BaseException:
            _overrides.clear()
            _overrides.update(previous[0])
            _current = previous[1]
            raise
    try:
        check(candidate, given)
    except BaseException:
        with _lock:
            _overrides.clear()
            _overrides.update(previous[0])
            _current = previous[1]
        raise
    return candidate


def reset() -> None:
    """Forget ``init()`` overrides and re-read the environment on next use."""
    global _current
    with _lock:
        _overrides.clear()
        _current = None


def describe() -> str:
    """The version, home, compute backend, tracking store and artifact store, one per line.

    Only what is in use is shown: a store URL that no plane can serve is reported as the
    error that using it gives, never as the store.
    """
    from . import __version__

    s = settings()
    problems = {}
    for plane_check in _checks():
        try:
            plane_check(s, frozenset())
        except ConfigurationError as exc:
            problems.setdefault(getattr(exc, "setting", "tracking_url"), exc.message)
    store, artifacts = s.tracking_url, s.artifact_url
    if "tracking_url" in problems:
        store = f"none usable ({problems['tracking_url']})"
    if "artifact_root" in problems:
        artifacts = f"none usable ({problems['artifact_root']})"
    return redact(f"podstack-jupyter {__version__}\nhome:      {s.home}\nbackend:   {s.backend}\n"
                  f"store:     {store}\nartifacts: {artifacts}")
