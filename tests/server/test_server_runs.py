"""``tests/tracking/test_runs.py`` again, with the registry on a live ``podstack server`` (PostgreSQL + S3).

Every test of that module is collected here a second time (the star import); ``store_url`` (see
``conftest.py``) points the registry at the server, in a project of the test's own.
"""

from test_runs import *  # noqa: F401,F403 - re-collected here, against the server

REGISTRY_ON_SERVER = True

NOT_ON_SERVER = {
    "test_a_store_error_keeps_the_points_and_the_next_flush_reports_it":
        "breaks the SQL store's tables underneath; a failing server is test_faults.py's",
    "test_init_switches_the_store":
        "switches to another SQLite store while PODSTACK_REGISTRY_URL names the server (refused: both name the store)",
}
