"""The artifact repository is chosen by the artifact root's URL, through a registry of schemes."""

from __future__ import annotations

import pytest

from podstack_jupyter import artifacts, config
from podstack_jupyter.artifacts import LocalArtifactStore, open_repository, open_store, register_repository
from podstack_jupyter.errors import ConfigurationError


def test_a_folder_or_a_file_url_is_a_local_repository(tmp_path):
    by_path = open_repository(tmp_path / "a")
    by_url = open_repository(f"file://{tmp_path / 'b'}")
    assert isinstance(by_path, LocalArtifactStore) and by_path.root == tmp_path / "a"
    assert isinstance(by_url, LocalArtifactStore) and by_url.root == tmp_path / "b"
    digest, _ = by_url.put_bytes(b"hello")
    assert (tmp_path / "b" / "blobs" / digest[:2] / digest[2:]).read_bytes() == b"hello"
    with pytest.raises(ConfigurationError, match="not a host"):
        open_repository("file://server/share")


def test_an_unserved_scheme_is_refused_and_a_registered_one_is_used(tmp_path, monkeypatch):
    assert isinstance(open_repository("s3://bucket/prefix"), artifacts.S3ArtifactStore)  # S3's entry
    with pytest.raises(ConfigurationError, match="no store serves this URL .none for gs:// here"):
        open_repository("gs://bucket/prefix")
    opened = []

    class BucketStore(LocalArtifactStore):  # a real store standing in for another cloud: one registry entry
        def __init__(self, url):
            opened.append(url)
            super().__init__(tmp_path / "bucket")

    monkeypatch.setitem(artifacts._REPOSITORIES, "gs", BucketStore)
    monkeypatch.setattr(artifacts, "_stores", {})
    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", "gs://bucket/prefix")
    config.reset()
    store = open_store()
    assert isinstance(store, BucketStore) and opened == ["gs://bucket/prefix"] and open_store() is store
    assert "artifacts: gs://bucket/prefix" in config.describe()
    with pytest.raises(ValueError, match="scheme must be a word"):
        register_repository("gs+x", BucketStore)
