"""The interface every artifact blob store implements (a local folder today; S3 behind the same face)."""

from __future__ import annotations

import abc
import io
from pathlib import Path


class ArtifactStore(abc.ABC):
    """Immutable blobs addressed by the sha256 of their content."""

    @abc.abstractmethod
    def put_stream(self, stream) -> tuple[str, int]:
        """Store what ``stream.read()`` yields; returns ``(sha256 hex, size)``. All or nothing."""

    def put_file(self, path) -> tuple[str, int]:
        """Store a file's content; returns ``(sha256 hex, size)``."""
        with open(path, "rb") as f:
            return self.put_stream(f)

    def put_bytes(self, data: bytes) -> tuple[str, int]:
        return self.put_stream(io.BytesIO(data))

    @abc.abstractmethod
    def get_file(self, digest: str, dest_path) -> Path:
        """Copy a blob to ``dest_path``, checking its content on the way: ``ArtifactIntegrityError``
        (and nothing at ``dest_path``) if it does not match; ``ArtifactNotFoundError`` if absent."""

    @abc.abstractmethod
    def open_blob(self, digest: str):
        """A binary file object reading the blob (not verified; see ``verify``)."""

    @abc.abstractmethod
    def has(self, digest: str) -> bool: ...

    @abc.abstractmethod
    def size(self, digest: str) -> int: ...

    @abc.abstractmethod
    def verify(self, digest: str) -> bool:
        """Whether the stored content still hashes to ``digest``."""

    @abc.abstractmethod
    def delete(self, digest: str) -> None: ...
