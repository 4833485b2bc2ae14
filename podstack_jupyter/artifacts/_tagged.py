"""Tagged artifact sets: ``podstack.artifacts.upload`` / ``download``, dstack's artifacts API (seed 001).

::

    from podstack import artifacts

    with registry.start_run("prepare"):
        artifacts.upload("datasets/dataset1")             # artifacts of the active run, at datasets/dataset1
    artifacts.upload("datasets/dataset1", artifact_path="data", tag="my_tag")   # a new run, tagged my_tag

    artifacts.download(run="sharp-shrimp-1")                       # every file of a run, into "."
    artifacts.download(tag="my_tag", artifact_path="data", local_path="./my_data")

What is uploaded where
    ``local_path`` is a file or a folder (every file below it). Its files are stored under
    ``artifact_path``, which defaults to ``local_path`` itself as written (``"datasets/dataset1"``
    stays ``datasets/dataset1``; an absolute path loses its leading ``/``; a path with ``..`` needs
    an ``artifact_path``). A file's ``artifact_path`` is its own path (ending in ``/``: a folder
    for it). Without ``tag`` they become artifacts of the active run (a path uploaded again is
    replaced); there must be one.
What a tag names
    one complete upload: ``upload(..., tag=...)`` makes a new run in the current experiment
    (named after the tag, its run tag ``podstack.artifacts.tag`` says so), stores the files as
    its artifacts, and only then binds the tag to it, so a tag never names a half-written set. A
    tag that exists is refused (``ArtifactsUploadError``), never moved or merged into;
    ``delete_tag`` frees the name (the run and its files stay).
What ``download`` picks
    the run ``run`` names (its id, or its name when one run has it) or the run ``tag`` names;
    one of them is needed (both: they must agree). ``artifact_path`` (default: every file)
    selects a file or a folder of it. ``local_path`` defaults to ``"."`` for every file, and to
    ``artifact_path`` itself otherwise, so files land under the current folder at their artifact
    paths. A folder's files go into ``local_path`` (merged with what is there); a file goes to
    ``local_path``, or into it when it is a folder or ends in ``/``.
Overwrite rules
    files at the destination are replaced by the downloaded ones (a file already there with the
    same content is left as it is); other files there are kept. A folder cannot be downloaded
    onto a file, nor a file onto a folder's place in a tree: that is an ``ArtifactsDownloadError``
    and nothing is written. Every file is checked against its sha256 before it is put in place.

Errors: ``ArtifactsUploadError`` and ``ArtifactsDownloadError`` (``.cause``: the error behind).
"""

from __future__ import annotations

import os
import posixpath
import time
from pathlib import Path

from ..errors import ArtifactsDownloadError, ArtifactsUploadError, InvalidArgumentError, PodstackError

__all__ = ["TaggedArtifacts", "upload", "download", "list_tags", "delete_tag", "TAG_RUN_TAG"]

#: the run tag of a run made by ``upload(..., tag=...)``
TAG_RUN_TAG = "podstack.artifacts.tag"


def _mirrored(local_path) -> str:
    """``local_path`` as an artifact path: the same relative path (a leading ``/`` dropped)."""
    text = os.fspath(local_path).replace("\\", "/")
    drive, _ = os.path.splitdrive(text)
    text = text[len(drive):].lstrip("/")
    normalized = posixpath.normpath(text) if text else "."
    if normalized == ".." or normalized.startswith("../"):
        raise InvalidArgumentError(f"{os.fspath(local_path)!r} leads out of the current folder, so it cannot be "
                                   "stored under the same path; give artifact_path=")
    return "" if normalized == "." else normalized


def _obstacle(root: Path, file: Path) -> Path | None:
    """What keeps ``file`` (below ``root``) from being written: a folder in its place, or a file
    where one of its folders should be."""
    if file.is_dir():
        return file
    for parent in file.parents:
        if parent == root:
            return None
        if parent.exists() and not parent.is_dir():
            return parent
    return None


class TaggedArtifacts:
    """The rules of tagged artifact sets over a :class:`~podstack_jupyter.tracking.TrackingClient`
    (stateless: each call names its run or experiment); see the module docstring."""

    def __init__(self, tracking):
        self.tracking = tracking
        self.store = tracking.store

    # -- upload ----------------------------------------------------------------------------------
    def upload(self, local_path, artifact_path: str | None = None, tag: str | None = None, *,
               run_id: str | None = None, experiment_id: str | None = None) -> dict:
        """Store ``local_path`` as artifacts of ``run_id``, or with ``tag`` as a new tagged run in
        ``experiment_id`` (``run_id`` is then recorded as where it was uploaded from). Returns
        ``{"run_id", "tag", "files": [artifact paths]}``."""
        from ..tracking import _validate as V

        try:
            if not isinstance(local_path, (str, os.PathLike)):
                raise InvalidArgumentError(f"local_path must be a file or folder path, got {type(local_path).__name__}")
            if not Path(local_path).exists():
                raise InvalidArgumentError(f"local_path {os.fspath(local_path)!r} does not exist")
            if artifact_path is None:
                artifact_path = _mirrored(local_path)
            if tag is None:
                if run_id is None:
                    raise InvalidArgumentError(
                        "there is no active run to upload to: start one (registry.start_run(...), podstack.run or "
                        "%%track), or pass tag= to store the files as a new tagged set")
                files = self.tracking.log_artifact(run_id, local_path, artifact_path)
                return {"run_id": run_id, "tag": None, "files": [f["path"] for f in files]}
            tag = V.name("tag", tag)
            if self.store.get_artifact_tag(tag) is not None:
                raise InvalidArgumentError(f"tag {tag!r} already exists; a tag names one upload and is never moved "
                                           f"(podstack.artifacts.delete_tag({tag!r}) frees the name)")
            if experiment_id is None:
                raise InvalidArgumentError("a tagged upload needs experiment_id= (the experiment of its run)")
        except PodstackError as exc:
            raise ArtifactsUploadError(f"upload: {exc.message}", cause=exc) from exc
        tags = {TAG_RUN_TAG: tag, **({"podstack.artifacts.uploaded_from": run_id} if run_id else {})}
        try:
            run = self.tracking.create_run(experiment_id, name=tag, tags=tags)
        except PodstackError as exc:
            raise ArtifactsUploadError(f"upload: {exc.message}", cause=exc) from exc
        try:
            files = self.tracking.log_artifact(run["id"], local_path, artifact_path)
            self.store.create_artifact_tag(tag, run["id"], time.time())  # only a complete set is tagged
        except BaseException as exc:
            self.tracking.end_run(run["id"], "failed")
            if isinstance(exc, PodstackError):
                raise ArtifactsUploadError(f"upload to tag {tag!r}: {exc.message}; the tag was not bound",
                                           cause=exc) from exc
            raise
        self.tracking.end_run(run["id"], "completed")
        return {"run_id": run["id"], "tag": tag, "files": [f["path"] for f in files]}

    # -- download --------------------------------------------------------------------------------
    def _run_named(self, run: str) -> str:
        from ..tracking._search import make_clause

        if not isinstance(run, str) or not run:
            raise InvalidArgumentError(f"run must be a run's id or name, got {run!r}")
        if len(run) <= 64 and self.store.has_run(run):
            return run
        named = self.store.search_runs({"experiment_ids": None, "statuses": None, "order_by": [],
                                        "clauses": [make_clause("attribute", "name", "=", run)], "max_results": 10})
        if len(named) == 1:
            return named[0]["id"]
        if not named:
            raise InvalidArgumentError(f"there is no run with the id or name {run!r}")
        raise InvalidArgumentError(f"{len(named)} runs are named {run!r} (ids: {[r['id'] for r in named]}); "
                                   "pass the id of the one you mean")

    def resolve(self, run: str | None = None, tag: str | None = None) -> str:
        """The id of the run ``run`` or ``tag`` names."""
        from ..tracking import _validate as V

        if run is None and tag is None:
            raise InvalidArgumentError("give run= (a run's id or name) or tag= (a tag of upload(..., tag=...)): "
                                       "download needs to know whose files to fetch")
        tagged = None
        if tag is not None:
            record = self.store.get_artifact_tag(V.name("tag", tag))
            if record is None:
                known = [t["name"] for t in self.store.list_artifact_tags()][:20]
                raise InvalidArgumentError(f"there is no tag {tag!r}; tags: {known or 'none yet'}")
            tagged = record["run_id"]
        if run is None:
            return tagged
        run_id = self._run_named(run)
        if tagged is not None and tagged != run_id:
            raise InvalidArgumentError(f"tag {tag!r} names run {tagged}, not run {run!r} ({run_id}); give one of them")
        return run_id

    def download(self, run: str | None = None, tag: str | None = None, artifact_path: str | None = None,
                 local_path=None) -> str:
        """Copy the files of a run or a tag to ``local_path``; returns the absolute path written."""
        from ..tracking.client import clean_artifact_path

        try:
            run_id = self.resolve(run, tag)
            if local_path is not None and not isinstance(local_path, (str, os.PathLike)):
                raise InvalidArgumentError(f"local_path must be a path, got {type(local_path).__name__}")
            wanted = clean_artifact_path(artifact_path if artifact_path is not None else "")
            if local_path is None:
                local_path = artifact_path if artifact_path else "."
            entries, single = self.tracking.select_artifacts(run_id, wanted)
            target = Path(local_path).expanduser()
            if single:
                into = target.is_dir() or os.fspath(local_path).endswith(("/", os.sep))
                destination = target / posixpath.basename(wanted) if into else target
                if destination.is_dir():
                    raise InvalidArgumentError(f"{destination} is a folder; the file {wanted!r} cannot replace it")
                self.tracking.fetch(entries, lambda e: destination, f"downloading {wanted}", within=destination.parent,
                                    run_id=run_id)
                return str(destination.resolve())
            if target.exists() and not target.is_dir():
                raise InvalidArgumentError(f"local path {os.fspath(local_path)!r} is a file; the folder "
                                           f"{wanted or '(every file)'} needs a folder")
            offset = len(wanted) + 1 if wanted else 0
            placed = {e["path"]: target.joinpath(*e["path"][offset:].split("/")) for e in entries}
            for path, file in placed.items():  # check the whole tree before writing any of it
                blocked = _obstacle(target, file)
                if blocked is not None:
                    raise InvalidArgumentError(f"cannot write {path!r} to {file}: {blocked} is in the way")
            self.tracking.fetch(entries, lambda e: placed[e["path"]], f"downloading {wanted or 'artifacts'}",
                                within=target, run_id=run_id)
            return str(target.resolve())
        except PodstackError as exc:
            raise ArtifactsDownloadError(f"download: {exc.message}", cause=exc) from exc

    # -- tags ------------------------------------------------------------------------------------
    def list_tags(self) -> list[dict]:
        """Every tag: ``{"name", "run_id", "created_at"}``, by name."""
        return self.store.list_artifact_tags()

    def delete_tag(self, tag: str) -> bool:
        """Remove a tag (its run and files stay); whether there was one."""
        from ..tracking import _validate as V

        return self.store.delete_artifact_tag(V.name("tag", tag))


# -- the notebook's face: the active run, the current experiment ---------------------------------------
def _tagged() -> TaggedArtifacts:
    from ..tracking import registry

    return TaggedArtifacts(registry.client())


def upload(local_path, artifact_path: str | None = None, tag: str | None = None) -> dict:
    """Upload the files at ``local_path`` as artifacts of the active run, or with ``tag`` as a new
    run tagged ``tag`` (in the current experiment). ``artifact_path`` defaults to ``local_path``.
    Returns ``{"run_id", "tag", "files"}``. ``ArtifactsUploadError`` if it cannot; see
    :mod:`podstack_jupyter.artifacts._tagged` for the rules."""
    from ..tracking import registry

    active = registry.active_run()
    experiment_id = None
    if tag is not None:
        experiment_id = active.experiment_id if active is not None else registry._current_experiment().id
    return _tagged().upload(local_path, artifact_path, tag, run_id=active.id if active is not None else None,
                            experiment_id=experiment_id)


def download(run: str | None = None, tag: str | None = None, artifact_path: str | None = None,
             local_path=None) -> str:
    """Download the artifact files of a run (its id or name) or a tag, from ``artifact_path``
    (default: all) to ``local_path`` (default: ``"."``, or ``artifact_path`` when one is given).
    Returns the absolute path written. ``ArtifactsDownloadError`` if it cannot."""
    return _tagged().download(run, tag, artifact_path, local_path)


def list_tags() -> list[dict]:
    """Every tag of ``upload(..., tag=...)``: ``{"name", "run_id", "created_at"}``, by name."""
    return _tagged().list_tags()


def delete_tag(tag: str) -> bool:
    """Free a tag's name (its run and files stay); whether there was one."""
    return _tagged().delete_tag(tag)
