"""Where the tracking plane keeps its records, chosen by the URL's scheme.

``Store`` is the interface (plain JSON-able arguments and results, so calls can be
relayed from a remote kernel or sent over HTTP). ``open_store(url)`` opens the store a
URL names, through a small registry of URL schemes:

============================  ==========================================================
``sqlite:///path/to/file.db``  :class:`~podstack_jupyter.tracking.store.sql.SQLStore`
``postgresql://user@host/db``  the same ``SQLStore`` (driver: psycopg 3)
============================  ==========================================================

A new backend is one module and one entry::

    register_store("http", "podstack_jupyter.tracking.store.rest:RESTStore", settings=("api_key", "project_id"))

``settings`` names the fields of ``config.Settings`` the store is opened with (passed as
keyword arguments); a setting given to ``podstack.init()`` that the store in use does not
take is refused (:func:`check_settings`), so it cannot be silently ignored.

``current_store()`` is the store the notebook's registry uses: the one ``use_store()``
set, else the store of ``config.settings().tracking_url``, opened on first use.
"""

from __future__ import annotations

import importlib
import threading

from ...errors import ConfigurationError
from ._base import DATASET_CONTEXTS, MODEL_STAGES, RUN_STATUSES, SOURCE_TYPES, Store

__all__ = ["Store", "SQLStore", "open_store", "register_store", "store_schemes", "check_settings", "current_store",
           "use_store", "reset_store", "in_gpu_session", "RUN_STATUSES", "MODEL_STAGES", "DATASET_CONTEXTS",
           "SOURCE_TYPES"]

# scheme -> ("module:attribute" of the store class, settings fields it is opened with)
_STORES: dict[str, tuple[str, tuple[str, ...]]] = {
    "sqlite": ("podstack_jupyter.tracking.store.sql:SQLStore", ()),
    "postgresql": ("podstack_jupyter.tracking.store.sql:SQLStore", ()),
}
# settings that only a store taking them gives meaning to (a podstack server's credentials)
_STORE_SETTINGS = ("api_key", "project_id")

_lock = threading.Lock()
_override: Store | None = None
_opened: Store | None = None
_opened_url: str | None = None
_opened_for = None  # the Settings object _opened was opened for (settings are cached until they change)


def __getattr__(name):
    if name == "SQLStore":  # imports SQLAlchemy: only when a store is really needed
        from .sql import SQLStore

        return SQLStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def register_store(scheme: str, target, settings: tuple = ()) -> None:
    """Serve URLs of ``scheme`` (``"http"``) with ``target``: a ``Store`` class or factory, or
    ``"module:attribute"`` naming one (imported on first use). ``target(url, **options)`` gets
    the settings fields named in ``settings`` that are set."""
    if not isinstance(scheme, str) or not scheme.isidentifier():
        raise ValueError(f"register_store: scheme must be a word like 'http', got {scheme!r}")
    unknown = set(settings) - set(_STORE_SETTINGS)
    if unknown:
        raise ValueError(f"register_store: {sorted(unknown)} are not store settings; use {list(_STORE_SETTINGS)}")
    _STORES[scheme.lower()] = (target, tuple(settings))


def store_schemes() -> list[str]:
    """The URL schemes a tracking store serves here."""
    return sorted(_STORES)


def _scheme(url) -> str:
    if not isinstance(url, str) or "://" not in url and not url.startswith("sqlite:"):
        raise ConfigurationError(
            f"tracking store {url!r} is not a URL; write sqlite:////absolute/path/podstack.db or "
            f"postgresql://user@host/database (schemes served here: {store_schemes()})")
    return url.split(":", 1)[0].split("+", 1)[0].lower()


def _entry(url: str) -> tuple:
    scheme = _scheme(url)
    entry = _STORES.get(scheme)
    if entry is None:
        server = " (podstack server support is not in this version)" if scheme in ("http", "https") else ""
        raise ConfigurationError(f"no tracking store serves {scheme}:// URLs{server}; "
                                 f"stores here: {', '.join(s + '://' for s in store_schemes())}")
    return entry


def _safe(url: str) -> str:
    """The URL without its password or tokens."""
    from ...config import redact

    return redact(url)


def open_store(url: str, **settings) -> Store:
    """A new store for ``url``, chosen by its scheme (see the module docstring). ``settings``
    are the fields the store takes (``api_key``...); a field it does not take is refused."""
    target, takes = _entry(url)
    refused = sorted(k for k, v in settings.items() if v is not None and k not in takes)
    if refused:
        raise ConfigurationError(f"the {_scheme(url)} tracking store takes no {', '.join(refused)}; "
                                 f"those are for a podstack server ({_safe(url)})")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target(url, **{k: v for k, v in settings.items() if v is not None and k in takes})


def check_settings(settings, given=frozenset()) -> None:
    """The tracking plane's settings check (entry point ``podstack.settings_checks``): the
    tracking URL must have a store here, and ``api_key``/``project_id`` given to ``init()``
    must be taken by it (they are for a podstack server)."""
    try:
        _, takes = _entry(settings.tracking_url)
    except ConfigurationError as exc:
        if settings.registry_url:
            raise ConfigurationError(
                f"registry_url {_safe(settings.registry_url)} cannot be used: {exc.message}. Leave registry_url "
                "(and PODSTACK_REGISTRY_URL) unset to track into the local store.") from None
        raise
    unused = [name for name in _STORE_SETTINGS if name in given and name not in takes]
    if unused:
        names = " and ".join(f"{n}=" for n in unused)
        raise ConfigurationError(
            f"{names} would be ignored: {'they are' if len(unused) > 1 else 'it is'} for a podstack server "
            f"(registry_url=...), and the tracking store in use is {_safe(settings.tracking_url)}. "
            f"Leave {'them' if len(unused) > 1 else 'it'} out to track into that store.")


def current_store() -> Store:
    """The store in use: ``use_store()``'s, else the store of ``settings().tracking_url``
    (opened on first use, and reopened when that URL changes)."""
    global _opened, _opened_url, _opened_for
    override = _override
    if override is not None:
        return override
    if in_gpu_session():
        return _override
    from ...config import settings

    resolved = settings()
    opened = _opened
    if opened is not None and resolved is _opened_for:
        return opened
    url = resolved.tracking_url
    with _lock:
        if _opened is None or _opened_url != url:
            check_settings(resolved)
            _, takes = _entry(url)
            store = open_store(url, **{name: getattr(resolved, name) for name in takes})
            if _opened is not None:
                _opened.close()
            _opened, _opened_url = store, url
        _opened_for = resolved
        return _opened


def in_gpu_session() -> bool:
    """Inside a GPU session's kernel, log through the session to the notebook's store."""
    global _override
    import os

    if os.environ.get("PODSTACK_SESSION") != "1":
        return False
    from ..relay import session_store

    relay = session_store()
    if relay is not None:
        _override = relay
    return relay is not None


def use_store(store: Store | None) -> None:
    """Make ``store`` the one every registry call uses (``None``: back to the configured one)."""
    global _override
    if store is not None and not isinstance(store, Store):
        from ...errors import InvalidArgumentError

        raise InvalidArgumentError(f"use_store() needs a podstack Store, got {type(store).__name__}")
    _override = store


def reset_store() -> None:
    """Close the store opened from the settings; the next call opens it again."""
    global _opened, _opened_url, _opened_for
    with _lock:
        if _opened is not None:
            _opened.close()
        _opened, _opened_url, _opened_for = None, None, None
