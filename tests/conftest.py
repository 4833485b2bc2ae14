"""Fixtures shared by the whole suite: an isolated podstack home per test, and a real IPython shell."""

from __future__ import annotations

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
