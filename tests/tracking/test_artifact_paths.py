"""Downloads never write outside their destination, whatever the store's rows say (checked when
reading, not only when logging), and links in a logged folder are never followed out of it.
SQLite and PostgreSQL; the rows are written straight into the store, as anyone with access to
the database could."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from podstack_jupyter import registry
from podstack_jupyter.errors import ArtifactIntegrityError, InvalidArgumentError, ModelNotFoundError


def run_with_rows(tmp_path, paths, content=b"payload"):
    """A run whose artifact rows are ``paths`` (all pointing at one real blob), as a tampered store holds them."""
    with registry.start_run("tampered") as run:
        pass
    source = tmp_path / "blob-source"
    source.write_bytes(content)
    digest, size = registry.client().artifacts.put_file(source)
    registry.client().store.log_artifacts(run.id, [{"path": p, "digest": digest, "size": size, "created_at": time.time()}
                                                   for p in paths])
    return run


def everything_under(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize("row, asked", [
    ("model/../../../../x", "model"),
    ("model/../../../../x", ""),
    ("model/../../escape.txt", "model"),
    ("/abs/escape.txt", ""),
    ("model//double", "model"),
    ("model/./dot", "model"),
])
def test_rows_that_leave_the_run_are_refused_at_download(tmp_path, row, asked):
    run = run_with_rows(tmp_path, ["model/ok.bin", row])
    destination = tmp_path / "deep" / "down" / "here"
    destination.mkdir(parents=True)
    with pytest.raises(ArtifactIntegrityError, match="not a path inside the run; refusing to download it"):
        registry.download_artifact(run.id, asked, destination)
    assert everything_under(tmp_path / "deep") == ["down", "down/here"]  # nothing written, not even ok.bin
    assert not (tmp_path / "x").exists() and not (tmp_path / "escape.txt").exists()


def test_a_link_in_the_destination_is_not_followed_out_of_it(tmp_path):
    run = run_with_rows(tmp_path, ["data/inner/f.txt", "data/g.txt"])
    outside = tmp_path / "outside"
    outside.mkdir()
    destination = tmp_path / "dest"
    (destination / "data").mkdir(parents=True)
    os.symlink(outside, destination / "data" / "inner")
    with pytest.raises(ArtifactIntegrityError, match="outside .* \\(through a link there\\); nothing was written"):
        registry.download_artifact(run.id, "", destination)
    assert list(outside.iterdir()) == []
    # a link standing where the file goes is replaced, never written through
    os.unlink(destination / "data" / "inner")
    target_elsewhere = tmp_path / "victim.txt"
    target_elsewhere.write_text("keep me")
    os.symlink(target_elsewhere, destination / "data" / "g.txt")
    registry.download_artifact(run.id, "data/g.txt", destination / "data")
    assert target_elsewhere.read_text() == "keep me"
    assert not os.path.islink(destination / "data" / "g.txt")
    assert (destination / "data" / "g.txt").read_bytes() == b"payload"


def test_load_model_refuses_rows_that_leave_the_model_folder(tmp_path, podstack_home):
    with registry.start_run("train") as run:
        registry.log_model({"w": 1}, artifact_path="model", framework="pickle")
    registry.register_model("clf", run_id=run.id)
    digest = registry.client().store.list_artifacts(run.id)[0]["digest"]
    registry.client().store.log_artifacts(run.id, [{"path": "model/../../../../../../x.pkl", "digest": digest,
                                                    "size": 1, "created_at": time.time()}])
    with pytest.raises(ArtifactIntegrityError, match="not a path inside the run"):
        registry.load_model("clf")
    assert not any(p.name == "x.pkl" for p in tmp_path.rglob("*"))


def test_load_model_refuses_a_model_id_that_is_not_a_folder_name(tmp_path, podstack_home):
    with registry.start_run("train") as run:
        registry.log_model({"w": 1}, artifact_path="model", framework="pickle")
    store = registry.client().store
    store.ensure_registered_model("../../../escape", "evil", time.time())
    store.create_model_version({"id": "0" * 8, "model_id": "../../../escape", "run_id": run.id, "stage": "development",
                                "source": "model", "framework": "pickle", "description": None,
                                "created_at": time.time()})
    with pytest.raises(ModelNotFoundError, match="refusing to use it as a folder name"):
        registry.load_model("evil")
    assert not (podstack_home.parent / "escape").exists() and not (podstack_home / "escape").exists()


# -- links in a logged folder -------------------------------------------------------------------
@pytest.fixture
def secret(tmp_path):
    path = tmp_path / "elsewhere" / "secret.txt"
    path.parent.mkdir()
    path.write_text("the private key of someone")
    return path


def blob_stored(path) -> bool:
    return registry.client().artifacts.has(hashlib.sha256(path.read_bytes()).hexdigest())


@pytest.mark.parametrize("make_link", [
    lambda folder, secret: os.symlink(secret, folder / "leak.txt"),
    lambda folder, secret: os.symlink(os.path.relpath(secret, folder), folder / "leak.txt"),
    lambda folder, secret: os.symlink(secret.parent, folder / "leak.txt"),
    lambda folder, secret: os.symlink(folder / "missing.txt", folder / "leak.txt"),
    lambda folder, secret: os.symlink(folder / "sub", folder / "leak.txt"),
], ids=["absolute", "relative", "folder-outside", "dangling", "folder-inside"])
def test_links_out_of_a_logged_folder_are_refused_and_upload_nothing(tmp_path, secret, make_link):
    folder = tmp_path / "results"
    (folder / "sub").mkdir(parents=True)
    (folder / "metrics.csv").write_text("a,b\n")
    make_link(folder, secret)
    with registry.start_run("r") as run:
        with pytest.raises(InvalidArgumentError, match="leak.txt"):
            registry.log_artifact(folder)
    assert registry.list_artifacts(run.id) == []
    assert not blob_stored(secret)


def test_a_link_to_a_file_inside_the_folder_is_stored_as_that_file(tmp_path):
    folder = tmp_path / "results"
    folder.mkdir()
    (folder / "real.txt").write_text("inside")
    os.symlink("real.txt", folder / "alias.txt")
    with registry.start_run("r") as run:
        registry.log_artifact(folder)
    listed = {a["path"]: a["etag"] for a in registry.list_artifacts(run.id)}
    assert set(listed) == {"results/alias.txt", "results/real.txt"}
    assert listed["results/alias.txt"] == listed["results/real.txt"]
    downloaded = registry.download_artifact(run.id, "results", tmp_path / "back")
    assert not os.path.islink(os.path.join(downloaded, "alias.txt"))
    assert Path(downloaded, "alias.txt").read_text() == "inside"
