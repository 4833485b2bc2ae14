"""Settings: ``init()`` arguments > ``PODSTACK_*`` environment > ``~/.podstack/config.toml`` > defaults.

With nothing configured everything runs embedded: a local kernel for ``%%gpu``,
a SQLite file and an artifact folder under the podstack home (``~/.podstack``
or ``PODSTACK_HOME``).

Environment variables (each also a key of the config file, lower-case, without
the ``PODSTACK_`` prefix):

=========================  ==========================================================
``PODSTACK_HOME``          folder for the database, artifacts, environments (~/.podstack)
``PODSTACK_API_KEY``       API key for ``podstack server``
``PODSTACK_PROJECT_ID``    project on the server
``PODSTACK_API_URL``       compute API URL
``PODSTACK_REGISTRY_URL``  tracking server URL; unset = embedded store
``PODSTACK_TRACKING_URI``  SQLAlchemy URL of the store (default: SQLite file in the home)
``PODSTACK_ARTIFACT_ROOT`` artifact folder (default: <home>/artifacts)
``PODSTACK_BACKEND``       compute backend for ``%%gpu``: ``local`` (default), ``ray``, ``jupyter``
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
"""

from __future__ import annotations

import dataclasses
import os
import threading
from pathlib import Path

from .errors import ConfigurationError

__all__ = ["Settings", "settings", "init", "reset", "describe"]

_FIELDS_FROM_ENV = (
    "home", "api_key", "project_id", "api_url", "registry_url", "tracking_uri",
    "artifact_root", "backend", "local_gpus", "idle_timeout",
    "ray_address", "ray_placement_timeout", "ray_connect",
    "jupyter_url", "jupyter_token", "jupyter_kernel", "jupyter_gpus",
)
RAY_CONNECT_MODES = ("auto", "direct", "tunnel")


@dataclasses.dataclass(frozen=True)
class Settings:
    """The resolved settings. Read them with ``podstack.config.settings()``."""

    home: Path
    api_key: str | None = None
    project_id: str | None = None
    api_url: str | None = None
    registry_url: str | None = None
    tracking_uri: str | None = None
    artifact_root: Path | None = None
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

    @property
    def database_url(self) -> str:
        """SQLAlchemy URL of the tracking store (the SQLite file in the home by default)."""
        return self.tracking_uri or f"sqlite:///{self.home / 'podstack.db'}"

    @property
    def artifact_dir(self) -> Path:
        return self.artifact_root or self.home / "artifacts"


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
    if values.get("artifact_root") is not None:
        values["artifact_root"] = Path(values["artifact_root"]).expanduser()
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
    return Settings(**values)


def settings() -> Settings:
    """The current settings, resolved once and cached until ``init()``/``reset()``."""
    global _current
    with _lock:
        if _current is None:
            _current = _resolve()
        return _current


def init(**overrides) -> Settings:
    """Set settings for this process (highest precedence) and return the result.

    Accepts every field of :class:`Settings`; ``None`` leaves a field to the
    environment, config file or default.
    """
    global _current
    unknown = set(overrides) - set(_FIELDS_FROM_ENV)
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {sorted(unknown)}; valid: {list(_FIELDS_FROM_ENV)}")
    with _lock:
        _overrides.update(overrides)
        _current = None
    return settings()


def reset() -> None:
    """Forget ``init()`` overrides and re-read the environment on next use."""
    global _current
    with _lock:
        _overrides.clear()
        _current = None


def describe() -> str:
    """The version, home, compute backend, tracking store and artifact store, one per line."""
    from . import __version__

    s = settings()
    return (f"podstack-jupyter {__version__}\nhome:      {s.home}\nbackend:   {s.backend}\n"
            f"store:     {s.registry_url or s.database_url}\nartifacts: {s.artifact_dir}")
