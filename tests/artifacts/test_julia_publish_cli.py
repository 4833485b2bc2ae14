"""Publishing tracked files as Artifacts.toml entries, and `podstack artifacts` as a user runs it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from podstack_jupyter.artifacts import (artifact, compute_git_tree_sha1, load_artifacts, publish_model_version,
                                        publish_run_artifacts, set_cache_dir)
from podstack_jupyter.errors import InvalidArgumentError


@pytest.fixture
def tracked_run(tmp_path):
    from podstack_jupyter import registry

    registry._reset_store()
    model = tmp_path / "model"
    (model / "tokenizer").mkdir(parents=True)
    (model / "weights.bin").write_bytes(os.urandom(50_000))
    (model / "tokenizer" / "vocab.txt").write_text("a\nb\n")
    (tmp_path / "curves.png").write_bytes(b"\x89PNG fake")
    with registry.start_run("train") as run:
        registry.log_artifact(model, artifact_path="model")
        registry.log_artifact(tmp_path / "curves.png", artifact_path="plots/curves.png")
    yield run.id, model
    registry._reset_store()


def test_a_runs_artifacts_publish_to_an_entry_that_installs(tracked_run, tmp_path):
    run_id, model = tracked_run
    toml = tmp_path / "Artifacts.toml"
    everything = publish_run_artifacts(run_id, "TrainRun", toml)
    assert everything["files"] == ["model/tokenizer/vocab.txt", "model/weights.bin", "plots/curves.png"]
    assert everything["url"].startswith("file://")
    only_model = publish_run_artifacts(run_id, "TheModel", toml, artifact_path="model")
    assert only_model["git_tree_sha1"] == compute_git_tree_sha1(model)  # the files, laid out as logged
    set_cache_dir(tmp_path / "elsewhere")
    installed = artifact("TheModel", toml)
    assert (installed / "tokenizer" / "vocab.txt").read_text() == "a\nb\n"
    assert load_artifacts(toml).artifacts["TheModel"].metadata == {"run_id": run_id, "artifact_path": "model"}
    # publishing again gives the same archive (reproducible), so the binding can be refreshed safely
    again = publish_run_artifacts(run_id, "TheModel", toml, artifact_path="model", force=True)
    assert again["sha256"] == only_model["sha256"]
    with pytest.raises(InvalidArgumentError, match="no artifacts under 'nope'"):
        publish_run_artifacts(run_id, "X", toml, artifact_path="nope")


def test_a_model_version_publishes_its_files(tracked_run, tmp_path):
    from podstack_jupyter import registry

    run_id, model = tracked_run
    version = registry.register_model("sentiment", run_id=run_id, artifact_path="model")
    result = publish_model_version("sentiment", toml_path=tmp_path / "Artifacts.toml")
    assert result["name"] == "sentiment" and result["git_tree_sha1"] == compute_git_tree_sha1(model)
    meta = load_artifacts(tmp_path / "Artifacts.toml").artifacts["sentiment"].metadata
    assert meta["model"] == "sentiment" and meta["model_version"] == version.version


def _podstack(*args, env, cwd=None, timeout=120):
    exe = shutil.which("podstack", path=str(Path(sys.executable).parent))
    command = [exe] if exe else [sys.executable, "-m", "podstack_jupyter.cli"]
    return subprocess.run([*command, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_publish_serve_and_get_over_http(tracked_run, tmp_path, podstack_home):
    run_id, model = tracked_run
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "podstack_jupyter.cli", "artifacts", "serve", "--port", str(port)],
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        toml = tmp_path / "Artifacts.toml"
        published = _podstack("artifacts", "publish", "Model", "--run", run_id, "--path", "model", "--toml", str(toml),
                              "--base-url", f"http://127.0.0.1:{port}", env=env)
        assert published.returncode == 0, published.stderr
        assert f"http://127.0.0.1:{port}/" in toml.read_text()
        deadline = time.time() + 30
        while True:
            try:
                httpx.get(f"http://127.0.0.1:{port}/nothing", timeout=1)
                break
            except httpx.TransportError:
                assert time.time() < deadline, server.stderr.read() if server.poll() is not None else "no server"
                time.sleep(0.1)
        cache = tmp_path / "fresh-cache"
        got = _podstack("artifacts", "--cache-dir", str(cache), "get", "Model/weights.bin", "--toml", str(toml), env=env)
        assert got.returncode == 0, got.stderr
        assert Path(got.stdout.strip()).read_bytes() == (model / "weights.bin").read_bytes()
        listed = _podstack("artifacts", "--cache-dir", str(cache), "list", "--toml", str(toml), env=env)
        assert "Model" in listed.stdout and "installed" in listed.stdout
        assert _podstack("artifacts", "--cache-dir", str(cache), "exists", "Model", "--toml", str(toml),
                         env=env).returncode == 0
        cleared = _podstack("artifacts", "--cache-dir", str(cache), "clear", "Model", "--toml", str(toml), env=env)
        assert "removed Model" in cleared.stdout
        assert _podstack("artifacts", "--cache-dir", str(cache), "exists", "Model", "--toml", str(toml),
                         env=env).returncode == 1
    finally:
        server.terminate()
        server.communicate(timeout=30)


def test_cli_create_bind_hash_and_errors(tmp_path, podstack_home):
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    data = tmp_path / "data"
    data.mkdir()
    (data / "foo").write_bytes(b"Hello, world!")
    hashed = _podstack("artifacts", "hash", str(data), env=env)
    assert hashed.stdout.startswith("git-tree-sha1 339aad93c0f854604248ea3b7c5b7edea20625a9")
    created = _podstack("artifacts", "create", str(data), str(tmp_path / "d.tar.gz"), "--compression", "gz", env=env)
    assert created.returncode == 0 and "339aad93c0f854604248ea3b7c5b7edea20625a9" in created.stdout
    bound = _podstack("artifacts", "bind", "D", "339aad93c0f854604248ea3b7c5b7edea20625a9", "--url",
                      (tmp_path / "d.tar.gz").as_uri(), "--sha256", "0" * 64, "--platform", "os=linux", "arch=x86_64",
                      cwd=tmp_path, env=env)
    assert bound.returncode == 0, bound.stderr
    assert "[[D]]" in (tmp_path / "Artifacts.toml").read_text()
    bad = _podstack("artifacts", "bind", "E", "not-a-hash", cwd=tmp_path, env=env)
    assert bad.returncode == 1 and "40 hex characters" in bad.stderr
    missing = _podstack("artifacts", "get", "Nope", "--toml", str(tmp_path / "Artifacts.toml"), env=env)
    assert missing.returncode == 1 and "no artifact 'Nope'" in missing.stderr
