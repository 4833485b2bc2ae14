"""The model registry's rules, through the stateless ModelRegistryClient, on SQLite and PostgreSQL:
version names and numbers, registration by URI, typed metadata, categories and tags, the latest
pointer, deletes, pages, updates, and a database written before these existed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from podstack_jupyter import events
from podstack_jupyter.errors import DuplicateError, InvalidArgumentError, ModelNotFoundError
from podstack_jupyter.tracking import open_store


def _by_uri(models, name="fraud", version="1.0.0", **extra):
    return models.register_model(name, uri=f"s3://ml-models/{name}/{version}/model.onnx", version=version,
                                 model_format_name="onnx", model_format_version="1", **extra)


def test_versions_have_numbers_and_names_automatic_or_given_and_names_do_not_repeat(clients):
    tracking, models = clients
    first = _by_uri(models, author="ML Team", owner="risk-team", version_description="first cut",
                    storage_key="aws-conn", storage_path="fraud/1.0.0")
    assert (first.version, first.version_name, first.uri) == (1, "1.0.0", "s3://ml-models/fraud/1.0.0/model.onnx")
    assert (first.model_format_name, first.model_format_version, first.storage_key, first.storage_path) == \
        ("onnx", "1", "aws-conn", "fraud/1.0.0")
    assert (first.author, first.owner, first.description, first.run_id) == ("ML Team", "risk-team", "first cut", None)
    auto = models.register_model("fraud", uri="s3://ml-models/fraud/next", version=None)
    assert (auto.version, auto.version_name) == (2, "_v2")
    with pytest.raises(DuplicateError, match="already has a version named '1.0.0'"):
        _by_uri(models)
    with pytest.raises(InvalidArgumentError, match="reserved for automatic versions"):
        _by_uri(models, version="_v9")
    assert [v.version_name for v in models.get_registered_model("fraud").versions] == ["1.0.0", "_v2"]
    # asked by number or by name; a number is never a name
    assert models.get_model_version("fraud", "1.0.0").id == first.id == models.get_model_version("fraud", 1).id
    assert models.get_model_version("fraud", "_v2").version == 2
    with pytest.raises(ModelNotFoundError, match=r"no version '2'.*named \['1.0.0', '_v2'\]"):
        models.get_model_version("fraud", "2")
    assert models.find_model_version("fraud", "9.9") is None
    # numbers (and the automatic names made of them) are never reused after a delete
    models.delete_model("fraud", version=2)
    assert models.register_model("fraud", uri="s3://x/y").version_name == "_v3"


def test_reserved_model_names_are_refused_for_new_models_only(clients):
    tracking, models = clients
    for name in ("tmp_scratch", "_tmp_x", "#draft"):
        with pytest.raises(InvalidArgumentError, match=f"model name '{name}' starts with .* which is reserved"):
            _by_uri(models, name=name)
    assert models.list_registered_models() == []
    with pytest.raises(DuplicateError, match="already exists"):
        models.create_registered_model("a")
        models.create_registered_model("a")


def test_metadata_keeps_its_types_across_a_reopened_store(clients, database):
    tracking, models = clients
    given = {"flag": True, "off": False, "epochs": 42, "big": 2 ** 62, "accuracy": 0.95, "one": 1.0,
             "dataset": "transactions-v2", "np_int": np.int64(7), "np_float": np.float32(0.5), "np_bool": np.bool_(True)}
    _by_uri(models, metadata=given)
    again = open_store(database)
    try:
        from podstack_jupyter.models import ModelRegistryClient
        from podstack_jupyter.tracking import TrackingClient

        stored = ModelRegistryClient(TrackingClient(again)).get_model_version("fraud", "1.0.0").metadata
    finally:
        again.close()
    assert stored == {"flag": True, "off": False, "epochs": 42, "big": 2 ** 62, "accuracy": 0.95, "one": 1.0,
                      "dataset": "transactions-v2", "np_int": 7, "np_float": 0.5, "np_bool": True}
    assert {k: type(v) for k, v in stored.items()} == {
        "flag": bool, "off": bool, "epochs": int, "big": int, "accuracy": float, "one": float, "dataset": str,
        "np_int": int, "np_float": float, "np_bool": bool}
    for bad, message in [({"x": None}, "'x' is a NoneType"), ({"x": [1]}, "'x' is a list"),
                         ({"x": float("nan")}, "not a finite number"), ({"x": 2 ** 70}, "64-bit"),
                         ({"x": {"a": 1}}, "e.g. json.dumps"), ({3: "a"}, "names are text")]:
        with pytest.raises(InvalidArgumentError, match=message):
            _by_uri(models, version="2.0", metadata=bad)
    assert len(models.get_registered_model("fraud").versions) == 1  # refused: nothing written


def test_categories_and_tags_on_models(clients):
    tracking, models = clients
    _by_uri(models, name="gen", category="Text Generation", tags=["production", "base-model"])
    model = models.get_registered_model("gen")
    assert (model.category, model.tags) == ("Text Generation", {"production": "", "base-model": ""})
    _by_uri(models, name="gen", version="2", tags={"team": "nlp"})  # added to the model's tags
    assert models.get_registered_model("gen").tags == {"production": "", "base-model": "", "team": "nlp"}
    with pytest.raises(InvalidArgumentError, match="did you mean 'Text Generation'"):
        _by_uri(models, name="gen", version="3", category="text generation")
    with pytest.raises(InvalidArgumentError, match="tags must be a list"):
        _by_uri(models, name="gen", version="3", tags="production")
    assert [v.version_name for v in models.get_registered_model("gen").versions] == ["1.0.0", "2"]


def test_the_latest_pointer_moves_without_touching_versions(clients, tmp_path):
    tracking, models = clients
    heard = []
    with events.subscribe("model", lambda e: heard.append((e.topic, e.data))):
        for n in (1, 2, 3):
            source = tmp_path / f"m{n}"
            source.mkdir()
            (source / "weights.txt").write_text(f"weights {n}")
            models.upload_model("demo", source, version=f"v{n}")
        assert models.get_model_version("demo").version_name == "v3"
        models.set_latest_version("demo", "v1")
        assert models.get_registered_model("demo").latest_version.version_name == "v1"
        assert models.get_model_version("demo").version_name == "v1"
        assert models.get_model_version("demo", alias="latest").version_name == "v1"
        dest = models.download_model_version("demo", tmp_path / "latest")
        assert (tmp_path / "latest" / "weights.txt").read_text() == "weights 1" and dest == str(tmp_path / "latest")
        assert [v.version_name for v in models.get_registered_model("demo").versions] == ["v1", "v2", "v3"]
        with pytest.raises(InvalidArgumentError, match="use set_latest_version"):
            models.set_model_alias("demo", "latest", 2)
        models.delete_model("demo", "v1")  # the pinned one goes: the newest is the latest again
        assert models.get_model_version("demo").version_name == "v3"
        models.set_latest_version("demo", 2)
        source = tmp_path / "m4"
        source.mkdir()
        (source / "weights.txt").write_text("weights 4")
        models.upload_model("demo", source)  # a new version becomes the latest
        assert models.get_model_version("demo").version_name == "_v4"
    assert ("model.latest_changed", {"model": "demo", "version": 1}) in heard
    assert ("model.version_deleted", {"model": "demo", "version": 1}) in heard


def test_delete_a_version_the_last_one_or_a_whole_model(clients):
    tracking, models = clients
    _by_uri(models, name="a")
    _by_uri(models, name="a", version="2")
    models.set_model_alias("a", "champion", "2")
    assert models.delete_model("a", "2") == {"model": "a", "versions": [2], "model_deleted": False}
    model = models.get_registered_model("a")
    assert [v.version for v in model.versions] == [1] and model.aliases == {}
    assert models.delete_model("a", 1)["model_deleted"] is True  # the last version takes the model with it
    assert models.find_registered_model("a") is None
    _by_uri(models, name="b")
    _by_uri(models, name="b", version="2")
    assert models.delete_model("b") == {"model": "b", "versions": [1, 2], "model_deleted": True}
    assert models.list_registered_models() == []
    with pytest.raises(ModelNotFoundError):
        models.delete_model("b")


def test_pages_in_either_order_by_creation_or_update_time(clients):
    tracking, models = clients
    for n in range(7):
        _by_uri(models, name=f"m{n}")
    seen, after = [], None
    while True:
        page, after = models.page_registered_models(page_size=3, order_by="created_at", ascending=False, after=after)
        seen.append([m.name for m in page])
        if after is None:
            break
    assert seen == [["m6", "m5", "m4"], ["m3", "m2", "m1"], ["m0"]]
    time.sleep(0.01)
    models.update_registered_model("m2", description="touched")
    page, _ = models.page_registered_models(page_size=2, order_by="updated_at", ascending=False)
    assert [m.name for m in page] == ["m2", "m6"]
    with pytest.raises(InvalidArgumentError, match="order_by must be one of"):
        models.page_registered_models(order_by="name")
    for cursor in ([{"a": 1}, "id"], ["m0"], [1.5, 7], "m0"):  # a mangled cursor is refused, not a database error
        with pytest.raises(InvalidArgumentError, match="after must be"):
            models.page_registered_models(order_by="created_at", after=cursor)
    with pytest.raises(InvalidArgumentError, match=r"after must be \[an id, an id\]"):
        models.page_model_versions("m0", order_by="id", after=[1.5, "x"])
    for n in range(4):
        _by_uri(models, name="m0", version=f"r{n}")
    versions, after = models.page_model_versions("m0", page_size=10, order_by="created_at")
    assert [v.version_name for v in versions] == ["1.0.0", "r0", "r1", "r2", "r3"] and after is None


def test_updates_change_what_may_change_and_refuse_the_rest(clients):
    tracking, models = clients
    _by_uri(models, metadata={"a": 1})
    model = models.update_registered_model("fraud", description="detects fraud", owner="risk", state="ARCHIVED",
                                           category="Other", tags=["x"], metadata={"tier": 1})
    assert (model.description, model.owner, model.state, model.category, model.tags, model.metadata) == \
        ("detects fraud", "risk", "ARCHIVED", "Other", {"x": ""}, {"tier": 1})
    version = models.update_model_version("fraud", "1.0.0", description="v1", author="me", metadata={"b": False},
                                          uri="s3://ml-models/fraud/moved.onnx", stage="archived")
    assert (version.description, version.author, version.metadata, version.uri, version.state) == \
        ("v1", "me", {"b": False}, "s3://ml-models/fraud/moved.onnx", "ARCHIVED")
    with pytest.raises(InvalidArgumentError, match="state must be one of"):
        models.update_registered_model("fraud", state="GONE")
    run = tracking.create_run(tracking.ensure_experiment("e").id)
    models.register_model("fraud", run_id=run["id"], version="from-run")
    with pytest.raises(InvalidArgumentError, match="holds the files of run"):
        models.update_model_version("fraud", "from-run", uri="s3://elsewhere")
    with pytest.raises(InvalidArgumentError, match="not both"):
        models.register_model("fraud", run_id=run["id"], uri="s3://x")


def test_a_database_of_the_previous_schema_gets_names_and_keeps_its_numbers(database, tmp_path):
    """Versions registered before version names existed are named _v<number>; numbering goes on."""
    import uuid

    import sqlalchemy as sa
    from alembic import command

    from podstack_jupyter.tracking.store import sql

    from alembic.runtime.migration import MigrationContext

    engine = sql._engine_for(database)
    with engine.begin() as conn:
        at = MigrationContext.configure(conn).get_current_revision()  # PostgreSQL's test databases start at head
        (command.downgrade if at else command.upgrade)(sql._alembic_config(conn), "0002")
        model_id = str(uuid.uuid4())
        conn.execute(sa.text("INSERT INTO registered_models (id, name, tags, created_at, updated_at) "
                             "VALUES (:i, 'old', '{}', 1, 1)"), {"i": model_id})
        for number in (1, 2):
            conn.execute(sa.text("INSERT INTO model_versions (id, model_id, version, stage, created_at, updated_at) "
                                 "VALUES (:i, :m, :v, 'development', 1, 1)"),
                         {"i": str(uuid.uuid4()), "m": model_id, "v": number})
    engine.dispose()
    from podstack_jupyter.models import ModelRegistryClient
    from podstack_jupyter.tracking import TrackingClient

    store = open_store(database)
    try:
        models = ModelRegistryClient(TrackingClient(store))
        assert [v.version_name for v in models.get_registered_model("old").versions] == ["_v1", "_v2"]
        assert models.register_model("old", uri="s3://b/k").version_name == "_v3"
        assert models.get_registered_model("old").state == "LIVE"
    finally:
        store.close()
