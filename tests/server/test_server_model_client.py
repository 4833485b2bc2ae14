"""``tests/models/test_model_client.py`` again, with the clients over a live ``podstack server``
(PostgreSQL + S3): the model registry through the REST store, artifacts through its signed URLs."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "models"))

from test_model_client import *  # noqa: E402,F401,F403 - re-collected here, against the server

from podstack_jupyter.models import ModelRegistryClient  # noqa: E402
from podstack_jupyter.tracking import TrackingClient, open_store  # noqa: E402

del store_url  # noqa: F821 - the server's (conftest.py), not the databases'

REGISTRY_ON_SERVER = True


@pytest.fixture
def clients(store_url):
    store = open_store(store_url)  # the server's URL; key and project from the settings
    tracking = TrackingClient(store, store.artifact_store())
    yield tracking, ModelRegistryClient(tracking)
    store.close()
