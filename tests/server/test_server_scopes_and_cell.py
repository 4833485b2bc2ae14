"""``tests/tracking/test_scopes_and_cell.py`` again, with the registry on a live ``podstack server`` (PostgreSQL + S3).

Every test of that module is collected here a second time (the star import); ``store_url`` (see
``conftest.py``) points the registry at the server, in a project of the test's own.
"""

from test_scopes_and_cell import *  # noqa: F401,F403 - re-collected here, against the server

REGISTRY_ON_SERVER = True
