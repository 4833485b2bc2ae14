"""The server's own guarantees, over HTTP as any client sees them: ``podstack admin``, API keys,
projects, signed URLs, rate limits, errors as JSON.

Most tests use ``local_server`` (SQLite and a folder: the server signs and serves its own URLs);
the S3 ones use servers over SeaweedFS, whose presigned URLs the S3 server itself checks.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import httpx
import pytest
from _services.podstack_server import LiveServer, env_without_podstack, point_registry_at

from podstack_jupyter import config, errors


def api(server, key=None, project=None):
    headers = {}
    if key:
        headers["Authorization"] = f"Bearer {key}"
    if project:
        headers["X-Project-ID"] = project
    return httpx.Client(base_url=server.url + "/api/v1", headers=headers, timeout=30)


def new_run(client) -> str:
    experiment = client.post("/experiments", json={"name": f"e-{uuid.uuid4().hex[:6]}", "description": ""})
    assert experiment.status_code in (200, 201), experiment.text
    experiment = experiment.json().get("experiment", experiment.json())
    run = client.post("/runs", json={"experiment_id": experiment["id"], "name": "r", "tags": {}})
    assert run.status_code in (200, 201), run.text
    return run.json().get("run", run.json())["id"]


def altered(url: str, name: str, change) -> str:
    parts = urlsplit(url)
    query = [(k, change(v) if k == name else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query)))


def flip(text: str) -> str:
    return text[:-1] + ("0" if text[-1] != "0" else "1")


# -- podstack admin ------------------------------------------------------------------------------------

def admin(*args, home, db):
    env = {**env_without_podstack(), "PODSTACK_HOME": str(home)}
    done = subprocess.run([sys.executable, "-m", "podstack_jupyter.cli", "admin", *args, "--db", db],
                          capture_output=True, text=True, env=env, timeout=120)
    return done


def test_admin_makes_projects_and_keys_that_a_server_accepts_and_revokes(tmp_path):
    """As an operator: project create / key create print the id and the key alone on the last line;
    the server (same home, so the same secret) takes the key; revoke refuses it on the next request."""
    home, db = tmp_path / "home", f"sqlite:///{tmp_path / 'server.db'}"
    made = admin("project", "create", "nlp", home=home, db=db)
    assert made.returncode == 0, made.stderr
    project_id = made.stdout.strip().splitlines()[-1]
    assert str(uuid.UUID(project_id)) == project_id
    again = admin("project", "create", "nlp", home=home, db=db)
    assert again.returncode != 0 and "already exists" in again.stderr
    made = admin("key", "create", "--project", "nlp", "--user", "ada", home=home, db=db)
    assert made.returncode == 0, made.stderr
    key = made.stdout.strip().splitlines()[-1]
    assert key.startswith("pjt_") and key not in made.stderr
    missing = admin("key", "create", "--project", "no-such-project", home=home, db=db)
    assert missing.returncode != 0 and "no project 'no-such-project'" in missing.stderr

    server = LiveServer(db, str(tmp_path / "artifacts"), home, extra_args=("--rate-limit", "0"))
    server.env.pop("PODSTACK_SERVER_SECRET")  # the secret of the home, as podstack admin used
    server.start()
    try:
        with api(server, key, project_id) as client:
            assert client.get("/experiments").status_code == 200
            listed = admin("key", "list", "--json", home=home, db=db)
            rows = json.loads(listed.stdout)
            assert [(r["project"], r["user"], r["revoked_at"]) for r in rows] == [("nlp", "ada", None)]
            revoked = admin("key", "revoke", key[:10], home=home, db=db)
            assert revoked.returncode == 0, revoked.stderr
            refused = client.get("/experiments")
            assert refused.status_code == 401 and "revoked" in refused.json()["error"]
    finally:
        server.stop()


# -- keys and projects ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def two_projects(local_server):
    a, b = local_server.new_project(), local_server.new_project()
    with api(local_server, a[1], a[0]) as client:
        run_a = new_run(client)
    revoked = local_server.new_project()
    local_server.accounts.revoke_key(revoked[1])
    return {"a": a, "b": b, "run_a": run_a, "revoked": revoked}


def _endpoints(server):
    spec = httpx.get(server.url + "/openapi.json").json()
    for path, methods in spec["paths"].items():
        if not path.startswith("/api/v1/") or path.endswith("/health"):
            continue
        for method in methods:
            yield method.upper(), path


def _fill(path: str, run_id: str) -> str:
    values = {"run_id": run_id, "experiment_id": str(uuid.uuid4()), "model": "m", "version": "1", "key": "loss",
              "name": "n", "stage": "production", "alias": "champion", "digest": "0" * 64,
              "kernel_id": "0" * 32, "execution_id": uuid.uuid4().hex}
    for name, value in values.items():
        path = path.replace("{" + name + "}", value)
    assert "{" not in path, path
    return path[len("/api/v1"):]


def test_every_endpoint_refuses_no_key_a_revoked_key_and_another_projects_key(local_server, two_projects):
    """The authorization matrix: each endpoint of the OpenAPI description, called without a key, with a
    revoked key, with a made-up key, and with project B's key naming project A, is refused."""
    a_id, _ = two_projects["a"]
    b_id, b_key = two_projects["b"]
    endpoints = sorted(set(_endpoints(local_server)))
    assert len(endpoints) > 30
    callers = {
        "no key": (api(local_server), 401),
        "revoked key": (api(local_server, two_projects["revoked"][1]), 401),
        "made-up key": (api(local_server, "pjt_" + "a" * 12 + "_" + "b" * 43), 401),
        "other project's key": (api(local_server, b_key, a_id), 403),
    }
    wrong = []
    for method, path in endpoints:
        url = _fill(path, two_projects["run_a"])
        for who, (client, status) in callers.items():
            answer = client.request(method, url, json={} if method in ("POST", "PUT", "PATCH") else None)
            if answer.status_code != status or not answer.json().get("error"):
                wrong.append(f"{method} {path} with {who}: {answer.status_code} {answer.text[:100]}")
    for client, _ in callers.values():
        client.close()
    assert not wrong, "\n".join(wrong)


def test_a_key_of_another_project_finds_nothing_of_this_one(local_server, two_projects):
    """Project B's key, asking in its own project, does not see or touch project A's run (404), and A's
    experiments do not appear in B's lists."""
    b_id, b_key = two_projects["b"]
    run_a = two_projects["run_a"]
    with api(local_server, b_key, b_id) as client:
        for method, path, body in [("GET", f"/runs/{run_a}", None), ("GET", f"/runs/{run_a}/params", None),
                                   ("POST", f"/runs/{run_a}/metrics", {"metrics": [{"key": "x", "value": 1}]}),
                                   ("POST", f"/runs/{run_a}/params", {"params": {"p": "1"}}),
                                   ("POST", f"/runs/{run_a}/end", {"status": "completed"}),
                                   ("POST", f"/runs/{run_a}/artifacts/upload-url", {"artifact_path": "x.bin"}),
                                   ("GET", f"/runs/{run_a}/artifacts", None)]:
            answer = client.request(method, path, json=body)
            assert answer.status_code == 404, (method, path, answer.text)
            assert answer.json()["error"]
        assert client.get("/experiments").json()["experiments"] == []
        assert client.get("/runs").json()["runs"] == []
    with api(local_server, *reversed(two_projects["a"])) as client:
        assert client.get(f"/runs/{run_a}").json()["status"] == "running"
        assert client.get(f"/runs/{run_a}/params").json()["params"] == []


# -- signed URLs -----------------------------------------------------------------------------------------

def _upload(client, run_id, path, data: bytes):
    answer = client.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": path})
    assert answer.status_code == 200, answer.text
    url = answer.json()["upload_url"]
    put = httpx.put(url, content=data)
    assert put.status_code in (200, 201, 204), put.text
    return url


def test_signed_urls_of_a_folder_store_work_unauthenticated_and_refuse_altered_ones(local_server):
    project_id, key = local_server.new_project()
    with api(local_server, key, project_id) as client:
        run_id = new_run(client)
        upload_url = _upload(client, run_id, "model/weights.bin", b"\x00weights" * 1000)
        listed = client.get(f"/runs/{run_id}/artifacts").json()["artifacts"]
        assert [(a["path"], a["size"]) for a in listed] == [("model/weights.bin", 8000)]
        url = client.get(f"/runs/{run_id}/artifacts/download-url",
                         params={"artifact_path": "model/weights.bin"}).json()["download_url"]
        assert httpx.get(url).content == b"\x00weights" * 1000
        for bad in (altered(url, "signature", flip), altered(url, "expires", lambda v: str(int(v) + 3600)),
                    url.replace("/blob/", "/blob/0").replace("/blob/0", "/blob/", 1)[:-1],
                    altered(upload_url, "signature", flip)):
            answer = httpx.request("PUT" if "/upload/" in bad else "GET", bad, content=b"x")
            assert answer.status_code in (403, 404), (bad, answer.status_code)
            assert answer.json()["error"]
        # the URL of one project's blob, re-pointed at another project: refused
        other_id, _ = local_server.new_project()
        assert httpx.get(url.replace(project_id, other_id)).status_code == 403


@pytest.mark.parametrize("path", ["../escape.txt", "a/../../b", "a/../b", "/etc/passwd", "a\x00b", ""])
def test_artifact_paths_that_leave_the_run_are_refused(local_server, path):
    project_id, key = local_server.new_project()
    with api(local_server, key, project_id) as client:
        run_id = new_run(client)
        answer = client.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": path})
        assert answer.status_code == 400, answer.text
        assert "artifact_path" in answer.json()["error"]
        download = client.get(f"/runs/{run_id}/artifacts/download-url", params={"artifact_path": path or "x/.."})
        assert download.status_code in (400, 404), download.text


def test_a_revoked_key_obtains_no_new_url(local_server):
    project_id, key = local_server.new_project()
    with api(local_server, key, project_id) as client:
        run_id = new_run(client)
        _upload(client, run_id, "a.txt", b"abc")
        assert client.get(f"/runs/{run_id}/artifacts/download-url", params={"artifact_path": "a.txt"}).is_success
        local_server.accounts.revoke_key(key)
        for answer in (client.get(f"/runs/{run_id}/artifacts/download-url", params={"artifact_path": "a.txt"}),
                       client.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": "b.txt"})):
            assert answer.status_code == 401 and "revoked" in answer.json()["error"]


@pytest.fixture(scope="module")
def short_url_servers(postgres_server, s3_server, tmp_path_factory):
    """Two servers whose signed URLs live 2 seconds: one on a folder, one on S3 (SeaweedFS checks expiry)."""
    home = tmp_path_factory.mktemp("short-urls")
    servers = [LiveServer(f"sqlite:///{home / 'local.db'}", str(home / "artifacts"), home / "local",
                          extra_args=("--rate-limit", "0", "--url-expires", "2")),
               LiveServer(postgres_server.new_database(), s3_server.new_root(), home / "s3", env=s3_server.env(),
                          extra_args=("--rate-limit", "0", "--url-expires", "2"))]
    for server in servers:
        server.start()
    yield servers
    for server in servers:
        server.stop()
        server.close_accounts()


@pytest.mark.parametrize("which", ["folder", "s3"])
def test_an_expired_signed_url_is_refused(short_url_servers, which):
    server = short_url_servers[0 if which == "folder" else 1]
    project_id, key = server.new_project()
    with api(server, key, project_id) as client:
        run_id = new_run(client)
        late_upload = client.post(f"/runs/{run_id}/artifacts/upload-url", json={"artifact_path": "late.bin"})
        _upload(client, run_id, "on-time.bin", b"fresh bytes")
        url = client.get(f"/runs/{run_id}/artifacts/download-url",
                         params={"artifact_path": "on-time.bin"}).json()["download_url"]
        assert httpx.get(url).content == b"fresh bytes"
        time.sleep(3.5)
        assert httpx.get(url).status_code == 403
        assert httpx.put(late_upload.json()["upload_url"], content=b"too late").status_code == 403
        paths = [a["path"] for a in client.get(f"/runs/{run_id}/artifacts").json()["artifacts"]]
        assert paths == ["on-time.bin"]


def test_s3_artifacts_go_through_presigned_urls_of_the_s3_server(live_server, project):
    """With S3 the API hands out the S3 server's own URLs: the bytes never pass through the API."""
    project_id, key = project
    with api(live_server, key, project_id) as client:
        run_id = new_run(client)
        upload_url = _upload(client, run_id, "data/table.csv", b"a,b\n1,2\n")
        assert not upload_url.startswith(live_server.url) and "X-Amz-Signature" in upload_url
        url = client.get(f"/runs/{run_id}/artifacts/download-url",
                         params={"artifact_path": "data/table.csv"}).json()["download_url"]
        assert not url.startswith(live_server.url)
        assert httpx.get(url).content == b"a,b\n1,2\n"
        assert httpx.get(altered(url, "X-Amz-Signature", flip)).status_code == 403


# -- rate limits, errors ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def limited_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("limited")
    server = LiveServer(f"sqlite:///{home / 'server.db'}", str(home / "artifacts"), home,
                        extra_args=("--rate-limit", "1", "--burst", "3"))
    server.start()
    yield server
    server.stop()
    server.close_accounts()


def test_rate_limit_answers_429_with_retry_after_and_the_client_raises_rate_limit_error(limited_server,
                                                                                        monkeypatch):
    project_id, key = limited_server.new_project()
    with api(limited_server, key, project_id) as client:
        answers = [client.get("/experiments") for _ in range(6)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and int(limited[0].headers["Retry-After"]) >= 1
    assert "retry after" in limited[0].json()["error"]
    # another key of the same server is not limited by this one's use
    other_id, other_key = limited_server.new_project()
    with api(limited_server, other_key, other_id) as client:
        assert client.get("/experiments").status_code == 200

    from podstack_jupyter.tracking import registry

    point_registry_at(limited_server, monkeypatch, project_id, key)
    with pytest.raises(errors.RateLimitError) as caught:
        for _ in range(10):
            registry.list_experiments()
    assert caught.value.retry_after >= 1
    registry._reset_store()
    config.reset()


def test_errors_are_json_with_a_message(local_server):
    project_id, key = local_server.new_project()
    with api(local_server, key, project_id) as client:
        for method, path, body, status in [("GET", "/runs/not-a-run", None, 404),
                                           ("GET", "/no/such/endpoint", None, 404),
                                           ("GET", "/models/not-a-model", None, 404),
                                           ("GET", "/experiments/name/nope", None, 404),
                                           ("POST", "/runs", {"experiment_id": 5}, 400),
                                           ("POST", "/experiments", b"{not json", 400),
                                           # found by the fuzz test: a date no calendar shows was a 500
                                           ("POST", "/datasets", {"name": "d", "created_at": 5e16}, 400),
                                           ("POST", "/models/page", {"after": []}, 400),
                                           ("POST", "/models/page", {"after": [{"a": 1}, [2]]}, 400)]:
            if isinstance(body, bytes):
                answer = client.request(method, path, content=body, headers={"Content-Type": "application/json"})
            else:
                answer = client.request(method, path, json=body)
            assert answer.status_code == status, (path, answer.text)
            assert isinstance(answer.json()["error"], str) and answer.json()["error"], answer.text
    assert httpx.get(local_server.url + "/health").json()["status"] == "ok"


# -- the REST store's connections ----------------------------------------------------------------------

def test_the_rest_store_carries_on_when_the_server_has_closed_its_idle_connection(local_server, tmp_path):
    from podstack_jupyter.tracking.store.rest import RESTStore

    project_id, key = local_server.new_project()
    store = RESTStore(local_server.url, key, project_id, cache_dir=tmp_path / "cache")
    try:
        experiment = store.ensure_experiment(str(uuid.uuid4()), "keep-alive", time.time())
        time.sleep(6)  # past uvicorn's keep-alive (5 s): the server has closed the pooled connection
        started = time.monotonic()
        assert store.get_experiment(experiment["id"])["name"] == "keep-alive"
        assert time.monotonic() - started < 1.5  # at once, not after the unreachable-server back-off
        assert store.get_experiment_by_name("no such experiment") is None
    finally:
        store.close()


def test_the_rest_store_answers_each_thread_its_own_calls(local_server, tmp_path):
    import threading

    from podstack_jupyter.tracking.store.rest import RESTStore

    project_id, key = local_server.new_project()
    store = RESTStore(local_server.url, key, project_id, cache_dir=tmp_path / "cache")
    names = [f"thread-{i}" for i in range(8)]
    ids = {name: store.ensure_experiment(str(uuid.uuid4()), name, time.time())["id"] for name in names}
    wrong = []

    def read(name):
        for _ in range(25):
            found = store.get_experiment(ids[name])
            if found is None or found["name"] != name:
                wrong.append((name, found))

    threads = [threading.Thread(target=read, args=(name,)) for name in names]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not wrong, wrong[:3]
    finally:
        store.close()


def _packed(typecode: str, items) -> str:
    import array
    import base64
    import sys

    packed = array.array(typecode, items)
    if sys.byteorder == "big":
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode()


def test_ending_a_run_with_its_last_points_stores_them_once_and_bad_points_end_nothing(local_server):
    """PATCH /runs/{id} with an ended status and `metrics` (a batch): the points are stored (once per
    batch id), then the run ends and is answered with them; a malformed batch, or points with a
    status that does not end the run, are refused (400) and the run stays as it was."""
    project_id, key = local_server.new_project()
    with api(local_server, key, project_id) as client:
        run_id = new_run(client)
        series = {"run_id": run_id, "key": "loss", "count": 2, "steps": _packed("q", [0, 1]),
                  "values": _packed("d", [0.5, 0.25]), "timestamps": _packed("d", [1.0, 2.0])}
        bad = client.patch(f"/runs/{run_id}", json={"status": "completed", "metrics": {
            "batch_id": "b1", "series": [{**series, "values": "not base64!"}]}})
        assert bad.status_code == 400 and "values is not base64" in bad.json()["error"]
        running = client.patch(f"/runs/{run_id}", json={"status": "running", "metrics": {"series": [series]}})
        assert running.status_code == 400 and "ended status" in running.json()["error"]
        assert client.get(f"/runs/{run_id}").json()["status"] == "running"
        for _ in range(2):  # the same batch again (a retry): stored once
            ended = client.patch(f"/runs/{run_id}", json={"status": "completed", "end_time": 3.0,
                                                          "metrics": {"batch_id": "b1", "series": [series]}})
            assert ended.status_code == 200, ended.text
            assert ended.json()["status"] == "completed" and ended.json()["metrics"] == {"loss": 0.25}
        history = client.get(f"/runs/{run_id}/metrics/loss/history").json()["metrics"]
        assert [(m["step"], m["value"]) for m in history] == [(0, 0.5), (1, 0.25)]
