"""``tests/artifacts/test_tagged_sets.py`` again (seed 001's tagged artifact sets), with the registry on a
live ``podstack server`` (PostgreSQL + S3), in a project of the test's own."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1] / "artifacts"))

from test_tagged_sets import *  # noqa: E402,F401,F403 - re-collected here, against the server

del store_url  # noqa: F821 - the server's (conftest.py), not the databases'

REGISTRY_ON_SERVER = True

NOT_ON_SERVER = {
    "test_what_download_cannot_do_is_an_artifacts_download_error":
        "corrupts a blob in the local artifact folder, which the server's S3 store does not use (a download through "
        "the REST store is checked against its sha256 all the same: RESTArtifactStore.get_file)",
}
