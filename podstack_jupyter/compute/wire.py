"""How values travel between the notebook and a GPU session.

A value is pickled with cloudpickle at protocol 5: the pickle stream holds the
structure, and large contiguous buffers (numpy / torch / pandas blocks, bytes)
are handed out *out of band* as separate frames, so a 256 MB array is never
copied into a pickle. A set of named values becomes one message: a small JSON
``manifest`` plus a flat list of binary frames.

This module is self-contained (stdlib, cloudpickle, optional xxhash): it is
shipped as source into the remote kernel, so both sides run the same code.
"""

from __future__ import annotations

import pickle

import cloudpickle

try:
    import xxhash

    def _hasher():
        return xxhash.xxh3_128()
except ImportError:  # pragma: no cover - xxhash is a dependency; keep the agent usable without it
    import hashlib

    def _hasher():
        return hashlib.blake2b(digest_size=16)


class Encoded:
    """One value, pickled: ``frames[0]`` is the pickle stream, the rest its buffers."""

    __slots__ = ("frames", "fingerprint")

    def __init__(self, frames: list):
        self.frames = frames
        self.fingerprint = _fingerprint(frames)


def encode(value) -> Encoded:
    """Pickle ``value`` (out-of-band buffers) and fingerprint it. Raises what pickling raises."""
    buffers: list = []
    stream = cloudpickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    frames = [stream]
    for buf in buffers:
        try:
            frames.append(buf.raw())
        except BufferError:  # non-contiguous: let pickle copy it in band
            return Encoded([cloudpickle.dumps(value, protocol=5)])
    return Encoded(frames)


def _fingerprint(frames) -> str:
    h = _hasher()
    for frame in frames:
        view = memoryview(frame).cast("B")
        h.update(view.nbytes.to_bytes(8, "little"))
        h.update(view)
    return h.hexdigest()


def fingerprint(value) -> str:
    """A content hash of ``value`` as pickled: equal values give equal fingerprints
    within one process, and any in-place change (``arr += 1``) changes it."""
    return encode(value).fingerprint


def decode(frames: list):
    """Rebuild a value from ``frames`` (``frames[0]`` the stream)."""
    return pickle.loads(frames[0], buffers=[writable(f) for f in frames[1:]])


def writable(frame):
    """A writable buffer over a received frame. pyzmq hands received frames out
    writable, so this is normally the frame's own memory; a read-only buffer
    (an older pyzmq, or bytes) is copied, so a rebuilt array can be changed in place."""
    view = memoryview(frame)
    return bytearray(view) if view.readonly else view


def pack(values: dict[str, Encoded]) -> tuple[dict, list]:
    """Many named values -> (manifest, frames) for one message."""
    manifest = {"names": [], "counts": [], "fingerprints": []}
    frames: list = []
    for name, enc in values.items():
        manifest["names"].append(name)
        manifest["counts"].append(len(enc.frames))
        manifest["fingerprints"].append(enc.fingerprint)
        frames.extend(enc.frames)
    return manifest, frames


def unpack(manifest: dict, frames: list):
    """(manifest, frames) -> iterator of (name, fingerprint, frames of that value)."""
    position = 0
    for name, count, fp in zip(manifest["names"], manifest["counts"], manifest["fingerprints"]):
        yield name, fp, frames[position:position + count]
        position += count
