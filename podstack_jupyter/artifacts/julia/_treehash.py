"""``git-tree-sha1`` of a folder, exactly as Julia's Pkg computes it, and ``sha256`` of a file.

Pkg hashes a folder as git hashes a tree object, with these rules (``Pkg.GitTools.tree_hash``):

* a regular file is a blob, mode ``100755`` when its owner may execute it, else ``100644``;
* a symlink is a blob of its target's bytes, mode ``120000``; it is never followed;
* a folder is a tree, mode ``40000``, sorted as git sorts (by the bytes of the name, a folder's
  name with a ``/`` after it), and skipped when no file or symlink lies anywhere below it;
* entries named ``.git`` are skipped (but count when deciding whether their folder is empty).

So for a tree that git can hold the result equals ``git add -A && git write-tree`` there (git
also skips empty folders); a ``.gitignore`` inside the tree changes git's answer, not Pkg's.

The walk runs in the calling thread and hashes small files as it goes; files of a megabyte or
more go to a few worker threads, where ``hashlib`` releases the GIL, so large trees use every
core while a tree of small files pays no thread hand-off per file.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ...errors import InvalidArgumentError

__all__ = ["compute_git_tree_sha1", "compute_sha256", "tree_object_sha1", "blob_sha1", "EMPTY_TREE_SHA1"]

#: the hash of a tree with nothing in it (``git hash-object -t tree /dev/null``)
EMPTY_TREE_SHA1 = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"

MODE_FILE, MODE_EXECUTABLE, MODE_SYMLINK, MODE_TREE = b"100644", b"100755", b"120000", b"40000"

# files at least this large are hashed by the worker threads (below it a hand-off costs more than it saves)
_PARALLEL_BYTES = 1 << 20
_CHUNK = 1 << 20
_sha1 = hashlib.sha1
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_BINARY", 0) | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


def blob_sha1(data: bytes) -> bytes:
    """The git blob id (20 raw bytes) of ``data``."""
    h = _sha1(b"blob %d\0" % len(data))
    h.update(data)
    return h.digest()


def tree_object_sha1(entries) -> bytes:
    """The git tree id (20 raw bytes) of ``entries``: ``(name bytes, mode bytes, 20-byte id)``
    in any order; they are sorted as git sorts (a tree's name as ``name/``)."""
    ordered = sorted(entries, key=lambda e: e[0] + b"/" if e[1] == MODE_TREE else e[0])
    body = b"".join(b"%s %s\0%s" % (mode, name, digest) for name, mode, digest in ordered)
    h = _sha1(b"tree %d\0" % len(body))
    h.update(body)
    return h.digest()


def _hash_open_file(fd: int, size: int) -> bytes:
    """Blob id of the open file ``fd`` of ``size`` bytes (closes ``fd``)."""
    try:
        h = _sha1(b"blob %d\0" % size)
        if size <= _CHUNK:
            data = os.read(fd, size)
            got = len(data)
            h.update(data)
        else:
            got = 0
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
                got += len(chunk)
                if got > size:
                    break
        if got != size:  # the file changed under us: its hash would describe neither version
            raise InvalidArgumentError(f"a file changed size while it was being hashed ({size} -> {got} bytes); "
                                       "hash the folder again once nothing writes to it")
        return h.digest()
    finally:
        os.close(fd)


class _Walker:
    """One hashing pass over a folder."""

    def __init__(self, pool: ThreadPoolExecutor | None):
        self.pool = pool
        self.pending = []  # (entries list, index in it, future, open file descriptor)

    def file_entry(self, path: str, name: bytes, entries: list) -> None:
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except OSError as exc:
            raise InvalidArgumentError(f"cannot read {path!r} to hash it: {exc.strerror}") from None
        st = os.fstat(fd)
        mode = MODE_EXECUTABLE if st.st_mode & stat.S_IXUSR else MODE_FILE
        if self.pool is not None and st.st_size >= _PARALLEL_BYTES:
            entries.append([name, mode, None])
            self.pending.append((entries, len(entries) - 1, self.pool.submit(_hash_open_file, fd, st.st_size), fd))
        else:
            entries.append([name, mode, _hash_open_file(fd, st.st_size)])

    def tree(self, path: str) -> list | None:
        """The entries of the folder at ``path`` (children's ids may still be pending), or
        ``None`` when no file or symlink lies below it. Trees are nested lists until ``finish``."""
        entries: list = []
        has_content = False
        with os.scandir(path) as listing:
            items = list(listing)
        for entry in items:
            name = os.fsencode(entry.name)
            if entry.is_symlink():
                has_content = True
                if name != b".git":
                    entries.append([name, MODE_SYMLINK, blob_sha1(os.fsencode(os.readlink(entry.path)))])
            elif entry.is_dir(follow_symlinks=False):
                sub = self.tree(entry.path)
                if sub is not None:
                    has_content = True
                    if name != b".git":
                        entries.append([name, MODE_TREE, sub])
            elif entry.is_file(follow_symlinks=False):
                has_content = True
                if name != b".git":
                    self.file_entry(entry.path, name, entries)
            else:
                raise InvalidArgumentError(
                    f"{entry.path!r} is neither a file, a folder nor a symlink (a device, socket or pipe): "
                    "an artifact cannot hold it; move it out of the folder")
        return entries if has_content else None

    def finish(self, entries: list) -> bytes:
        for owner, index, future, _ in self.pending:
            owner[index][2] = future.result()
        self.pending.clear()
        return self._digest(entries)

    def _digest(self, entries: list) -> bytes:
        return tree_object_sha1(
            (name, mode, self._digest(value) if mode == MODE_TREE else value) for name, mode, value in entries)


_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 2), thread_name_prefix="podstack-hash")
        return _pool


def _check_folder(path, what: str) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"{what}: expected a folder path, got {type(path).__name__}")
    folder = Path(path)
    if not folder.is_dir():
        raise InvalidArgumentError(f"{what}: {os.fspath(path)!r} is not a folder"
                                   + ("" if folder.exists() else " (it does not exist)"))
    return folder


def compute_git_tree_sha1(path) -> str:
    """The ``git-tree-sha1`` of the folder ``path``, as Julia's Pkg computes it (40 hex characters).

    This is the name of an artifact in ``Artifacts.toml`` and of its folder in the cache.
    Symlinks are hashed by their target and never followed; empty folders and ``.git`` are
    left out, as Pkg does::

        >>> compute_git_tree_sha1("weights/")
        '339aad93c0f854604248ea3b7c5b7edea20625a9'
    """
    folder = _check_folder(path, "compute_git_tree_sha1")
    walker = _Walker(_shared_pool())
    try:
        entries = walker.tree(os.fspath(folder))
        if entries is None:
            return EMPTY_TREE_SHA1
        return walker.finish(entries).hex()
    finally:
        for _, _, future, fd in walker.pending:  # an error mid-walk: do not leave hashing behind
            if future.cancel():
                os.close(fd)


def compute_sha256(path) -> str:
    """The sha256 (64 hex characters) of the file ``path``: the ``sha256`` of a download in ``Artifacts.toml``."""
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"compute_sha256: expected a file path, got {type(path).__name__}")
    source = Path(path)
    if not source.is_file():
        raise InvalidArgumentError(f"compute_sha256: {os.fspath(path)!r} is not a file"
                                   + ("" if source.exists() else " (it does not exist)"))
    with open(source, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest() if hasattr(hashlib, "file_digest") else _sha256_of(f)


def _sha256_of(f) -> str:
    h = hashlib.sha256()
    while chunk := f.read(_CHUNK):
        h.update(chunk)
    return h.hexdigest()
