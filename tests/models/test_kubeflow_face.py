"""ModelRegistry: the registry in the Kubeflow Model Registry client's idiom (seed 002), on both
databases, with S3 uploads to a real SeaweedFS server and Hugging Face registration through the
real huggingface_hub client (against a stand-in hub on loopback, and offline from its cache)."""

from __future__ import annotations

import asyncio
import time

import pytest

from podstack_jupyter.errors import (ConfigurationError, DuplicateError, InvalidArgumentError, ModelNotFoundError,
                                     ModelSourceError)
from podstack_jupyter.models import ModelManager, ModelRegistry, S3Params


@pytest.fixture
def registry(database, tmp_path):
    with ModelRegistry(database, author="Data Scientist", artifact_root=str(tmp_path / "artifacts")) as opened:
        yield opened


def _register(registry, name="fraud-detector", version="1.0.0", **extra):
    return registry.register_model(name, f"s3://ml-models/{name}/{version}/model.onnx", version=version,
                                   model_format_name="onnx", model_format_version="1", **extra)


def test_register_by_uri_and_read_back_in_the_kubeflow_shapes(registry):
    model = _register(registry, author="ML Team", storage_key="aws-connection", storage_path="fraud/1.0.0",
                      version_description="first", metadata={"accuracy": 0.95, "dataset": "transactions-v2",
                                                             "epochs": 10, "calibrated": True})
    assert (model.name, model.owner, model.state) == ("fraud-detector", "Data Scientist", "LIVE")
    version = registry.get_model_version("fraud-detector", "1.0.0")
    assert (version.name, version.author, version.description, version.registered_model_id, version.state) == \
        ("1.0.0", "ML Team", "first", model.id, "LIVE")
    assert version.custom_properties == {"accuracy": 0.95, "dataset": "transactions-v2", "epochs": 10,
                                         "calibrated": True}
    assert [type(v) for v in version.custom_properties.values()] == [float, bool, str, int]  # sorted keys
    artifact = registry.get_model_artifact("fraud-detector", "1.0.0")
    assert (artifact.uri, artifact.model_format_name, artifact.model_format_version, artifact.storage_key,
            artifact.storage_path) == ("s3://ml-models/fraud-detector/1.0.0/model.onnx", "onnx", "1",
                                       "aws-connection", "fraud/1.0.0")
    assert registry.get_registered_model("nope") is None
    assert registry.get_model_version("fraud-detector", "9.9.9") is None
    with pytest.raises(ModelNotFoundError):
        registry.get_model_version("nope", "1")
    with pytest.raises(DuplicateError, match="already has a version named '1.0.0'"):
        _register(registry)
    # the same model through the other faces
    assert registry.client.get_model_version("fraud-detector").version_name == "1.0.0"


def test_pager_sync_and_async_in_either_order(registry):
    for n in range(5):
        _register(registry, name=f"m{n}")
    pager = registry.get_registered_models().page_size(2)
    assert [m.name for m in pager] == ["m0", "m1", "m2", "m3", "m4"]
    assert [m.name for m in pager.order_by_creation_time().descending()] == ["m4", "m3", "m2", "m1", "m0"]
    assert [len(pager.next_page()) for _ in range(3)] == [2, 2, 1]
    with pytest.raises(StopIteration):
        pager.next_page()
    assert pager.restart().next_item().name == "m4"

    async def collect(p):
        return [m.name async for m in p]

    assert asyncio.run(collect(registry.get_registered_models().page_size(3).ascending())) == \
        ["m0", "m1", "m2", "m3", "m4"]
    time.sleep(0.01)
    model = registry.get_registered_model("m1")
    model.description = "touched"
    registry.update(model)
    assert next(iter(registry.get_registered_models().order_by_update_time().descending())).name == "m1"
    for n in range(3):
        _register(registry, name="m0", version=f"r{n}")
    versions = registry.get_model_versions("m0").page_size(2).order_by_creation_time().descending()
    assert [v.name for v in versions] == ["r2", "r1", "r0", "1.0.0"]
    assert asyncio.run(collect(registry.get_model_versions("m0"))) == ["1.0.0", "r0", "r1", "r2"]
    with pytest.raises(InvalidArgumentError, match="page_size"):
        pager.page_size(0)


def test_update_saves_what_may_change_and_refuses_the_rest(registry):
    _register(registry)
    model = registry.get_registered_model("fraud-detector")
    model.description, model.owner, model.custom_properties = "Updated description", "risk-team", {"tier": 2}
    saved = registry.update(model)
    assert (saved.description, saved.owner, saved.custom_properties) == ("Updated description", "risk-team",
                                                                         {"tier": 2})
    assert registry.get_registered_model("fraud-detector").description == "Updated description"
    version = registry.get_model_version("fraud-detector", "1.0.0")
    version.state, version.author = "ARCHIVED", "someone"
    registry.update(version)
    assert registry.client.get_model_version("fraud-detector", "1.0.0").stage == "archived"
    artifact = registry.get_model_artifact("fraud-detector", "1.0.0")
    artifact.uri = "s3://ml-models/fraud-detector/1.0.0/model-v2.onnx"
    registry.update(artifact)
    assert registry.get_model_artifact("fraud-detector", "1.0.0").uri.endswith("model-v2.onnx")
    renamed = registry.get_registered_model("fraud-detector")
    renamed.name = "other"
    with pytest.raises(InvalidArgumentError, match="name of a RegisteredModel cannot be changed"):
        registry.update(renamed)
    artifact.description = "changed here"
    with pytest.raises(InvalidArgumentError, match="description of a ModelArtifact cannot be changed"):
        registry.update(artifact)
    assert registry.get_registered_model("other") is None


def test_a_store_url_with_a_port_and_a_token_it_does_not_take(database, tmp_path):
    with pytest.raises(ConfigurationError, match="takes no api_key"):
        ModelRegistry(database, author="a", user_token="secret")
    with pytest.raises(InvalidArgumentError, match="go with server_address"):
        ModelRegistry(port=5432, author="a")


def test_upload_to_seaweedfs_and_register_then_download_it_again(registry, s3_server, monkeypatch, tmp_path):
    files = tmp_path / "model"
    (files / "sub").mkdir(parents=True)
    (files / "model.pkl").write_bytes(b"\x80\x04pickled" * 1000)
    (files / "sub" / "config.json").write_text('{"n": 1}')
    prefix = s3_server.new_root().split("/", 3)[3]
    params = S3Params(bucket_name="podstack-test", s3_prefix=f"{prefix}/v0.1", endpoint_url=s3_server.endpoint,
                      access_key_id=s3_server.access_key, secret_access_key=s3_server.secret_key)
    assert s3_server.secret_key not in repr(params)
    registry.upload_artifact_and_register_model("fraud-detector", files, upload_params=params, version="0.1.0",
                                                model_format_name="sklearn", model_format_version="1.0")
    listed = s3_server.client().list_objects_v2(Bucket="podstack-test", Prefix=f"{prefix}/v0.1/")["Contents"]
    assert sorted(o["Key"][len(prefix) + 6:] for o in listed) == ["model.pkl", "sub/config.json"]
    artifact = registry.get_model_artifact("fraud-detector", "0.1.0")
    assert artifact.uri == f"s3://podstack-test/{prefix}/v0.1?endpoint={s3_server.endpoint.replace(':', '%3A').replace('/', '%2F')}"
    assert artifact.storage_path == f"{prefix}/v0.1"
    # a taken version name: refused before anything is uploaded
    with pytest.raises(DuplicateError):
        registry.upload_artifact_and_register_model("fraud-detector", files, params, "0.1.0", "sklearn", "1.0")
    # downloading needs credentials from the environment: none were stored
    for name, value in s3_server.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3")  # the endpoint comes from the version's uri
    with ModelManager(registry.client.store.url, str(tmp_path / "artifacts")) as manager:
        dest = manager.get_model("fraud-detector", tmp_path / "down")
    assert (tmp_path / "down" / "model.pkl").read_bytes() == (files / "model.pkl").read_bytes()
    assert (tmp_path / "down" / "sub" / "config.json").read_text() == '{"n": 1}' and dest == str(tmp_path / "down")


def test_register_a_hugging_face_file_without_downloading_it(registry, hub, tmp_path):
    model = registry.register_hf_model("acme/tiny-onnx", "onnx/model.onnx", version="1", model_format_name="onnx",
                                       model_format_version="1", endpoint=hub.url)
    assert model.name == "acme/tiny-onnx"
    artifact = registry.get_model_artifact("acme/tiny-onnx", "1")
    assert artifact.uri == f"{hub.url}/acme/tiny-onnx/resolve/main/onnx/model.onnx"
    version = registry.get_model_version("acme/tiny-onnx", "1")
    assert version.author == "acme"
    assert version.custom_properties["hf_commit"] == hub.commit("acme/tiny-onnx")
    assert version.custom_properties["license"] == "mit"
    assert not [r for r in hub.requests if "/resolve/" in r]  # asked about, not downloaded
    with pytest.raises(ModelSourceError, match=r"no file or folder 'onnx/missing.onnx'.*onnx/model.onnx"):
        registry.register_hf_model("acme/tiny-onnx", "onnx/missing.onnx", "2", "onnx", "1", endpoint=hub.url)
    with pytest.raises(ModelSourceError, match="no model repository 'acme/nothing'"):
        registry.register_hf_model("acme/nothing", "x", "1", "onnx", "1", endpoint=hub.url)
    with pytest.raises(ModelSourceError, match="no revision 'v9'"):
        registry.register_hf_model("acme/tiny-onnx", "x", "2", "onnx", "1", git_ref="v9", endpoint=hub.url)
    # a folder of the repo is registered by its tree address, and both download
    registry.register_hf_model("acme/tiny-onnx", "onnx", "folder", "onnx", "1", endpoint=hub.url)
    assert registry.get_model_artifact("acme/tiny-onnx", "folder").uri == f"{hub.url}/acme/tiny-onnx/tree/main/onnx"
    with ModelManager(registry.client.store.url, str(tmp_path / "artifacts")) as manager:
        manager.get_model("acme/tiny-onnx", tmp_path / "one", version="1")
        manager.get_model("acme/tiny-onnx", tmp_path / "folder", version="folder")
    assert (tmp_path / "one" / "model.onnx").read_bytes() == b"\x08\x07onnx-bytes"
    assert [p.name for p in (tmp_path / "folder").iterdir()] == ["model.onnx"]


def test_register_a_hugging_face_file_offline_from_the_local_cache(registry, hub, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    huggingface_hub.snapshot_download("acme/tiny-onnx", endpoint=hub.url)  # cached once, with network
    hub.stop()
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    registry.register_hf_model("acme/tiny-onnx", "config.json", "1", "onnx", "1", endpoint=hub.url)
    version = registry.get_model_version("acme/tiny-onnx", "1")
    assert version.custom_properties["hf_commit"] == hub.commit("acme/tiny-onnx") and version.author == "acme"
    with pytest.raises(ModelSourceError, match="not in the local Hugging Face cache"):
        registry.register_hf_model("acme/second", "weights.bin", "1", "bin", "1")
