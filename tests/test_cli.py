"""The ``podstack`` console script, run as a user runs it (a subprocess of the installed entry point)."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest


def _podstack(*args, env=None):
    exe = shutil.which("podstack", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "podstack_jupyter.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=60, env=env)


def test_help_lists_commands_and_info_shows_where_things_are(podstack_home):
    import os

    env = dict(os.environ, PODSTACK_HOME=str(podstack_home))
    help_ = _podstack("--help", env=env)
    assert help_.returncode == 0 and "info" in help_.stdout
    info = _podstack("info", env=env)
    assert info.returncode == 0, info.stderr
    assert f"home:      {podstack_home}" in info.stdout
    assert "sqlite:///" in info.stdout


def test_no_command_prints_help_and_fails():
    result = _podstack()
    assert result.returncode == 2 and "usage: podstack" in result.stdout


@pytest.mark.parametrize("args", [["nope"], ["info", "--bogus"]])
def test_bad_arguments_are_usage_errors(args):
    result = _podstack(*args)
    assert result.returncode == 2 and "usage:" in result.stderr


# -- podstack runs / experiments / models ------------------------------------------------------------
@pytest.fixture
def tracked(podstack_home, tmp_path):
    """A store with an experiment of three runs (params, metrics, an artifact) and a model with versions."""
    import os

    from podstack import registry

    data = tmp_path / "train.csv"
    data.write_text("a,b\n1,2\n")
    registry.set_experiment("cli-demo")
    runs = []
    for i in range(3):
        with registry.start_run(f"trial-{i}") as run:
            registry.log_params({"lr": 0.1 * (i + 1), "optimizer": "adam"})
            for step in range(4):
                registry.log_metrics({"loss": 1.0 / (step + 1 + i), "acc": 0.5 + 0.1 * i}, step=step)
            registry.log_dataset("train", path=str(data))
            registry.log_model({"weights": i}, framework="pickle")
        registry.register_model("demo", run_id=run.id)
        runs.append(run)
    registry.set_model_stage("demo", 2, "production")
    registry.set_model_alias("demo", "champion", 2)
    registry._reset_store()
    return dict(os.environ, PODSTACK_HOME=str(podstack_home)), runs


def test_runs_list_shows_a_table_and_json(tracked):
    import json

    env, runs = tracked
    listing = _podstack("runs", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    header, rule, *rows = listing.stdout.splitlines()
    assert header.split() == ["ID", "NAME", "STATUS", "EXPERIMENT", "STARTED", "DURATION", "METRICS"]
    assert [r.split()[1] for r in rows] == ["trial-2", "trial-1", "trial-0"]  # newest first
    assert "acc=0.7 loss=0.166667" in rows[0] and set(rule) == {"-", " "}
    as_json = json.loads(_podstack("runs", "list", "--json", "--filter", "metrics.acc > 0.55", env=env).stdout)
    assert [r["name"] for r in as_json] == ["trial-2", "trial-1"]
    assert as_json[0]["params"] == {"lr": "0.30000000000000004", "optimizer": "adam", "podstack.model.framework":
                                    "pickle", "podstack.model.artifact_path": "model"}
    assert as_json[0]["start_time"].endswith("+00:00") and as_json[0]["status"] == "completed"
    assert _podstack("runs", "list", "--experiment", "nope", env=env).returncode == 1
    assert "no runs" in _podstack("runs", "list", "--status", "failed", env=env).stdout


def test_runs_show_history_compare_artifacts_download(tracked, tmp_path):
    import json

    env, runs = tracked
    run = runs[0]
    shown = _podstack("runs", "show", run.id[:8], env=env)  # an id prefix will do
    assert shown.returncode == 0, shown.stderr
    assert f"run        {run.id}" in shown.stdout and "experiment cli-demo" in shown.stdout
    assert "  lr = 0.1" in shown.stdout and "  loss = 0.25" in shown.stdout and "  train (training)" in shown.stdout
    assert "  model/model.pkl" in shown.stdout
    history = _podstack("runs", "history", run.id, "loss", "--json", env=env)
    assert [(p["step"], p["value"]) for p in json.loads(history.stdout)] == [(s, 1.0 / (s + 1)) for s in range(4)]
    compare = _podstack("runs", "compare", runs[0].id, runs[2].id, "--metrics", "acc", env=env)
    header, _, first, second = compare.stdout.splitlines()
    assert header.split() == ["RUN", "NAME", "STATUS", "acc", "params.lr", "params.optimizer"]
    assert first.split()[:4] == [runs[0].id[:8], "trial-0", "completed", "0.5"]
    artifacts = _podstack("runs", "artifacts", run.id, "--json", env=env)
    assert [a["path"] for a in json.loads(artifacts.stdout)] == ["model/model.pkl", "model/podstack_model.json"]
    written = _podstack("runs", "download", run.id, "model", str(tmp_path / "out"), env=env).stdout.strip()
    assert written == str(tmp_path / "out" / "model") and (tmp_path / "out" / "model" / "model.pkl").is_file()


def test_models_list_show_lineage(tracked):
    import json

    env, runs = tracked
    listing = _podstack("models", "list", env=env)
    assert listing.returncode == 0, listing.stderr
    row = listing.stdout.splitlines()[2].split()
    assert row[:5] == ["demo", "3", "3", "development:1,3", "production:2"] and row[5] == "champion->v2"
    shown = _podstack("models", "show", "demo", env=env).stdout
    assert "aliases     champion->v2" in shown
    versions = [line.split()[:3] for line in shown.splitlines() if line.startswith("v")]
    assert versions == [["v3", "development", runs[2].id], ["v2", "production", runs[1].id],
                        ["v1", "development", runs[0].id]]
    lineage = json.loads(_podstack("models", "lineage", "demo", "--json", env=env).stdout)
    assert [v["version"] for v in lineage["versions"]] == [3, 2, 1]
    assert lineage["versions"][1]["datasets"][0]["name"] == "train"
    assert "  └─ train  " in _podstack("models", "lineage", "demo", env=env).stdout
    missing = _podstack("models", "show", "nope", env=env)
    assert missing.returncode == 1 and "ModelNotFoundError: no registered model 'nope'" in missing.stderr


def test_store_option_reads_another_store_and_bad_urls_are_clear(tracked, tmp_path):
    env, _ = tracked
    other = f"sqlite:///{tmp_path / 'empty.db'}"
    assert "no runs" in _podstack("runs", "list", "--store", other, env=env).stdout
    assert "no registered models" in _podstack("models", "list", "--store", other, env=env).stdout
    bad = _podstack("runs", "list", "--store", "mysql://u@h/db", env=env)
    assert bad.returncode == 1 and "no tracking store serves mysql:// URLs" in bad.stderr


def test_info_never_shows_a_store_that_is_not_in_use(podstack_home):
    import os

    env = dict(os.environ, PODSTACK_HOME=str(podstack_home), PODSTACK_REGISTRY_URL="https://registry.example")
    info = _podstack("info", env=env)
    assert info.returncode == 0, info.stderr
    store = next(line for line in info.stdout.splitlines() if line.startswith("store:"))
    assert store.startswith("store:     none usable (registry_url https://registry.example cannot be used")
    listing = _podstack("runs", "list", env=env)
    assert listing.returncode == 1 and "registry_url https://registry.example cannot be used" in listing.stderr
