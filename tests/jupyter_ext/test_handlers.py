"""The server extension's handlers over HTTP, on a real ``jupyter server`` process that reads a
real SQLite store written here through ``podstack.registry``."""

from __future__ import annotations

import base64
import math

import httpx
import numpy as np
import pytest

from podstack_jupyter import config
from podstack_jupyter.jupyter_ext._app import public_url

TOKEN = "podstack-handlers-test"


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """A store with two experiments, runs with params and metrics (NaN and infinity too) and a
    model with stages and an alias, written through the notebook API."""
    home = tmp_path_factory.mktemp("handlers") / "podstack-home"
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PODSTACK_HOME", str(home))
        for name in ("PODSTACK_TRACKING_URI", "PODSTACK_ARTIFACT_ROOT", "PODSTACK_REGISTRY_URL"):
            patch.delenv(name, raising=False)
        config.reset()
        from podstack_jupyter import registry

        registry._reset_store()
        registry._set_current_experiment((None, None))
        other = registry.set_experiment("other")
        with registry.start_run("elsewhere"):
            registry.log_metrics({"acc": 0.5}, step=0)
        experiment = registry.set_experiment("lab")
        runs = []
        for i in range(3):
            with registry.start_run(f"run-{i}") as run:
                registry.log_params({"lr": 0.1 * (i + 1)})
                for step in range(4):
                    registry.log_metrics({"loss": 1.0 / (step + 1 + i)}, step=step)
            runs.append(run.id)
        with registry.start_run("odd-values") as odd:
            registry.log_metrics({"loss": float("nan")}, step=0)
            registry.log_metrics({"loss": float("inf")}, step=1)
        registry.register_model("ranker", run_id=runs[0])
        registry.register_model("ranker", run_id=runs[1])
        registry.set_model_stage("ranker", version=1, stage="production")
        registry.set_model_alias("ranker", "champion", 2)
        registry._reset_store()
        registry._set_current_experiment((None, None))
        config.reset()
    return {"home": home, "experiment": experiment.id, "other": other.id, "runs": runs, "odd": odd.id}


@pytest.fixture(scope="module")
def server(store, tmp_path_factory):
    from _services.jupyter import jupyter_env, jupyter_process

    root = tmp_path_factory.mktemp("server-root")
    # the wheel's config file enables the extension; naming it here too keeps the test independent of
    # where the virtualenv put that file
    args = ["server", "--ServerApp.jpserver_extensions={'podstack_jupyter.jupyter_ext': True}"]
    env = jupyter_env(root, PODSTACK_HOME=str(store["home"]))
    with jupyter_process(args, root, env, token=TOKEN, log_path=root / "server.log") as base:
        with httpx.Client(base_url=f"{base}/podstack-lab/api", headers={"Authorization": f"token {TOKEN}"},
                          timeout=30) as client:
            yield client


def _f64(text: str) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.float64)


@pytest.mark.parametrize("path", ["status", "runs", "models", "runs/abc/metrics"])
def test_every_handler_refuses_a_request_without_the_token(server, path):
    url = f"{str(server.base_url).rstrip('/')}/{path}"
    response = httpx.get(url, timeout=10)
    assert response.status_code == 403 and "loss" not in response.text
    wrong = httpx.get(url, headers={"Authorization": "token wrong"}, timeout=10)
    assert wrong.status_code == 403


def test_status_names_the_store_the_notebook_uses_by_default(server, store):
    body = server.get("status").json()
    assert body["store"] == f"sqlite:///{store['home'] / 'podstack.db'}"
    assert body["version"]


def test_runs_of_an_experiment_newest_first_with_latest_metrics_and_params(server, store):
    body = server.get("runs", params={"experiment_id": store["experiment"]}).json()
    assert body["experiment"] == {"id": store["experiment"], "name": "lab"}
    names = [r["name"] for r in body["runs"]]
    assert names == ["odd-values", "run-2", "run-1", "run-0"]
    run0 = body["runs"][-1]
    assert run0["status"] == "completed" and run0["metrics"] == {"loss": 0.25} and run0["params"] == {"lr": "0.1"}
    # NaN and infinity are told as such, not dropped or turned into another number
    assert body["runs"][0]["metrics"] == {"loss": "Infinity"}


def test_runs_without_an_experiment_lists_every_experiment_and_max_limits(server):
    every = server.get("runs").json()
    assert every["experiment"] is None and {r["name"] for r in every["runs"]} >= {"elsewhere", "run-0"}
    assert len(server.get("runs", params={"max": 2}).json()["runs"]) == 2


@pytest.mark.parametrize("params, status, words", [
    ({"max": "lots"}, 400, "whole number"),
    ({"max": "0"}, 400, "between 1 and 1000"),
    ({"experiment_id": "no-such-experiment"}, 404, "no-such-experiment"),
])
def test_bad_queries_get_a_clear_error(server, params, status, words):
    response = server.get("runs", params=params)
    assert response.status_code == status
    assert words in response.json()["message"]


def test_metric_history_travels_exactly(server, store):
    body = server.get(f"runs/{store['runs'][1]}/metrics").json()
    assert body["run"]["name"] == "run-1"
    [series] = body["series"]
    assert series["key"] == "loss" and series["n"] == 4
    assert _f64(series["steps"]).tolist() == [0, 1, 2, 3]
    assert _f64(series["values"]).tolist() == [1.0 / (s + 2) for s in range(4)]
    assert np.all(np.diff(_f64(series["times"])) >= 0)
    odd = server.get(f"runs/{store['odd']}/metrics").json()["series"][0]
    values = _f64(odd["values"])
    assert math.isnan(values[0]) and values[1] == math.inf


def test_metrics_of_an_unknown_run_is_404(server):
    response = server.get("runs/0123456789abcdef/metrics")
    assert response.status_code == 404 and "0123456789abcdef" in response.json()["message"]


def test_models_with_stages_and_aliases(server):
    [model] = server.get("models").json()["models"]
    assert model["name"] == "ranker" and model["aliases"] == {"champion": 2}
    assert [(v["version"], v["stage"], v["aliases"]) for v in model["versions"]] == [
        (1, "production", []), (2, "development", ["champion"])]


def test_what_is_logged_after_the_server_started_is_served(server, store, monkeypatch):
    monkeypatch.setenv("PODSTACK_HOME", str(store["home"]))
    config.reset()
    from podstack_jupyter import registry

    registry._reset_store()
    try:
        with registry.start_run("late", experiment_id=store["other"]):
            registry.log_metrics({"acc": 0.75}, step=0)
    finally:
        registry._reset_store()
        config.reset()
    runs = server.get("runs", params={"experiment_id": store["other"]}).json()["runs"]
    assert runs[0]["name"] == "late" and runs[0]["metrics"] == {"acc": 0.75}


def test_public_url_hides_a_password():
    assert public_url("postgresql://ana:s3cret@db:5432/podstack") == "postgresql://ana:***@db:5432/podstack"
    assert public_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"
