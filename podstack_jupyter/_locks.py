"""Telling a file held by a live process from one its process left behind (flock; POSIX only)."""

from __future__ import annotations

import os

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

__all__ = ["HAVE_FLOCK", "hold", "take_if_abandoned"]

HAVE_FLOCK = fcntl is not None


def hold(fd: int) -> None:
    """Hold an exclusive lock on ``fd`` for as long as this process keeps it open (the kernel lets go
    when the process dies, however it dies). ``OSError`` if another process holds it."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def take_if_abandoned(path) -> int | None:
    """A descriptor of ``path`` holding its lock when no live process holds it (its owner died), else
    ``None``: held by a live process, gone, or replaced meanwhile (renamed or removed by another taker).
    Closing the descriptor lets the lock go."""
    if fcntl is None:
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        if os.stat(path).st_ino == os.fstat(fd).st_ino:
            return fd
    except OSError:  # held by a live process; or the path is gone
        pass
    os.close(fd)
    return None
