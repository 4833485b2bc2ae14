"""Widget tests: a fresh tracking store per test (the SQLite file in the test's own home)."""

from __future__ import annotations

import pytest

from podstack_jupyter import config


@pytest.fixture(autouse=True)
def fresh_store(podstack_home):
    from podstack_jupyter import registry

    config.reset()
    registry._reset_store()
    registry._set_current_experiment((None, None))
    yield
    from podstack_jupyter.tracking.runs import active_runs

    while active_runs.top() is not None:
        registry.end_run("killed")
    registry._reset_store()
    registry._set_current_experiment((None, None))
