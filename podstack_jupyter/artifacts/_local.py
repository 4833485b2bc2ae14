"""Content-addressed blobs in a local folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from pathlib import Path

from .._locks import hold, take_if_abandoned
from ..config import private_folder
from ..errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError
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
        self._swept_at = None

    def __repr__(self):
        return f"LocalArtifactStore({str(self.root)!r})"

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
