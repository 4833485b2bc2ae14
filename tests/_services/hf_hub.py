"""A stand-in for the Hugging Face hub on loopback, for tests: the machine has no route to the hub.

It answers the few HTTP calls ``huggingface_hub`` makes to read a model repo (the model info at
a revision, and each file's metadata and bytes), so the real client code runs end to end against
it: ``HfApi(endpoint=hub.url).model_info(...)``, ``snapshot_download(..., endpoint=hub.url)``,
``hf_hub_download(..., endpoint=hub.url)``::

    with FakeHub.started({"acme/tiny": {"config.json": b"{}", "onnx/model.onnx": b"..."}}) as hub:
        ...  # hub.url, hub.commit("acme/tiny"), hub.requests (paths asked, in order)
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

__all__ = ["FakeHub"]


class FakeHub:
    def __init__(self, repos: dict[str, dict[str, bytes]], author: str | None = None):
        self.repos = {repo: dict(files) for repo, files in repos.items()}
        self.author = author
        self.requests: list[str] = []
        self._server: ThreadingHTTPServer | None = None

    @classmethod
    @contextlib.contextmanager
    def started(cls, repos, author=None):
        hub = cls(repos, author)
        hub.start()
        try:
            yield hub
        finally:
            hub.stop()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def commit(self, repo: str) -> str:
        return hashlib.sha1(repr(sorted((k, hashlib.sha256(v).hexdigest()) for k, v in self.repos[repo].items()))
                            .encode()).hexdigest()

    def start(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _answer(self, status, body=b"", headers=None, send_body=True):
                self.send_response(status)
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if send_body:
                    self.wfile.write(body)

            def _missing(self, code, send_body=True):
                self._answer(404, json.dumps({"error": code}).encode(), {"X-Error-Code": code,
                                                                         "Content-Type": "application/json"}, send_body)

            def _serve(self, send_body):
                path = unquote(urlsplit(self.path).path)
                hub.requests.append(f"{self.command} {path}")
                if path.startswith("/api/models/") and "/tree/" in path:
                    repo, _, revision = path[len("/api/models/"):].partition("/tree/")
                    if repo not in hub.repos:
                        return self._missing("RepoNotFound", send_body)
                    if revision not in ("main", hub.commit(repo)):
                        return self._missing("RevisionNotFound", send_body)
                    tree = [{"type": "file", "path": name, "size": len(data),
                             "oid": hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()}
                            for name, data in sorted(hub.repos[repo].items())]
                    return self._answer(200, json.dumps(tree).encode(), {"Content-Type": "application/json"},
                                        send_body)
                if path.startswith("/api/models/"):
                    repo, _, revision = path[len("/api/models/"):].partition("/revision/")
                    if repo not in hub.repos:
                        return self._missing("RepoNotFound", send_body)
                    if revision not in ("", "main", hub.commit(repo)):
                        return self._missing("RevisionNotFound", send_body)
                    info = {"id": repo, "modelId": repo, "sha": hub.commit(repo),
                            "author": hub.author or repo.split("/")[0], "lastModified": "2026-01-02T03:04:05.000Z",
                            "private": False, "tags": ["test"], "cardData": {"license": "mit"},
                            "siblings": [{"rfilename": name} for name in sorted(hub.repos[repo])]}
                    return self._answer(200, json.dumps(info).encode(), {"Content-Type": "application/json"},
                                        send_body)
                head, sep, tail = path.lstrip("/").partition("/resolve/")
                if sep and head in hub.repos:
                    revision, _, name = tail.partition("/")
                    if revision not in ("main", hub.commit(head)):
                        return self._missing("RevisionNotFound", send_body)
                    data = hub.repos[head].get(name)
                    if data is None:
                        return self._missing("EntryNotFound", send_body)
                    return self._answer(200, data, {"X-Repo-Commit": hub.commit(head),
                                                    "ETag": f'"{hashlib.sha256(data).hexdigest()}"',
                                                    "Content-Type": "application/octet-stream"}, send_body)
                return self._missing("RepoNotFound", send_body)

            def do_GET(self):  # noqa: N802 - http.server's names
                self._serve(True)

            def do_HEAD(self):  # noqa: N802
                self._serve(False)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True, name="fake-hf-hub").start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
