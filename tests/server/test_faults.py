"""Faults a team server meets: killed and restarted in the middle of a run, away while a notebook
logs artifacts, an upload cut off halfway, eight clients logging at once, SIGTERM while requests
are in flight. Nothing logged is lost, nothing is stored twice, nothing half-written appears, and
the access log holds no secret."""

from __future__ import annotations

import array
import json
import shutil
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from _services.podstack_server import LiveServer, env_without_podstack, point_registry_at

from podstack_jupyter.server.wire import unpack
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


@pytest.mark.parametrize("lost", ["the answer", "the request"])
def test_a_run_whose_end_request_with_its_last_points_fails_stores_them_once_and_ends(restartable, monkeypatch,
                                                                                       lost):
    """A run's last points go with its end in one request. When that request fails (its answer lost:
    the server did it all; or the request itself lost), the points are sent again under the same batch
    id and the run is ended again: every point stored once, the run completed, its object up to date."""
    from podstack_jupyter.tracking.store import rest

    project_id, key = restartable.new_project()
    point_registry_at(restartable, monkeypatch, project_id, key)
    original, failed = rest.RESTStore._call, []

    def failing_once(self, method, path, body=None, *args, **kwargs):
        if method == "PATCH" and isinstance(body, dict) and "metrics" in body and not failed:
            failed.append(body["metrics"]["batch_id"])
            if lost == "the answer":
                original(self, method, path, body, *args, **kwargs)
            raise rest._Unreachable(f"test: {lost} was lost")
        return original(self, method, path, body, *args, **kwargs)

    monkeypatch.setattr(rest.RESTStore, "_call", failing_once)
    try:
        registry.set_experiment("faults")
        with registry.start_run("ends twice") as run:
            for step in range(30):
                registry.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        assert failed, "the run's end did not carry its last points"
        history = registry.get_metric_history(run.id, "loss")
        assert [p.step for p in history] == list(range(30))
        assert run.status == "completed" and run.metrics == {"loss": 1.0 / 30}
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


# -- many clients at once ---------------------------------------------------------------------------

CLIENTS, POINTS = 8, 100_000

_CLIENT = """
import sys, time
from pathlib import Path
from podstack_jupyter import registry

index, points, go, shared = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]
registry.set_experiment("crowd")
with registry.start_run(f"client-{index}") as run:
    print(run.id, flush=True)
    while not go.exists():  # every client starts logging at the same moment
        time.sleep(0.005)
    for step in range(points):
        registry.log_metrics({"loss": index + step / points}, step=step)
        # and into one run that all eight share, the same metric, each client its own steps
        registry.log_metrics({"throughput": index + step / points}, step=index * points + step, run_id=shared)
"""


@pytest.mark.slow
def test_eight_clients_logging_100000_points_each_at_once_store_every_point_exactly_once(live_server, tmp_path):
    """Eight notebooks (processes, each with its own podstack home) each log 100,000 points into a run of
    their own and 100,000 into one run they all share, into one project on PostgreSQL, at the same time:
    every point is stored, none twice, none changed."""
    import subprocess
    import sys

    project_id, key = live_server.new_project()
    with httpx.Client(base_url=live_server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"},
                      timeout=120) as api:
        experiment = api.post("/experiments", json={"name": "crowd"}).json()["experiment"]
        shared = api.post("/runs", json={"experiment_id": experiment["id"], "name": "shared"}).json()["run"]["id"]
        go = tmp_path / "go"
        clients = []
        for index in range(CLIENTS):
            env = {**env_without_podstack(), "PODSTACK_HOME": str(tmp_path / f"client-{index}"),
                   "PODSTACK_REGISTRY_URL": live_server.url, "PODSTACK_API_KEY": key,
                   "PODSTACK_PROJECT_ID": project_id}
            clients.append(subprocess.Popen([sys.executable, "-c", _CLIENT, str(index), str(POINTS), str(go), shared],
                                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
        run_ids = [client.stdout.readline().strip() for client in clients]
        go.touch()
        for client in clients:
            _, errors = client.communicate(timeout=900)
            assert client.returncode == 0, errors[-3000:]

        def history(run_id: str, key_name: str, count: int):
            packed = api.get(f"/runs/{run_id}/metrics/{key_name}/history",
                             params={"format": "packed"}).json()["history"]
            assert packed["count"] == count, f"run {run_id}, {key_name}: {packed['count']} points stored, not {count}"
            return unpack("q", packed["steps"], count, "steps"), unpack("d", packed["values"], count, "values")

        runs = {r["id"]: r for r in api.get("/runs", params={"limit": 100}).json()["runs"]}
        assert sorted(runs) == sorted([*run_ids, shared])
        assert {runs[r]["status"] for r in run_ids} == {"completed"}
        for index, run_id in enumerate(run_ids):
            steps, values = history(run_id, "loss", POINTS)
            assert steps == array.array("q", range(POINTS)), f"client {index}: steps missing or stored twice"
            assert list(values) == [index + step / POINTS for step in range(POINTS)], f"client {index}: values"
        steps, values = history(shared, "throughput", CLIENTS * POINTS)
        assert steps == array.array("q", range(CLIENTS * POINTS)), "the shared run: steps missing or stored twice"
        assert list(values) == [i + step / POINTS for i in range(CLIENTS) for step in range(POINTS)]


# -- a graceful shutdown -----------------------------------------------------------------------------

def test_sigterm_finishes_requests_in_flight_loses_nothing_acknowledged_and_exits_0(restartable, tmp_path):
    """SIGTERM while four clients log metric batches and an upload is still streaming: the upload and
    every batch the server answered are stored, and the process exits with status 0."""
    import threading

    project_id, key = restartable.new_project()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=restartable.url + "/api/v1", headers=headers) as api:
        experiment = api.post("/experiments", json={"name": "shutdown"}).json()["experiment"]
        run_id = api.post("/runs", json={"experiment_id": experiment["id"]}).json()["run"]["id"]
        upload_url = api.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": "slow.bin"}
                              ).json()["upload_url"]

    acknowledged: dict[int, set[int]] = {i: set() for i in range(4)}
    stop = threading.Event()

    def client(index: int):
        step = 0
        with httpx.Client(base_url=restartable.url + "/api/v1", headers=headers, timeout=60) as api:
            while not stop.is_set():
                batch = [{"key": f"c{index}", "value": float(s), "step": s} for s in range(step, step + 50)]
                try:
                    response = api.post(f"/runs/{run_id}/metrics", json={"metrics": batch})
                except httpx.TransportError:
                    return  # refused or cut: not acknowledged, so nothing is promised
                if response.status_code == 200:
                    acknowledged[index].update(range(step, step + 50))
                elif response.status_code != 503:
                    raise AssertionError(f"client {index}: {response.status_code} {response.text}")
                step += 50

    chunk, chunks = b"u" * 65536, 48  # 3 MiB, streamed over about 2.4 s

    def slow_body():
        for _ in range(chunks):
            time.sleep(0.05)
            yield chunk

    upload: dict = {}

    def uploader():
        try:
            upload["response"] = httpx.put(upload_url, content=slow_body(), timeout=120,
                                           headers={"Content-Length": str(len(chunk) * chunks)})
        except httpx.HTTPError as exc:
            upload["error"] = exc

    threads = [threading.Thread(target=client, args=(i,)) for i in range(4)] + [threading.Thread(target=uploader)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 60
    while sum(map(len, acknowledged.values())) < 2000 and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the upload is well under way, not finished
    assert "response" not in upload, "the upload ended before the server was asked to stop"
    status = restartable.stop()  # SIGTERM, then waits for the process
    stop.set()
    for thread in threads:
        thread.join(60)
    assert status == 0, f"podstack server exited with {status} after SIGTERM:\n{restartable.log_tail()}"
    assert "error" not in upload and upload["response"].status_code == 200, upload
    assert upload["response"].json() == {"size": len(chunk) * chunks}

    restartable.start()
    with httpx.Client(base_url=restartable.url + "/api/v1", headers=headers) as api:
        for index, steps in acknowledged.items():
            assert steps, f"client {index} was never answered"
            stored = [p["step"] for p in api.get(f"/runs/{run_id}/metrics/c{index}/history").json()["metrics"]]
            assert set(stored) >= steps, f"client {index}: {len(steps - set(stored))} acknowledged points lost"
            assert len(stored) == len(set(stored)), f"client {index}: points stored twice"
        assert [(a["path"], a["size"]) for a in api.get(f"/runs/{run_id}/artifacts").json()["artifacts"]] == \
            [("slow.bin", len(chunk) * chunks)]


# -- the access log ----------------------------------------------------------------------------------

def test_the_access_log_never_holds_a_secret(restartable):
    """API keys (header or ``token=``), signed-URL signatures and upload tokens' signatures, in requests
    that succeed and in ones that fail, never reach the access log; the log still names each request."""
    project_id, key = restartable.new_project()
    _, revoked = restartable.new_project()
    restartable.accounts.revoke_key(revoked)
    secrets_seen = {key, revoked, key.rsplit("_", 1)[-1], revoked.rsplit("_", 1)[-1]}
    with httpx.Client(base_url=restartable.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}) as api:
        experiment = api.post("/experiments", json={"name": "logged"}).json()["experiment"]
        run_id = api.post("/runs", json={"experiment_id": experiment["id"]}).json()["run"]["id"]
        upload = api.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": "a.txt"}).json()["upload_url"]
        assert httpx.put(upload, content=b"hello").status_code == 200
        download = api.get(f"/runs/{run_id}/artifacts/download-url", params={"artifact_path": "a.txt"}
                           ).json()["download_url"]
        assert httpx.get(download).content == b"hello"
        for url in (upload, download):
            secrets_seen.add(httpx.URL(url).params["signature"])
        signature = httpx.URL(download).params["signature"]
        # a tampered signature, the same one under odd spellings, keys in the query (as SSE clients send them)
        assert httpx.get(download.replace(signature, signature[::-1])).status_code == 403
        secrets_seen.add(signature[::-1])
        raw = restartable.url + httpx.URL(download).raw_path.decode()
        for variant in (raw + "&signature=" + signature, raw.replace("signature=", "%73ignature=")):
            httpx.get(variant)
        for token in (key, revoked):
            httpx.get(f"{restartable.url}/api/v1/experiments", params={"token": token})
            httpx.get(f"{restartable.url}/api/v1/experiments?limit=1&token={token}&token={token}")
            httpx.get(f"{restartable.url}/api/v1/experiments?%74oken={token}")
        httpx.get(f"{restartable.url}/api/v1/experiments", headers={"Authorization": f"Bearer {revoked}"})
        httpx.get(f"{restartable.url}/api/v1/experiments", headers={"Authorization": f"Basic {key}"})
        api.get("/nowhere", params={"token": key})
    restartable.stop()
    log = restartable.log_path.read_text(errors="replace")
    leaked = sorted(s for s in secrets_seen if s in log)
    assert not leaked, f"the server's log holds {len(leaked)} secret(s): {[s[:6] + '…' for s in leaked]}"
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    assert sum(1 for line in lines if line["path"] == "/api/v1/experiments") >= 8
    assert any(line["path"].startswith("/files/") and line["status"] == 403 for line in lines)


def test_an_upload_made_before_a_server_restart_becomes_the_runs_artifact_at_its_end(restartable):
    """The SDK's flow (upload URL, PUT, end the run): the server remembers which runs have uploads to
    finalize, across a kill and a restart in between."""
    project_id, key = restartable.new_project()
    with httpx.Client(base_url=restartable.url + "/api/v1", headers={"Authorization": f"Bearer {key}"},
                      timeout=30) as api:
        experiment = api.post("/experiments", json={"name": "restarted"}).json()["experiment"]
        run_id = api.post("/runs", json={"experiment_id": experiment["id"]}).json()["run"]["id"]
        upload = api.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": "kept.txt"}
                          ).json()["upload_url"]
        assert httpx.put(upload, content=b"kept across a restart").status_code == 200
        restartable.kill()
        restartable.start()
        ended = api.post(f"/runs/{run_id}/end", json={"status": "completed"})
        assert ended.status_code == 200, ended.text
        other = api.post("/runs", json={"experiment_id": experiment["id"]}).json()["run"]["id"]
        assert api.patch(f"/runs/{other}", json={"status": "completed"}).status_code == 200
        listed = api.get(f"/runs/{run_id}/artifacts").json()["artifacts"]
        assert [(a["path"], a["size"]) for a in listed] == [("kept.txt", 21)]
        assert api.get(f"/runs/{other}/artifacts").json()["artifacts"] == []
