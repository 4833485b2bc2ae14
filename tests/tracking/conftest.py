"""Tracking tests run against a real SQLite file and a real PostgreSQL server.

``store_url`` (autouse, parametrized) points podstack at a fresh database per test:
the SQLite file in the test's own PODSTACK_HOME, or a new database on the
PostgreSQL server that ``postgres_server`` (tests/conftest.py) starts once for the whole
session (initdb into a temporary folder as an unprivileged user, pg_ctl on a free port). Without the
PostgreSQL binaries the postgres half is skipped, saying so.
"""

from __future__ import annotations

import pytest

from _services.podstack_server import leave_registry_clean
from podstack_jupyter import config

SQLITE, POSTGRES = "sqlite", "postgres"


@pytest.fixture(autouse=True, params=[SQLITE, pytest.param(POSTGRES, marks=pytest.mark.postgres)])
def store_url(request, podstack_home, monkeypatch):
    """The database this test's registry calls go to (``"sqlite"`` tests use the home's file)."""
    from podstack_jupyter.tracking import registry

    if request.param == POSTGRES:
        url = request.getfixturevalue("postgres_server").new_database()
        monkeypatch.setenv("PODSTACK_TRACKING_URI", url)
    else:
        url = f"sqlite:///{podstack_home / 'podstack.db'}"
    config.reset()
    registry._reset_store()
    registry._set_current_experiment((None, None))
    yield url
    leave_registry_clean()
