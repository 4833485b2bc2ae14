"""Artifact storage: content-addressed blobs (sha256), written atomically and verified on read.

Which run a blob belongs to, and under which path, is recorded by the tracking store;
equal files are stored once::

    store = open_store()                            # the one the settings name
    digest, size = store.put_file("model.pt")      # sha256 hex, bytes
    store.get_file(digest, "copy/model.pt")         # verified copy, or ArtifactIntegrityError

``ArtifactStore`` is the interface a backend implements. The backend is chosen by the
artifact root's URL (``PODSTACK_ARTIFACT_ROOT``, default ``<podstack home>/artifacts``)
through a small registry of URL schemes:

==========================  ======================================================
a folder path               :class:`LocalArtifactStore`
``file:///path/to/folder``  :class:`LocalArtifactStore`
``s3://bucket/prefix``      :class:`S3ArtifactStore` (any S3-compatible server; signed URLs)
==========================  ======================================================

A new backend is one module and one entry (``register_repository("s3", S3ArtifactStore)``
is S3's); its class is called with the URL.

Julia-compatible ``Artifacts.toml`` (``artifact``, ``create_artifact``, ``bind_artifact``,
``compute_git_tree_sha1``, ...) lives in ``artifacts.julia``; its names are also here.

Tagged artifact sets, dstack's artifacts API (``upload(local_path, artifact_path=None, tag=None)``,
``download(run=None, tag=None, artifact_path=None, local_path=None)``, ``list_tags``,
``delete_tag``), live in ``artifacts._tagged``; their names are also here.
"""

from __future__ import annotations

import importlib
import threading
from urllib.parse import unquote, urlsplit

from ..errors import ConfigurationError
from ._base import PROGRESS_BYTES, ArtifactStore
from ._local import LocalArtifactStore
from ._s3 import PresignedUpload, S3ArtifactStore  # boto3 itself is imported on first use

__all__ = ["ArtifactStore", "LocalArtifactStore", "S3ArtifactStore", "PresignedUpload", "open_store",
           "open_repository", "register_repository", "repository_schemes", "check_settings", "PROGRESS_BYTES"]

# scheme -> ArtifactStore class or factory taking the URL, or "module:attribute" naming one
_REPOSITORIES: dict[str, object] = {"s3": S3ArtifactStore}

# Artifacts.toml support, imported on first use (keeps `import podstack` fast)
from ._julia_names import JULIA_NAMES as _JULIA_NAMES  # noqa: E402

__all__ += _JULIA_NAMES
# tagged artifact sets (seed 001), imported on first use
_TAGGED_NAMES = ("upload", "download", "list_tags", "delete_tag", "TaggedArtifacts")
__all__ += _TAGGED_NAMES


def __getattr__(name: str):
    if name in _JULIA_NAMES:
        from . import julia

        return getattr(julia, name)
    if name in _TAGGED_NAMES:
        from . import _tagged

        return getattr(_tagged, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


_stores: dict[str, ArtifactStore] = {}
_lock = threading.Lock()


def _local(url: str) -> LocalArtifactStore:
    if url.startswith("file:"):
        parts = urlsplit(url)
        if parts.netloc not in ("", "localhost"):
            raise ConfigurationError(f"artifact root {url!r}: a file: URL names a local folder "
                                     "(file:///path), not a host")
        return LocalArtifactStore(unquote(parts.path))
    return LocalArtifactStore(url)


_REPOSITORIES["file"] = _local


def register_repository(scheme: str, target) -> None:
    """Serve artifact roots of ``scheme`` (``"s3"``) with ``target(url)``: an ``ArtifactStore``
    class or factory, or ``"module:attribute"`` naming one (imported on first use)."""
    if not isinstance(scheme, str) or not scheme.isidentifier():
        raise ValueError(f"register_repository: scheme must be a word like 's3', got {scheme!r}")
    _REPOSITORIES[scheme.lower()] = target


def repository_schemes() -> list[str]:
    """The URL schemes of artifact roots served here (a plain folder path always is)."""
    return sorted(_REPOSITORIES)


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def check_settings(settings, given=frozenset()) -> None:
    """The artifact plane's settings check (entry point ``podstack.settings_checks``): the artifact
    root must be a folder or a URL whose scheme a repository serves here."""
    scheme = _scheme(settings.artifact_url)
    if scheme not in _REPOSITORIES:
        raise ConfigurationError(f"artifact_root {settings.artifact_url} cannot be used: no artifact store serves "
                                 f"{scheme}:// URLs here; use a folder or one of "
                                 f"{[s + '://' for s in repository_schemes()]}", setting="artifact_root")


def open_repository(url) -> ArtifactStore:
    """A new artifact store for ``url``: a folder path, or a URL whose scheme is registered."""
    import os

    if not isinstance(url, (str, os.PathLike)):
        raise ConfigurationError(f"artifact root must be a folder or a URL, got {type(url).__name__}")
    url = os.fspath(url)
    scheme = _scheme(url)
    target = _REPOSITORIES.get(scheme)
    if target is None:
        raise ConfigurationError(f"artifact root {url}: no store serves this URL (none for {scheme}:// here); "
                                 f"use a folder or one of {[s + '://' for s in repository_schemes()]}")
    if isinstance(target, str):
        module, _, attribute = target.partition(":")
        target = getattr(importlib.import_module(module), attribute)
    return target(url)


def open_store() -> ArtifactStore:
    """The artifact store the settings name (``config.settings().artifact_url``); one instance per URL."""
    from ..config import settings

    url = settings().artifact_url
    with _lock:
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = open_repository(url)
        return store
