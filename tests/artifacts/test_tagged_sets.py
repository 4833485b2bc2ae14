"""Tagged artifact sets (seed 001): ``podstack.artifacts.upload`` / ``download`` in a notebook's
working folder, on SQLite and the PostgreSQL server of the tracking suite."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from podstack import artifacts, registry
from podstack_jupyter import events
from podstack_jupyter.errors import (ArtifactIntegrityError, ArtifactsDownloadError, ArtifactsUploadError,
                                     DuplicateError, InvalidArgumentError, PodstackError)

_spec = importlib.util.spec_from_file_location("_tracking_fixtures_tagged",
                                               Path(__file__).parents[1] / "tracking" / "conftest.py")
_fixtures = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_fixtures)
store_url = _fixtures.store_url  # every test here: both databases (postgres_server: tests/conftest.py)


@pytest.fixture(autouse=True)
def workdir(tmp_path, monkeypatch):
    """A notebook's working folder with a dataset in it; relative paths start here."""
    folder = tmp_path / "work"
    (folder / "datasets" / "dataset1" / "images").mkdir(parents=True)
    (folder / "datasets" / "dataset1" / "train.csv").write_text("x,y\n1,2\n")
    (folder / "datasets" / "dataset1" / "images" / "a.png").write_bytes(b"\x89PNG a")
    monkeypatch.chdir(folder)
    return folder


def _tree(folder) -> dict:
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_upload_goes_to_the_active_run_under_the_same_path(workdir):
    with pytest.raises(ArtifactsUploadError, match="no active run") as refused:
        artifacts.upload("datasets/dataset1")
    assert isinstance(refused.value.cause, InvalidArgumentError) and isinstance(refused.value, PodstackError)
    with registry.start_run("prepare") as run:
        done = artifacts.upload(local_path="datasets/dataset1")
        assert done == {"run_id": run.id, "tag": None,
                        "files": ["datasets/dataset1/images/a.png", "datasets/dataset1/train.csv"]}
        artifacts.upload("datasets/dataset1/train.csv", artifact_path="copies/")
        (workdir / "datasets" / "dataset1" / "train.csv").write_text("x,y\n3,4\n")
        artifacts.upload("datasets/dataset1/train.csv")  # the same path again: replaced
        artifacts.upload(str(workdir / "datasets" / "dataset1" / "images"))  # absolute: its path without '/'
        with pytest.raises(ArtifactsUploadError, match="leads out of the current folder"):
            artifacts.upload("../work/datasets")
        with pytest.raises(ArtifactsUploadError, match="does not exist"):
            artifacts.upload("datasets/nope")
    paths = [a["path"] for a in registry.list_artifacts(run.id)]
    absolute = str(workdir / "datasets" / "dataset1" / "images" / "a.png").lstrip("/")
    assert paths == sorted(["copies/train.csv", "datasets/dataset1/images/a.png", "datasets/dataset1/train.csv",
                            absolute])
    artifacts.download(run=run.id, artifact_path="datasets/dataset1/train.csv", local_path="got.csv")
    assert (workdir / "got.csv").read_text() == "x,y\n3,4\n"


def test_a_tag_names_one_complete_upload_and_is_never_moved(workdir):
    registry.set_experiment("data")
    done = artifacts.upload(local_path="datasets/dataset1", artifact_path="data", tag="my_tag")
    run = registry.get_run(done["run_id"])
    assert (run.name, run.status, run.tags["podstack.artifacts.tag"]) == ("my_tag", "completed", "my_tag")
    assert registry.get_experiment(run.experiment_id).name == "data"
    assert done["files"] == ["data/images/a.png", "data/train.csv"]
    assert [t["name"] for t in artifacts.list_tags()] == ["my_tag"]
    with pytest.raises(ArtifactsUploadError, match="tag 'my_tag' already exists") as taken:
        artifacts.upload("datasets/dataset1", tag="my_tag")
    assert "delete_tag('my_tag')" in taken.value.message
    assert len(registry.search_runs()) == 1  # refused before a run was made
    with registry.start_run("train") as active:
        other = artifacts.upload("datasets/dataset1/train.csv", tag="just-the-csv")
    assert registry.get_run(other["run_id"]).tags["podstack.artifacts.uploaded_from"] == active.id
    assert registry.list_artifacts(active.id) == []  # a tagged upload does not touch the active run
    assert artifacts.delete_tag("my_tag") is True and artifacts.delete_tag("my_tag") is False
    assert registry.list_artifacts(done["run_id"])  # the run and its files stay
    artifacts.upload("datasets/dataset1", tag="my_tag")  # the name is free again


def test_a_tag_taken_meanwhile_binds_nothing_and_the_run_says_it_failed(workdir):
    from podstack_jupyter.tracking import registry as tracking

    other = registry.start_run("someone else's upload")
    registry.end_run()

    def another_uploader(event):  # another process binds the tag while this upload is under way
        if event.data["run"]["name"] == "contested":
            tracking.client().store.create_artifact_tag("contested", other.id, 0.0)

    with events.subscribe("run.started", another_uploader):
        with pytest.raises(ArtifactsUploadError, match="the tag was not bound") as lost:
            artifacts.upload("datasets/dataset1", tag="contested")
    assert isinstance(lost.value.cause, DuplicateError)
    mine = [r for r in registry.search_runs() if r.name == "contested"]
    assert [r.status for r in mine] == ["failed"]
    assert artifacts.list_tags()[0]["run_id"] == other.id


def test_download_by_run_id_run_name_or_tag_to_where_the_seed_says(workdir, tmp_path, monkeypatch):
    with registry.start_run("sharp-shrimp-1") as run:
        artifacts.upload("datasets/dataset1", artifact_path="output/my_model")
    artifacts.upload("datasets/dataset1", tag="my_tag", artifact_path="output/my_model")
    expected = _tree(workdir / "datasets" / "dataset1")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    # every file of a run, by name, into "." at their artifact paths
    assert artifacts.download(run="sharp-shrimp-1") == str(tmp_path / "elsewhere")
    assert _tree(tmp_path / "elsewhere" / "output" / "my_model") == expected
    # a folder of a tag into local_path
    written = artifacts.download(tag="my_tag", artifact_path="output/my_model", local_path="./my_model")
    assert written == str(tmp_path / "elsewhere" / "my_model") and _tree(written) == expected
    # artifact_path without local_path: the same path under the current folder
    (tmp_path / "third").mkdir()
    monkeypatch.chdir(tmp_path / "third")
    artifacts.download(run=run.id, artifact_path="output/my_model/images")
    assert _tree(tmp_path / "third" / "output" / "my_model" / "images") == {"a.png": b"\x89PNG a"}
    # a file: to local_path, or into it when it is a folder or ends with '/'
    artifacts.download(tag="my_tag", artifact_path="output/my_model/train.csv", local_path="renamed.csv")
    artifacts.download(tag="my_tag", artifact_path="output/my_model/train.csv", local_path="into/")
    (tmp_path / "third" / "folder").mkdir()
    artifacts.download(tag="my_tag", artifact_path="output/my_model/train.csv", local_path="folder")
    for path in ("renamed.csv", "into/train.csv", "folder/train.csv"):
        assert (tmp_path / "third" / path).read_text() == "x,y\n1,2\n"


def test_download_overwrites_files_keeps_others_and_refuses_what_is_in_the_way(workdir, tmp_path):
    with registry.start_run("r") as run:
        artifacts.upload("datasets/dataset1", artifact_path="set")
    target = tmp_path / "target"
    (target / "images").mkdir(parents=True)
    (target / "train.csv").write_text("stale")
    (target / "notes.txt").write_text("mine")
    artifacts.download(run=run.id, artifact_path="set", local_path=target)
    assert (target / "train.csv").read_text() == "x,y\n1,2\n" and (target / "notes.txt").read_text() == "mine"
    (tmp_path / "a-file").write_text("keep me")
    with pytest.raises(ArtifactsDownloadError, match="is a file"):
        artifacts.download(run=run.id, artifact_path="set", local_path=tmp_path / "a-file")
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    (blocked / "images").write_text("a file where a folder goes")
    with pytest.raises(ArtifactsDownloadError, match="is in the way"):
        artifacts.download(run=run.id, artifact_path="set", local_path=blocked)
    assert sorted(p.name for p in blocked.iterdir()) == ["images"]  # nothing was written
    assert (tmp_path / "a-file").read_text() == "keep me"


def test_what_download_cannot_do_is_an_artifacts_download_error(workdir, tmp_path):
    with pytest.raises(ArtifactsDownloadError, match="give run= .* or tag="):
        artifacts.download()
    with pytest.raises(ArtifactsDownloadError, match="no tag 'ghost'"):
        artifacts.download(tag="ghost")
    with pytest.raises(ArtifactsDownloadError, match="no run with the id or name 'ghost'"):
        artifacts.download(run="ghost")
    for name in ("twin", "twin"):
        with registry.start_run(name):
            artifacts.upload("datasets/dataset1")
    with pytest.raises(ArtifactsDownloadError, match="2 runs are named 'twin'"):
        artifacts.download(run="twin")
    tagged = artifacts.upload("datasets/dataset1", tag="t")
    other = registry.search_runs(filter="attributes.name = 'twin'")[0]
    with pytest.raises(ArtifactsDownloadError, match="tag 't' names run"):
        artifacts.download(run=other.id, tag="t")
    assert artifacts.download(run=tagged["run_id"], tag="t", local_path=tmp_path / "both")
    with pytest.raises(ArtifactsDownloadError, match="no artifact 'nothing'"):
        artifacts.download(tag="t", artifact_path="nothing")
    # a corrupted blob: refused, and the file already in place is untouched
    from podstack_jupyter.artifacts import open_store

    store = open_store()
    entry = next(e for e in registry.client().store.list_artifacts(tagged["run_id"])
                 if e["path"].endswith("train.csv"))
    blob = store.path_of(entry["digest"])
    blob.chmod(0o644)
    blob.write_text("x,y\n6,6\n")
    (tmp_path / "keep").mkdir()
    (tmp_path / "keep" / "train.csv").write_text("what was here")
    with pytest.raises(ArtifactsDownloadError, match="corrupt") as corrupt:
        artifacts.download(tag="t", artifact_path="datasets/dataset1/train.csv", local_path=tmp_path / "keep")
    assert isinstance(corrupt.value.cause, ArtifactIntegrityError)
    assert (tmp_path / "keep" / "train.csv").read_text() == "what was here"
