"""The interface every artifact blob store implements (a local folder today; S3 behind the same face)."""

from __future__ import annotations

import abc
import io
import os
import tempfile
from pathlib import Path

from ..errors import ArtifactIntegrityError, InvalidArgumentError

__all__ = ["ArtifactStore", "PROGRESS_BYTES", "progress_bar", "write_verified"]

#: transfers of at least this many bytes show a tqdm progress bar (when no other bar is showing)
PROGRESS_BYTES = 50 * 1024 * 1024


def progress_bar(total: int, description: str, progress: bool | None):
    """A tqdm bar for a transfer of ``total`` bytes, or ``None``.

    ``progress=None`` (automatic) shows one for transfers of ``PROGRESS_BYTES`` or more, unless
    a tqdm bar is already open (``log_artifact`` of a folder draws one for the whole batch; a
    second bar per file would only add noise).
    """
    if progress is False or (progress is None and total < PROGRESS_BYTES):
        return None
    from tqdm.auto import tqdm

    if progress is None and len(getattr(tqdm, "_instances", ())) > 0:
        return None
    return tqdm(total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=description, leave=False)


def write_verified(dest_path, digest: str, copy, where: str) -> Path:
    """Write blob ``digest`` to ``dest_path`` all or nothing: ``copy(out)`` writes the content to a
    temporary file beside it and returns the sha256 it hashed on the way; the file is renamed into
    place only if that is ``digest`` (else ``ArtifactIntegrityError``, and ``dest_path`` untouched)."""
    dest = Path(dest_path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out:
            found = copy(out)
        if found != digest:
            raise ArtifactIntegrityError(
                f"blob {digest} in {where} is corrupt (its content hashes to {found}); "
                f"nothing was written to {dest}. Log the artifact again.", digest=digest)
        os.replace(tmp, dest)
        return dest
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


class ArtifactStore(abc.ABC):
    """Immutable blobs addressed by the sha256 of their content.

    A backend implements ``put_stream``, ``get_file``, ``open_blob``, ``has``, ``size``,
    ``verify`` and ``delete``; ``put_file`` and ``put_bytes`` are built on ``put_stream``.
    Every write is all or nothing: a blob is visible under its digest only once its whole
    content is stored, and a failed or interrupted write leaves nothing behind.
    """

    @abc.abstractmethod
    def put_stream(self, stream, size_hint: int | None = None, progress: bool | None = None) -> tuple[str, int]:
        """Store what ``stream.read()`` yields; returns ``(sha256 hex, size)``.

        ``size_hint`` (bytes, if known) sizes the progress bar; ``progress``: ``None`` shows a
        bar for 50 MB or more, ``True``/``False`` force it on or off.
        """

    def put_file(self, path, progress: bool | None = None) -> tuple[str, int]:
        """Store a file's content; returns ``(sha256 hex, size)``. Equal content is stored once."""
        if not isinstance(path, (str, os.PathLike)):
            raise InvalidArgumentError(f"put_file: path must be a file path, got {type(path).__name__}")
        source = Path(path)
        if not source.is_file():
            raise InvalidArgumentError(
                f"put_file: {os.fspath(path)!r} is not a file" + ("" if source.exists() else " (it does not exist)"))
        with open(source, "rb") as f:
            return self.put_stream(f, size_hint=os.fstat(f.fileno()).st_size, progress=progress)

    def put_bytes(self, data) -> tuple[str, int]:
        """Store ``data`` (bytes, bytearray or memoryview); returns ``(sha256 hex, size)``."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise InvalidArgumentError(
                f"put_bytes: data must be bytes, got {type(data).__name__}"
                + (" (encode text first, e.g. text.encode('utf-8'))" if isinstance(data, str) else ""))
        return self.put_stream(io.BytesIO(data), size_hint=len(data))

    @abc.abstractmethod
    def get_file(self, digest: str, dest_path, progress: bool | None = None) -> Path:
        """Copy a blob to ``dest_path``, checking its content on the way: ``ArtifactIntegrityError``
        (and nothing at ``dest_path``) if it does not match; ``ArtifactNotFoundError`` if absent."""

    @abc.abstractmethod
    def open_blob(self, digest: str):
        """A binary file object reading the blob (not verified; see ``verify`` and ``get_file``)."""

    @abc.abstractmethod
    def has(self, digest: str) -> bool:
        """Whether a blob with this digest is stored."""

    @abc.abstractmethod
    def size(self, digest: str) -> int:
        """The blob's size in bytes; ``ArtifactNotFoundError`` if absent."""

    @abc.abstractmethod
    def verify(self, digest: str) -> bool:
        """Whether the stored content still hashes to ``digest``; ``ArtifactNotFoundError`` if absent."""

    @abc.abstractmethod
    def delete(self, digest: str) -> None:
        """Remove a blob (nothing happens if it is absent)."""
