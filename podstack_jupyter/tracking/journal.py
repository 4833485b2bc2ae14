"""The metric journal: what ``log_metrics`` has returned for survives the death of the process.

``log_metrics`` writes each point into a file mapped into memory before it returns. The
operating system keeps the pages of a killed process (SIGKILL, SIGTERM, ``os._exit``, an
out-of-memory kill), so once the call has returned the point is either in the store or
in the journal. The background flusher moves points from the journal to the store and
records how far it got; the next process that opens the same store recovers the journals
of dead processes into the store, exactly once, and marks the runs they left open
``killed``. A machine crash (power loss, kernel panic) can lose what neither the store nor
the disk holds yet: points reach the store within about half a second, and the journal is
synced to disk whenever the store cannot take them (and when a process closes it with points
left). What the store took is as durable as the store makes it (SQLite in WAL mode with
``synchronous=NORMAL`` may roll back its last transactions on a power loss).

Layout (``<podstack home>/journal/<store key>/``, private to the user; the store key is a
hash of the store's URL without its password, so each store has its own journals)::

    <pid>-<random>/            one folder per process (and per store it logged to)
        lock                   held with flock() while the process lives; its text says who
        log                    append-only: metric names (slots) and run start/end events
        seg-000001 ...         fixed-size records, mapped into memory
    rejected.jsonl             points the store refused (set aside, one JSON object a line)

``log`` records: ``u32 length, u8 kind, payload, u32 crc32(kind + payload)``; kind 1 defines
a slot (``u32 id, u16 len(run id), run id, metric name``, UTF-8), kind 2 says a run started
here, kind 3 that it ended (payload: the run id). A torn last record fails its length or
CRC and is ignored: nothing that used it had been acknowledged.

A segment starts with a 64-byte header (``magic, byte order, record size, segment number,
capacity, committed, attempted``) followed by 32-byte records in native byte order
``(step int64, value float64, timestamp float64, slot int64)``. The slot is written last,
so a record cut short by a kill has slot 0 and marks the end. ``committed``: records before
it are in the store (or set aside); ``attempted``: records before it may be. Steps are
numbered when the point is logged, so recovery numbers nothing.

Recovery of a journal whose lock can be taken (its process is dead): read the slots, take
the records from ``committed`` to the first unwritten one; those below ``attempted`` are
compared with the store's history and only the missing ones are written (a kill between a
commit and its mark cannot duplicate a point); ``committed`` advances after each batch, so
a recovery that is itself killed resumes exactly. Runs that started in the dead process,
did not end there and are still ``running`` in the store are marked ``killed``. Then the
folder is removed. While the store cannot be written, the journal stays for a later try.

Points the store refuses are isolated from the rest (the batch is split until the failing
points are alone; the others are written), tried once more, then appended to
``rejected.jsonl`` and reported; they never stop the other points or runs.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import logging
import mmap
import os
import re
import secrets
import shutil
import socket
import struct
import threading
import time
import zlib
from operator import eq
from pathlib import Path

from .._locks import HAVE_FLOCK, hold, take_if_abandoned
from ..errors import InvalidArgumentError
from ._validate import MAX_STEP

__all__ = ["Journal", "Batch", "WriteOutcome", "write_series", "set_aside", "journal_directory", "durable_url",
           "recover", "reason"]

log = logging.getLogger("podstack.tracking")

_MAGIC = b"PODJRNL\x01"
_BYTE_ORDER = 0x01020304
_HEADER = struct.Struct("=8sIIQQQQ")          # magic, byte order, record size, number, capacity, committed, attempted
_HEADER_SIZE = 64
_COMMITTED_AT, _ATTEMPTED_AT = 32, 40
_U64 = struct.Struct("=Q")
_RECORD = struct.Struct("=qddq")              # step, value, timestamp, slot (last: a torn record has slot 0)
_R = _RECORD.size                             # 32 (written as a literal on the hot path)
_pack = _RECORD.pack_into
_FIRST_CAPACITY = 1 << 15                     # records in the first segment (1 MiB); doubles up to:
_MAX_CAPACITY = 1 << 19                       # 16 MiB segments

_SLOT, _RUN_STARTED, _RUN_ENDED = 1, 2, 3
_LOG_HEAD = struct.Struct("=IB")
_CRC = struct.Struct("=I")
_SLOT_HEAD = struct.Struct("=IH")


def journal_directory(home, url: str) -> Path:
    """The folder that holds the journals of the store at ``url`` (password left out of the key)."""
    return Path(home).expanduser() / "journal" / hashlib.sha256(_store_identity(url).encode()).hexdigest()[:16]


def _store_identity(url: str) -> str:
    """``url`` without its password and driver, and a SQLite file by its real path."""
    scheme, sep, rest = url.partition("://")
    scheme = scheme.split("+")[0]
    if scheme == "sqlite" and rest.startswith("/") and len(rest) > 1:
        return "sqlite:///" + os.path.realpath(os.path.expanduser(rest[1:].split("?")[0]))
    return scheme + sep + re.sub(r"^([^:/@]*):[^@/]*@", r"\1@", rest)


def durable_url(url) -> bool:
    """Whether points for a store at ``url`` can outlive this process (not an in-memory database)."""
    return isinstance(url, str) and HAVE_FLOCK and ":memory:" not in url and "mode=memory" not in url \
        and url not in ("sqlite://", "sqlite:///")


def _private_dir(path: Path) -> None:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)


# -- segments ------------------------------------------------------------------------------------
class _Segment:
    """One mapped file (or anonymous mapping) of records."""

    __slots__ = ("number", "capacity", "mm", "fd", "path", "count", "committed", "attempted", "synced")

    def __init__(self, number: int, capacity: int, folder: Path | None):
        self.number, self.capacity = number, capacity
        size = _HEADER_SIZE + capacity * _R
        self.fd, self.path = None, None
        if folder is None:
            self.mm = mmap.mmap(-1, size)
        else:
            self.path = folder / f"seg-{number:06d}"
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                # reserve the blocks now: a full disk is an error here, not a SIGBUS on a later write
                if hasattr(os, "posix_fallocate"):
                    os.posix_fallocate(fd, 0, size)
                else:
                    os.ftruncate(fd, size)
                self.mm = mmap.mmap(fd, size)
            except BaseException:
                os.close(fd)
                _unlink(self.path)
                raise
            self.fd = fd
        _HEADER.pack_into(self.mm, 0, _MAGIC, _BYTE_ORDER, _R, number, capacity, 0, 0)
        self.count = 0          # complete records (final once the writer moved on)
        self.committed = 0
        self.attempted = 0
        self.synced = 0

    def mark_attempted(self, end: int) -> None:
        if end > self.attempted:
            self.attempted = end
            _U64.pack_into(self.mm, _ATTEMPTED_AT, end)

    def mark_committed(self, end: int) -> None:
        self.committed = end
        _U64.pack_into(self.mm, _COMMITTED_AT, end)

    def close(self, remove: bool) -> None:
        try:
            self.mm.close()
        except BufferError:  # a view is still alive somewhere: let the garbage collector unmap it
            pass
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
            if remove:
                _unlink(self.path)


def _unlink(path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _decode(mm, start: int, end: int) -> tuple[list, list, list, list]:
    """Records ``[start, end)`` of a segment as four lists: slots, steps, values, timestamps."""
    with memoryview(mm) as whole:
        with whole[_HEADER_SIZE + start * _R:_HEADER_SIZE + end * _R] as raw:
            with raw.cast("q") as ints, raw.cast("d") as floats:
                return ints[3::4].tolist(), ints[0::4].tolist(), floats[1::4].tolist(), floats[2::4].tolist()


def _slots(mm, start: int, end: int) -> list:
    with memoryview(mm) as whole:
        with whole[_HEADER_SIZE + start * _R:_HEADER_SIZE + end * _R] as raw, raw.cast("q") as ints:
            return ints[3::4].tolist()


def _group(slots: list, steps: list, values: list, stamps: list) -> dict:
    """``{slot: (steps, values, timestamps)}``, each in logging order."""
    distinct = set(slots)
    if len(distinct) == 1:
        return {slots[0]: (steps, values, stamps)}
    if len(distinct) <= 8:  # a few metrics: C-speed passes beat one Python loop
        groups = {}
        for slot in distinct:
            chosen = list(map(eq, slots, itertools.repeat(slot)))
            groups[slot] = (list(itertools.compress(steps, chosen)), list(itertools.compress(values, chosen)),
                            list(itertools.compress(stamps, chosen)))
        return groups
    groups = {}
    for slot, step, value, stamp in zip(slots, steps, values, stamps):
        group = groups.get(slot)
        if group is None:
            group = groups[slot] = ([], [], [])
        group[0].append(step)
        group[1].append(value)
        group[2].append(stamp)
    return groups


class Batch:
    """Records ``[start, end)`` of one segment, decoded: ``series`` is ``[(run_id, key, steps, values,
    timestamps)]``, one entry per metric."""

    __slots__ = ("segment", "start", "end", "series")

    def __init__(self, segment, start, end, series):
        self.segment, self.start, self.end, self.series = segment, start, end, series

    @property
    def count(self) -> int:
        return self.end - self.start


# -- the journal of this process ---------------------------------------------------------------------
class Journal:
    """This process's metric journal for one store: a folder of mapped segments (``create``) or
    the same records in anonymous memory (``in_memory``: stores without a URL, such as the relay of
    a GPU session, or where the file system cannot hold one). Any thread logs; one flusher reads."""

    def __init__(self, folder: Path | None, about: dict | None = None):
        self.folder = folder
        self._durable = folder is not None
        self._lock = threading.Lock()
        self._acquire, self._release = self._lock.acquire, self._lock.release
        self._lock_fd = None
        self._log_fd = None
        self._log_dirty = False
        self._slot_ids = itertools.count(1)
        self._slot_info: dict = {}        # slot id -> (run_id, key)
        self._run_slots: dict = {}        # run_id -> {key: [slot id, next automatic step]}
        self._segments: list = []
        self._retired = 0                 # records of segments already removed
        self._numbers = itertools.count(1)
        if folder is not None:
            self._open_files(about or {})
        self._start_segment(_FIRST_CAPACITY)

    @classmethod
    def create(cls, store_dir: Path, about: dict | None = None) -> "Journal":
        """A journal in a new folder under ``store_dir``, locked for this process's life."""
        _private_dir(store_dir)
        folder = store_dir / f"{os.getpid()}-{secrets.token_hex(4)}"
        folder.mkdir(mode=0o700)
        try:
            return cls(folder, about)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise

    @classmethod
    def in_memory(cls) -> "Journal":
        return cls(None)

    @property
    def durable(self) -> bool:
        """Whether what is logged now survives the death of this process."""
        return self._durable

    def __repr__(self):
        return f"<Journal {self.folder or 'in memory'} pending={self.pending()}>"

    def _open_files(self, about: dict) -> None:
        fd = os.open(self.folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        self._lock_fd = fd
        hold(fd)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(), **about}
        os.write(fd, json.dumps(info).encode())
        self._log_fd = os.open(self.folder / "log", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)

    def _start_segment(self, capacity: int) -> None:
        folder = self.folder if self._durable else None
        try:
            segment = _Segment(next(self._numbers), capacity, folder)
        except OSError as exc:
            if folder is None:
                raise
            self._degrade(f"cannot create a journal segment in {folder}: {exc}")
            segment = _Segment(next(self._numbers), capacity, None)
        self._segments.append(segment)
        self._current = segment
        self._mm = segment.mm
        self._pos = _HEADER_SIZE
        self._end = _HEADER_SIZE + capacity * _R

    def _degrade(self, why: str) -> None:
        """Go on in memory: the points still reach the store, but no longer survive a kill. What the
        files hold up to here stays recoverable (recovery stops at the first record it cannot name)."""
        if self._durable:
            log.error("podstack: %s. Metric points logged from now on are kept in memory only until written "
                      "to the store (they would be lost if this process were killed).", why)
            self._durable = False

    def _write_log(self, kind: int, payload: bytes) -> None:
        if not self._durable:
            return
        body = bytes((kind,)) + payload
        try:
            os.write(self._log_fd, _LOG_HEAD.pack(len(payload), kind) + payload + _CRC.pack(zlib.crc32(body)))
        except OSError as exc:
            self._degrade(f"cannot write the journal {self.folder / 'log'}: {exc}")
            return
        self._log_dirty = True

    def _define(self, run_id: str, key: str, slots: dict) -> list:
        slot_id = next(self._slot_ids)
        run_bytes = run_id.encode()
        self._write_log(_SLOT, _SLOT_HEAD.pack(slot_id, len(run_bytes)) + run_bytes + key.encode())
        self._slot_info[slot_id] = (run_id, key)
        slot = slots[key] = [slot_id, 0]
        return slot

    def _roll(self, need: int) -> int:
        """Finish the current segment and start one with room for ``need`` records; returns the
        write position in it. Raises ``_Closed`` once the journal is closed."""
        if self._mm is None:
            raise _Closed
        current = self._current
        current.count = (self._pos - _HEADER_SIZE) // _R
        self._start_segment(max(need, min(current.capacity * 2, _MAX_CAPACITY)))
        return self._pos

    # -- writing (any thread) -------------------------------------------------------------------
    def log(self, run_id: str, metrics: dict, step, timestamp: float) -> None:
        """Append one point per metric (``metrics``: ``{str: float}``, validated; ``step``: an
        int64, or ``None`` for each metric's next automatic step). The hot path of ``log_metrics``."""
        self._acquire()
        try:
            slots = self._run_slots.get(run_id)
            if slots is None:
                slots = self._run_slots[run_id] = {}
            pos = self._pos
            if pos + len(metrics) * 32 <= self._end:
                rolled = False
            else:
                pos = self._roll(len(metrics))
                rolled = True
            start, mm = pos, self._mm
            try:
                for key, value in metrics.items():
                    slot = slots.get(key)
                    if slot is None:
                        slot = self._define(run_id, key, slots)
                    s = slot[1] if step is None else step
                    if s >= slot[1]:
                        slot[1] = s + 1
                    _pack(mm, pos, s, value, timestamp, slot[0])
                    pos += 32
            except struct.error:
                mm[start:pos] = bytes(pos - start)  # this call wrote nothing
                raise InvalidArgumentError(
                    f"log_metrics: the automatic step of {key!r} passed the largest step ({MAX_STEP}); "
                    "pass step= explicitly") from None
            self._pos = pos
        except _Closed:
            rolled = None
        finally:
            self._release()
        if rolled is False:
            return None
        if rolled is None:  # closed meanwhile (the store changed): log where points go now
            return self.reroute(run_id, metrics, step, timestamp)
        self.on_roll(self)
        return None

    @staticmethod
    def reroute(run_id, metrics, step, timestamp):
        raise _Closed

    @staticmethod
    def on_roll(journal):
        """Called after a new segment is started (the metric buffer wakes its flusher here)."""

    def written(self) -> int:
        """Records logged, ever."""
        segments = self._snapshot()
        return self._retired + sum(s.count for s in segments)

    def run_started(self, run_id: str) -> None:
        """Note that ``run_id`` runs in this process (recovery marks it ``killed`` if it never ends)."""
        with self._lock:
            self._write_log(_RUN_STARTED, run_id.encode())

    def run_ended(self, run_id: str) -> None:
        with self._lock:
            self._write_log(_RUN_ENDED, run_id.encode())
            self._run_slots.pop(run_id, None)  # a resumed run numbers its automatic steps from 0 again

    def forget_run(self, run_id: str) -> None:
        with self._lock:
            self._run_slots.pop(run_id, None)

    # -- reading (the flusher) --------------------------------------------------------------------
    def _snapshot(self) -> list:
        with self._lock:
            if self._mm is not None:
                self._current.count = (self._pos - _HEADER_SIZE) // _R
            return list(self._segments)

    def pending(self) -> int:
        """Records logged and not yet in the store (or set aside)."""
        return sum(s.count - s.committed for s in self._snapshot())

    def next_batch(self, limit: int) -> Batch | None:
        """The oldest records not yet committed (at most ``limit``, within one segment), or ``None``."""
        for segment in self._snapshot():
            if segment.committed < segment.count:
                start, end = segment.committed, min(segment.count, segment.committed + limit)
                slots, steps, values, stamps = _decode(segment.mm, start, end)
                info = self._slot_info
                series = [(*info[slot], *columns) for slot, columns in _group(slots, steps, values, stamps).items()]
                return Batch(segment, start, end, series)
        return None

    def committed(self, batch: Batch) -> None:
        """The records of ``batch`` are in the store (or set aside): retire segments no longer needed."""
        batch.segment.mark_committed(batch.end)
        with self._lock:
            done = [s for s in self._segments if s is not self._current and s.committed >= s.count]
            for segment in done:
                self._segments.remove(segment)
                self._retired += segment.count
        for segment in done:
            segment.close(remove=True)

    def sync(self) -> None:
        """Write what is pending to disk (so that it also survives a machine crash)."""
        if self._log_fd is None:
            return
        for segment in self._snapshot():
            if segment.fd is not None and segment.count > segment.synced and segment.committed < segment.count:
                os.fsync(segment.fd)
                segment.synced = segment.count
        if self._log_dirty:
            self._log_dirty = False
            os.fsync(self._log_fd)

    def close(self) -> bool:
        """Stop logging here. With everything committed the folder is removed (returns ``True``);
        otherwise it stays, unlocked, for the next process that opens the store to recover."""
        with self._lock:
            if self._mm is None:
                return True
            self._current.count = (self._pos - _HEADER_SIZE) // _R
            self._mm = None
            self._end = -1  # a log() racing with close() rolls, and _roll() raises _Closed
            segments, self._segments = self._segments, []
        clean = all(s.committed >= s.count for s in segments)
        for segment in segments:
            if segment.fd is not None and not clean:
                try:
                    os.fsync(segment.fd)
                except OSError:
                    pass
            segment.close(remove=clean)
        if self._log_fd is not None:
            os.close(self._log_fd)
        if self.folder is not None and clean:
            shutil.rmtree(self.folder, ignore_errors=True)
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock (after the folder is gone, when clean)
        self._log_fd = self._lock_fd = None
        return clean

    def abandon_after_fork(self) -> None:
        """In a forked child: let go of the parent's journal without touching it."""
        for fd in (self._lock_fd, self._log_fd):
            if fd is not None:
                try:
                    os.close(fd)  # closing a copy; the parent keeps its lock
                except OSError:
                    pass
        for segment in self._segments:
            if segment.fd is not None:
                try:
                    os.close(segment.fd)
                except OSError:
                    pass
                segment.fd = None
        self._lock_fd = self._log_fd = None
        self._mm = None
        self._end = -1


class _Closed(Exception):
    """The journal was closed while a thread was logging into it (the store changed)."""


# -- writing to a store, isolating points it refuses --------------------------------------------------
class WriteOutcome:
    """What ``write_series`` did: ``down`` (the error) when nothing could be written at all;
    otherwise ``rejected``, the ``((run_id, key, value, step, timestamp), error)`` pairs the store
    refused while taking the rest."""

    __slots__ = ("down", "rejected")

    def __init__(self, down=None, rejected=()):
        self.down, self.rejected = down, list(rejected)


def _size(series: list) -> int:
    return sum(len(s[2]) for s in series)


def _split(series: list) -> list:
    """Two parts of about half the points each (by metric when there are several)."""
    if len(series) > 1:
        middle = len(series) // 2
        return [series[:middle], series[middle:]]
    run_id, key, steps, values, stamps = series[0]
    middle = len(steps) // 2
    return [[(run_id, key, steps[:middle], values[:middle], stamps[:middle])],
            [(run_id, key, steps[middle:], values[middle:], stamps[middle:])]]


def write_series(store, series: list) -> WriteOutcome:
    """Write ``series`` (``[(run_id, key, steps, values, timestamps)]``) to ``store`` in one
    transaction; when that fails, write what can be written.

    The batch is split (by metric, then in halves). If no part can be written, the store is
    taken to be unavailable: nothing is rejected, and the whole batch waits for a later try. As
    soon as one part is written the store is known to work, and the failing parts are split
    until each failing point is alone; a lone point that fails twice is rejected."""
    series = [s for s in series if s[2]]
    if not series:
        return WriteOutcome()
    try:
        store.log_metric_series(series)
        return WriteOutcome()
    except Exception as exc:  # noqa: BLE001 - any refusal: find what can still be written
        first = exc
    if _size(series) == 1:
        return WriteOutcome(down=first)
    parts = [[one] for one in series] if len(series) > 1 else _split(series)
    failed, written = [], False
    for part in parts:
        try:
            store.log_metric_series(part)
            written = True
        except Exception:  # noqa: BLE001
            failed.append(part)
    if not written:
        return WriteOutcome(down=first)
    rejected = []
    for part in failed:
        rejected += _isolate(store, part)
    return WriteOutcome(rejected=rejected)


def _isolate(store, series: list) -> list:
    if _size(series) == 1:
        try:
            store.log_metric_series(series)
            return []
        except Exception as exc:  # noqa: BLE001
            run_id, key, steps, values, stamps = series[0]
            return [((run_id, key, values[0], steps[0], stamps[0]), exc)]
    rejected = []
    for part in _split(series):
        try:
            store.log_metric_series(part)
        except Exception:  # noqa: BLE001
            rejected += _isolate(store, part)
    return rejected


def reason(exc: BaseException) -> str:
    """One line saying why: the database's own message when SQLAlchemy wraps one."""
    cause = getattr(exc, "orig", None) or exc
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[0] if text else ''}".rstrip(": ")


def set_aside(store_dir: Path | None, rejected: list, store) -> str:
    """Append refused points to ``store_dir/rejected.jsonl`` (synced); returns where they went."""
    if store_dir is None:
        for (run_id, key, value, step, stamp), exc in rejected[:20]:
            log.error("podstack: metric point refused by %r: run %s %r step %s value %r: %s",
                      store, run_id, key, step, value, reason(exc))
        return "the log (this store keeps no journal)"
    _private_dir(store_dir)
    path = store_dir / "rejected.jsonl"
    lines = "".join(json.dumps({"run_id": run_id, "key": key, "step": step, "value": value, "timestamp": stamp,
                                "error": reason(exc), "store": repr(store)}) + "\n"
                    for (run_id, key, value, step, stamp), exc in rejected)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        os.write(fd, lines.encode("utf-8", "backslashreplace"))
        os.fsync(fd)
    finally:
        os.close(fd)
    return str(path)


# -- recovery ------------------------------------------------------------------------------------------
def _read_log(path: Path) -> tuple[dict, list, set]:
    """Slots, runs started (in order) and runs ended, from a journal's ``log``."""
    slots, started, ended = {}, [], set()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return slots, started, ended
    pos, size = 0, len(data)
    while pos + _LOG_HEAD.size <= size:
        length, kind = _LOG_HEAD.unpack_from(data, pos)
        body_end = pos + _LOG_HEAD.size + length
        if body_end + _CRC.size > size:
            break
        payload = data[pos + _LOG_HEAD.size:body_end]
        if _CRC.unpack_from(data, body_end)[0] != zlib.crc32(bytes((kind,)) + payload):
            break  # torn: written by a process killed in the middle of it
        pos = body_end + _CRC.size
        try:
            if kind == _SLOT:
                slot_id, run_len = _SLOT_HEAD.unpack_from(payload)
                run_id = payload[_SLOT_HEAD.size:_SLOT_HEAD.size + run_len].decode()
                slots[slot_id] = (run_id, payload[_SLOT_HEAD.size + run_len:].decode())
            elif kind == _RUN_STARTED:
                started.append(payload.decode())
            elif kind == _RUN_ENDED:
                ended.add(payload.decode())
        except (struct.error, UnicodeDecodeError):
            break
    return slots, started, ended


def _history_counts(store, run_id: str, key: str) -> collections.Counter:
    found = store.get_metric_history(run_id, key) or {}
    counts = collections.Counter()
    if found.get("count"):
        import array

        steps, stamps = array.array("q"), array.array("d")
        steps.frombytes(base64.b64decode(found["steps"]))
        stamps.frombytes(base64.b64decode(found["timestamps"]))
        if struct.pack("=I", 1) != struct.pack("<I", 1):
            steps.byteswap()
            stamps.byteswap()
        counts.update(zip(steps, stamps))
    return counts


def _segments_of(folder: Path) -> list:
    found = []
    for path in sorted(folder.glob("seg-*")):
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            continue
        try:
            size = os.fstat(fd).st_size
            if size < _HEADER_SIZE:
                continue
            mm = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        magic, order, record, _, capacity, committed, attempted = _HEADER.unpack_from(mm, 0)
        if magic == bytes(len(_MAGIC)):  # the process died creating it, before any record
            mm.close()
            continue
        if magic != _MAGIC or order != _BYTE_ORDER or record != _R:
            mm.close()
            raise ValueError(f"{path} is not a podstack journal segment of this machine's format")
        capacity = min(capacity, (size - _HEADER_SIZE) // _R)
        found.append((path, mm, capacity, committed, attempted))
    return found


def _valid_count(mm, committed: int, capacity: int, slots: dict) -> int:
    """Index of the first record at or after ``committed`` that was not completely written
    (its slot is 0: never written, or cut short by the kill)."""
    if committed >= capacity:
        return committed
    ids = _slots(mm, committed, capacity)
    known = slots.__contains__
    for offset, slot in enumerate(ids):
        if not known(slot):
            return committed + offset
    return capacity


def recover(store, store_dir: Path, *, batch_points: int = 200_000) -> dict:
    """Recover the journals of dead processes in ``store_dir`` into ``store`` (see the module docstring).

    Returns ``{"journals", "points", "duplicates_skipped", "runs_killed", "rejected", "kept"}``;
    a journal that could not be written (the store refused everything) is kept for a later try."""
    summary = {"journals": 0, "points": 0, "duplicates_skipped": 0, "runs_killed": [], "rejected": 0, "kept": 0}
    if not HAVE_FLOCK or not store_dir.is_dir():
        return summary
    for folder in sorted(p for p in store_dir.iterdir() if p.is_dir()):
        fd = take_if_abandoned(folder / "lock")  # its process is dead, and nobody else is recovering it
        if fd is None:
            if not (folder / "lock").exists() and _older_than(folder, 60):
                shutil.rmtree(folder, ignore_errors=True)  # died before it could journal anything
            continue
        try:
            done = _recover_one(store, store_dir, folder, summary, batch_points)
        except Exception as exc:  # noqa: BLE001 - one unreadable journal must not stop the others
            log.error("podstack: could not recover the metric journal %s: %s; it is kept", folder, exc)
            done = False
        try:
            if done:
                shutil.rmtree(folder, ignore_errors=True)
                summary["journals"] += 1
            else:
                summary["kept"] += 1
        finally:
            os.close(fd)
    if summary["journals"]:
        log.warning("podstack: recovered %d metric points from %d journal(s) of processes that died%s",
                    summary["points"], summary["journals"],
                    f"; runs marked killed: {', '.join(summary['runs_killed'])}" if summary["runs_killed"] else "")
    return summary


def _older_than(path: Path, seconds: float) -> bool:
    try:
        return time.time() - path.stat().st_mtime > seconds
    except FileNotFoundError:
        return False


def _recover_one(store, store_dir: Path, folder: Path, summary: dict, batch_points: int) -> bool:
    slots, started, ended = _read_log(folder / "log")
    last_seen = {}
    segments = _segments_of(folder)
    try:
        for path, mm, capacity, committed, attempted in segments:
            count = _valid_count(mm, committed, capacity, slots)
            start = committed
            while start < count:
                end = min(count, start + batch_points)
                ids, steps, values, stamps = _decode(mm, start, end)
                groups = _group(ids, steps, values, stamps)
                series = []
                for slot, (s, v, t) in groups.items():
                    run_id, key = slots[slot]
                    last_seen[run_id] = max(last_seen.get(run_id, 0.0), max(t))
                    if start < attempted:  # some of these may have reached the store before the death
                        s, v, t = _missing(store, run_id, key, s, v, t, summary)
                    if s:
                        series.append((run_id, key, s, v, t))
                points = sum(len(x[2]) for x in series)
                if points:
                    outcome = write_series(store, series)
                    if outcome.down is not None:
                        log.warning("podstack: cannot recover the metric journal %s yet: %s", folder,
                                    reason(outcome.down))
                        return False
                    if outcome.rejected:
                        where = set_aside(store_dir, outcome.rejected, store)
                        summary["rejected"] += len(outcome.rejected)
                        log.error("podstack: %d recovered metric points were refused by the store and set aside "
                                  "in %s", len(outcome.rejected), where)
                    summary["points"] += points - len(outcome.rejected)
                _U64.pack_into(mm, _ATTEMPTED_AT, max(end, attempted))
                _U64.pack_into(mm, _COMMITTED_AT, end)
                start = end
    finally:
        for _, mm, *_ in segments:
            mm.close()
    ended_at = max([_mtime(folder / "log")] + list(last_seen.values()))
    for run_id in dict.fromkeys(started):
        if run_id in ended:
            continue
        try:
            record = store.get_run(run_id)
            if record is not None and record.get("status") == "running":
                store.update_run(run_id, {"status": "killed", "end_time": max(ended_at, record["start_time"])})
                summary["runs_killed"].append(run_id)
        except Exception as exc:  # noqa: BLE001
            log.warning("podstack: cannot mark run %s killed yet: %s", run_id, reason(exc))
            return False
    return True


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return 0.0


def _missing(store, run_id, key, steps, values, stamps, summary):
    """The points among these that the store does not hold yet (a point is known by its step and
    timestamp: one metric cannot be logged twice at the same step within the clock's resolution)."""
    counts = _history_counts(store, run_id, key)
    keep_s, keep_v, keep_t = [], [], []
    for step, value, stamp in zip(steps, values, stamps):
        mark = (step, stamp)
        if counts.get(mark):
            counts[mark] -= 1
            summary["duplicates_skipped"] += 1
            continue
        keep_s.append(step)
        keep_v.append(value)
        keep_t.append(stamp)
    return keep_s, keep_v, keep_t
