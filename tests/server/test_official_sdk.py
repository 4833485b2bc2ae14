"""The unmodified official Podstack SDK (``podstack`` 1.7.0 from the package index, in a virtualenv of
its own: it is also a top-level ``podstack`` package) against a live server on PostgreSQL + S3.

``sdk_flows.py`` drives seed 000's registry flows with it; this test checks what the SDK saw, and
that this project's client reads the same records from the server (one store, two clients).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from _services.official_sdk import official_sdk_python
from _services.podstack_server import env_without_podstack, point_registry_at


@pytest.fixture(scope="session")
def sdk_python(tmp_path_factory) -> Path:
    """The Python of a fresh virtualenv holding the official SDK (skipped if it cannot be installed)."""
    return official_sdk_python(tmp_path_factory)


def test_the_official_sdk_runs_every_seed_000_registry_flow_against_the_server(sdk_python, live_server, project,
                                                                                tmp_path, monkeypatch):
    project_id, key = project
    env = {**env_without_podstack(), "HOME": str(tmp_path / "home"), "PODSTACK_REGISTRY_URL": live_server.url,
           "PODSTACK_API_KEY": key, "PODSTACK_PROJECT_ID": project_id,
           "PODSTACK_ARTIFACT_DIR": str(tmp_path / "sdk-artifacts")}
    done = subprocess.run([str(sdk_python), str(Path(__file__).with_name("sdk_flows.py")), str(tmp_path / "work")],
                          capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:] + "\n" + live_server.log_tail()
    seen = json.loads(done.stdout.strip().splitlines()[-1])

    assert seen["experiment"]["same_again"]
    assert seen["run"] == {"status": "completed", "name": "sdk-run", "experiment_id": seen["experiment"]["id"]}
    params = seen["params"]
    assert {k: params[k] for k in ("lr", "layers", "optimizer")} == {"lr": "0.01", "layers": "3", "optimizer": "adam"}
    # the files went to the object store through the presigned URLs, not to the SDK's local fallback
    assert params["_artifact_store"] == "minio"
    assert params["_artifact.plots/curve.txt"] == f"minio://{seen['run_id']}/plots/curve.txt"
    assert seen["history"] == [[step, 1.0 / (step + 1)] for step in range(5)]
    assert ["plots/curve.txt", os.path.getsize(tmp_path / "work" / "curve.txt")] in seen["artifacts"]
    assert any(path.startswith("model/") for path, _ in seen["artifacts"])
    assert seen["downloaded_same"]
    assert seen["run_datasets"] == [["train-set", seen["dataset"]["digest"]]] and len(seen["dataset"]["digest"]) == 64
    assert seen["dataset_dedup"]
    assert seen["model"]["name"] == "sdk-model" and sorted(seen["model"]["versions"]) == [1, 2]
    assert seen["by_alias"] == 2 and seen["by_stage"] == 1
    assert [(v, names) for v, _, names in seen["lineage"]] == [(1, ["train-set"]), (2, ["train-set"])]
    assert ["development", "production"] in seen["transitions"]
    assert seen["loaded"] == {"weights": [1.0, 2.0, 3.0]}
    assert seen["search"] == ["sdk-run", "sdk-run-2"]
    assert seen["notes"] == "best so far"
    assert seen["experiments"] == ["sdk-experiment"]
    assert seen["bad_key"] == "AuthenticationError"

    # this project's client, on the same server and project, reads what the SDK wrote
    from podstack_jupyter.tracking import registry

    point_registry_at(live_server, monkeypatch, project_id, key)
    run = registry.get_run(seen["run_id"])
    assert run.status == "completed" and run.params["lr"] == "0.01" and run.tags.get("framework") == "pytorch"
    history = registry.get_metric_history(seen["run_id"], "accuracy")
    assert [(p.step, p.value) for p in history] == [(step, step / 10) for step in range(5)]
    assert sorted(a["path"] for a in registry.list_artifacts(seen["run_id"])) == sorted(p for p, _ in seen["artifacts"])
    registry._reset_store()
