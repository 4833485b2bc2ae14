"""A real HTTP server for artifact downloads: serves a folder, counts requests, can fail on purpose."""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter
from pathlib import Path

import pytest


class ArtifactServer:
    def __init__(self, root: Path):
        self.root = root
        self.hits = Counter()
        self.fail = {}  # path -> HTTP status to answer instead (503 keeps failing; see fail_times)
        self.fail_times = {}  # path -> how many more requests fail before it works
        self.delay = 0.0
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, directory=str(server.root), **kwargs)

            def do_GET(self):
                server.hits[self.path] += 1
                if server.delay:
                    time.sleep(server.delay)
                status = server.fail.get(self.path)
                if status is None and server.fail_times.get(self.path, 0) > 0:
                    server.fail_times[self.path] -= 1
                    status = 503
                if status is not None:
                    self.send_error(status)
                    return
                super().do_GET()

            def log_message(self, format, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    s = ArtifactServer(root)
    yield s
    s.close()


@pytest.fixture(autouse=True)
def _fresh_artifact_cache():
    """set_cache_dir is process-wide: every test starts from the default (inside its own PODSTACK_HOME)."""
    from podstack_jupyter.artifacts.julia import _manager, set_cache_dir

    set_cache_dir(None)
    _manager._managers.clear()
    yield
    set_cache_dir(None)
    _manager._managers.clear()
