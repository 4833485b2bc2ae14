"""Artifact storage: content-addressed blobs (sha256), written atomically and verified on read.

``open_store()`` is the store of the current settings (``PODSTACK_ARTIFACT_ROOT``,
default ``<podstack home>/artifacts``). Which run a blob belongs to, and under
which path, is recorded by the tracking store; equal files are stored once::

    store = open_store()
    digest, size = store.put_file("model.pt")      # sha256 hex, bytes
    store.get_file(digest, "copy/model.pt")         # verified copy, or ArtifactIntegrityError

``ArtifactStore`` is the interface a backend implements: ``LocalArtifactStore`` (a folder),
``S3ArtifactStore`` (``PODSTACK_ARTIFACT_ROOT=s3://bucket/prefix``, with signed URLs).

Julia-compatible ``Artifacts.toml`` (``artifact``, ``create_artifact``, ``bind_artifact``,
``compute_git_tree_sha1``, ...) lives in ``artifacts.julia``; its names are also here.
"""

from __future__ import annotations

import threading

from ..errors import ConfigurationError
from ._base import PROGRESS_BYTES, ArtifactStore
from ._local import LocalArtifactStore
from ._s3 import PresignedUpload, S3ArtifactStore  # boto3 itself is imported on first use

__all__ = ["ArtifactStore", "LocalArtifactStore", "S3ArtifactStore", "PresignedUpload", "open_store",
           "PROGRESS_BYTES"]

# Artifacts.toml support, imported on first use (keeps `import podstack` fast)
from ._julia_names import JULIA_NAMES as _JULIA_NAMES  # noqa: E402

__all__ += _JULIA_NAMES


def __getattr__(name: str):
    if name in _JULIA_NAMES:
        from . import julia

        return getattr(julia, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

_stores: dict[str, ArtifactStore] = {}
_lock = threading.Lock()


def open_store() -> ArtifactStore:
    """The artifact store for ``config.settings().artifact_dir`` (one instance per folder)."""
    from ..config import settings

    root = str(settings().artifact_dir)
    with _lock:
        store = _stores.get(root)
        if store is None:
            is_s3 = root.lower().startswith("s3://")
            if not is_s3 and "://" in root:
                raise ConfigurationError(f"PODSTACK_ARTIFACT_ROOT={root}: artifacts go to a folder or to "
                                         "s3://bucket/prefix; no store serves this URL")
            store = _stores[root] = S3ArtifactStore(root) if is_s3 else LocalArtifactStore(root)
        return store
