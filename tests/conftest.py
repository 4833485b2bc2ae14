"""Fixtures shared by the whole suite: an isolated podstack home per test, a real IPython shell, and the
session's one real PostgreSQL server and one real S3-compatible server (every suite that needs them shares them)."""

from __future__ import annotations

import subprocess

import pytest

from podstack_jupyter import config


@pytest.fixture(autouse=True)
def podstack_home(tmp_path, monkeypatch):
    """Every test gets its own PODSTACK_HOME (database, artifacts, environments)."""
    home = tmp_path / "podstack-home"
    monkeypatch.setenv("PODSTACK_HOME", str(home))
    for name in ("PODSTACK_LOCAL_GPUS", "PODSTACK_TRACKING_URI", "PODSTACK_ARTIFACT_ROOT", "PODSTACK_REGISTRY_URL",
                 "PODSTACK_IDLE_TIMEOUT", "PODSTACK_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    config.reset()
    yield home
    config.reset()


@pytest.fixture(scope="session")
def _shell():
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "podstack")
    return shell


@pytest.fixture
def ip(_shell):
    """A real IPython shell with ``%load_ext podstack`` done and a clean namespace.
    GPU sessions started by the test are stopped after it."""
    from podstack_jupyter.compute import sessions

    _shell.reset(new_session=False)
    yield _shell
    sessions.stop("all")


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory):
    """A real S3-compatible server (SeaweedFS on loopback) for the session: see tests/_services/s3.py."""
    from _services.s3 import SeaweedS3, WeedNotFound

    try:
        with SeaweedS3.started(tmp_path_factory.mktemp("seaweedfs")) as server:
            yield server
    except WeedNotFound as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="session")
def postgres_server():
    """One real PostgreSQL server for the whole session (``tests/_services/postgres.py``: initdb into a
    temporary folder, pg_ctl on a free port), shared by the tracking, models, artifacts and server
    suites; ``new_database()`` gives each test a fresh copy of a migrated template. Skipped, saying
    why, without the PostgreSQL binaries or psycopg."""
    from _services.postgres import PostgresServer, pg_bin

    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) are not installed; "
                    "apt-get install postgresql to run the suites against PostgreSQL")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.skip("psycopg (3) is not installed: pip install 'podstack-jupyter[postgres]'")
    server = PostgresServer(bindir)
    try:
        server.start()
    except subprocess.CalledProcessError as exc:
        server.stop()
        raise RuntimeError(f"could not start PostgreSQL: {exc.stderr or exc.stdout}") from exc
    yield server
    server.stop()
