"""ModelManager: the registry in aipmodel's idiom (seed 004), walked through as its README does, on
both databases; sources local, S3 (a real SeaweedFS server) and Hugging Face (the real client
against a stand-in hub); the artifact store itself on S3."""

from __future__ import annotations

import json

import pytest

from podstack_jupyter.errors import ConfigurationError, DuplicateError, InvalidArgumentError, ModelNotFoundError, ModelSourceError
from podstack_jupyter.models import ModelManager


@pytest.fixture
def manager(database, tmp_path):
    with ModelManager(database, str(tmp_path / "artifacts"), web_host="http://models.example:8080/") as opened:
        yield opened


@pytest.fixture
def my_models(tmp_path):
    root = tmp_path / "my_models"
    for name, weights in (("v1", "weights one"), ("v2_finetuned", "weights two, finetuned")):
        (root / name / "tokenizer").mkdir(parents=True)
        (root / name / "weights.bin").write_text(weights)
        (root / name / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (root / "train.py").write_text("print('training')\n")
    return root


def test_the_readme_walkthrough(manager, my_models, tmp_path, capsys):
    first = manager.add_model(source_type="local", model_name="demo_model_local", version="v1.0",
                              source_path=my_models / "v1", code_path=my_models / "train.py",
                              category="Text Generation", tags=["production", "base-model"])
    second = manager.add_model(source_type="local", model_name="demo_model_local", version=None,
                               source_path=my_models / "v2_finetuned", tags=["experimental", "auto-versioned"])
    capsys.readouterr()
    info = manager.get_model_info("demo_model_local")
    printed = capsys.readouterr().out
    model_id = info["id"]
    assert info["web_link"] == f"http://models.example:8080/models/{model_id}" and info["web_link"] in printed
    assert (info["category"], info["total_versions"], info["latest_version"]) == ("Text Generation", 2, "_v2")
    assert info["tags"] == ["auto-versioned", "base-model", "experimental", "production"]  # by name
    assert [(v["version"], v["number"], v["latest"]) for v in info["versions"]] == [("v1.0", 1, False),
                                                                                   ("_v2", 2, True)]
    assert info["versions"][0]["size"] == len("weights one") + len("a\nb\n")
    assert "Text Generation" in printed and "base-model, experimental, production" in printed
    assert manager.get_model_info(first)["asked_version"] == "v1.0"  # a version's id names its model too
    assert manager.get_model_info(model_id)["name"] == "demo_model_local"

    rows = manager.list_models()
    assert rows == [{"id": model_id, "name": "demo_model_local", "category": "Text Generation",
                     "tags": info["tags"], "latest_version": "_v2", "size": len("weights two, finetuned") + 4,
                     "versions": 2}]
    assert "demo_model_local" in capsys.readouterr().out
    detailed = manager.list_models(verbose=True)
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(detailed, default=str))
    assert detailed[0]["versions"][0]["metadata"]["source_type"] == "local"

    latest = manager.get_model(model_name="demo_model_local", local_dest=tmp_path / "downloads" / "latest")
    assert (tmp_path / "downloads" / "latest" / "weights.bin").read_text() == "weights two, finetuned"
    assert (tmp_path / "downloads" / "latest" / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"
    assert latest == str(tmp_path / "downloads" / "latest")

    assert manager.set_latest_version(model_name="demo_model_local", version="v1.0") == "v1.0"
    manager.get_model("demo_model_local", tmp_path / "pinned")
    assert (tmp_path / "pinned" / "weights.bin").read_text() == "weights one"
    assert manager.get_model("demo_model_local", tmp_path / "v2", version="_v2")

    # the code kept beside the model: the upload run's artifacts
    client = manager._client
    version = client.get_model_version("demo_model_local", "v1.0")
    assert [a["path"] for a in client.tracking.list_artifacts(version.run_id)] == [
        "code/train.py", "model/tokenizer/vocab.txt", "model/weights.bin"]

    manager.delete_model(model_name="demo_model_local", version="v1.0")
    assert [v["version"] for v in manager.get_model_info("demo_model_local")["versions"]] == ["_v2"]
    assert manager.get_model_info("demo_model_local")["latest_version"] == "_v2"
    manager.add_model("local", "demo_model_hf", "v1", my_models / "v1")
    assert manager.delete_model(model_name="demo_model_hf")["model_deleted"] is True
    assert manager.delete_model("demo_model_local", "_v2")["model_deleted"] is True  # its last version
    assert manager.list_models() == []


def test_what_is_refused_says_why_and_registers_nothing(manager, my_models, tmp_path):
    for kwargs, error, message in [
        ({"model_name": "tmp_scratch"}, InvalidArgumentError, "reserved"),
        ({"model_name": "#draft"}, InvalidArgumentError, "reserved"),
        ({"version": "_v7"}, InvalidArgumentError, "reserved for automatic versions"),
        ({"category": "Poetry"}, InvalidArgumentError, "categories: Text Generation"),
        ({"source_type": "ftp"}, InvalidArgumentError, r"source_type must be one of \['local', 's3', 'hf'\]"),
        ({"source_path": tmp_path / "nowhere"}, InvalidArgumentError, "does not exist"),
        ({"code_path": tmp_path / "nowhere.py"}, InvalidArgumentError, "code_path .* does not exist"),
        ({"tags": "production"}, InvalidArgumentError, "tags must be a list"),
    ]:
        arguments = {"source_type": "local", "model_name": "m", "version": "v1", "source_path": my_models / "v1",
                     **kwargs}
        with pytest.raises(error, match=message):
            manager.add_model(**arguments)
    assert manager.list_models() == []
    manager.add_model("local", "m", "v1", my_models / "v1")
    with pytest.raises(DuplicateError, match="already has a version named 'v1'"):
        manager.add_model("local", "m", "v1", my_models / "v2_finetuned")
    with pytest.raises(ModelNotFoundError, match="no version 'v9'"):
        manager.get_model("m", tmp_path / "x", version="v9")
    with pytest.raises(ModelNotFoundError, match="no registered model 'ghost'"):
        manager.get_model_info("ghost")
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(InvalidArgumentError, match="is a file"):
        manager.get_model("m", tmp_path / "a-file")
    assert [v["version"] for v in manager.get_model_info("m")["versions"]] == ["v1"]
    # refused before anything was uploaded: one upload run, the one that registered v1
    runs = manager._client.tracking.search_runs(filter="tags.`podstack.model` = 'm'")
    assert [r["status"] for r in runs] == ["completed"]


def test_a_model_saved_by_podstack_loads_after_an_upload(manager, tmp_path):
    from podstack_jupyter.models import save_model

    save_model({"weights": [1, 2, 3]}, tmp_path / "saved", framework="pickle")
    manager.add_model("local", "pickled", "v1", tmp_path / "saved")
    client = manager._client
    assert client.get_model_version("pickled").model_format_name == "pickle"
    assert client.load_model("pickled", version="v1", cache_dir=tmp_path / "cache") == {"weights": [1, 2, 3]}


def test_hugging_face_source_is_copied_into_the_registry(manager, hub, tmp_path):
    manager.hf_endpoint = hub.url
    manager.add_model(source_type="hf", model_name="demo_model_hf", version="v1", source_path="acme/tiny-onnx",
                      category="Image Classification", tags=["imported", "audio"])
    client = manager._client
    hub.stop()  # a copy: the hub is not needed to get it back
    manager.get_model("demo_model_hf", tmp_path / "hf")
    assert sorted(p.relative_to(tmp_path / "hf").as_posix() for p in (tmp_path / "hf").rglob("*") if p.is_file()) \
        == ["README.md", "config.json", "onnx/model.onnx"]
    metadata = client.get_model_version("demo_model_hf", "v1").metadata
    assert (metadata["source_type"], metadata["source_uri"], metadata["hf_commit"]) == \
        ("hf", "acme/tiny-onnx", hub.commit("acme/tiny-onnx"))


def test_hugging_face_source_offline_comes_from_the_cache(manager, hub, monkeypatch, tmp_path):
    from huggingface_hub import constants

    with pytest.raises(ModelSourceError, match="not in the local cache|cannot get acme/second"):
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        manager.add_model("hf", "never-cached", "v1", "acme/second")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    import huggingface_hub

    huggingface_hub.snapshot_download("acme/second", endpoint=hub.url)
    hub.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    manager.add_model("hf", "cached", "v1", "acme/second")
    manager.get_model("cached", tmp_path / "c")
    assert (tmp_path / "c" / "weights.bin").read_bytes() == b"\x00" * 1000


def test_s3_sources_and_an_artifact_store_on_s3(database, s3_server, monkeypatch, tmp_path, my_models):
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    root = s3_server.new_root()
    bucket, prefix = root[5:].split("/", 1)
    client = s3_server.client()
    client.put_object(Bucket=bucket, Key=f"{prefix}/jobs/checkpoint-500/model.safetensors", Body=b"tensors" * 100)
    client.put_object(Bucket=bucket, Key=f"{prefix}/jobs/checkpoint-500/config.json", Body=b'{"step": 500}')
    with ModelManager(database, root) as manager:  # the artifact store is on S3 too
        manager.add_model("s3", "demo_model_s3", "v1", f"s3://{bucket}/{prefix}/jobs/checkpoint-500",
                          tags=["internal-training"])
        manager.add_model("s3", "demo_model_s3", None, f"{prefix}/jobs/checkpoint-500")  # a key of the store's bucket
        manager.add_model("local", "demo_model_s3", "from-disk", my_models / "v1")
        for version, folder in (("v1", "a"), ("_v2", "b")):
            manager.get_model("demo_model_s3", tmp_path / folder, version=version)
            assert (tmp_path / folder / "model.safetensors").read_bytes() == b"tensors" * 100
            assert (tmp_path / folder / "config.json").read_text() == '{"step": 500}'
        manager.get_model("demo_model_s3", tmp_path / "disk")
        assert (tmp_path / "disk" / "weights.bin").read_text() == "weights one"
        blobs = client.list_objects_v2(Bucket=bucket, Prefix=f"{prefix}/blobs/")["KeyCount"]
        assert blobs == 4  # two checkpoint files stored once for both versions, and the local model's two
        with pytest.raises(ModelSourceError, match="nothing is stored at"):
            manager.add_model("s3", "demo_model_s3", "v9", f"s3://{bucket}/{prefix}/jobs/none")
    with pytest.raises(ConfigurationError, match="bucket"):  # fail fast: checked when made
        ModelManager(database, "s3://no-such-bucket-podstack/x")
