import hashlib
import io
import os
import subprocess
import sys
import time

import pytest

from podstack_jupyter.artifacts import PROGRESS_BYTES, LocalArtifactStore, open_store
from podstack_jupyter.errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError

from _store_race import writers_and_a_reader


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def blob_layout(digest):
    return [f"blobs/{digest[:2]}/{digest[2:]}"]


class FailingReader(io.RawIOBase):
    """A source that yields some data, then fails the way a dropped upload or Ctrl-C does."""

    def __init__(self, error, good_reads=2):
        self.error, self.good_reads, self.calls = error, good_reads, 0

    def readable(self):
        return True

    def read(self, n=-1):
        self.calls += 1
        if self.calls > self.good_reads:
            raise self.error
        return b"x" * 1000


def test_blobs_are_named_by_content_and_stored_once(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3_000_000))
    digest, size = store.put_file(source)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest() and size == 3_000_000
    assert store.put_bytes(source.read_bytes()) == (digest, size)
    assert files_under(store.root) == blob_layout(digest)
    copy = store.get_file(digest, tmp_path / "out" / "weights.bin")
    assert copy.read_bytes() == source.read_bytes()
    assert store.has(digest) and store.verify(digest) and store.size(digest) == size
    with store.open_blob(digest) as f:
        assert f.read(10) == source.read_bytes()[:10]


def test_storing_known_content_again_does_not_rewrite_the_blob(tmp_path):
    store = LocalArtifactStore(tmp_path)
    digest, _ = store.put_bytes(b"weights v1")
    before = os.stat(store.path_of(digest))
    time.sleep(0.01)
    (tmp_path / "again.bin").write_bytes(b"weights v1")
    assert store.put_file(tmp_path / "again.bin")[0] == digest
    after = os.stat(store.path_of(digest))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


@pytest.mark.parametrize("error", [OSError("network dropped"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"])
def test_a_failed_upload_leaves_no_blob_and_no_temp_file(tmp_path, error):
    store = LocalArtifactStore(tmp_path / "store")
    reader = FailingReader(error)
    with pytest.raises(type(error)):
        store.put_stream(reader)
    assert reader.calls == 3  # it did fail halfway, after writing data
    assert files_under(store.root) == []


def test_a_failed_upload_does_not_disturb_stored_blobs(tmp_path):
    store = LocalArtifactStore(tmp_path)
    digest, _ = store.put_bytes(b"x" * 2000)  # the bytes the failing reader would have produced
    with pytest.raises(OSError):
        store.put_stream(FailingReader(OSError("disk full")))
    assert files_under(tmp_path) == blob_layout(digest) and store.verify(digest)


def test_corrupt_blob_is_refused_and_nothing_is_written(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    digest, _ = store.put_bytes(b"model weights")
    blob = store.path_of(digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered weights")
    assert not store.verify(digest)
    with pytest.raises(ArtifactIntegrityError, match="corrupt"):
        store.get_file(digest, tmp_path / "out" / "w.bin")
    assert files_under(tmp_path / "out") == []


def test_corrupt_blob_leaves_an_existing_destination_untouched(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    digest, _ = store.put_bytes(b"0123456789" * 1000)
    with open(store.path_of(digest), "r+b") as f:  # a truncated blob (e.g. a disk problem)
        f.truncate(5000)
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"previous good copy")
    with pytest.raises(ArtifactIntegrityError):
        store.get_file(digest, dest)
    assert dest.read_bytes() == b"previous good copy" and files_under(tmp_path) == ["store/" + blob_layout(digest)[0],
                                                                                     "w.bin"]


def test_missing_and_malformed_input(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    with pytest.raises(ArtifactNotFoundError):
        store.get_file("0" * 64, tmp_path / "out" / "x")
    assert not (tmp_path / "out").exists()
    for call in (store.verify, store.size, store.open_blob):
        with pytest.raises(ArtifactNotFoundError):
            call("0" * 64)
    assert store.has("0" * 64) is False
    with pytest.raises(InvalidArgumentError, match="not a sha256"):
        store.has("../../etc/passwd")
    with pytest.raises(InvalidArgumentError, match="does not exist"):
        store.put_file(tmp_path / "nope.bin")
    with pytest.raises(InvalidArgumentError, match="is not a file"):
        store.put_file(tmp_path)
    with pytest.raises(InvalidArgumentError, match="encode"):
        store.put_bytes("text")
    assert not (tmp_path / "store").exists()


def test_two_threads_storing_the_same_blob_while_a_reader_copies_it(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    payload = os.urandom(4_000_000)
    digest = writers_and_a_reader(store, payload, tmp_path / "copies", rounds=15, reads=30, join_seconds=120)
    store.put_bytes(payload)
    assert files_under(store.root) == blob_layout(digest) and store.verify(digest)


_PUT_MANY = """
import sys
from podstack_jupyter.artifacts import LocalArtifactStore
store = LocalArtifactStore(sys.argv[1])
payload = open(sys.argv[2], "rb").read()
for _ in range(20):
    store.put_bytes(payload)
"""


def test_two_processes_storing_the_same_blob_at_once(tmp_path):
    payload = os.urandom(2_000_000)
    (tmp_path / "payload.bin").write_bytes(payload)
    root = tmp_path / "store"
    workers = [subprocess.Popen([sys.executable, "-c", _PUT_MANY, str(root), str(tmp_path / "payload.bin")])
               for _ in range(2)]
    assert [w.wait(120) for w in workers] == [0, 0]
    store = LocalArtifactStore(root)
    digest = hashlib.sha256(payload).hexdigest()
    assert store.verify(digest) and files_under(root) == blob_layout(digest)


def test_temp_files_of_killed_uploads_are_swept_once_stale(tmp_path):
    (tmp_path / "blobs").mkdir()
    stale, live = tmp_path / "blobs" / ".incoming-stale", tmp_path / "blobs" / ".incoming-live"
    stale.write_bytes(b"half a blob")
    live.write_bytes(b"an upload in progress in another process")
    old = time.time() - 2 * 24 * 3600
    os.utime(stale, (old, old))
    digest, _ = LocalArtifactStore(tmp_path).put_bytes(b"data")
    assert files_under(tmp_path) == sorted(["blobs/.incoming-live", *blob_layout(digest)])


def test_progress_bar_only_for_large_transfers(tmp_path, capfd):
    store = LocalArtifactStore(tmp_path / "store")
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    store.put_file(small)
    assert "storing artifact" not in capfd.readouterr().err
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(PROGRESS_BYTES)  # sparse: cheap to create, 50 MB to read
    digest, size = store.put_file(big)
    assert size == PROGRESS_BYTES and "storing artifact" in capfd.readouterr().err
    store.get_file(digest, tmp_path / "big-copy.bin")
    assert "fetching big-copy.bin" in capfd.readouterr().err
    store.get_file(digest, tmp_path / "quiet.bin", progress=False)
    assert capfd.readouterr().err == ""
    from tqdm import tqdm

    with tqdm(total=2, desc="uploading 2 artifact file(s)"):  # e.g. log_artifact's bar for a folder
        store.get_file(digest, tmp_path / "inner.bin")
    assert "fetching inner.bin" not in capfd.readouterr().err


def test_open_store_follows_the_settings(podstack_home, tmp_path, monkeypatch):
    assert open_store().root == podstack_home / "artifacts"
    assert open_store() is open_store()
    from podstack_jupyter import config

    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", str(tmp_path / "elsewhere"))
    config.reset()
    assert open_store().root == tmp_path / "elsewhere"
