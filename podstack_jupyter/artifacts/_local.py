"""Content-addressed blobs in a local folder.

A team server (``podstack server --artifacts /folder``) hands out signed URLs for this store as
S3 does for a bucket: it calls ``serve_signed_urls(base_url, secret)``, and then
``presigned_put`` / ``presigned_get`` give HMAC-signed URLs of the server itself, which it
checks with ``check_signature`` and serves with ``receive_upload`` / ``open_blob``; what a
client PUT becomes a blob through ``finalize``, exactly as with ``S3ArtifactStore``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import tempfile
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from .._locks import hold, take_if_abandoned
from ..config import private_folder
from ..errors import ArtifactIntegrityError, ArtifactNotFoundError, ConfigurationError, InvalidArgumentError
from ._base import ArtifactStore, progress_bar

__all__ = ["LocalArtifactStore"]

_CHUNK = 1 << 20
_INCOMING = ".incoming-"
# An upload holds a lock on its temporary file while it writes; a file nobody holds is left over
# from a killed process and is removed once it is a minute old (the grace covers the moment between
# creating the file and locking it). Without flock (Windows), only files a day old are removed.
_DEAD_GRACE_SECONDS = 10
_STALE_SECONDS = 24 * 3600
_SWEEP_EVERY = 600  # seconds between sweeps by one store
_HEX = frozenset("0123456789abcdef")
_MAX_EXPIRES = 7 * 24 * 3600
_UPLOAD_KEY = re.compile(r"incoming/[0-9a-f]{32}")


def _check_digest(digest) -> str:
    if not (isinstance(digest, str) and len(digest) == 64 and _HEX.issuperset(digest)):
        raise InvalidArgumentError(f"{digest!r} is not a sha256 digest (64 lower-case hex characters)")
    return digest


def _fsync_dir(path: Path) -> None:
    # makes a rename durable across a power loss; not every platform can open a folder
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _copy_hashing(src, out, bar) -> tuple[str, int]:
    """Copy ``src`` to ``out`` in chunks; returns the sha256 hex digest and size of what was copied."""
    h = hashlib.sha256()
    size = 0
    while chunk := src.read(_CHUNK):
        h.update(chunk)
        out.write(chunk)
        size += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return h.hexdigest(), size


def _writer_is_dead(path) -> bool:
    """Whether no process holds the upload lock on ``path`` (its writer died)."""
    fd = take_if_abandoned(path)
    if fd is None:
        return False
    os.close(fd)
    return True


def _remove_quietly(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


class LocalArtifactStore(ArtifactStore):
    """Blobs named by their sha256 under ``root/blobs/ab/cdef...``.

    A blob is streamed into a temporary file beside the shard folders (same file system),
    hashed on the way, flushed to disk and renamed to its digest, so a reader sees a whole
    blob or none, and a failed or interrupted upload leaves no blob behind (its temporary
    file is removed; one left by a killed process is swept by the next upload, since the
    writer holds a lock on it while it lives). Content already
    stored is not rewritten. Reads through ``get_file`` hash what they copy and refuse a
    blob whose content no longer matches its name.
    """

    def __init__(self, root):
        self.root = Path(root).expanduser()
        self.blobs = self.root / "blobs"
        self.incoming = self.root / "incoming"
        self._swept_at = None
        self._url_base: str | None = None
        self._url_secret: bytes | None = None

    def __repr__(self):
        return f"LocalArtifactStore({str(self.root)!r})"

    def child(self, path: str) -> "LocalArtifactStore":
        """The store in the folder ``<root>/<path>`` (e.g. one project's)."""
        return type(self)(self.root / path.strip("/"))

    def path_of(self, digest: str) -> Path:
        """Where the blob ``digest`` lives (whether or not it is stored)."""
        digest = _check_digest(digest)
        return self.blobs / digest[:2] / digest[2:]

    def sweep_incoming(self) -> int:
        """Remove the temporary files of uploads whose process died; returns how many.
        (Uploads call this now and then; a file is kept for its first seconds, before its writer locks it.)"""
        now = self._swept_at = time.time()
        try:
            entries = list(os.scandir(self.blobs))
        except FileNotFoundError:
            return 0
        removed = 0
        for entry in entries:
            if not entry.name.startswith(_INCOMING):
                continue
            try:
                age = now - entry.stat().st_mtime
                if age > _STALE_SECONDS or (age > _DEAD_GRACE_SECONDS and _writer_is_dead(entry.path)):
                    os.unlink(entry.path)
                    removed += 1
            except FileNotFoundError:
                pass
        return removed

    def put_stream(self, stream, size_hint: int | None = None, progress: bool | None = None) -> tuple[str, int]:
        if not self.blobs.is_dir():
            private_folder(self.blobs, tighten=False)  # only this user may read what is logged
        if self._swept_at is None or time.time() - self._swept_at > _SWEEP_EVERY:
            self.sweep_incoming()
        bar = progress_bar(size_hint or 0, "storing artifact", progress)
        fd, tmp = tempfile.mkstemp(prefix=_INCOMING, dir=self.blobs)
        out = os.fdopen(fd, "wb")
        try:
            hold(fd)  # until the file is renamed: "a live upload writes here"
            digest, size = _copy_hashing(stream, out, bar)
            out.flush()
            os.fsync(out.fileno())
            final = self.path_of(digest)
            if final.is_file():  # same content already stored: keep it, drop the copy
                os.unlink(tmp)
            else:
                final.parent.mkdir(mode=0o700, exist_ok=True)
                os.chmod(tmp, 0o400)  # read-only, and this user's alone
                # atomic; when two writers race on the same digest both files hold the same bytes
                try:
                    os.replace(tmp, final)
                except OSError:
                    if not final.is_file():  # not a lost race (where Windows refuses to replace a read-only file)
                        raise
                    os.unlink(tmp)
                _fsync_dir(final.parent)
            return digest, size
        except BaseException:
            _remove_quietly(tmp)
            raise
        finally:
            out.close()  # releases the lock, after the rename
            if bar is not None:
                bar.close()

    def has(self, digest: str) -> bool:
        return self.path_of(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self.path_of(digest).stat().st_size
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no blob {digest} in {self.root}") from None

    def open_blob(self, digest: str):
        try:
            return open(self.path_of(digest), "rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no blob {digest} in {self.root}") from None

    def get_file(self, digest: str, dest_path, progress: bool | None = None) -> Path:
        src = self.open_blob(digest)  # ArtifactNotFoundError before anything is created
        dest = Path(dest_path)
        try:
            dest.parent.mkdir(parents=True, exist_ok=True)
            bar = progress_bar(os.fstat(src.fileno()).st_size, f"fetching {dest.name}", progress)
            fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        except BaseException:
            src.close()
            raise
        try:
            with src, os.fdopen(fd, "wb") as out:
                found, _ = _copy_hashing(src, out, bar)
            if found != digest:
                raise ArtifactIntegrityError(
                    f"blob {digest} in {self.root} is corrupt (its content hashes to {found}); "
                    f"nothing was written to {dest}. Log the artifact again.", digest=digest)
            os.replace(tmp, dest)
            return dest
        except BaseException:
            _remove_quietly(tmp)
            raise
        finally:
            if bar is not None:
                bar.close()

    def verify(self, digest: str) -> bool:
        h = hashlib.sha256()
        with self.open_blob(digest) as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest() == digest

    def delete(self, digest: str) -> None:
        _remove_quietly(self.path_of(digest))

    # -- signed URLs (served by a podstack server) ---------------------------------------------------
    def serve_signed_urls(self, base_url: str, secret: bytes) -> None:
        """Let ``presigned_put``/``presigned_get`` hand out URLs under ``base_url`` (the server route
        that serves this store, e.g. ``http://host:8080/files/<project>``), signed with ``secret``."""
        if not isinstance(secret, bytes) or len(secret) < 16:
            raise InvalidArgumentError("serve_signed_urls: secret must be at least 16 random bytes")
        self._url_base, self._url_secret = base_url.rstrip("/"), secret

    def check(self) -> None:
        """Check that the folder can be written (``ConfigurationError`` naming it otherwise)."""
        try:
            self.blobs.mkdir(parents=True, exist_ok=True)
            probe = tempfile.NamedTemporaryFile(dir=self.blobs, prefix=_INCOMING, delete=True)
            probe.close()
        except OSError as exc:
            raise ConfigurationError(f"artifact folder {self.root} cannot be written: {exc}") from None

    def _signature(self, method: str, path: str, expires: int, extra: str = "") -> str:
        if self._url_secret is None:
            raise ConfigurationError(f"{self!r} hands out signed URLs only when a podstack server serves it "
                                     "(serve_signed_urls)")
        message = f"{method}\n{path}\n{expires}\n{extra}".encode()
        return hmac.new(self._url_secret, message, hashlib.sha256).hexdigest()

    def _signed(self, method: str, path: str, expires: float, extra: dict) -> str:
        seconds = _check_expires(expires)
        deadline = int(time.time()) + seconds
        query = {**extra, "expires": str(deadline)}
        query["signature"] = self._signature(method, path, deadline, extra.get("filename", ""))
        return f"{self._url_base}/{path}?{urlencode(query, quote_via=quote)}"

    def presigned_put(self, expires: float = 900, *, size: int | None = None):
        """A URL a client may ``PUT`` one file's raw bytes to (through the server) for ``expires``
        seconds; the bytes land under ``.key`` until ``finalize`` makes them a blob. ``size`` is
        accepted for the same face as S3's and not enforced here: ``finalize`` hashes what came."""
        from ._s3 import PresignedUpload

        key = f"incoming/{secrets.token_hex(16)}"
        url = self._signed("PUT", f"upload/{key[len('incoming/'):]}", expires, {})
        return PresignedUpload(url=url, key=key, expires_at=time.time() + _check_expires(expires))

    def presigned_get(self, digest: str, expires: float = 3600, *, filename: str | None = None,
                      must_exist: bool = True) -> str:
        """A URL that downloads the blob ``digest`` with a plain ``GET`` (through the server) for
        ``expires`` seconds; ``filename``: the name a browser saves it as."""
        digest = _check_digest(digest)
        if must_exist and not self.has(digest):
            raise ArtifactNotFoundError(f"no blob {digest} in {self.root}")
        extra = {"filename": os.path.basename(str(filename).replace("\\", "/"))} if filename else {}
        return self._signed("GET", f"blob/{digest}", expires, extra)

    def check_signature(self, method: str, path: str, expires, signature, filename: str = "") -> None:
        """Whether a request for ``path`` (after the serving route, e.g. ``blob/<digest>``) carries a
        valid, unexpired signature; ``PermissionError`` saying why not."""
        try:
            deadline = int(expires)
        except (TypeError, ValueError):
            raise PermissionError("the signed URL has no valid expiry") from None
        expected = self._signature(method, path, deadline, filename or "")
        if not isinstance(signature, str) or not hmac.compare_digest(expected, signature):
            raise PermissionError("the URL's signature does not match (altered or not issued by this server)")
        if time.time() > deadline:
            raise PermissionError("the signed URL has expired")

    def _upload_path(self, key) -> Path:
        if not (isinstance(key, str) and _UPLOAD_KEY.fullmatch(key)):
            raise InvalidArgumentError(f"{key!r} is not an upload key of {self.root} (PresignedUpload.key is)")
        return self.root / key

    def receive_upload(self, key: str) -> "_Upload":
        """A writer for the body of a signed PUT to upload ``key``: ``write(chunk)`` then
        ``commit()`` (the upload appears whole, replacing an earlier one) or ``abort()`` (nothing
        appears: a body cut off halfway leaves no upload behind)."""
        target = self._upload_path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        return _Upload(target)

    def finalize(self, key: str, expected: str | None = None) -> tuple[str, int]:
        """Turn what a client PUT to ``key`` into a verified blob: hashed, stored under its digest,
        the upload removed. ``ArtifactNotFoundError`` if nothing was uploaded (yet); with
        ``expected``, a mismatch is an ``ArtifactIntegrityError`` and the upload is removed."""
        source = self._upload_path(key)
        if expected is not None:
            _check_digest(expected)
        # claim the upload (a client PUTting again meanwhile writes a new file under the key)
        claimed = source.with_name(f"{_INCOMING}{source.name}-{secrets.token_hex(4)}")
        try:
            os.replace(source, claimed)
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"nothing was uploaded to {key} in {self.root}") from None
        try:
            with open(claimed, "rb") as f:
                digest, size = self.put_stream(f, progress=False)
            if expected is not None and digest != expected:
                raise ArtifactIntegrityError(f"the upload {key} hashes to {digest}, not to the expected {expected}; "
                                             "it was discarded", digest=expected)
            return digest, size
        finally:
            _remove_quietly(claimed)

    def discard(self, key: str) -> None:
        """Remove an upload that will not be finalized (nothing happens if it is absent)."""
        _remove_quietly(self._upload_path(key))

    def sweep(self, older_than: float = _STALE_SECONDS) -> int:
        """Remove uploads (and temporary files) older than ``older_than`` seconds; returns how many."""
        cutoff = time.time() - older_than
        removed = 0
        for folder in (self.incoming, self.blobs):
            try:
                entries = list(os.scandir(folder))
            except FileNotFoundError:
                continue
            for entry in entries:
                if folder is self.blobs and not entry.name.startswith(_INCOMING):
                    continue
                try:
                    if entry.is_file() and entry.stat().st_mtime < cutoff:
                        os.unlink(entry.path)
                        removed += 1
                except FileNotFoundError:
                    pass
        return removed


class _Upload:
    """The body of one signed PUT, written beside its key and renamed onto it only when complete."""

    def __init__(self, target: Path):
        self.target = target
        fd, self.tmp = tempfile.mkstemp(prefix=f"{_INCOMING}{target.name}.", dir=target.parent)
        self.file = os.fdopen(fd, "wb")
        self.size = 0

    def write(self, chunk: bytes) -> None:
        self.file.write(chunk)
        self.size += len(chunk)

    def commit(self) -> int:
        """Make the upload visible under its key; returns its size."""
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.target)
        except BaseException:
            self.abort()
            raise
        return self.size

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        _remove_quietly(self.tmp)


def _check_expires(expires) -> int:
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or not 1 <= expires <= _MAX_EXPIRES:
        raise InvalidArgumentError(f"expires must be a number of seconds from 1 to {_MAX_EXPIRES} (7 days), "
                                   f"got {expires!r}")
    return int(expires)
