"""The artifact cache and installing into it: ``<cache>/<git-tree-sha1>``, whole or absent.

An install runs under a per-artifact file lock (so two processes asking for one artifact
download it once, and the second simply finds it), tries each download url in order, checks
the sha256, unpacks safely into a temporary folder inside the cache, checks the tree hash
("Tree Hash Mismatch" is an error), removes write permission and renames the folder into
place: a reader sees no folder or the complete tree, never part of one.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import stat
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

from ...errors import (ArtifactInstallError, ArtifactIntegrityError, InvalidArgumentError, PodstackError,
                       TreeHashMismatchError)
from ._download import DEFAULT_RETRIES, download
from ._tarball import extract_tarball
from ._treehash import compute_git_tree_sha1

__all__ = ["get_cache_dir", "set_cache_dir", "artifact_path", "is_installed", "install", "remove_tree",
           "installed_hashes", "unpack_verified"]

_TMP_PREFIX = ".tmp-"
_TRASH_PREFIX = ".trash-"
_STALE_SECONDS = 24 * 3600
_HASH = re.compile(r"^[0-9a-f]{40}$")

_cache_override: Path | None = None
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def get_cache_dir() -> Path:
    """Where installed artifacts live: ``set_cache_dir()``'s folder, else ``<podstack home>/julia_artifacts``."""
    if _cache_override is not None:
        return _cache_override
    from ...config import settings

    return settings().home / "julia_artifacts"


def set_cache_dir(path) -> Path:
    """Keep installed artifacts in ``path`` from now on (every later call, every manager);
    ``None`` goes back to the default. Returns the folder."""
    global _cache_override
    if path is None:
        _cache_override = None
        return get_cache_dir()
    if not isinstance(path, (str, os.PathLike)):
        raise InvalidArgumentError(f"set_cache_dir: expected a folder path, got {type(path).__name__}")
    folder = Path(path).expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise InvalidArgumentError(f"set_cache_dir: {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    _cache_override = folder
    return folder


def artifact_path(git_tree_sha1: str, cache_dir=None) -> Path:
    """The folder an artifact with this tree hash has (or would have) in the cache."""
    if not isinstance(git_tree_sha1, str) or not _HASH.match(git_tree_sha1.lower()):
        raise InvalidArgumentError(f"{git_tree_sha1!r} is not a git-tree-sha1 (40 hex characters)")
    return Path(cache_dir or get_cache_dir()) / git_tree_sha1.lower()


def is_installed(git_tree_sha1: str, cache_dir=None) -> bool:
    return artifact_path(git_tree_sha1, cache_dir).is_dir()


def installed_hashes(cache_dir=None) -> list[str]:
    folder = Path(cache_dir or get_cache_dir())
    try:
        return sorted(e.name for e in os.scandir(folder) if _HASH.match(e.name) and e.is_dir(follow_symlinks=False))
    except FileNotFoundError:
        return []


@contextlib.contextmanager
def _locked(cache: Path, git_tree_sha1: str):
    """Hold the artifact's lock: one thread of this process and one process at a time."""
    with _thread_locks_guard:
        thread_lock = _thread_locks.setdefault(f"{cache}/{git_tree_sha1}", threading.Lock())
    with thread_lock:
        lock_dir = cache / ".locks"
        lock_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_dir / f"{git_tree_sha1}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            if sys.platform == "win32":
                import msvcrt

                while True:
                    try:
                        msvcrt.locking(fd, msvcrt.LK_LOCK, 1)
                        break
                    except OSError:
                        continue
            else:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)  # released by the kernel if this process dies
            yield
        finally:
            os.close(fd)


def _fsync_dir(path: Path) -> None:
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


def _make_read_only(root: Path) -> None:
    """Drop write permission everywhere: an installed artifact must keep the content its hash names."""
    for folder, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IMODE(os.lstat(path).st_mode) & ~0o222)
    for folder, dirs, _ in os.walk(root, topdown=False):
        if folder != str(root):  # the top stays writable until it is renamed into place (a move needs it)
            os.chmod(folder, 0o555)


def _make_writable(root: Path) -> None:
    for folder, dirs, _ in os.walk(root):
        os.chmod(folder, 0o755)


def _rmtree(path: Path) -> None:
    if not path.exists() and not path.is_symlink():
        return
    try:
        _make_writable(path)
    except OSError:
        pass
    shutil.rmtree(path, ignore_errors=True)


def _sweep_stale(cache: Path) -> None:
    """Remove temporary folders that killed processes left behind (a day old: no live install owns them)."""
    cutoff = time.time() - _STALE_SECONDS
    try:
        entries = list(os.scandir(cache))
    except FileNotFoundError:
        return
    for entry in entries:
        if entry.name.startswith((_TMP_PREFIX, _TRASH_PREFIX)):
            try:
                if entry.stat(follow_symlinks=False).st_mtime < cutoff or entry.name.startswith(_TRASH_PREFIX):
                    _rmtree(Path(entry.path))
            except OSError:
                pass


def unpack_verified(archive: Path, tree: Path, expected: str | None) -> str:
    """Unpack ``archive`` into the new folder ``tree`` and return its tree hash;
    ``TreeHashMismatchError`` when ``expected`` is given and differs."""
    tree.mkdir()
    extract_tarball(archive, tree)
    calculated = compute_git_tree_sha1(tree)
    if expected is not None and calculated != expected:
        raise TreeHashMismatchError(
            "Tree Hash Mismatch!\n"
            f"  Expected git-tree-sha1:   {expected}\n"
            f"  Calculated git-tree-sha1: {calculated}\n"
            "The archive does not hold the tree Artifacts.toml names; nothing was installed. "
            "Fix the git-tree-sha1 (compute_git_tree_sha1 of the intended folder) or the archive.",
            expected=expected, calculated=calculated)
    return calculated


def _try_download(url: str, sha256: str, git_tree_sha1: str, cache: Path, retries: int) -> Path:
    work = Path(tempfile.mkdtemp(prefix=_TMP_PREFIX, dir=cache))
    try:
        archive = work / "archive"
        digest, size = download(url, archive, retries=retries)
        if sha256 and digest != sha256:
            raise ArtifactIntegrityError(
                f"sha256 mismatch: Artifacts.toml says {sha256}, the {size} bytes downloaded hash to {digest} "
                "(a corrupted or replaced file); refusing it", digest=digest)
        tree = work / "tree"
        unpack_verified(archive, tree, git_tree_sha1)
        archive.unlink()
        _make_read_only(tree)
        final = cache / git_tree_sha1
        os.rename(tree, final)  # atomic: the artifact appears whole
        os.chmod(final, 0o555)
        _fsync_dir(cache)
        return final
    finally:
        _rmtree(work)


def install(name: str, git_tree_sha1: str, downloads, cache_dir=None, retries: int = DEFAULT_RETRIES,
            where: str = "") -> Path:
    """Make ``<cache>/<git_tree_sha1>`` exist, fetching it from ``downloads`` (``DownloadInfo``s)
    in order if needed; returns the folder. ``ArtifactInstallError`` lists each url's failure."""
    cache = Path(cache_dir or get_cache_dir())
    final = cache / git_tree_sha1
    if final.is_dir():
        return final
    if not downloads:
        raise ArtifactInstallError(
            f"artifact {name!r} ({git_tree_sha1}){where} is not installed and has no [[{name}.download]] "
            "entry to fetch it from; add one (bind_artifact / add_download_source) or install it by hand "
            f"into {final}", name=name)
    cache.mkdir(parents=True, exist_ok=True)
    with _locked(cache, git_tree_sha1):
        if final.is_dir():  # another process installed it while we waited
            return final
        _sweep_stale(cache)
        attempts = []
        for info in downloads:
            try:
                return _try_download(info.url, info.sha256, git_tree_sha1, cache, retries)
            except (PodstackError, OSError) as exc:
                attempts.append((info.url, exc))
    lines = "\n".join(f"  - {url}: {getattr(exc, 'message', None) or exc}" for url, exc in attempts)
    raise ArtifactInstallError(
        f"could not install artifact {name!r} ({git_tree_sha1}){where} from any of its {len(attempts)} "
        f"download url(s):\n{lines}", name=name, attempts=attempts)


def remove_tree(git_tree_sha1: str, cache_dir=None) -> bool:
    """Remove an installed artifact (renamed away first, so no reader sees half of it); returns
    whether it was there."""
    cache = Path(cache_dir or get_cache_dir())
    final = artifact_path(git_tree_sha1, cache)
    if not final.is_dir():
        return False
    with _locked(cache, git_tree_sha1.lower()):
        if not final.is_dir():
            return False
        trash = cache / f"{_TRASH_PREFIX}{uuid.uuid4().hex}"
        os.chmod(final, 0o755)
        os.rename(final, trash)
        _rmtree(trash)
        return True
