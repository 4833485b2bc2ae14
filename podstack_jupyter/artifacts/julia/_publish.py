"""Publishing a run's (or a model version's) artifacts as an ``Artifacts.toml`` entry.

The run's files are read from the content-addressed store (``open_store()``, each copy
checked against its sha256), laid out as the run records them, archived reproducibly and
handed to a *publisher*, which puts the archive somewhere and answers its download url.
``FolderPublisher`` (the default) keeps archives in a folder and answers ``file://`` urls, or
``<base_url>/<file>`` when ``podstack artifacts serve`` (or any web server) serves that folder.
A publisher for ``podstack server`` implements the same ``publish(archive_path, filename) ->
url`` and is passed as ``publisher=``.
"""

from __future__ import annotations

import os
import posixpath
import shutil
import tempfile
from pathlib import Path

from ...errors import InvalidArgumentError
from ._create import archive_suffix, bind_artifact, create_artifact

__all__ = ["ArchivePublisher", "FolderPublisher", "default_publish_dir", "publish_run_artifacts",
           "publish_model_version", "serve"]


def default_publish_dir() -> Path:
    """``<podstack home>/published_artifacts``: where archives go when no folder is given."""
    from ...config import settings

    return settings().home / "published_artifacts"


class ArchivePublisher:
    """Puts an artifact archive where others can download it; ``publish`` returns its url."""

    def publish(self, archive_path: Path, filename: str) -> str:
        raise NotImplementedError


class FolderPublisher(ArchivePublisher):
    """Archives in ``folder`` (default ``default_publish_dir()``); urls are ``file://`` paths, or
    ``base_url + filename`` when the folder is served (``podstack artifacts serve``)."""

    def __init__(self, folder=None, base_url: str | None = None):
        self.folder = Path(folder).expanduser().absolute() if folder is not None else default_publish_dir()
        if base_url is not None and not base_url.startswith(("http://", "https://", "file://")):
            raise InvalidArgumentError(f"base_url must be an http(s):// or file:// url, got {base_url!r}")
        self.base_url = base_url

    def publish(self, archive_path: Path, filename: str) -> str:
        self.folder.mkdir(parents=True, exist_ok=True)
        target = self.folder / filename
        if not target.exists():  # names carry the content's hash: an existing file is this archive
            tmp = self.folder / f".{filename}.part"
            shutil.copyfile(archive_path, tmp)
            os.replace(tmp, target)
        if self.base_url:
            return self.base_url.rstrip("/") + "/" + filename
        return target.as_uri()


def _materialize_run(run_id: str, artifact_path: str | None, dest: Path) -> list[str]:
    """Copy the run's files (under ``artifact_path``) into ``dest`` from the store; returns their paths."""
    from ...tracking import registry
    from .. import open_store

    entries = registry.list_artifacts(run_id, path=artifact_path)
    if not entries:
        where = f" under {artifact_path!r}" if artifact_path else ""
        raise InvalidArgumentError(f"run {run_id} has no artifacts{where} to publish")
    prefix = (artifact_path or "").strip("/")
    store = open_store()
    written = []
    for e in entries:
        relative = e["path"]
        if prefix:
            relative = posixpath.basename(prefix) if relative == prefix else relative[len(prefix) + 1:]
        target = dest.joinpath(*relative.split("/"))
        store.get_file(e["etag"], target)  # verified against its sha256 on the way
        written.append(relative)
    return written


def publish_run_artifacts(run_id: str, name: str, toml_path="Artifacts.toml", *, artifact_path: str | None = None,
                          publisher: ArchivePublisher | None = None, compression: str = "gz", lazy: bool = False,
                          force: bool = False, metadata: dict | None = None) -> dict:
    """Publish the artifacts of run ``run_id`` (those under ``artifact_path``, or all) as artifact
    ``name`` of ``toml_path``: a reproducible archive goes to ``publisher`` (default: a
    ``FolderPublisher``, ``file://`` urls), its hashes and url are bound in the file.

    Returns ``{"name", "git_tree_sha1", "sha256", "url", "files", "toml_path"}``; Julia and
    ``artifact(name)`` can then install it.
    """
    publisher = publisher or FolderPublisher()
    with tempfile.TemporaryDirectory(prefix="podstack-publish-") as work:
        tree = Path(work) / "tree"
        tree.mkdir()
        files = _materialize_run(run_id, artifact_path, tree)
        archive = Path(work) / f"archive{archive_suffix(compression)}"
        made = create_artifact(tree, archive, compression)
        filename = f"{made['git_tree_sha1']}{archive_suffix(compression)}"
        url = publisher.publish(archive, filename)
    meta = {"run_id": run_id, **({"artifact_path": artifact_path} if artifact_path else {}), **(metadata or {})}
    path = bind_artifact(toml_path, name, made["git_tree_sha1"], url, made["sha256"], lazy=lazy, force=force,
                         metadata=meta)
    return {"name": name, "git_tree_sha1": made["git_tree_sha1"], "sha256": made["sha256"], "url": url,
            "files": sorted(files), "toml_path": str(path)}


def publish_model_version(model_name: str, version: int | None = None, name: str | None = None,
                          toml_path="Artifacts.toml", **options) -> dict:
    """Publish a registered model version's files (the latest version by default) as artifact
    ``name`` (default: the model's name); options as ``publish_run_artifacts``."""
    from ...models.registry import get_model_version  # the model registry lives in models (issue 7)

    mv = get_model_version(model_name, version)
    if not mv.run_id:
        raise InvalidArgumentError(f"model {model_name!r} version {mv.version} records no run, so no files to publish")
    metadata = {"model": model_name, "model_version": mv.version, **(options.pop("metadata", None) or {})}
    return publish_run_artifacts(mv.run_id, name or model_name, toml_path, artifact_path=mv.source or None,
                                 metadata=metadata, **options)


def serve(folder=None, host: str = "127.0.0.1", port: int = 8000, ready=None) -> None:
    """Serve ``folder`` (default: ``default_publish_dir()``) read-only over HTTP until interrupted,
    so the urls ``FolderPublisher(base_url=f"http://{host}:{port}")`` writes work elsewhere.
    ``ready(server)`` is called once it listens (tests use it to learn the port)."""
    import functools
    import http.server

    root = Path(folder).expanduser().absolute() if folder is not None else default_publish_dir()
    root.mkdir(parents=True, exist_ok=True)

    class Handler(http.server.SimpleHTTPRequestHandler):
        def list_directory(self, path):  # archives are fetched by name, not browsed
            self.send_error(403, "listing is disabled")

        def log_message(self, format, *args):
            pass

    handler = functools.partial(Handler, directory=str(root))
    with http.server.ThreadingHTTPServer((host, port), handler) as server:
        if ready is not None:
            ready(server)
        server.serve_forever()
