"""A real GPU session (a local kernel) tries everything the issue saw it do to the notebook's store,
and what it may do: it logs into its cell's run and runs it starts there, and every other write is
refused in the session with a clear error. SQLite and PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from podstack_jupyter import events, registry

SESSION_CELL = r'''
from podstack import registry
import _podstack_agent
from podstack_jupyter.models import _signing

agent = _podstack_agent._agent
cell_run = registry.active_run().id
outcomes = {}


def attempt(name, action):
    try:
        action()
    except Exception as exc:
        outcomes[name] = [type(exc).__name__, str(exc)]
    else:
        outcomes[name] = None


def raw(method, *args):
    return agent.call("tracking.relay", {"method": method, "args": list(args), "kwargs": {}})


attempt("promote", lambda: registry.set_model_stage("clf", 1, "production"))
attempt("alias", lambda: registry.set_model_alias("clf", "champion", 1))
attempt("fail other", lambda: registry.end_run("failed", run_id=other_id))
attempt("rename other", lambda: registry.start_run(run_id=other_id, name="renamed", nested=True))
attempt("end notebook run", lambda: registry.end_run())
attempt("version of other run", lambda: registry.register_model("clf", run_id=other_id))
attempt("params of other run", lambda: registry.log_params({"x": 1}, run_id=other_id))
attempt("metrics of other run", lambda: registry.log_metrics({"m": 1.0}, run_id=other_id))
attempt("points of other run", lambda: registry.client().log_points([(other_id, "m", 1.0, 0, 0.0)]))
attempt("raw store write", lambda: registry.client().store.update_run(other_id, {"name": "x"}))
attempt("artifact row", lambda: raw("log_artifacts", cell_run, [
    {"path": "model/../../../../x", "digest": "0" * 64, "size": 1, "created_at": 0}]))
attempt("escaping upload", lambda: raw("begin_upload", cell_run, [["model/../../../../x", 1]]))
attempt("old raw relay", lambda: agent.call("tracking.store", {"method": "update_run", "args": [other_id, {}]}))
attempt("top-level run", lambda: registry.client().create_run(registry.active_run().experiment_id, "rogue"))
# what the session says of its cell changes nothing: the notebook decides from what it sent
agent.context["tracking"] = dict(agent.context["tracking"], run_id=other_id)
attempt("forged cell run", lambda: registry.log_params({"forged": 1}))
agent.context["tracking"] = dict(agent.context["tracking"], run_id=cell_run)

# what it may do
import pandas as pd

registry.log_params({"lr": 0.1})
registry.log_metrics({"loss": 0.5}, step=0)
registry.set_tag("stage", "train")
registry.log_dataset("train", df=pd.DataFrame({"a": [1, 2]}))
with open("weights.txt", "w") as f:
    f.write("w" * 10)
registry.log_artifact("weights.txt", "files/")
with registry.start_run("child", nested=True) as child:
    registry.log_metrics({"child_loss": 0.1}, step=0)
child_id = child.id
registry.log_model({"w": [1, 2]}, artifact_path="model", framework="pickle")
scoped_version = registry.register_model("scoped", run_id=cell_run).version
session_can_sign = _signing.can_sign()
'''

REFUSED = {
    "promote": "moving a model version between stages (production, staging...) is the notebook's decision",
    "alias": "aliases at versions is the notebook's decision",
    "fail other": "a GPU session ends or resumes only runs it started",
    "rename other": "a GPU session ends or resumes only runs it started",
    "end notebook run": "is the notebook's run of this cell; the notebook ends it",
    "version of other run": "register_model: a GPU session may write only into the run of the cell it runs in",
    "params of other run": "logging: a GPU session may write only into the run of the cell it runs in",
    "metrics of other run": "logging: a GPU session may write only into",
    "points of other run": "log_metrics: a GPU session may write only into",
    "raw store write": "a GPU session does not write the notebook's store directly",
    "artifact row": "'log_artifacts' is not something a GPU session can ask",
    "top-level run": "must be its child: registry.start_run(..., nested=True)",
    "forged cell run": "log_params: a GPU session may write only into the run of the cell it runs in",
}


def test_a_session_logs_into_its_cell_run_and_is_refused_everything_else(ip, tmp_path):
    other = registry.start_run("other")
    registry.end_run()
    version = registry.register_model("clf", run_id=other.id)
    ip.user_ns["other_id"] = other.id
    heard = []
    with events.subscribe("run", lambda e: heard.append((e.topic, e.data))):
        result = ip.run_cell("%%track --name cell\n%%gpu\n" + SESSION_CELL)
    assert result.error_in_exec is None and result.error_before_exec is None, result.error_in_exec
    outcomes = ip.user_ns["outcomes"]
    for name, message in REFUSED.items():
        assert outcomes[name] is not None and outcomes[name][0] == "PermissionDeniedError", (name, outcomes[name])
        assert message in outcomes[name][1], (name, outcomes[name][1])
    assert outcomes["escaping upload"][0] == "InvalidArgumentError"
    assert "relative path inside the run" in outcomes["escaping upload"][1]
    assert outcomes["old raw relay"][1] == "the notebook has no handler for 'tracking.store'"

    # nothing of the notebook's changed
    kept = registry.get_run(other.id)
    assert (kept.name, kept.status, kept.params, kept.metrics) == ("other", "completed", {}, {})
    model = registry.get_model("clf")
    assert [(v.version, v.stage) for v in model.versions] == [(version.version, "development")]
    assert model.aliases == {}

    # everything it was allowed, in the cell's run
    (cell,) = registry.search_runs(filter="name = 'cell'")
    assert cell.status == "completed" and cell.id == ip.user_ns["cell_run"]
    assert cell.params["lr"] == "0.1" and cell.metrics == {"loss": 0.5} and cell.tags["stage"] == "train"
    assert [d.name for d in registry.get_run_datasets(cell.id)] == ["train"]
    assert sorted(a["path"] for a in registry.list_artifacts(cell.id)) == [
        "files/weights.txt", "model/model.pkl", "model/podstack_model.json"]
    child = registry.get_run(ip.user_ns["child_id"])
    assert child.parent_run_id == cell.id and child.status == "completed" and child.metrics == {"child_loss": 0.1}
    started = [d["run"]["id"] for t, d in heard if t == "run.started"]
    ended = [(d["run_id"], d["status"]) for t, d in heard if t == "run.ended"]
    assert child.id in started and (child.id, "completed") in ended  # the session's run, heard in the notebook
    assert ended[-1] == (cell.id, "completed")

    # the model it logged came through the notebook, which signed it; the session holds no key
    assert ip.user_ns["session_can_sign"] is False
    manifest = json.loads(Path(registry.download_artifact(cell.id, "model/podstack_model.json", tmp_path)).read_text())
    assert manifest["signature"]["algorithm"] == "hmac-sha256"
    assert registry.get_model_version("scoped").run_id == cell.id
    assert registry.load_model("scoped") == {"w": [1, 2]}  # signed: loads without trusted=True

    # a later cell that is not tracked: the session still reads and loads (the notebook checks the
    # signature for it), and the run of the earlier cell is no longer its to write
    result = ip.run_cell("%%gpu\nloaded = registry.load_model('scoped')\n"
                         "attempt('old cell run', lambda: registry.log_params({'late': 1}, run_id=cell_run))\n"
                         "attempt('promote later', lambda: registry.set_model_stage('scoped', 1, 'production'))\n"
                         "later = {k: outcomes[k] for k in ('old cell run', 'promote later')}")
    assert result.error_in_exec is None, result.error_in_exec
    assert ip.user_ns["loaded"] == {"w": [1, 2]}
    assert "may write only into runs it starts itself (this cell runs in no tracked run" in \
        ip.user_ns["later"]["old cell run"][1]
    assert ip.user_ns["later"]["promote later"][0] == "PermissionDeniedError"
    assert "late" not in registry.get_run(cell.id).params


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_large_artifact_travels_whole_through_the_session(store_url, ip, tmp_path):
    result = ip.run_cell(
        "%%track --name big\n%%gpu\nimport hashlib, os\nfrom podstack import registry\n"
        "data = os.urandom(150 * 1024 * 1024 + 7)\nsent_digest = hashlib.sha256(data).hexdigest()\n"
        "with open('big.bin', 'wb') as f:\n    f.write(data)\ndel data\n"
        "registry.log_artifact('big.bin')\nos.remove('big.bin')")
    assert result.error_in_exec is None, result.error_in_exec
    (run,) = registry.search_runs(filter="name = 'big'")
    (entry,) = registry.list_artifacts(run.id)
    assert entry["size"] == 150 * 1024 * 1024 + 7 and entry["etag"] == ip.user_ns["sent_digest"]
