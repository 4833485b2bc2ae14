"""Datasets (digests, schema, dedup), the model registry and lineage."""

from __future__ import annotations

import hashlib

import pytest

from podstack_jupyter.errors import InvalidArgumentError, ModelNotFoundError, RunNotFoundError
from podstack_jupyter import registry

pd = pytest.importorskip("pandas")


@pytest.fixture
def csvs(tmp_path):
    train = tmp_path / "train.csv"
    val = tmp_path / "val.csv"
    pd.DataFrame({"text": ["good", "bad", "fine", "meh"], "label": [1, 0, 1, 0]}).to_csv(train, index=False)
    pd.DataFrame({"text": ["ok", "no"], "label": [1, 0]}).to_csv(val, index=False)
    return train, val


def test_a_file_dataset_has_its_sha256_and_a_dataframe_its_schema_and_profile(csvs):
    train, _ = csvs
    df = pd.read_csv(train)
    with registry.start_run("r") as run:
        from_file = registry.log_dataset("imdb-reviews", path=str(train), context="training")
        both = run.log_dataset("imdb-reviews", path=str(train), df=df)
        from_df = registry.log_dataset("frame-only", df=df, context="test", tags={"split": 1})
    assert from_file.digest == hashlib.sha256(train.read_bytes()).hexdigest()
    assert from_file.source == str(train) and from_file.source_type == "local"
    assert both.id == from_file.id  # same name, same file: the same record, now with a schema
    assert both.schema == {"text": str(df.dtypes["text"]), "label": "int64"}
    assert both.profile["num_rows"] == 4 and both.profile["num_features"] == 2
    assert from_df.schema and from_df.profile["num_rows"] == 4 and len(from_df.digest) == 64
    assert from_df.tags == {"split": "1"} and from_df.created_at.endswith("+00:00")
    listed = registry.get_run_datasets(run.id)
    assert [(d.name, d.context) for d in listed] == [("imdb-reviews", "training"), ("frame-only", "test")]


def test_the_same_file_in_two_runs_is_one_dataset(csvs):
    train, val = csvs
    with registry.start_run("a") as run_a:
        run_a.log_dataset("imdb-train", path=str(train))
    with registry.start_run("b") as run_b:
        run_b.log_dataset("imdb-train", path=str(train))
        run_b.log_dataset("imdb-val", path=str(val), context="validation")
    ds1 = registry.get_run_datasets(run_a.id)[0]
    ds2 = registry.get_run_datasets(run_b.id)[0]
    assert ds1.id == ds2.id and ds1.digest == ds2.digest
    train.write_text("text,label\nchanged,1\n")
    with registry.start_run("c") as run_c:
        changed = run_c.log_dataset("imdb-train", path=str(train))
    assert changed.id != ds1.id and changed.digest != ds1.digest


def test_uris_folders_and_given_digests(tmp_path):
    folder = tmp_path / "shards"
    folder.mkdir()
    (folder / "a.parquet").write_bytes(b"aaa")
    (folder / "b.parquet").write_bytes(b"bbb")
    with registry.start_run("r"):
        remote = registry.log_dataset("lake", path="s3://bucket/data.parquet")
        again = registry.log_dataset("lake", path="s3://bucket/data.parquet")
        web = registry.log_dataset("web", path="https://example.org/x.csv", context="validation")
        shards = registry.log_dataset("shards", path=folder)
        given = registry.log_dataset("given", path="gs://b/x", digest="AB" * 32)
    assert remote.source_type == "s3" and remote.digest == "" and again.id == remote.id
    assert web.source_type == "url" and given.source_type == "gcs" and given.digest == "ab" * 32
    assert len(shards.digest) == 64
    (folder / "b.parquet").write_bytes(b"ccc")
    with registry.start_run("r2"):
        assert registry.log_dataset("shards", path=folder).digest != shards.digest


@pytest.mark.parametrize("kwargs, message", [
    ({"name": ""}, "name must be non-empty text"),
    ({"name": "x", "context": "train"}, "context 'train' is not one of"),
    ({"name": "x", "path": "/no/such/file.csv"}, "does not exist"),
    ({"name": "x", "source_type": "ftp", "path": "ftp://x"}, "source_type 'ftp' is not one of"),
    ({"name": "x", "digest": "abc"}, "64-character hex"),
    ({"name": "x", "df": [1, 2]}, "df must be a pandas DataFrame"),
])
def test_bad_dataset_arguments_change_nothing(kwargs, message):
    with registry.start_run("r") as run:
        with pytest.raises(InvalidArgumentError, match=message):
            registry.log_dataset(**kwargs)
    assert registry.get_run_datasets(run.id) == []


def test_a_dataset_without_a_run_is_recorded_at_project_level(csvs):
    train, _ = csvs
    ds = registry.log_dataset("standalone", path=train)
    assert ds.context is None and len(ds.digest) == 64
    with pytest.raises(RunNotFoundError):
        registry.get_run_datasets("nope")


def test_versions_stages_aliases():
    with registry.start_run("t1") as r1:
        pass
    with registry.start_run("t2") as r2:
        pass
    v1 = registry.register_model("clf", run_id=r1.id, description="a classifier")
    v2 = registry.register_model("clf", run_id=r2.id)
    with registry.start_run("t3") as r3:
        v3 = registry.register_model("clf")  # the active run by default
    assert [v.version for v in (v1, v2, v3)] == [1, 2, 3]
    assert v3.run_id == r3.id and v1.stage == "development"
    promoted = registry.set_model_stage("clf", version=1, stage="production")
    assert promoted.stage == "production"
    registry.set_model_stage("clf", 2, "production", archive_existing=True)
    registry.set_model_alias("clf", alias="champion", version=2)
    model = registry.get_model("clf")
    assert [(v.version, v.stage) for v in model.versions] == [(1, "archived"), (2, "production"), (3, "development")]
    assert model.aliases == {"champion": 2} and model.versions[1].aliases == ("champion",)
    assert model.description == "a classifier" and model.latest_version.version == 3
    assert registry.get_model_version("clf", stage="production").version == 2
    assert registry.get_model_version("clf", alias="champion").version == 2
    assert registry.get_model_version("clf").version == 3
    assert [m.name for m in registry.list_models()] == ["clf"]
    registry.delete_model_alias("clf", "champion")
    assert registry.get_model("clf").aliases == {}


def test_model_registry_errors_name_the_valid_choices():
    registry.register_model("m")
    with pytest.raises(InvalidArgumentError, match=r"valid stages: \['development', 'staging', 'production', "
                                                    r"'archived'\]"):
        registry.set_model_stage("m", version=1, stage="prod")
    assert registry.get_model("m").versions[0].stage == "development"
    with pytest.raises(ModelNotFoundError, match=r"has no version 7; versions: \[1\]"):
        registry.set_model_stage("m", version=7, stage="staging")
    with pytest.raises(ModelNotFoundError, match=r"no registered model 'x'; registered models: \['m'\]"):
        registry.get_model("x")
    with pytest.raises(ModelNotFoundError, match="no version in stage 'production'"):
        registry.get_model_version("m", stage="production")
    with pytest.raises(InvalidArgumentError, match="looks like a version number"):
        registry.set_model_alias("m", "2", 1)
    with pytest.raises(RunNotFoundError):
        registry.register_model("m", run_id="no-such-run")
    with pytest.raises(InvalidArgumentError, match="only one of"):
        registry.get_model_version("m", version=1, stage="staging")


def test_lineage_traces_each_version_to_its_runs_datasets(csvs):
    train, val = csvs
    train_df, val_df = pd.read_csv(train), pd.read_csv(val)
    registry.set_experiment("sentiment-analysis")
    runs = []
    for n in (1, 2, 3):
        with registry.start_run(f"bert-finetune-v{n}") as run:
            run.log_dataset("imdb-train", path=str(train), df=train_df, context="training")
            if n == 3:
                run.log_dataset("imdb-val", path=str(val), df=val_df, context="validation")
            run.log_params({"lr": 2e-5, "epochs": 3})
            run.log_metrics({"accuracy": 0.9 + n / 100, "f1": 0.92})
        registry.register_model("sentiment-bert", run_id=run.id)
        runs.append(run)
    registry.register_model("sentiment-bert")  # v4: no run
    registry.set_model_stage("sentiment-bert", version=3, stage="production")
    registry.set_model_stage("sentiment-bert", version=2, stage="staging")
    registry.set_model_stage("sentiment-bert", version=1, stage="archived")

    model = registry.get_model("sentiment-bert")
    lineage = registry.get_model_lineage(model.id)
    assert set(lineage) == {"model_id", "versions"} and lineage["model_id"] == model.id
    assert [v["version"] for v in lineage["versions"]] == [4, 3, 2, 1]
    for version in lineage["versions"]:
        assert set(version) == {"version", "stage", "run_id", "run_name", "datasets"}
    v4, v3, v2, v1 = lineage["versions"]
    assert (v4["run_id"], v4["run_name"], v4["datasets"], v4["stage"]) == ("", "", [], "development")
    assert (v3["stage"], v3["run_id"], v3["run_name"]) == ("production", runs[2].id, "bert-finetune-v3")
    assert [d["name"] for d in v3["datasets"]] == ["imdb-train", "imdb-val"]
    for ds in v3["datasets"]:
        assert set(ds) == {"id", "name", "digest", "source_type", "source", "schema", "profile", "tags", "created_at"}
    assert v3["datasets"][0]["profile"]["num_rows"] == 4
    assert v3["datasets"][0]["digest"] == hashlib.sha256(train.read_bytes()).hexdigest()
    assert v1["stage"] == "archived" and v2["stage"] == "staging"
    # the same training file across versions is one dataset
    assert len({v["datasets"][0]["id"] for v in (v1, v2, v3)}) == 1
    prod = next(v for v in lineage["versions"] if v["stage"] == "production")
    assert any(ds["digest"] == hashlib.sha256(train.read_bytes()).hexdigest() for ds in prod["datasets"])
    assert registry.get_model_lineage("sentiment-bert") == lineage  # the name works too
    with pytest.raises(ModelNotFoundError):
        registry.get_model_lineage("nope")
