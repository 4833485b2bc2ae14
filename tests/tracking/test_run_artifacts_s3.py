"""The registry's artifact and model tests again, with ``PODSTACK_ARTIFACT_ROOT=s3://...`` on a real
S3-compatible server (SeaweedFS, started once per session by the ``s3_server`` fixture).

Every test of ``test_run_artifacts.py`` is collected here a second time (the star import), and the
autouse fixture below sends its artifact files to a fresh prefix of the session's bucket. To run
another module's tests on S3 too, star-import it here the same way.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest
from test_run_artifacts import *  # noqa: F401,F403 - re-collected here, with the artifacts on S3

from podstack_jupyter import config
from podstack_jupyter.artifacts import S3ArtifactStore, open_store
from podstack_jupyter.errors import ArtifactIntegrityError
from podstack_jupyter.tracking import registry


@pytest.fixture(autouse=True)
def artifacts_on_s3(s3_server, podstack_home, monkeypatch):
    """Artifacts go to ``s3://podstack-test/<fresh prefix>``; nothing may land in the local folder."""
    for name in ("AWS_ENDPOINT_URL", "AWS_PROFILE", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    root = s3_server.new_root()
    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", root)
    config.reset()
    yield root
    assert not (podstack_home / "artifacts").exists(), "artifacts went to the local folder, not to S3"


def stored_keys(s3_server, root):
    bucket, _, prefix = root[len("s3://"):].partition("/")
    listed = s3_server.client().list_objects_v2(Bucket=bucket, Prefix=prefix + "/")
    return sorted(item["Key"][len(prefix) + 1:] for item in listed.get("Contents") or ())


def test_artifacts_land_in_the_bucket_by_digest(s3_server, artifacts_on_s3, tmp_path, monkeypatch):
    monkeypatch.setattr(S3ArtifactStore, "multipart_threshold", 5 << 20)
    monkeypatch.setattr(S3ArtifactStore, "part_size", 5 << 20)
    big = tmp_path / "checkpoint.bin"
    big.write_bytes(os.urandom(12 << 20))  # three parts
    (tmp_path / "notes.txt").write_text("epoch 3")
    with registry.start_run("s3") as run:
        registry.log_artifact(big, artifact_path="ckpt/")
        registry.log_artifact(tmp_path / "notes.txt")
        registry.log_artifact(tmp_path / "notes.txt", artifact_path="copy-of-notes.txt")  # same bytes: one blob
    digests = {hashlib.sha256(p.read_bytes()).hexdigest() for p in (big, tmp_path / "notes.txt")}
    assert stored_keys(s3_server, artifacts_on_s3) == sorted(f"blobs/{d[:2]}/{d[2:]}" for d in digests)
    assert isinstance(open_store(), S3ArtifactStore) and open_store().url == artifacts_on_s3
    out = registry.download_artifact(run.id, "ckpt/checkpoint.bin", tmp_path / "out")
    assert Path(out).read_bytes() == big.read_bytes()


def test_a_corrupted_object_is_never_handed_out(s3_server, artifacts_on_s3, tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"good weights")
    with registry.start_run("s3") as run:
        registry.log_artifact(tmp_path / "weights.bin")
    digest = hashlib.sha256(b"good weights").hexdigest()
    bucket, _, prefix = artifacts_on_s3[len("s3://"):].partition("/")
    s3_server.client().put_object(Bucket=bucket, Key=f"{prefix}/blobs/{digest[:2]}/{digest[2:]}", Body=b"bad weights!")
    with pytest.raises(ArtifactIntegrityError, match="corrupt"):
        registry.download_artifact(run.id, "weights.bin", tmp_path / "out")
    assert not (tmp_path / "out" / "weights.bin").exists()
