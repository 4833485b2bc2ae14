"""Where the tracking plane keeps its records.

``Store`` is the interface (plain JSON-able arguments and results, so calls can
be relayed from a remote kernel); ``SQLStore`` implements it on SQLite or
PostgreSQL. ``current_store()`` is the store the registry uses: the one
``use_store()`` set, else a ``SQLStore`` opened lazily on
``config.settings().database_url``.
"""

from __future__ import annotations

import threading

from ._base import DATASET_CONTEXTS, MODEL_STAGES, RUN_STATUSES, SOURCE_TYPES, Store

__all__ = ["Store", "SQLStore", "current_store", "use_store", "reset_store", "in_gpu_session",
           "RUN_STATUSES", "MODEL_STAGES", "DATASET_CONTEXTS", "SOURCE_TYPES"]

_lock = threading.Lock()
_override: Store | None = None
_opened: Store | None = None
_opened_url: str | None = None


def __getattr__(name):
    if name == "SQLStore":  # imports SQLAlchemy: only when a store is really needed
        from .sql import SQLStore

        return SQLStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def current_store() -> Store:
    """The store in use: ``use_store()``'s, else the SQL store of ``settings().database_url``
    (opened on first use, and reopened when that URL changes)."""
    global _opened, _opened_url
    override = _override
    if override is not None:
        return override
    if in_gpu_session():
        return _override
    from ...config import settings

    url = settings().database_url
    with _lock:
        if _opened is None or _opened_url != url:
            from .sql import SQLStore

            if _opened is not None:
                _opened.close()
            _opened, _opened_url = SQLStore(url), url
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
    global _opened, _opened_url
    with _lock:
        if _opened is not None:
            _opened.close()
        _opened, _opened_url = None, None
