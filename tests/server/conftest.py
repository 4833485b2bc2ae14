"""The team server, tested as a user runs it: a ``podstack server`` process on loopback.

* ``live_server`` (session): backed by the session's PostgreSQL server (``postgres_server``, tests/conftest.py) and a real S3-compatible server
  (SeaweedFS), as a team would run it. Every test that uses it gets a project of its own (and an
  API key of it): the tests are isolated by the server's own project scoping.
* ``local_server`` (module): backed by a SQLite file and a folder (the server's defaults), whose
  signed URLs the server serves itself.
* ``store_url`` (autouse here): points this process's ``podstack.registry`` at ``live_server``
  with a fresh project, so the tracking suite's registry tests, collected again under
  ``tests/server/`` (``test_server_*.py``), run against the server exactly as they run embedded.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "tracking"))  # the registry suite, collected here again

from _services.podstack_server import (LiveServer, env_without_podstack, leave_registry_clean,  # noqa: E402,F401
                                       point_registry_at)

from podstack_jupyter import config  # noqa: E402

SERVER = "server"


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.server)
            # a re-collected test that is about the SQL store itself, named in its module's NOT_ON_SERVER
            reason = getattr(item.module, "NOT_ON_SERVER", {}).get(getattr(item, "originalname", item.name))
            if reason:
                item.add_marker(pytest.mark.skip(reason=reason))


@pytest.fixture(scope="session")
def live_server(postgres_server, s3_server, tmp_path_factory):
    """``podstack server`` on PostgreSQL + SeaweedFS for the whole session (no rate limit)."""
    server = LiveServer(postgres_server.new_database(), s3_server.new_root(), tmp_path_factory.mktemp("server-home"),
                        env=s3_server.env(), extra_args=("--rate-limit", "0"))
    server.start()
    yield server
    server.stop()
    server.close_accounts()


@pytest.fixture(scope="module")
def local_server(tmp_path_factory):
    """``podstack server`` on a SQLite file and a folder (its signed URLs served by itself)."""
    home = tmp_path_factory.mktemp("local-server")
    server = LiveServer(f"sqlite:///{home / 'server.db'}", str(home / "artifacts"), home,
                        extra_args=("--rate-limit", "0"))
    server.start()
    yield server
    server.stop()
    server.close_accounts()


@pytest.fixture(autouse=True, params=[SERVER])
def store_url(request, podstack_home, monkeypatch):
    """The registry of this test goes to ``live_server``, in a project of its own. Tests of the
    tracking suite made for one database only (``indirect`` ``"sqlite"``) are skipped here."""
    if request.param != SERVER:
        pytest.skip(f"a test of the {request.param} store alone")
    if not getattr(request.module, "REGISTRY_ON_SERVER", False):
        yield None  # a test of the server itself: it sets up what it needs
        return
    server = request.getfixturevalue("live_server")
    project_id, key = server.new_project()
    point_registry_at(server, monkeypatch, project_id, key)
    yield server.url
    leave_registry_clean()


@pytest.fixture
def project(live_server):
    """A fresh project of ``live_server``: ``(project id, API key)``."""
    return live_server.new_project()
