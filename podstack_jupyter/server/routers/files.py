"""The signed URLs of a folder artifact store (``--artifacts /folder``), served by the server itself.

``PUT /files/<project>/upload/<token>`` and ``GET /files/<project>/blob/<digest>`` need no API
key: the URL's HMAC signature (bound to the project, the path, the method and the expiry) is
the permission. An altered or expired URL is refused with 403. An upload whose body is cut off
(fewer bytes than its ``Content-Length``) leaves nothing behind.
"""

from __future__ import annotations

import os

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect
from starlette.responses import StreamingResponse

from ...artifacts._s3 import _content_disposition
from ...errors import ArtifactNotFoundError, InvalidArgumentError, NotFoundError
from ..wire import JSON

__all__ = ["router"]

router = APIRouter(tags=["signed URLs (folder artifact store)"])

_CHUNK = 1 << 20


def _store(request: Request, project_id: str):
    state = request.app.state.podstack
    if not state.local_artifacts:
        raise NotFoundError("this server's artifacts are in S3: its signed URLs point there, not here")
    if not project_id or len(project_id) > 36 or "\x00" in project_id:
        raise PermissionError("the URL's signature does not match (altered or not issued by this server)")
    return state.artifacts_of(project_id)


@router.put("/files/{project_id}/upload/{token}", summary="Upload through a signed URL")
async def upload(project_id: str, token: str, request: Request, expires: str = "", signature: str = ""):
    """The raw bytes of one file (a URL from `upload-url`); 403 if the URL is altered or expired."""
    store = _store(request, project_id)
    store.check_signature("PUT", f"upload/{token}", expires, signature)
    length = request.headers.get("content-length")
    try:
        expected = int(length) if length is not None else None
    except ValueError:
        raise InvalidArgumentError(f"Content-Length {length!r} is not a number") from None
    writer = await run_in_threadpool(store.receive_upload, f"incoming/{token}")
    buffered, pending = [], 0
    try:
        async for chunk in request.stream():
            buffered.append(chunk)
            pending += len(chunk)
            if pending >= _CHUNK:
                data, buffered, pending = b"".join(buffered), [], 0
                await run_in_threadpool(writer.write, data)
        if buffered:
            await run_in_threadpool(writer.write, b"".join(buffered))
        if expected is not None and writer.size != expected:
            raise InvalidArgumentError(f"the body has {writer.size} bytes, not the {expected} of its "
                                       "Content-Length; nothing was stored")
        await run_in_threadpool(writer.commit)
    except ClientDisconnect:
        writer.abort()
        return JSON({"error": "the upload was cut off; nothing was stored", "type": "ClientDisconnect"},
                    status_code=400)
    except BaseException:
        writer.abort()
        raise
    return JSON({"size": writer.size})


@router.get("/files/{project_id}/blob/{digest}", summary="Download through a signed URL")
def download(project_id: str, digest: str, request: Request, expires: str = "", signature: str = "",
             filename: str = ""):
    """The bytes of one artifact (a URL from `download-url`); 403 if the URL is altered or expired."""
    store = _store(request, project_id)
    store.check_signature("GET", f"blob/{digest}", expires, signature, filename)
    try:
        blob = store.open_blob(digest)
    except (ArtifactNotFoundError, InvalidArgumentError):
        raise ArtifactNotFoundError(f"no blob {digest} in this project's artifacts") from None
    size = os.fstat(blob.fileno()).st_size

    def chunks():
        with blob:
            while data := blob.read(_CHUNK):
                yield data

    headers = {"Content-Length": str(size)}
    if filename:
        headers["Content-Disposition"] = _content_disposition(filename)
    return StreamingResponse(chunks(), media_type="application/octet-stream", headers=headers)
