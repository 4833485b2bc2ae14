"""The trust boundary of the relay, call by call: what the notebook does with each message a GPU
session could send, decided from what the notebook knows of the call (``hooks.dispatching``, as
the session layer calls it), never from the message. SQLite and PostgreSQL.

The end-to-end twin, through a real session kernel, is tests/tracking/test_session_scope.py.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from podstack_jupyter import events, registry
from podstack_jupyter.compute import hooks
from podstack_jupyter.errors import InvalidArgumentError, PermissionDeniedError
from podstack_jupyter.models._relay import handle_model_call
from podstack_jupyter.tracking.relay import handle_relay_call


@pytest.fixture
def notebook():
    """A notebook with a cell run (what %%track started), another run, and a model in production."""
    cell = registry.start_run("cell")
    other = registry.start_run("other", nested=True)
    registry.log_params({"kept": 1}, run_id=other.id)
    registry.end_run(run_id=other.id)
    version = registry.register_model("clf", run_id=other.id)
    registry.set_model_stage("clf", version.version, "production")
    yield {"cell": cell, "other": other}
    registry.end_run(run_id=cell.id)


def relayed(method, *args, session="s1", cell=None, op=handle_relay_call, buffers=(), **kwargs):
    """What the notebook answers when session ``session``, running a cell of run ``cell``, sends this."""
    context = {"tracking": {"run_id": cell.id, "experiment_id": cell.experiment_id, "name": cell.name}} if cell else {}
    with hooks.dispatching(session, context):
        return op({"method": method, "args": list(args), "kwargs": kwargs}, list(buffers))


def unchanged(other):
    run = registry.get_run(other.id)
    assert (run.name, run.status, run.params, run.metrics) == ("other", "completed", {"kept": "1"}, {})
    (version,) = registry.get_model("clf").versions
    assert version.stage == "production" and registry.get_model("clf").aliases == {}


def test_a_session_writes_into_its_cell_run(notebook, tmp_path):
    cell = notebook["cell"]
    assert relayed("log_params", cell.id, {"lr": "0.1"}, cell=cell) == {"lr": "0.1"}
    relayed("set_tags", cell.id, {"stage": "train"}, cell=cell)
    relayed("log_points", [[cell.id, "loss", 0.5, 0, 1.0]], cell=cell)
    record = {"name": "train", "digest": "", "source_type": "local", "source": "/data/train.csv",
              "schema": {"a": "int64"}, "profile": {"num_rows": 2, "num_features": 1}, "tags": {}}
    assert relayed("log_dataset_record", cell.id, record, "training", cell=cell)["name"] == "train"
    upload = relayed("begin_upload", cell.id, [["notes/a.txt", 5]], cell=cell)
    relayed("upload_chunk", upload, 0, cell=cell, buffers=[b"hel", b"lo"])
    entries = relayed("store_upload", upload, cell=cell)
    assert [e["path"] for e in entries] == ["notes/a.txt"]
    run = registry.get_run(cell.id)
    assert run.params == {"lr": "0.1"} and run.tags["stage"] == "train" and run.metrics == {"loss": 0.5}
    assert [d.name for d in registry.get_run_datasets(cell.id)] == ["train"]
    assert Path(registry.download_artifact(cell.id, "notes/a.txt", tmp_path)).read_bytes() == b"hello"


def test_runs_a_session_starts_inside_its_cell_run_are_its_own(notebook):
    cell = notebook["cell"]
    heard = []
    with events.subscribe("run", lambda e: heard.append(e.topic)):
        child = relayed("create_run", cell.experiment_id, "child", parent_run_id=cell.id, cell=cell)
        grandchild = relayed("create_run", cell.experiment_id, "grandchild", parent_run_id=child["id"], cell=cell)
        relayed("log_params", grandchild["id"], {"depth": "2"}, cell=cell)
        relayed("end_run", grandchild["id"], "completed", cell=cell)
        relayed("end_run", child["id"], "failed", cell=cell)
    assert heard == ["run.started", "run.started", "run.ended", "run.ended"]  # published in the notebook
    assert registry.get_run(child["id"]).parent_run_id == cell.id
    assert registry.get_run(grandchild["id"]).status == "completed"
    # they stay the session's own in its next cells, and only its own
    relayed("log_params", child["id"], {"later": "1"}, cell=None)
    with pytest.raises(PermissionDeniedError, match="may write only into"):
        relayed("log_params", child["id"], {"x": "1"}, session="s2", cell=cell)
    # a top-level run only when the cell is not tracked
    with pytest.raises(PermissionDeniedError, match="must be its child: registry.start_run\\(..., nested=True\\)"):
        relayed("create_run", cell.experiment_id, "rogue", cell=cell)
    own = relayed("create_run", cell.experiment_id, "own", session="s3")
    relayed("end_run", own["id"], "completed", session="s3")


@pytest.mark.parametrize("method, args, message", [
    ("end_run", ["OTHER", "failed"], "ends or resumes only runs it started"),
    ("resume_run", ["OTHER", "renamed"], "ends or resumes only runs it started"),
    ("end_run", ["CELL", "completed"], "is the notebook's run of this cell; the notebook ends it"),
    ("log_params", ["OTHER", {"x": "1"}], "may write only into the run of the cell it runs in"),
    ("set_tags", ["OTHER", {"x": "1"}], "may write only into"),
    ("delete_tag", ["OTHER", "x"], "may write only into"),
    ("require_writable", ["OTHER"], "may write only into"),
    ("log_points", [[["CELL", "m", 1.0, 0, 0.0], ["OTHER", "m", 1.0, 0, 0.0]]], "log_metrics: a GPU session"),
    ("log_dataset_record", ["OTHER", {"name": "d", "source_type": "local"}, "training"], "may write only into"),
    ("begin_upload", ["OTHER", [["a.txt", 1]]], "log_artifact: a GPU session may write only into"),
    ("create_run", ["EXPERIMENT", "x"], "must be its child"),
    ("log_artifacts", ["CELL", [{"path": "model/../../../../x", "digest": "0" * 64, "size": 1, "created_at": 0}]],
     "'log_artifacts' is not something a GPU session can ask"),
    ("update_run", ["OTHER", {"name": "renamed"}], "is not something a GPU session can ask"),
    ("read", ["update_run", ["OTHER", {"name": "renamed"}], {}], "'update_run' is not a read"),
])
def test_everything_else_is_refused_and_changes_nothing(notebook, method, args, message):
    ids = {"OTHER": notebook["other"].id, "CELL": notebook["cell"].id, "EXPERIMENT": notebook["cell"].experiment_id}

    def resolve(value):
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return ids.get(value, value) if isinstance(value, str) else value

    with pytest.raises(PermissionDeniedError, match=message):
        relayed(method, *resolve(args), cell=notebook["cell"])
    unchanged(notebook["other"])
    assert registry.get_run(notebook["cell"].id).metrics == {}  # not even the cell's half of a mixed batch


@pytest.mark.parametrize("method, args, message", [
    ("set_model_stage", ["clf", 1, "archived"], "moving a model version between stages .* is the notebook's decision"),
    ("set_model_alias", ["clf", "champion", 1], "aliases"),
    ("delete_model_alias", ["clf", "champion"], "aliases"),
    ("create_registered_model", ["new"], "only as a version of its run"),
    ("register_model", ["clf", "OTHER"], "register_model: a GPU session may write only into"),
    ("register_model", ["clf"], "belongs to a run"),
    ("create_model_version", ["clf", "OTHER"], "may write only into"),
    ("delete_model", ["clf"], "is not something a GPU session can ask of the notebook's model registry"),
])
def test_model_registry_changes_from_a_session_are_refused(notebook, method, args, message):
    args = [notebook["other"].id if a == "OTHER" else a for a in args]
    with pytest.raises(PermissionDeniedError, match=message):
        relayed(method, *args, cell=notebook["cell"], op=handle_model_call)
    unchanged(notebook["other"])


def test_a_session_registers_a_version_of_its_own_run(notebook):
    answer = relayed("register_model", "clf", notebook["cell"].id, cell=notebook["cell"], op=handle_model_call)
    assert answer["version"] == 2 and registry.get_model_version("clf", version=2).stage == "development"


def test_uploads_cannot_escape_overflow_or_be_taken_by_another_session(notebook):
    cell = notebook["cell"]
    for name in ("model/../../../../x", "/etc/passwd", "..", "a/../../b"):
        with pytest.raises(InvalidArgumentError, match="relative path inside the run"):
            relayed("begin_upload", cell.id, [[name, 1]], cell=cell)
    upload = relayed("begin_upload", cell.id, [["a.bin", 2]], cell=cell)
    with pytest.raises(InvalidArgumentError, match="no upload"):
        relayed("store_upload", upload, session="s2", cell=cell)
    with pytest.raises(InvalidArgumentError, match="larger than the 2 bytes announced"):
        relayed("upload_chunk", upload, 0, cell=cell, buffers=[b"abc"])
    with pytest.raises(InvalidArgumentError, match="no upload"):  # discarded
        relayed("store_upload", upload, cell=cell)
    short = relayed("begin_upload", cell.id, [["b.bin", 4]], cell=cell)
    relayed("upload_chunk", short, 0, cell=cell, buffers=[b"ab"])
    with pytest.raises(Exception, match="did not arrive whole"):
        relayed("store_upload", short, cell=cell)
    assert registry.list_artifacts(cell.id) == []


def test_malformed_calls_are_clear_errors(notebook):
    with pytest.raises(InvalidArgumentError, match="log_params: .*argument"):
        relayed("log_params", cell=notebook["cell"])
    with pytest.raises(InvalidArgumentError, match="list of metric points"):
        relayed("log_points", "not points", cell=notebook["cell"])
    with pytest.raises(InvalidArgumentError, match="list of args"):
        with hooks.dispatching("s1", {}):
            handle_relay_call({"method": "log_params", "args": "x"}, [])
