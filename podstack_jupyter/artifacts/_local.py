"""Content-addressed blobs in a local folder."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from ..errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError
from ._base import ArtifactStore

_CHUNK = 1 << 20


def _check_digest(digest: str) -> str:
    if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
        raise InvalidArgumentError(f"{digest!r} is not a sha256 hex digest")
    return digest


class LocalArtifactStore(ArtifactStore):
    """Blobs named by their sha256 under ``root/blobs/ab/cdef...``.

    A blob is written to a temporary file in its final folder, flushed to disk
    and renamed into place, so a reader sees a whole blob or none, and a failed
    upload leaves nothing behind. Reads hash what they copy and refuse a blob
    whose content no longer matches its name.
    """

    def __init__(self, root):
        self.root = Path(root).expanduser()
        self.blobs = self.root / "blobs"

    def __repr__(self):
        return f"LocalArtifactStore({str(self.root)!r})"

    def _path(self, digest: str) -> Path:
        digest = _check_digest(digest)
        return self.blobs / digest[:2] / digest[2:]

    def put_stream(self, stream) -> tuple[str, int]:
        self.blobs.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        size = 0
        fd, tmp = tempfile.mkstemp(prefix=".incoming-", dir=self.blobs)
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := stream.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                out.flush()
                os.fsync(out.fileno())
            digest = h.hexdigest()
            final = self._path(digest)
            if final.exists():  # same content already stored: nothing to rewrite
                os.unlink(tmp)
            else:
                final.parent.mkdir(exist_ok=True)
                os.replace(tmp, final)
                os.chmod(final, 0o444)
            return digest, size
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def has(self, digest: str) -> bool:
        return self._path(digest).is_file()

    def size(self, digest: str) -> int:
        try:
            return self._path(digest).stat().st_size
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no blob {digest} in {self.root}") from None

    def open_blob(self, digest: str):
        try:
            return open(self._path(digest), "rb")
        except FileNotFoundError:
            raise ArtifactNotFoundError(f"no blob {digest} in {self.root}") from None

    def get_file(self, digest: str, dest_path) -> Path:
        dest = Path(dest_path)
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=dest.parent)
        try:
            h = hashlib.sha256()
            with self.open_blob(digest) as src, os.fdopen(fd, "wb") as out:
                while chunk := src.read(_CHUNK):
                    h.update(chunk)
                    out.write(chunk)
            if h.hexdigest() != digest:
                raise ArtifactIntegrityError(
                    f"blob {digest} in {self.root} is corrupt (its content hashes to {h.hexdigest()}); "
                    f"nothing was written to {dest}. Log the artifact again.")
            os.replace(tmp, dest)
            return dest
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def verify(self, digest: str) -> bool:
        h = hashlib.sha256()
        with self.open_blob(digest) as src:
            while chunk := src.read(_CHUNK):
                h.update(chunk)
        return h.hexdigest() == digest

    def delete(self, digest: str) -> None:
        path = self._path(digest)
        try:
            path.unlink()
        except FileNotFoundError:
            pass


__all__ = ["LocalArtifactStore"]
