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
    with pytest.raises(ConfigurationError, match="no artifact store serves s3:// URLs"):
        open_repository("s3://bucket/prefix")
    opened = []

    class BucketStore(LocalArtifactStore):  # a real store standing in for S3: what one registry entry does
        def __init__(self, url):
            opened.append(url)
            super().__init__(tmp_path / "bucket")

    monkeypatch.setitem(artifacts._REPOSITORIES, "s3", BucketStore)
    monkeypatch.setattr(artifacts, "_stores", {})
    monkeypatch.setenv("PODSTACK_ARTIFACT_ROOT", "s3://bucket/prefix")
    config.reset()
    store = open_store()
    assert isinstance(store, BucketStore) and opened == ["s3://bucket/prefix"] and open_store() is store
    assert "artifacts: s3://bucket/prefix" in config.describe()
    with pytest.raises(ValueError, match="scheme must be a word"):
        register_repository("s3+x", BucketStore)
