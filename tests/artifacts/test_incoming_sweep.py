"""Temporary files of uploads killed midway are swept when their writer is dead, not a day later."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time

from podstack_jupyter.artifacts import LocalArtifactStore

# Uploads 64 chunks of 64 KiB, one every 50 ms unless told to hurry; says "started" after the first.
SLOW_UPLOAD = textwrap.dedent("""
    import io, os, sys, time
    from podstack_jupyter.artifacts import LocalArtifactStore

    class Slow(io.RawIOBase):
        def __init__(self):
            self.sent = 0
        def readable(self):
            return True
        def read(self, n=-1):
            if self.sent == 1:
                print("started", flush=True)
            if self.sent == 64:
                return b""
            if not os.path.exists(sys.argv[2]):
                time.sleep(0.05)
            self.sent += 1
            return bytes([self.sent % 256]) * 65536

    print(LocalArtifactStore(sys.argv[1]).put_stream(Slow())[0], flush=True)
""")


def _incoming(root):
    return sorted(p.name for p in (root / "blobs").iterdir() if p.name.startswith(".incoming-"))


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_the_temp_file_of_an_upload_killed_midway_is_swept_by_the_next_upload(tmp_path):
    root = tmp_path / "store"
    upload = subprocess.Popen([sys.executable, "-c", SLOW_UPLOAD, str(root), str(tmp_path / "never")],
                              stdout=subprocess.PIPE, text=True)
    assert upload.stdout.readline().strip() == "started"
    upload.send_signal(signal.SIGKILL)
    upload.communicate(timeout=30)
    (left,) = _incoming(root)
    _age(root / "blobs" / left, 60)  # a minute later, not a day
    store = LocalArtifactStore(root)
    digest, _ = store.put_bytes(b"the next upload")
    assert _incoming(root) == [] and store.verify(digest)


def test_a_live_uploads_temp_file_is_kept_however_old_and_its_blob_lands(tmp_path):
    root = tmp_path / "store"
    hurry = tmp_path / "hurry"
    upload = subprocess.Popen([sys.executable, "-c", SLOW_UPLOAD, str(root), str(hurry)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert upload.stdout.readline().strip() == "started"
        (live,) = _incoming(root)
        _age(root / "blobs" / live, 3 * 3600)  # old, but its writer is alive and holds it
        assert LocalArtifactStore(root).sweep_incoming() == 0
        assert _incoming(root) == [live]
    finally:
        hurry.touch()
        out, _ = upload.communicate(timeout=60)
    assert upload.returncode == 0
    expected = hashlib.sha256(b"".join(bytes([i % 256]) * 65536 for i in range(1, 65))).hexdigest()
    assert out.split()[-1] == expected and LocalArtifactStore(root).verify(expected) and _incoming(root) == []
