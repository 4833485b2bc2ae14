"""Artifacts: bytes never pass through the API. It hands out short-lived signed URLs (S3's own, or
this server's HMAC-signed ones for a folder, served by ``routers/files.py``).

Two flows:

* the official SDK's, by (run, path): ``POST /runs/{id}/artifacts/upload-url`` gives a URL to PUT
  the file to; the SDK never says when it is done, so uploads are *pending* until the run's
  artifacts are next read (list, download URL, the SDK's ``_artifact.*`` param, the run's end):
  then each is hashed, stored under its digest and recorded at its path. An upload cut off
  halfway leaves nothing (neither S3 nor this server shows a partial PUT), and an upload URL
  never used expires and is swept;
* this project's REST store's, by content: ``POST /blobs/upload-url`` for a digest (answered
  ``exists`` when the project already holds those bytes), PUT, ``POST /blobs/finalize`` (hashed
  and checked against the digest), then ``POST /runs/{id}/artifacts`` records paths.
"""

from __future__ import annotations

import logging
import posixpath
import time

from fastapi import APIRouter, Depends, Query, Request

from ...errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError
from ...tracking import _validate as V
from ...tracking.client import artifact_entry, clean_artifact_path
from ..deps import project
from ..state import ProjectContext
from ..wire import JSON, ArtifactsIn, BlobFinalizeIn, BlobUploadIn, UploadUrlIn, artifact_json

__all__ = ["router", "finalize_pending"]

log = logging.getLogger("podstack.server")

router = APIRouter(tags=["artifacts"])


def _digest(value) -> str:
    if not (isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)):
        raise InvalidArgumentError(f"digest must be a sha256 (64 lower-case hex characters), got {value!r}")
    return value


def _path(value, what: str = "artifact_path") -> str:
    """A client's artifact path, normalized; one with a ``..`` segment is refused outright (even one
    that would stay inside the run: a client sending it is confused or probing)."""
    if isinstance(value, str) and ".." in value.replace("\\", "/").split("/"):
        raise InvalidArgumentError(f"{what} {value!r} must not contain '..'; give the path inside the run")
    return clean_artifact_path(value, what)


def base_url(request: Request) -> str:
    """Where the client reached this server (signed URLs of a folder store are made absolute with it)."""
    return str(request.base_url)


def _absolute(request_base: str, url: str) -> str:
    # a folder store's URLs are this server's own paths; the client reaches them where it reached the API
    return request_base.rstrip("/") + url if url.startswith("/") else url


def finalize_pending(ctx: ProjectContext, run_id: str) -> None:
    """Turn the run's finished uploads (SDK flow) into artifacts; forget expired ones never made."""
    pending = ctx.state.pending_uploads(ctx.project_id, run_id)
    if not pending:
        return
    entries = []
    now = time.time()
    for row in pending:  # oldest first: an upload to the same path again wins
        try:
            digest, size = ctx.artifacts.finalize(row["key"])
        except ArtifactNotFoundError:
            if row["expires_at"] < now - 3600:  # the URL expired an hour ago: nothing will come
                ctx.state.drop_pending_upload(row["key"])
            continue
        entries.append({"path": row["path"], "digest": digest, "size": size, "created_at": time.time()})
        ctx.store.log_artifacts(run_id, entries[-1:])
        ctx.state.drop_pending_upload(row["key"])


@router.post("/runs/{run_id}/artifacts/upload-url", summary="A signed URL to upload one artifact file")
def upload_url(run_id: str, body: UploadUrlIn, request_base: str = Depends(base_url),
               ctx: ProjectContext = Depends(project)):
    """`{"upload_url", "expires_at", "method": "PUT", "headers"}`: PUT the file's raw bytes there
    (no API key) before it expires; it becomes the run's artifact at `artifact_path` (relative, no
    `..`, no leading `/`, no NUL) when the run's artifacts are next read."""
    path = _path(body.artifact_path)
    if not path:
        raise InvalidArgumentError("artifact_path must name a file inside the run")
    run_id = V.identifier("run_id", run_id)
    ctx.tracking.require_run(run_id)
    upload = ctx.artifacts.presigned_put(expires=ctx.state.config.upload_expires)
    ctx.state.add_pending_upload(ctx.project_id, run_id, path, upload.key, upload.expires_at)
    return JSON({"upload_url": _absolute(request_base, upload.url), "expires_at": upload.expires_at,
                 "method": upload.method, "headers": upload.headers})


@router.get("/runs/{run_id}/artifacts/download-url", summary="A signed URL to download one artifact file")
def download_url(run_id: str, artifact_path: str = Query(...),
                 request_base: str = Depends(base_url),
                 ctx: ProjectContext = Depends(project)):
    """`{"download_url", "expires_at", "size", "digest"}` for the artifact file at `artifact_path`
    (404 if the run has none there; 400 for a folder: ask for each of its files)."""
    run_id = V.identifier("run_id", run_id)
    ctx.tracking.require_run(run_id)
    finalize_pending(ctx, run_id)
    entries, single = ctx.tracking.select_artifacts(run_id, _path(artifact_path))
    if not single:
        raise InvalidArgumentError(f"{artifact_path!r} is a folder of {len(entries)} artifact files; ask for each "
                                   "file (GET /runs/{id}/artifacts lists them)")
    entry = entries[0]
    expires = ctx.state.config.download_expires
    url = ctx.artifacts.presigned_get(entry["digest"], expires=expires, filename=posixpath.basename(entry["path"]),
                                      must_exist=False)
    return JSON({"download_url": _absolute(request_base, url), "expires_at": time.time() + expires,
                 "size": entry["size"], "digest": entry["digest"]})


@router.get("/runs/{run_id}/artifacts", summary="A run's artifact files")
def list_artifacts(run_id: str, path: str | None = None, ctx: ProjectContext = Depends(project)):
    """`{"artifacts": [{path, size, etag, last_modified}]}` (`etag` is the sha256 of the content),
    under `path` if given."""
    run_id = V.identifier("run_id", run_id)
    ctx.tracking.require_run(run_id)
    finalize_pending(ctx, run_id)
    prefix = _path(path, "path") if path is not None else None
    entries = ctx.store.list_artifacts(run_id)
    if prefix:
        entries = [e for e in entries if e["path"] == prefix or e["path"].startswith(prefix + "/")]
    return JSON({"artifacts": [artifact_json(e) for e in entries]})


@router.post("/runs/{run_id}/artifacts", summary="Record artifact files by content (this project's REST store)")
def record_artifacts(run_id: str, body: ArtifactsIn, ctx: ProjectContext = Depends(project)):
    """Record `[{path, digest, size, created_at}]` as the run's artifacts; each digest must be
    stored in the project already (`POST /blobs/...`). A path recorded again is replaced."""
    run_id = V.identifier("run_id", run_id)
    ctx.tracking.require_run(run_id)
    entries = []
    for item in body.artifacts:
        path = _path(item.path, "artifact path")
        if not path:
            raise InvalidArgumentError("an artifact path must name a file inside the run")
        digest = _digest(item.digest)
        try:
            size = ctx.artifacts.size(digest)
        except ArtifactNotFoundError:
            raise ArtifactNotFoundError(f"artifact {path!r}: no content {digest} was uploaded to this project; "
                                        "upload it first (POST /blobs/upload-url)") from None
        if item.size is not None and item.size != size:
            raise ArtifactIntegrityError(f"artifact {path!r}: the stored content has {size} bytes, not {item.size}",
                                         digest=digest)
        created = time.time() if item.created_at is None else V.number("created_at", item.created_at)
        entries.append({"path": path, "digest": digest, "size": size, "created_at": created})
    if entries:
        ctx.store.log_artifacts(run_id, entries)
    return JSON({"artifacts": [artifact_entry(e) for e in entries]})


@router.post("/blobs/upload-url", summary="A signed URL to upload content by its digest")
def blob_upload_url(body: BlobUploadIn, request_base: str = Depends(base_url),
                    ctx: ProjectContext = Depends(project)):
    """`{"exists": true}` when the project already holds content with this sha256; else
    `{"exists": false, "upload_url", "upload_key", "headers", "expires_at"}`: PUT the bytes there,
    then `POST /blobs/finalize`."""
    digest = _digest(body.digest)
    if body.size is not None and (body.size < 0 or body.size > 5 * 1024 ** 4):
        raise InvalidArgumentError(f"size must be a number of bytes (at most 5 TiB), got {body.size}")
    if ctx.artifacts.has(digest):
        return JSON({"exists": True})
    upload = ctx.artifacts.presigned_put(expires=ctx.state.config.upload_expires, size=body.size)
    return JSON({"exists": False, "upload_url": _absolute(request_base, upload.url), "upload_key": upload.key,
                 "headers": upload.headers, "expires_at": upload.expires_at, "method": upload.method})


@router.post("/blobs/finalize", summary="Store uploaded content under its digest")
def blob_finalize(body: BlobFinalizeIn, ctx: ProjectContext = Depends(project)):
    """Hash what was PUT to `upload_key`; if it is `digest`, store it (`{"digest", "size"}`), else
    discard it (409). 404 if nothing was uploaded there."""
    digest = _digest(body.digest)
    found, size = ctx.artifacts.finalize(body.upload_key, expected=digest)
    return JSON({"digest": found, "size": size})


@router.get("/blobs/{digest}/download-url", summary="A signed URL to download content by its digest")
def blob_download_url(digest: str, request_base: str = Depends(base_url),
                      ctx: ProjectContext = Depends(project)):
    """`{"download_url", "expires_at", "size"}` for content of the project (404 if it holds none)."""
    digest = _digest(digest)
    size = ctx.artifacts.size(digest)
    expires = ctx.state.config.download_expires
    url = ctx.artifacts.presigned_get(digest, expires=expires, must_exist=False)
    return JSON({"download_url": _absolute(request_base, url), "expires_at": time.time() + expires, "size": size})
