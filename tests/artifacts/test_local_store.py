import hashlib
import io
import multiprocessing
import os

import pytest

from podstack_jupyter.artifacts import LocalArtifactStore, open_store
from podstack_jupyter.errors import ArtifactIntegrityError, ArtifactNotFoundError, InvalidArgumentError


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


def test_blobs_are_named_by_content_and_stored_once(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(3_000_000))
    digest, size = store.put_file(source)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest() and size == 3_000_000
    assert store.put_bytes(source.read_bytes()) == (digest, size)
    assert files_under(store.root) == [f"blobs/{digest[:2]}/{digest[2:]}"]
    copy = store.get_file(digest, tmp_path / "out" / "weights.bin")
    assert copy.read_bytes() == source.read_bytes() and store.verify(digest) and store.size(digest) == size


def test_a_failed_upload_leaves_no_blob_and_no_temp_file(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")

    class Broken(io.RawIOBase):
        def __init__(self):
            self.calls = 0

        def read(self, n=-1):
            self.calls += 1
            if self.calls > 2:
                raise OSError("network dropped")
            return b"x" * 1000

    with pytest.raises(OSError, match="network dropped"):
        store.put_stream(Broken())
    assert files_under(store.root) == []


def test_corrupt_blob_is_refused_and_nothing_is_written(tmp_path):
    store = LocalArtifactStore(tmp_path / "store")
    digest, _ = store.put_bytes(b"model weights")
    blob = store.blobs / digest[:2] / digest[2:]
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered weights")
    assert not store.verify(digest)
    with pytest.raises(ArtifactIntegrityError, match="corrupt"):
        store.get_file(digest, tmp_path / "out" / "w.bin")
    assert files_under(tmp_path / "out") == []


def test_missing_and_malformed_digests(tmp_path):
    store = LocalArtifactStore(tmp_path)
    with pytest.raises(ArtifactNotFoundError):
        store.get_file("0" * 64, tmp_path / "x")
    with pytest.raises(InvalidArgumentError, match="not a sha256"):
        store.has("../../etc/passwd")


def _put_many(root, payload, rounds):
    store = LocalArtifactStore(root)
    for _ in range(rounds):
        store.put_bytes(payload)


def test_two_processes_storing_the_same_blob_at_once(tmp_path):
    payload = os.urandom(2_000_000)
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_put_many, args=(str(tmp_path), payload, 20)) for _ in range(2)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(60)
        assert w.exitcode == 0
    store = LocalArtifactStore(tmp_path)
    digest = hashlib.sha256(payload).hexdigest()
    assert store.verify(digest) and files_under(tmp_path) == [f"blobs/{digest[:2]}/{digest[2:]}"]


def test_open_store_follows_the_settings(podstack_home):
    assert open_store().root == podstack_home / "artifacts"
    assert open_store() is open_store()
