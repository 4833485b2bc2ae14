"""Faults a team server meets: killed and restarted in the middle of a run, away while a notebook
logs artifacts, an upload cut off halfway. Nothing logged is lost, nothing is stored twice, nothing
half-written appears."""

from __future__ import annotations

import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from _services.podstack_server import LiveServer, point_registry_at

from podstack_jupyter.tracking import registry


@pytest.fixture
def restartable(tmp_path):
    """A server on SQLite and a folder that a test may kill and start again on the same port."""
    server = LiveServer(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"), tmp_path / "server",
                        extra_args=("--rate-limit", "0"))
    server.start()
    yield server
    server.stop()
    server.close_accounts()


def test_a_server_killed_and_restarted_mid_run_loses_no_metric_and_stores_none_twice(restartable, monkeypatch):
    project_id, key = restartable.new_project()
    point_registry_at(restartable, monkeypatch, project_id, key)
    try:
        registry.set_experiment("faults")
        with registry.start_run("through a crash") as run:
            for step in range(500):
                registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            registry.flush()
            restartable.kill()  # SIGKILL: nothing finished
            for step in range(500, 1000):
                registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
            time.sleep(0.5)  # the flusher meets the dead server meanwhile
            restartable.start()
            for step in range(1000, 1200):
                registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        history = registry.get_metric_history(run.id, "loss")
        assert [p.step for p in history] == list(range(1200))
        assert [p.value for p in history] == [1.0 / (step + 1) for step in range(1200)]
        assert registry.get_run(run.id).status == "completed"
    finally:
        registry._reset_store()


def test_artifacts_logged_while_the_server_is_away_wait_in_the_local_cache_and_go_up_later(restartable,
                                                                                          monkeypatch, tmp_path):
    project_id, key = restartable.new_project()
    point_registry_at(restartable, monkeypatch, project_id, key)
    cache = tmp_path / "cache"
    monkeypatch.setenv("PODSTACK_ARTIFACT_DIR", str(cache))
    (tmp_path / "notes.txt").write_text("written while the server was down")
    try:
        registry.set_experiment("offline")
        with registry.start_run("away") as run:
            restartable.kill()
            registry.log_artifact(tmp_path / "notes.txt", "notes/notes.txt")
            assert (cache / run.id / "notes" / "notes.txt").read_text() == "written while the server was down"
            restartable.start()
        assert [a["path"] for a in registry.list_artifacts(run.id)] == ["notes/notes.txt"]
        registry._reset_store()
        shutil.rmtree(cache)  # what is read back now comes from the server
        out = registry.download_artifact(run.id, "notes/notes.txt", tmp_path / "back")
        assert Path(out).read_text() == "written while the server was down"
    finally:
        registry._reset_store()


def test_an_upload_cut_off_halfway_leaves_nothing(restartable):
    project_id, key = restartable.new_project()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=restartable.url + "/api/v1", headers=headers) as client:
        experiment = client.post("/experiments", json={"name": "cut"}).json()
        run = client.post("/runs", json={"experiment_id": experiment.get("experiment", experiment)["id"]}).json()
        run_id = run.get("run", run)["id"]
        url = client.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": "big.bin"}).json()["upload_url"]
        parts = urlsplit(url)
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.sendall(f"PUT {parts.path}?{parts.query} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
                         "Content-Length: 1000000\r\n\r\n".encode() + b"x" * 400_000)
            time.sleep(0.5)
        # the client is gone: no artifact, now or after the run's end
        assert client.get(f"/runs/{run_id}/artifacts").json()["artifacts"] == []
        client.post(f"/runs/{run_id}/end", json={"status": "completed"})
        assert client.get(f"/runs/{run_id}/artifacts").json()["artifacts"] == []
        # the same URL still takes a whole upload
        assert httpx.put(url, content=b"y" * 1000).status_code == 200
        assert [(a["path"], a["size"]) for a in client.get(f"/runs/{run_id}/artifacts").json()["artifacts"]] == \
            [("big.bin", 1000)]
