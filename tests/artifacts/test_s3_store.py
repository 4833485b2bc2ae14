"""The S3 artifact store against a real S3-compatible server (SeaweedFS, started once per session).

The same guarantees as the local store (content addressing, all-or-nothing writes, verified
reads), then what only S3 has: multipart uploads, signed URLs, and configuration errors.
"""

from __future__ import annotations

import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import tracemalloc

import httpx
import pytest

from podstack_jupyter.artifacts import PROGRESS_BYTES, S3ArtifactStore, open_store
from podstack_jupyter.errors import (ArtifactIntegrityError, ArtifactNotFoundError, ConfigurationError,
                                     InvalidArgumentError, PodstackError)

from _store_race import writers_and_a_reader

MiB = 1 << 20


@pytest.fixture
def s3(s3_server, monkeypatch):
    """The session's S3 server, with the AWS variables pointing at it."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_DEFAULT_PROFILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    return s3_server


class Calls:
    """Counts the S3 operations a client sends (``PutObject``, ``UploadPart``, ...)."""

    def __init__(self, client):
        self.seen: list[str] = []
        client.meta.events.register("before-call.s3", self._record)

    def _record(self, model, **_):
        self.seen.append(model.name)

    def count(self, *names):
        return sum(self.seen.count(n) for n in names)


@pytest.fixture
def store(s3):
    """A store on a fresh prefix, with small parts so that a few MB already take the multipart path."""
    client = s3.client()
    store = S3ArtifactStore(s3.new_root(), client=client)
    store.multipart_threshold = store.part_size = store.download_part_size = 5 * MiB  # S3's smallest part
    store.calls = Calls(client)
    return store


def keys_under(store, area=""):
    """Every object key under the store's prefix (relative to it)."""
    client = store._s3()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=store.bucket, Prefix=store.prefix + "/" + area)
    return sorted(item["Key"][len(store.prefix) + 1:] for page in pages for item in page.get("Contents") or ())


def unfinished_uploads(store):
    found = store._s3().list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix + "/")
    return [u["Key"][len(store.prefix) + 1:] for u in found.get("Uploads") or ()]


def blob_layout(digest):
    return [f"blobs/{digest[:2]}/{digest[2:]}"]


def files_under(path):
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*") if p.is_file())


class FailingReader(io.RawIOBase):
    """A source that yields ``good_reads`` chunks, then fails the way a dropped upload or Ctrl-C does."""

    def __init__(self, error, good_reads=2, chunk=1000):
        self.error, self.good_reads, self.chunk, self.calls = error, good_reads, chunk, 0

    def readable(self):
        return True

    def read(self, n=-1):
        self.calls += 1
        if self.calls > self.good_reads:
            raise self.error
        return b"x" * (self.chunk if n is None or n < 0 else min(n, self.chunk))


# -- the ArtifactStore contract ---------------------------------------------------------------------

@pytest.mark.parametrize("size", [0, 1000, 3 * MiB, 12 * MiB + 17], ids=["empty", "small", "one-put", "multipart"])
def test_blobs_are_named_by_content_and_stored_once(store, tmp_path, size):
    source = tmp_path / "weights.bin"
    source.write_bytes(os.urandom(size))
    digest, stored = store.put_file(source)
    assert digest == hashlib.sha256(source.read_bytes()).hexdigest() and stored == size
    assert store.put_bytes(source.read_bytes()) == (digest, size)
    assert keys_under(store) == blob_layout(digest) and unfinished_uploads(store) == []
    copy = store.get_file(digest, tmp_path / "out" / "weights.bin")
    assert copy.read_bytes() == source.read_bytes()
    assert store.has(digest) and store.verify(digest) and store.size(digest) == size
    with store.open_blob(digest) as f:
        assert f.read(10) == source.read_bytes()[:10] and len(f.read()) == max(0, size - 10)
    if size > store.multipart_threshold:
        assert store.calls.count("UploadPart") == 3  # 5 + 5 + 2 MB: sent in parts, once


def test_known_content_is_not_sent_again(store, tmp_path):
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))
    digest, _ = store.put_file(big)
    sent = store.calls.count("PutObject", "UploadPart", "CreateMultipartUpload", "CopyObject")
    (tmp_path / "again.bin").write_bytes(big.read_bytes())
    assert store.put_file(tmp_path / "again.bin")[0] == digest
    assert store.put_bytes(b"small") == store.put_bytes(b"small")
    assert store.calls.count("PutObject", "UploadPart", "CreateMultipartUpload", "CopyObject") == sent + 1


@pytest.mark.parametrize("error", [OSError("network dropped"), KeyboardInterrupt()], ids=["oserror", "ctrl-c"])
@pytest.mark.parametrize("good_reads", [2, 12], ids=["before-first-part", "after-two-parts"])
def test_a_failed_upload_leaves_no_blob_and_no_unfinished_upload(store, error, good_reads):
    reader = FailingReader(error, good_reads=good_reads, chunk=MiB)
    with pytest.raises(type(error)):
        store.put_stream(reader)
    assert reader.calls == good_reads + 1  # it did fail halfway, after reading data
    if good_reads == 12:
        assert store.calls.count("UploadPart") == 2  # two parts had reached the server
    assert keys_under(store) == [] and unfinished_uploads(store) == []


def test_a_failed_upload_does_not_disturb_stored_blobs(store):
    digest, _ = store.put_bytes(b"x" * 2000)  # the bytes the failing reader would have produced
    with pytest.raises(OSError):
        store.put_stream(FailingReader(OSError("disk full")))
    assert keys_under(store) == blob_layout(digest) and store.verify(digest)


class ChangesOnSecondRead(io.BytesIO):
    """A file that is rewritten between podstack hashing it and sending it (a training job still writing)."""

    def seek(self, offset, whence=0):
        result = super().seek(offset, whence)
        if offset == 0 and whence == 0 and self.getbuffer()[0] != 0xFF:
            self.getbuffer()[0] = 0xFF
        return result


def test_content_that_changes_while_uploading_is_not_stored_under_either_digest(store):
    data = bytearray(os.urandom(12 * MiB))
    data[0] = 0
    stream = ChangesOnSecondRead(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="changed while it was being stored"):
        store.put_stream(stream)
    assert keys_under(store) == [] and unfinished_uploads(store) == []


def test_a_stream_that_cannot_be_reread_goes_through_an_incoming_key(store, tmp_path):
    payload = os.urandom(13 * MiB)
    (tmp_path / "p.bin").write_bytes(payload)
    reader = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdout.buffer.write(open(sys.argv[1], 'rb')"
                               ".read())", str(tmp_path / "p.bin")], stdout=subprocess.PIPE)
    with reader.stdout as pipe:  # a pipe: not seekable
        assert not pipe.seekable()
        digest, size = store.put_stream(pipe)
    assert reader.wait(60) == 0
    assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))
    assert keys_under(store) == blob_layout(digest) and unfinished_uploads(store) == []
    assert store.calls.count("CopyObject") == 1 and store.verify(digest)


def test_a_large_stream_is_published_by_a_copy_in_parts(store):
    store.copy_part_limit = 6 * MiB  # above it CopyObject cannot copy (5 GiB on AWS): UploadPartCopy
    store.copy_part_size = 5 * MiB
    payload = os.urandom(13 * MiB)
    digest, size = store.put_stream(_Pipe(payload))
    assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))
    assert store.calls.count("UploadPartCopy") == 3 and store.calls.count("CopyObject") == 0
    assert keys_under(store) == blob_layout(digest) and unfinished_uploads(store) == [] and store.verify(digest)


class _Pipe(io.RawIOBase):
    """Bytes that can be read once, in whatever pieces, like a socket (not seekable)."""

    def __init__(self, data):
        self.data = memoryview(data)

    def readable(self):
        return True

    def read(self, n=-1):
        n = min(n if n is not None and n >= 0 else len(self.data), 300_000)
        piece, self.data = bytes(self.data[:n]), self.data[n:]
        return piece


def test_corrupt_blob_is_refused_and_nothing_is_written(store, tmp_path):
    digest, _ = store.put_bytes(b"model weights")
    store._s3().put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=b"tampered weights")
    assert not store.verify(digest)
    with pytest.raises(ArtifactIntegrityError, match="corrupt"):
        store.get_file(digest, tmp_path / "out" / "w.bin")
    assert files_under(tmp_path / "out") == []
    dest = tmp_path / "w.bin"
    dest.write_bytes(b"previous good copy")
    with pytest.raises(ArtifactIntegrityError):
        store.get_file(digest, dest)
    assert dest.read_bytes() == b"previous good copy" and files_under(tmp_path) == ["w.bin"]


def test_missing_and_malformed_input(store, tmp_path):
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
    store.delete("0" * 64)  # absent: nothing happens
    assert keys_under(store) == []


def test_delete_removes_the_blob(store):
    digest, _ = store.put_bytes(b"old weights")
    store.delete(digest)
    assert not store.has(digest) and keys_under(store) == []


def test_threads_storing_the_same_blob_while_a_reader_copies_it(store, tmp_path):
    payload = os.urandom(11 * MiB)
    digest = writers_and_a_reader(store, payload, tmp_path / "copies", rounds=3, reads=10, join_seconds=300)
    store.put_bytes(payload)
    assert keys_under(store) == blob_layout(digest) and store.verify(digest) and unfinished_uploads(store) == []


def test_memory_stays_bounded_for_a_large_file(store, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        for _ in range(96):
            f.write(os.urandom(MiB))
    store.max_concurrency = 2
    tracemalloc.start()
    try:
        digest, size = store.put_file(big, progress=False)
        _, put_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        store.get_file(digest, tmp_path / "copy.bin", progress=False)
        _, get_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert size == 96 * MiB and store.calls.count("UploadPart") == 20
    assert store.calls.count("GetObject") == 96 // 5 + 1  # read in 5 MB ranges, two at a time
    # a few parts of 5 MB in flight or in hand (and botocore's copies of them), never the whole file
    assert put_peak < 48 * MiB, put_peak
    assert get_peak < 48 * MiB, get_peak
    assert (tmp_path / "copy.bin").read_bytes() == big.read_bytes()


def test_a_blob_replaced_during_a_ranged_download_is_not_mixed_in(store, s3, tmp_path):
    digest, _ = store.put_bytes(os.urandom(12 * MiB))  # read in three ranges
    writer, replaced = s3.client(), []

    def replace_before_the_second_range(params, **_):
        if "Range" in params and not replaced:  # another process rewrites the object meanwhile
            replaced.append(writer.put_object(Bucket=store.bucket, Key=store.key_of(digest), Body=os.urandom(MiB)))

    store._s3().meta.events.register("before-parameter-build.s3.GetObject", replace_before_the_second_range)
    with pytest.raises(PodstackError, match="PreconditionFailed"):
        store.get_file(digest, tmp_path / "out.bin")
    assert replaced and files_under(tmp_path) == []


def test_progress_bar_only_for_large_transfers(store, tmp_path, capfd):
    store.multipart_threshold = store.part_size = 16 * MiB
    small = tmp_path / "small.bin"
    small.write_bytes(b"s" * 1000)
    store.put_file(small)
    assert "storing artifact" not in capfd.readouterr().err
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:
        f.truncate(PROGRESS_BYTES)  # sparse: cheap to create, 50 MB to send
    digest, size = store.put_file(big)
    assert size == PROGRESS_BYTES and "storing artifact" in capfd.readouterr().err
    store.get_file(digest, tmp_path / "big-copy.bin")
    assert "fetching big-copy.bin" in capfd.readouterr().err
    store.get_file(digest, tmp_path / "quiet.bin", progress=False)
    assert capfd.readouterr().err == ""


# -- an upload cut off by a killed process -----------------------------------------------------------

_UPLOAD_THEN_STALL = r"""
import io, os, sys, time
from podstack_jupyter.artifacts import S3ArtifactStore

class StallsHalfway(io.FileIO):
    # sends the first parts, then hangs (a network stall), so the test can kill it mid-upload
    sent = 0
    second_pass = False
    def seek(self, *args):
        StallsHalfway.second_pass = True
        return super().seek(*args)
    def read(self, n=-1):
        if self.second_pass and self.sent >= 10 * 2**20:
            print("halfway", flush=True)
            time.sleep(600)
        data = super().read(n)
        if self.second_pass:
            StallsHalfway.sent += len(data)
        return data

store = S3ArtifactStore(sys.argv[1])
store.multipart_threshold = store.part_size = 5 * 2**20
with StallsHalfway(sys.argv[2]) as f:
    store.put_stream(f) if sys.argv[3] == "file" else store.put_stream(sys.stdin.buffer)
"""


@pytest.mark.parametrize("source", ["file", "pipe"])
def test_an_upload_killed_halfway_leaves_no_blob(store, tmp_path, source):
    payload = os.urandom(24 * MiB)
    (tmp_path / "payload.bin").write_bytes(payload)
    digest = hashlib.sha256(payload).hexdigest()
    with subprocess.Popen([sys.executable, "-c", _UPLOAD_THEN_STALL, store.url, str(tmp_path / "payload.bin"),
                           source], stdin=subprocess.PIPE, stdout=subprocess.PIPE) as worker:
        try:
            if source == "pipe":
                worker.stdin.write(payload[:12 * MiB])  # and no more: the uploader waits for the rest
                worker.stdin.flush()
            else:
                assert worker.stdout.readline() == b"halfway\n"
            deadline = time.monotonic() + 120
            while True:  # until the server holds parts of the upload
                uploads = store._s3().list_multipart_uploads(Bucket=store.bucket, Prefix=store.prefix + "/")
                parts = [store._s3().list_parts(Bucket=store.bucket, Key=u["Key"], UploadId=u["UploadId"])
                         .get("Parts") for u in uploads.get("Uploads") or ()]
                if parts and parts[0]:
                    break
                assert time.monotonic() < deadline and worker.poll() is None
                time.sleep(0.05)
        finally:
            worker.send_signal(signal.SIGKILL)
            worker.wait(30)
    assert keys_under(store) == []  # no blob, no incoming object: only an unfinished upload
    assert not store.has(digest)
    expected_area = "blobs/" if source == "file" else "incoming/"
    assert [key.startswith(expected_area) for key in unfinished_uploads(store)] == [True]
    assert store.sweep() == 0  # a day has not passed: it may be a live upload
    assert store.sweep(older_than=0) == 1 and unfinished_uploads(store) == []
    assert store.put_bytes(payload) == (digest, len(payload)) and keys_under(store) == blob_layout(digest)


def test_sweep_leaves_a_long_upload_that_is_still_sending(store):
    client, key = store._s3(), store.key_of("a" * 64)
    upload = client.create_multipart_upload(Bucket=store.bucket, Key=key)
    time.sleep(2.5)
    cutoff = time.time()
    time.sleep(1.1)
    client.upload_part(Bucket=store.bucket, Key=key, UploadId=upload["UploadId"], PartNumber=1, Body=b"x" * 100)
    assert store.sweep(older_than=time.time() - cutoff) == 0  # begun before the cutoff, but still sending
    assert unfinished_uploads(store) == blob_layout("a" * 64)
    assert store.sweep(older_than=-60) == 1 and unfinished_uploads(store) == []


# -- signed URLs -------------------------------------------------------------------------------------

def test_presigned_get_downloads_without_credentials(store):
    digest, _ = store.put_bytes(b"model bytes")
    url = store.presigned_get(digest, expires=60, filename="model v1 \u00e9.pt")
    response = httpx.get(url)
    assert response.status_code == 200 and response.content == b"model bytes"
    assert response.headers["content-disposition"] == (
        "attachment; filename=\"model v1 _.pt\"; filename*=UTF-8''model%20v1%20%C3%A9.pt")
    assert "Authorization" not in response.request.headers
    with pytest.raises(ArtifactNotFoundError):
        store.presigned_get("1" * 64)
    with pytest.raises(InvalidArgumentError, match="expires"):
        store.presigned_get(digest, expires=8 * 24 * 3600)


def test_an_expired_get_url_is_refused(store):
    digest, _ = store.put_bytes(b"secret weights")
    signed_at = time.time()
    url = store.presigned_get(digest, expires=3)
    first = httpx.get(url)
    if time.time() - signed_at < 2:  # (on a very busy machine the first try may itself come late)
        assert first.status_code == 200
    time.sleep(max(0.0, signed_at + 4.5 - time.time()))
    response = httpx.get(url)
    assert response.status_code == 403 and "expired" in response.text


def test_an_altered_get_url_is_refused(store):
    mine, _ = store.put_bytes(b"my weights")
    other, _ = store.put_bytes(b"another project's weights")
    url = store.presigned_get(mine, expires=600)
    assert httpx.get(url).status_code == 200
    other_key = url.replace(mine[2:], other[2:]).replace(f"/{mine[:2]}/", f"/{other[:2]}/")
    assert other_key != url and httpx.get(other_key).status_code == 403
    signature = url.rsplit("X-Amz-Signature=", 1)[1][:64]
    forged = url.replace(signature, signature[:-1] + ("0" if signature[-1] != "0" else "1"))
    assert httpx.get(forged).status_code == 403
    assert httpx.get(url.replace("X-Amz-Expires=600", "X-Amz-Expires=6000")).status_code == 403
    assert httpx.get(url.split("?")[0]).status_code == 403  # no signature at all


@pytest.mark.parametrize("size", [2 * MiB, 12 * MiB], ids=["one-read", "ranged-reads"])
def test_presigned_put_then_finalize_makes_a_verified_blob(store, tmp_path, size):
    payload = os.urandom(size)
    upload = store.presigned_put(expires=120)
    assert upload.key.startswith(store.prefix + "/incoming/") and upload.headers == {} and upload.method == "PUT"
    assert upload.expires_at > time.time() + 100
    with pytest.raises(ArtifactNotFoundError, match="nothing was uploaded"):
        store.finalize(upload.key)  # not uploaded yet
    response = httpx.put(upload.url, content=payload)  # what the official SDK does: raw bytes, no auth
    assert response.status_code == 200
    assert keys_under(store, "blobs/") == []  # not a blob until finalized
    digest, size = store.finalize(upload.key)
    assert (digest, size) == (hashlib.sha256(payload).hexdigest(), len(payload))
    assert keys_under(store) == blob_layout(digest)
    assert store.get_file(digest, tmp_path / "got.bin").read_bytes() == payload
    again = store.presigned_put()  # the same content again: stored once
    assert httpx.put(again.url, content=payload).status_code == 200
    assert store.finalize(again.key, expected=digest) == (digest, size)
    assert keys_under(store) == blob_layout(digest)


def test_finalize_refuses_content_other_than_announced(store):
    upload = store.presigned_put()
    assert httpx.put(upload.url, content=b"not what was promised").status_code == 200
    with pytest.raises(ArtifactIntegrityError, match="not to the expected"):
        store.finalize(upload.key, expected=hashlib.sha256(b"the promised bytes").hexdigest())
    assert keys_under(store) == []


def test_finalize_hashes_the_content_it_copies_even_if_it_is_uploaded_again_meanwhile(store):
    upload = store.presigned_put()
    assert httpx.put(upload.url, content=b"first upload").status_code == 200
    real_publish = store._publish
    rounds = []

    def publish_after_a_second_upload(source_key, digest, size, etag):
        if not rounds:  # the client PUTs again between finalize's hashing and its copy
            assert httpx.put(upload.url, content=b"second upload, other bytes").status_code == 200
        rounds.append(digest)
        return real_publish(source_key, digest, size, etag)

    store._publish = publish_after_a_second_upload
    digest, size = store.finalize(upload.key)
    second = hashlib.sha256(b"second upload, other bytes").hexdigest()
    assert rounds == [hashlib.sha256(b"first upload").hexdigest(), second]
    assert (digest, size) == (second, 26) and keys_under(store) == blob_layout(second) and store.verify(second)


def test_a_put_url_signed_for_a_size_refuses_other_sizes(store):
    upload = store.presigned_put(size=5)
    assert upload.headers == {"Content-Length": "5"}
    assert httpx.put(upload.url, content=b"123456").status_code == 403
    assert httpx.put(upload.url, content=b"12345").status_code == 200
    assert store.finalize(upload.key)[1] == 5


def test_put_urls_expire_and_cannot_be_redirected(store):
    upload = store.presigned_put(expires=1)
    time.sleep(2.2)
    response = httpx.put(upload.url, content=b"late")
    assert response.status_code == 403 and "expired" in response.text
    fresh = store.presigned_put(expires=60)
    target = store.key_of(hashlib.sha256(b"forged").hexdigest())  # write a blob directly, skipping finalize
    forged = fresh.url.replace(fresh.key, target)
    assert httpx.put(forged, content=b"forged").status_code == 403
    assert keys_under(store) == []
    for bad in (store.key_of("0" * 64), fresh.key + "/../x", "../incoming/" + "a" * 32, None):
        with pytest.raises(InvalidArgumentError, match="not an upload key"):
            store.finalize(bad)
    store.discard(fresh.key)  # never uploaded: nothing happens


def test_sweep_removes_stale_incoming_objects(store):
    upload = store.presigned_put()
    assert httpx.put(upload.url, content=b"abandoned").status_code == 200
    assert store.sweep() == 0 and keys_under(store, "incoming/") != []
    assert store.sweep(older_than=-60) == 1 and keys_under(store) == []


# -- settings and configuration errors ----------------------------------------------------------------

def test_open_store_takes_s3_urls_from_the_settings(s3, monkeypatch, tmp_path):
    from podstack_jupyter import config

    root = s3.new_root()
    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", root + "/")
    config.reset()
    store = open_store()
    assert isinstance(store, S3ArtifactStore) and store.url == root and open_store() is store
    digest, _ = store.put_bytes(b"through the settings")
    assert store.endpoint == s3.endpoint and store.verify(digest)
    assert not (tmp_path / "podstack-home" / "artifacts").exists()


def test_an_artifact_root_url_no_store_serves_is_refused(monkeypatch):
    from podstack_jupyter import config

    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", "gs://bucket/prefix")
    config.reset()
    with pytest.raises(ConfigurationError, match="no store serves this URL"):
        open_store()


def _message_of(call):
    with pytest.raises(ConfigurationError) as caught:
        call()
    error = caught.value
    # the user sees podstack's sentence, not a botocore traceback behind it
    assert error.__cause__ is None and (error.__context__ is None or error.__suppress_context__)
    return error.message


def test_a_missing_bucket_is_named(s3):
    store = S3ArtifactStore("s3://no-such-bucket-here/x")
    message = _message_of(lambda: store.put_bytes(b"x"))
    assert "bucket 'no-such-bucket-here' does not exist" in message and "PODSTACK_ARTIFACT_ROOT" in message


@pytest.mark.parametrize("variable, expected", [
    ("AWS_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY does not match AWS_ACCESS_KEY_ID"),
    ("AWS_ACCESS_KEY_ID", "does not know the access key id in use: check AWS_ACCESS_KEY_ID"),
])
def test_wrong_credentials_are_named(s3, monkeypatch, variable, expected):
    monkeypatch.setenv(variable, "not-the-right-one")
    message = _message_of(lambda: S3ArtifactStore(s3.new_root()).has("0" * 64))
    assert expected in message and s3.endpoint in message


def test_missing_credentials_are_named(s3, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    message = _message_of(lambda: S3ArtifactStore(s3.new_root()).put_bytes(b"x"))
    assert "no usable S3 credentials" in message and "AWS_ACCESS_KEY_ID" in message


def test_an_unreachable_endpoint_is_named(s3, monkeypatch):
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]  # nothing listens here once the socket is closed
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://127.0.0.1:{closed}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    started = time.monotonic()
    message = _message_of(lambda: S3ArtifactStore(s3.new_root()).put_bytes(b"x"))
    assert f"cannot reach the S3 endpoint http://127.0.0.1:{closed}" in message and "AWS_ENDPOINT_URL" in message
    assert time.monotonic() - started < 30


@pytest.mark.parametrize("url, fragment", [
    ("s3://", "not a valid bucket name"),
    ("s3://Bad_Bucket/x", "not a valid bucket name"),
    ("s3://bucket/a//b", "empty, '.' or '..' part"),
    ("s3://bucket/../b", "empty, '.' or '..' part"),
])
def test_malformed_urls_are_refused(url, fragment):
    with pytest.raises(ConfigurationError, match=fragment.replace(".", r"\.").replace("(", r"\(")):
        S3ArtifactStore(url)


def test_a_malformed_endpoint_is_named(s3, monkeypatch):
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "localhost:9000")
    message = _message_of(lambda: S3ArtifactStore(s3.new_root()).has("0" * 64))
    assert "AWS_ENDPOINT_URL_S3='localhost:9000' is not a URL" in message


def test_without_boto3_the_fix_is_named(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)
    message = _message_of(lambda: S3ArtifactStore("s3://bucket/x").has("0" * 64))
    assert "pip install 'podstack-jupyter[s3]'" in message
