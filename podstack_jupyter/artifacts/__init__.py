"""Artifact storage: content-addressed blobs (sha256), written atomically and verified on read.

``open_store()`` is the store of the current settings (``PODSTACK_ARTIFACT_ROOT``,
default ``<podstack home>/artifacts``). Which run a blob belongs to, and under
which path, is recorded by the tracking store; equal files are stored once.
"""

from __future__ import annotations

import threading

from ._base import ArtifactStore
from ._local import LocalArtifactStore

__all__ = ["ArtifactStore", "LocalArtifactStore", "open_store"]

_stores: dict[str, ArtifactStore] = {}
_lock = threading.Lock()


def open_store() -> ArtifactStore:
    """The artifact store for ``config.settings().artifact_dir`` (one per folder)."""
    from ..config import settings

    root = str(settings().artifact_dir)
    with _lock:
        if root not in _stores:
            _stores[root] = LocalArtifactStore(root)
        return _stores[root]
