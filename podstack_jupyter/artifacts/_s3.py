"""Content-addressed blobs in an S3-compatible bucket (AWS S3, MinIO, SeaweedFS, Ceph, R2, ...).

``PODSTACK_ARTIFACT_ROOT=s3://bucket/prefix`` puts a run's artifact files there. Endpoint,
region and credentials come from the usual AWS settings: ``AWS_ENDPOINT_URL_S3`` (or
``AWS_ENDPOINT_URL``) for a server other than AWS, ``AWS_REGION`` (or ``AWS_DEFAULT_REGION``),
``AWS_ACCESS_KEY_ID`` / ``AWS_SECRET_ACCESS_KEY`` / ``AWS_SESSION_TOKEN`` or ``AWS_PROFILE``.
Needs boto3: ``pip install 'podstack-jupyter[s3]'``.

The same guarantees as the local folder hold:

- a blob lives under ``<prefix>/blobs/ab/cdef...``, named by the sha256 of its content (the
  local store's layout, so a synced copy of a local store is readable here and vice versa);
- writes are all or nothing: a file is hashed first, then uploaded straight to its digest's key
  (one PUT, or a multipart upload for large files, which S3 shows only once it is completed),
  and the bytes sent are hashed again on the way: if the file changed meanwhile the upload is
  aborted. A stream that cannot be read twice goes to ``<prefix>/incoming/<random>`` first and is
  copied to its digest's key once its whole content is there and hashed. A cut-off upload
  leaves no object under a digest; what it leaves (an unfinished multipart upload, an
  incoming object) is swept a day later;
- content already stored is not sent again;
- reads through ``get_file`` hash what they copy and refuse a blob whose content no longer
  matches its name (``ArtifactIntegrityError``, nothing written at the destination); large
  blobs are read in parallel ranges, all of one version of the object.

For a team server, signed URLs let clients move the bytes without credentials::

    url = store.presigned_get(digest, expires=300, filename="model.pt")
    upload = store.presigned_put(expires=900)       # upload.url takes one raw PUT
    ...                                             # the client PUTs the bytes
    digest, size = store.finalize(upload.key)       # hashed, stored under its digest
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import io
import itertools
import os
import queue
import re
import secrets
import threading
import time
from pathlib import Path
from urllib.parse import quote

from ..errors import (ArtifactIntegrityError, ArtifactNotFoundError, ConfigurationError, InvalidArgumentError,
                      PodstackError)
from ._base import ArtifactStore, progress_bar, write_verified

__all__ = ["S3ArtifactStore", "PresignedUpload"]

_MiB = 1 << 20
_CHUNK = _MiB
_HEX = frozenset("0123456789abcdef")
# an unfinished upload this old was left by a killed process (a live one is still sending parts)
_STALE_SECONDS = 24 * 3600
# SigV4 presigned URLs live at most 7 days
_MAX_EXPIRES = 7 * 24 * 3600
_MAX_PARTS = 10_000
_BUCKET_NAME = re.compile(r"^[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]$")
# the answers that mean "these credentials may not do this", not "this object is missing"
_CREDENTIAL_CODES = frozenset({"403", "AccessDenied", "Forbidden", "InvalidAccessKeyId", "SignatureDoesNotMatch",
                               "InvalidToken", "ExpiredToken", "TokenRefreshRequired", "InvalidClientTokenId",
                               "UnrecognizedClientException"})
_MISSING_CODES = frozenset({"404", "NoSuchKey", "NotFound"})


def _check_digest(digest) -> str:
    if not (isinstance(digest, str) and len(digest) == 64 and _HEX.issuperset(digest)):
        raise InvalidArgumentError(f"{digest!r} is not a sha256 digest (64 lower-case hex characters)")
    return digest


def _check_expires(expires) -> int:
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not 1 <= expires <= _MAX_EXPIRES:
        raise InvalidArgumentError(f"expires must be a number of seconds from 1 to {_MAX_EXPIRES} (7 days), "
                                   f"got {expires!r}")
    return int(expires)


def parse_s3_url(url: str) -> tuple[str, str]:
    """``s3://bucket/some/prefix`` -> ``("bucket", "some/prefix")`` (the prefix may be empty)."""
    if not isinstance(url, str) or not url.lower().startswith("s3://"):
        raise ConfigurationError(f"artifact root {url!r} is not an s3:// URL (expected s3://bucket/prefix)")
    bucket, _, prefix = url[5:].partition("/")
    if not _BUCKET_NAME.match(bucket) or ".." in bucket:
        raise ConfigurationError(
            f"artifact root {url!r}: {bucket!r} is not a valid bucket name (3-63 lower-case letters, digits, "
            "'.' and '-'); set PODSTACK_ARTIFACT_ROOT to s3://bucket/prefix")
    prefix = prefix.strip("/")
    if any(part in ("", ".", "..") for part in prefix.split("/")) and prefix:
        raise ConfigurationError(f"artifact root {url!r}: the prefix {prefix!r} has an empty, '.' or '..' part")
    return bucket, prefix


def _content_disposition(filename: str) -> str:
    # RFC 6266: an ASCII fallback, and the exact name percent-encoded for clients that read filename*
    name = os.path.basename(str(filename).replace("\\", "/")) or "download"
    fallback = "".join(c if 32 <= ord(c) < 127 and c not in '"\\' else "_" for c in name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _read_exactly(stream, n: int) -> bytes:
    """Up to ``n`` bytes; fewer only at the end of the stream (a socket may return less per read)."""
    data = stream.read(n)
    if not data or len(data) >= n:
        return data or b""
    pieces, got = [data], len(data)
    while got < n:
        more = stream.read(n - got)
        if not more:
            break
        pieces.append(more)
        got += len(more)
    return b"".join(pieces)


def _seekable(stream) -> bool:
    try:
        return bool(stream.seekable()) and isinstance(stream.tell(), int)
    except (AttributeError, OSError, ValueError):
        return False


def _copy_hashing(read, out, bar, depth: int = 8) -> tuple[str, int]:
    """Copy what ``read(n)`` yields to ``out``, hashing it; returns ``(sha256 hex, size)``.

    Hashing and writing run in a helper thread (both release the GIL), so they overlap with
    the network reads instead of adding to them; at most ``depth`` chunks wait in between.
    """
    h = hashlib.sha256()
    chunks: queue.Queue = queue.Queue(maxsize=depth)
    failure: list[BaseException] = []

    def consume():
        try:
            while (chunk := chunks.get()) is not None:
                h.update(chunk)
                out.write(chunk)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the calling thread
            failure.append(exc)
            while chunks.get() is not None:  # keep draining: the reader must never block
                pass

    worker = threading.Thread(target=consume, name="podstack-s3-hash", daemon=True)
    worker.start()
    size = 0
    try:
        while not failure and (chunk := read(_CHUNK)):
            chunks.put(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
    finally:
        chunks.put(None)
        worker.join()
    if failure:
        raise failure[0]
    return h.hexdigest(), size


class _BodyReader(io.RawIOBase):
    """A ``GetObject`` body as a standard binary file (``with``, ``read``, ``readinto``, iteration)."""

    def __init__(self, body):
        self._body = body

    def readable(self):
        return True

    def readinto(self, buffer):
        data = self._body.read(len(buffer))
        buffer[:len(data)] = data
        return len(data)

    def close(self):
        if not self.closed:
            self._body.close()
        super().close()


@dataclasses.dataclass(frozen=True)
class PresignedUpload:
    """Where a client may PUT one file's raw bytes without credentials, until ``expires_at``.

    ``url``: the signed URL (HTTP ``PUT``, the body is the file's bytes); ``headers``: headers
    the PUT must carry exactly as given (``Content-Length`` when the URL was signed for a size;
    otherwise none); ``key``: the object the bytes land in, which ``S3ArtifactStore.finalize``
    turns into a verified blob; ``expires_at``: Unix time after which the URL is refused.
    """

    url: str
    key: str
    expires_at: float
    headers: dict = dataclasses.field(default_factory=dict)
    method: str = "PUT"


class S3ArtifactStore(ArtifactStore):
    """Blobs named by their sha256 under ``s3://bucket/prefix/blobs/ab/cdef...``.

    ``url`` is ``s3://bucket/prefix``. ``client`` (optional) is a boto3 S3 client to use
    instead of one made from the AWS environment. Files of ``multipart_threshold`` bytes or
    more go up in parts of ``part_size`` bytes, ``max_concurrency`` at a time; memory stays
    within about ``(max_concurrency + 1) * part_size`` whatever the file's size.
    """

    multipart_threshold = 16 * _MiB
    part_size = 16 * _MiB
    max_concurrency = 4
    #: blobs larger than ``multipart_threshold`` are read in ranges of this size, ``max_concurrency`` at a time
    download_part_size = 8 * _MiB
    #: objects larger than this are copied part by part (CopyObject's own limit is 5 GiB) ...
    copy_part_limit = 5 * 1024 * _MiB
    #: ... in parts of this size
    copy_part_size = 512 * _MiB

    def __init__(self, url: str, *, client=None):
        self.bucket, self.prefix = parse_s3_url(url)
        self.url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        self._client = client
        self._lock = threading.Lock()
        self._checked = False
        self._swept = False

    def __repr__(self):
        return f"S3ArtifactStore({self.url!r})"

    # -- keys ------------------------------------------------------------------------------------
    def _key(self, *parts: str) -> str:
        return "/".join((self.prefix, *parts)) if self.prefix else "/".join(parts)

    def key_of(self, digest: str) -> str:
        """The object key of the blob ``digest`` (whether or not it is stored)."""
        digest = _check_digest(digest)
        return self._key("blobs", digest[:2], digest[2:])

    def _incoming_key(self) -> str:
        return self._key("incoming", secrets.token_hex(16))

    def _check_incoming_key(self, key) -> str:
        base = self._key("incoming") + "/"
        if not (isinstance(key, str) and key.startswith(base) and re.fullmatch(r"[0-9a-f]{32}", key[len(base):])):
            raise InvalidArgumentError(f"{key!r} is not an upload key of {self.url} (PresignedUpload.key is)")
        return key

    # -- the client, and what its errors mean ------------------------------------------------------
    @property
    def endpoint(self) -> str:
        """The S3 endpoint in use (``https://s3.<region>.amazonaws.com`` on AWS)."""
        return self._s3().meta.endpoint_url

    def _s3(self):
        client = self._client
        if client is not None:
            return client
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self):
        try:
            import boto3
            from botocore.config import Config
        except ImportError:
            raise ConfigurationError(
                f"artifact root {self.url} needs boto3, which is not installed: pip install 'podstack-jupyter[s3]'"
            ) from None
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None
        if endpoint is not None and not re.match(r"^https?://[^/\s]+", endpoint):
            which = "AWS_ENDPOINT_URL_S3" if os.environ.get("AWS_ENDPOINT_URL_S3") else "AWS_ENDPOINT_URL"
            raise ConfigurationError(f"{which}={endpoint!r} is not a URL; give one like http://127.0.0.1:9000")
        try:
            session = boto3.session.Session()
        except Exception as exc:  # noqa: BLE001 - e.g. AWS_PROFILE naming a profile that does not exist
            raise ConfigurationError(f"cannot set up AWS access for {self.url}: {exc} (check AWS_PROFILE)") from None
        region = os.environ.get("AWS_REGION") or session.region_name or "us-east-1"
        config = Config(
            # presigned URLs too: botocore would sign some in the deprecated SigV2, which servers handle unevenly
            signature_version="s3v4",
            # S3-compatible servers rarely answer bucket-named host names; AWS takes both
            s3={"addressing_style": "path" if endpoint else "auto"},
            connect_timeout=10,
            read_timeout=120,
            max_pool_connections=max(10, self.max_concurrency + 2),
            tcp_keepalive=True,
        )
        try:
            return session.client("s3", endpoint_url=endpoint, region_name=region, config=config)
        except Exception as exc:  # noqa: BLE001 - botocore's errors for bad settings vary by version
            raise ConfigurationError(f"cannot set up the S3 client for {self.url}: {exc}") from None

    def _error(self, exc, action: str) -> PodstackError:
        """The podstack error that says what ``exc`` (raised while ``action``) means and how to fix it."""
        from botocore import exceptions as bx

        where = f"{self.url} ({self._endpoint_text()})"
        if isinstance(exc, (bx.NoCredentialsError, bx.PartialCredentialsError, bx.CredentialRetrievalError)):
            return ConfigurationError(
                f"no usable S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY "
                f"(or AWS_PROFILE) ({exc})")
        if isinstance(exc, (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ProxyConnectionError)):
            return ConfigurationError(
                f"cannot reach the S3 endpoint {self._endpoint_text()} while {action}: check AWS_ENDPOINT_URL_S3 / "
                f"AWS_ENDPOINT_URL (unset for AWS itself), that the server is running and the network ({exc})")
        if isinstance(exc, bx.ClientError):
            error = exc.response.get("Error", {})
            code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", ""))
            message = error.get("Message") or ""
            if code == "NoSuchBucket":
                return ConfigurationError(self._no_bucket_text())
            if code == "InvalidAccessKeyId":
                return ConfigurationError(
                    f"the S3 server at {self._endpoint_text()} does not know the access key id in use: check "
                    "AWS_ACCESS_KEY_ID (or AWS_PROFILE)", code=code)
            if code == "SignatureDoesNotMatch":
                return ConfigurationError(
                    f"the S3 server at {self._endpoint_text()} refused the signature: AWS_SECRET_ACCESS_KEY does not "
                    "match AWS_ACCESS_KEY_ID", code=code)
            if code in _CREDENTIAL_CODES:
                return ConfigurationError(
                    f"S3 refused the request ({code}{': ' + message if message else ''}) while {action} in {where}: "
                    "check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN) and that this key may "
                    "read and write the bucket", code=code)
            if code in ("301", "PermanentRedirect", "AuthorizationHeaderMalformed",
                        "IllegalLocationConstraintException"):
                return ConfigurationError(
                    f"bucket {self.bucket!r} is in another region than {self._s3().meta.region_name!r}: "
                    f"set AWS_REGION to the bucket's region ({code} {message})".rstrip(), code=code)
            return PodstackError(f"S3 {code or 'error'} while {action} in {where}: {message or exc}", code=code)
        if isinstance(exc, bx.BotoCoreError):
            return PodstackError(f"S3 transfer failed while {action} in {where}: {exc}")
        return PodstackError(f"S3 failure while {action} in {where}: {exc}")

    def _endpoint_text(self) -> str:
        client = self._client
        return client.meta.endpoint_url if client is not None else "endpoint not set up"

    def _no_bucket_text(self) -> str:
        return (f"bucket {self.bucket!r} does not exist at {self._endpoint_text()}: create it (e.g. "
                f"aws s3 mb s3://{self.bucket}) or fix PODSTACK_ARTIFACT_ROOT={self.url}")

    @staticmethod
    def _is_missing(exc) -> bool:
        from botocore.exceptions import ClientError

        return isinstance(exc, ClientError) and str(exc.response.get("Error", {}).get("Code")) in _MISSING_CODES

    def _call(self, operation: str, action: str, **params):
        """``client.<operation>(**params)``; botocore errors become podstack errors (missing objects
        come back as ``ArtifactNotFoundError`` with ``action`` in the message)."""
        self._ready()
        try:
            return getattr(self._s3(), operation)(Bucket=self.bucket, **params)
        except Exception as exc:
            if self._is_missing(exc):
                raise ArtifactNotFoundError(f"{action} in {self.url}") from None
            if _is_botocore_error(exc):
                raise self._error(exc, action) from None
            raise

    def _ready(self) -> None:
        # one HEAD of the bucket before the first use: a wrong endpoint, bucket or key is reported
        # as such instead of as "blob not found" (a HEAD's 404 has no error code of its own)
        if self._checked:
            return
        client = self._s3()
        try:
            client.head_bucket(Bucket=self.bucket)
        except Exception as exc:
            if not _is_botocore_error(exc):
                raise
            if self._is_missing(exc) or "NoSuchBucket" in str(exc):
                raise ConfigurationError(self._no_bucket_text()) from None
            if _code(exc) in ("403", "Forbidden"):
                # a HEAD's answer has no body: ask again with a request whose answer says why
                try:
                    client.list_objects_v2(Bucket=self.bucket, Prefix=self._key("blobs") + "/", MaxKeys=1)
                except Exception as detailed:  # noqa: BLE001 - reported below
                    if _is_botocore_error(detailed):
                        exc = detailed
            raise self._error(exc, "checking the bucket") from None
        self._checked = True

    def check(self) -> None:
        """Check that the endpoint answers, the bucket exists and the credentials are accepted;
        ``ConfigurationError`` naming what to fix otherwise (every operation does this once)."""
        self._checked = False
        self._ready()

    # -- reads -----------------------------------------------------------------------------------
    def _head(self, digest: str):
        return self._call("head_object", f"no blob {digest}", Key=self.key_of(digest))

    def has(self, digest: str) -> bool:
        try:
            self._head(digest)
        except ArtifactNotFoundError:
            return False
        return True

    def size(self, digest: str) -> int:
        return int(self._head(digest)["ContentLength"])

    def _get(self, key: str, action: str, **params):
        return self._call("get_object", action, Key=key, **params)

    def open_blob(self, digest: str):
        response = self._get(self.key_of(digest), f"no blob {digest}")
        return io.BufferedReader(_BodyReader(response["Body"]), buffer_size=_CHUNK)

    def _read_hashing(self, key: str, response, out, bar, action: str) -> tuple[str, int]:
        """Copy the object ``response`` began to return to ``out``, hashing it; ``(sha256 hex, size)``.

        A large object is read in ranges, ``max_concurrency`` at a time, all of the version the
        first answer came from (``If-Match`` its ETag): one stream rarely fills the link to S3.
        Each range is written at its offset by the thread that fetched it and hashed here in
        order, so the one serial step is the hash. Memory stays within about
        ``max_concurrency + 1`` ranges.
        """
        body, size = response["Body"], int(response.get("ContentLength") or 0)
        step = self.download_part_size
        pool = None
        try:
            if size <= max(self.multipart_threshold, step) or self.max_concurrency < 2:
                return _copy_hashing(body.read, out, bar)
            from concurrent.futures import ThreadPoolExecutor

            fd = out.fileno() if hasattr(out, "fileno") else None

            def write_at(data, offset):
                view = memoryview(data)
                while view:
                    written = os.pwrite(fd, view, offset)
                    view, offset = view[written:], offset + written

            def fetch(offset):
                part = self._s3().get_object(Bucket=self.bucket, Key=key, IfMatch=response["ETag"],
                                             Range=f"bytes={offset}-{min(offset + step, size) - 1}")["Body"]
                with part:
                    data = part.read()
                if fd is not None:
                    write_at(data, offset)
                return data

            pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="podstack-s3-range")
            offsets = iter(range(step, size, step))
            pending = collections.deque(pool.submit(fetch, o) for o in itertools.islice(offsets, self.max_concurrency))
            data = _read_exactly(body, step)  # the first range, from the answer already open
            body.close()
            if fd is not None:
                write_at(data, 0)
            h, copied = hashlib.sha256(), 0
            while True:
                h.update(data)
                copied += len(data)
                if bar is not None:
                    bar.update(len(data))
                if not pending:
                    break
                data = pending.popleft().result()
                offset = next(offsets, None)
                if offset is not None:
                    pending.append(pool.submit(fetch, offset))
            if copied != size:
                raise PodstackError(f"S3 returned {copied} bytes of {key}, not {size}; nothing was kept")
            return h.hexdigest(), copied
        except Exception as exc:
            if _is_botocore_error(exc):
                raise self._error(exc, action) from None
            raise
        finally:
            body.close()
            if pool is not None:
                pool.shutdown(wait=True, cancel_futures=True)

    def get_file(self, digest: str, dest_path, progress: bool | None = None) -> Path:
        key = self.key_of(digest)
        response = self._get(key, f"no blob {digest}")  # before anything is created
        bar = None
        try:
            bar = progress_bar(int(response.get("ContentLength") or 0), f"fetching {Path(dest_path).name}", progress)
            return write_verified(dest_path, digest, where=self.url, copy=lambda out: self._read_hashing(
                key, response, out, bar, f"fetching blob {digest}")[0])
        finally:
            response["Body"].close()
            if bar is not None:
                bar.close()

    def verify(self, digest: str) -> bool:
        key = self.key_of(digest)
        response = self._get(key, f"no blob {digest}")
        found, _ = self._read_hashing(key, response, _Discard(), None, f"verifying blob {digest}")
        return found == digest

    def delete(self, digest: str) -> None:
        self._call("delete_object", f"deleting blob {digest}", Key=self.key_of(digest))

    # -- writes ----------------------------------------------------------------------------------
    def put_stream(self, stream, size_hint: int | None = None, progress: bool | None = None) -> tuple[str, int]:
        self._ready()
        if not self._swept:
            self._swept = True
            try:
                self.sweep()
            except PodstackError:
                pass  # a key allowed to write but not to list or abort uploads may still store blobs
        bar = progress_bar(size_hint or 0, "storing artifact", progress)
        try:
            if _seekable(stream):
                return self._put_seekable(stream, bar)
            return self._put_unseekable(stream, bar)
        finally:
            if bar is not None:
                bar.close()

    def _put_small(self, data: bytes, bar) -> tuple[str, int]:
        digest = hashlib.sha256(data).hexdigest()
        if not self.has(digest):
            self._call("put_object", f"storing blob {digest}", Key=self.key_of(digest), Body=data)
        if bar is not None:
            bar.update(len(data))
        return digest, len(data)

    def _put_seekable(self, stream, bar) -> tuple[str, int]:
        start = stream.tell()
        head = _read_exactly(stream, self.multipart_threshold)
        if len(head) < self.multipart_threshold:
            return self._put_small(head, bar)
        # large: hash it first, so known content is not sent at all and the upload can go
        # straight to its digest's key; the upload hashes the bytes again as it sends them
        h = hashlib.sha256(head)
        size = len(head)
        if bar is not None:
            bar.set_description("hashing artifact")
            bar.update(size)
        while chunk := stream.read(_CHUNK):
            h.update(chunk)
            size += len(chunk)
            if bar is not None:
                bar.update(len(chunk))
        digest = h.hexdigest()
        del head  # the upload reads the file again, part by part
        if bar is not None:
            bar.reset(total=size)
            bar.set_description("storing artifact")
        if self.has(digest):
            if bar is not None:
                bar.update(size)
            return digest, size
        stream.seek(start)
        found, sent = self._upload_parts(self.key_of(digest), b"", stream, size, bar, expected=digest)
        return found, sent

    def _put_unseekable(self, stream, bar) -> tuple[str, int]:
        head = _read_exactly(stream, self.multipart_threshold)
        if len(head) < self.multipart_threshold:
            return self._put_small(head, bar)
        incoming = self._incoming_key()
        digest, size = self._upload_parts(incoming, head, stream, None, bar)
        try:
            self._publish(incoming, digest, size, etag=None)
        finally:
            self._delete_quietly(incoming)
        return digest, size

    def _part_size(self, total: int | None, number: int) -> int:
        if total is not None:  # the smallest size (whole MiB) that fits the file in 10,000 parts
            return max(self.part_size, -(-total // _MAX_PARTS // _MiB) * _MiB)
        # unknown size: parts grow as the stream goes on (10,000 parts of the first size would cap it)
        return self.part_size * (1 << (number // 1000))

    def _upload_parts(self, key: str, head: bytes, stream, total: int | None, bar,
                      expected: str | None = None) -> tuple[str, int]:
        """A multipart upload of ``head`` + the rest of ``stream`` to ``key``, hashing what is sent.

        Parts are read (and hashed) in order here while up to ``max_concurrency`` of them are in
        flight. The upload is completed only if every part is stored and, with ``expected``, the
        bytes hash to it; otherwise (an error, Ctrl-C) it is aborted and nothing appears at ``key``.
        """
        from concurrent.futures import ThreadPoolExecutor

        action = f"uploading to {key}"
        upload_id = self._call("create_multipart_upload", action, Key=key)["UploadId"]
        h = hashlib.sha256()
        size = 0
        parts: list[dict] = []
        in_flight: collections.deque = collections.deque()
        pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="podstack-s3-part")
        completed = False

        def collect_one():
            number, length, future = in_flight.popleft()
            parts.append({"PartNumber": number, "ETag": future.result()["ETag"]})
            if bar is not None:
                bar.update(length)

        try:
            number, first = 0, head
            while True:
                wanted = self._part_size(total, number)
                if first:
                    chunk = first if len(first) >= wanted else first + _read_exactly(stream, wanted - len(first))
                    first = b""
                else:
                    chunk = _read_exactly(stream, wanted)
                if not chunk and number > 0:
                    break
                number += 1
                h.update(chunk)
                size += len(chunk)
                last = len(chunk) < wanted  # a short part ends the stream
                in_flight.append((number, len(chunk), pool.submit(
                    self._call, "upload_part", action, Key=key, UploadId=upload_id, PartNumber=number, Body=chunk)))
                del chunk
                while len(in_flight) >= self.max_concurrency:
                    collect_one()
                if last:
                    break
            while in_flight:
                collect_one()
            found = h.hexdigest()
            if expected is not None and found != expected:
                raise ArtifactIntegrityError(
                    f"the content changed while it was being stored (it hashed to {expected}, then to {found}); "
                    "nothing was stored. Store it again once it no longer changes.", digest=expected)
            self._call("complete_multipart_upload", action, Key=key, UploadId=upload_id,
                       MultipartUpload={"Parts": parts})
            completed = True
            return found, size
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if not completed:
                try:
                    self._s3().abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
                except Exception:  # noqa: BLE001 - the sweep aborts it later
                    pass

    def _publish(self, source_key: str, digest: str, size: int, etag: str | None) -> None:
        """Copy ``source_key`` (hashed to ``digest``) to the digest's key, unless already stored.

        With ``etag`` the copy happens only if the source is still the object that was hashed
        (a client still holding an upload URL may PUT again meanwhile): ``PreconditionFailed``.
        """
        if self.has(digest):
            return
        target = self.key_of(digest)
        action = f"storing blob {digest}"
        condition = {"CopySourceIfMatch": etag} if etag else {}
        source = {"Bucket": self.bucket, "Key": source_key}
        if size <= self.copy_part_limit:
            self._call("copy_object", action, Key=target, CopySource=source, **condition)
            return
        upload_id = self._call("create_multipart_upload", action, Key=target)["UploadId"]
        completed = False
        try:
            parts = []
            step = max(self._part_size(size, 0), self.copy_part_size)
            for number, offset in enumerate(range(0, size, step), start=1):
                result = self._call("upload_part_copy", action, Key=target, UploadId=upload_id, PartNumber=number,
                                    CopySource=source, CopySourceRange=f"bytes={offset}-{min(offset + step, size) - 1}",
                                    **condition)
                parts.append({"PartNumber": number, "ETag": result["CopyPartResult"]["ETag"]})
            self._call("complete_multipart_upload", action, Key=target, UploadId=upload_id,
                       MultipartUpload={"Parts": parts})
            completed = True
        finally:
            if not completed:
                try:
                    self._s3().abort_multipart_upload(Bucket=self.bucket, Key=target, UploadId=upload_id)
                except Exception:  # noqa: BLE001 - the sweep aborts it later
                    pass

    def _delete_quietly(self, key: str) -> None:
        try:
            self._s3().delete_object(Bucket=self.bucket, Key=key)
        except Exception:  # noqa: BLE001 - the sweep removes it later
            pass

    # -- signed URLs (for a server whose clients hold no credentials) --------------------------------
    def presigned_get(self, digest: str, expires: float = 3600, *, filename: str | None = None,
                      must_exist: bool = True) -> str:
        """A URL that downloads the blob ``digest`` with a plain ``GET`` for ``expires`` seconds.

        ``filename``: the name a browser saves it as (``Content-Disposition: attachment``).
        ``must_exist``: check first that the blob is stored (``ArtifactNotFoundError`` if not);
        pass ``False`` when the caller's records already say so, to save a request.
        The URL is bound to this blob: a changed key, expiry or signature is refused (403).
        """
        key = self.key_of(digest)
        seconds = _check_expires(expires)
        if must_exist and not self.has(digest):
            raise ArtifactNotFoundError(f"no blob {digest} in {self.url}")
        params = {"Bucket": self.bucket, "Key": key}
        if filename is not None:
            params["ResponseContentDisposition"] = _content_disposition(filename)
        return self._presign("get_object", params, seconds)

    def presigned_put(self, expires: float = 900, *, size: int | None = None) -> PresignedUpload:
        """A URL a client may ``PUT`` one file's raw bytes to, without credentials, for ``expires`` seconds.

        The bytes land under a fresh random key (``.key``) outside the blobs; nothing is trusted
        until ``finalize(upload.key)`` hashes them and stores them under their digest. With
        ``size`` the URL is signed for exactly that many bytes (``Content-Length``): a different
        length is refused by the server.
        """
        seconds = _check_expires(expires)
        params = {"Bucket": self.bucket, "Key": self._incoming_key()}
        headers = {}
        if size is not None:
            if isinstance(size, bool) or not isinstance(size, int) or size < 0:
                raise InvalidArgumentError(f"presigned_put: size must be a number of bytes >= 0, got {size!r}")
            params["ContentLength"] = size
            headers["Content-Length"] = str(size)
        url = self._presign("put_object", params, seconds)
        return PresignedUpload(url=url, key=params["Key"], expires_at=time.time() + seconds, headers=headers)

    def _presign(self, operation: str, params: dict, seconds: int) -> str:
        self._ready()  # signing is local: check the settings before handing out a URL that cannot work
        try:
            return self._s3().generate_presigned_url(operation, Params=params, ExpiresIn=seconds)
        except Exception as exc:
            if _is_botocore_error(exc):
                raise self._error(exc, "signing a URL") from None
            raise

    def finalize(self, key: str, expected: str | None = None) -> tuple[str, int]:
        """Turn what a client PUT to ``key`` (a ``presigned_put`` upload) into a verified blob.

        Reads the object once, hashing it, stores it under its digest (a server-side copy,
        only if it is still the object that was hashed; nothing is copied when that content is
        already stored), removes the upload and returns ``(sha256 hex, size)``.
        ``ArtifactNotFoundError`` if nothing was uploaded (yet). With ``expected`` (the digest
        the client claims), a mismatch is an ``ArtifactIntegrityError`` and the upload is removed.
        """
        key = self._check_incoming_key(key)
        if expected is not None:
            _check_digest(expected)
        for _ in range(3):
            response = self._get(key, f"nothing was uploaded to {key}")
            try:
                digest, size = self._read_hashing(key, response, _Discard(), None, f"reading upload {key}")
                if expected is not None and digest != expected:
                    self._delete_quietly(key)
                    raise ArtifactIntegrityError(
                        f"the upload {key} hashes to {digest}, not to the expected {expected}; it was discarded",
                        digest=expected)
                self._publish(key, digest, size, etag=response.get("ETag"))
            except PodstackError as exc:
                if getattr(exc, "code", None) in ("PreconditionFailed", "412"):
                    continue  # uploaded again while we were reading: hash the new content
                raise
            self._delete_quietly(key)
            return digest, size
        raise PodstackError(f"the upload {key} kept changing while it was being stored; try again")

    def discard(self, key: str) -> None:
        """Remove an upload that will not be finalized (nothing happens if it is absent)."""
        self._call("delete_object", f"removing upload {key}", Key=self._check_incoming_key(key))

    def sweep(self, older_than: float = _STALE_SECONDS) -> int:
        """Remove what cut-off uploads left under the prefix: unfinished multipart uploads and
        un-finalized incoming objects older than ``older_than`` seconds. Returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        client = self._s3()
        try:
            for area in ("blobs", "incoming"):  # only this store's own keys: the bucket may be shared
                pages = client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=self.bucket, Prefix=self._key(area) + "/")
                for page in pages:
                    for upload in page.get("Uploads") or ():
                        if upload["Initiated"].timestamp() < cutoff and not self._sent_since(upload, cutoff):
                            client.abort_multipart_upload(Bucket=self.bucket, Key=upload["Key"],
                                                          UploadId=upload["UploadId"])
                            removed += 1
            pages = client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,
                                                                     Prefix=self._key("incoming") + "/")
            for page in pages:
                for item in page.get("Contents") or ():
                    if item["LastModified"].timestamp() < cutoff:
                        client.delete_object(Bucket=self.bucket, Key=item["Key"])
                        removed += 1
        except Exception as exc:
            if self._is_missing(exc):
                return removed
            if _is_botocore_error(exc):
                raise self._error(exc, "sweeping cut-off uploads") from None
            raise
        return removed


    def _sent_since(self, upload: dict, cutoff: float) -> bool:
        # a very long upload (a huge file on a slow link) is still sending parts: leave it alone
        parts = self._s3().list_parts(Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"])
        return any(part["LastModified"].timestamp() >= cutoff for part in parts.get("Parts") or ())


class _Discard:
    """A file that forgets what is written to it (hashing without keeping a copy)."""

    def write(self, data) -> int:
        return len(data)


def _code(exc) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code") or "")


def _is_botocore_error(exc) -> bool:
    return type(exc).__module__.startswith("botocore")
