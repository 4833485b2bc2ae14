"""A server on PostgreSQL keeps the API keys it checked in memory (no lookup per request), yet a
key revoked, or whose user left the project, is refused from the next request on: whoever changed
it (``podstack admin``, another server, plain SQL), and also while the server's listening
connection is lost and being replaced.

(A revocation committed in the very moment that connection silently dies is seen once the server
notices the loss: at once when the database closes it, within 3 s when the network goes quiet.)"""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa


def _client(server, key):
    return httpx.Client(base_url=server.url + "/api/v1", headers={"Authorization": f"Bearer {key}"}, timeout=30)


def _warm(client, times=3):
    for _ in range(times):
        assert client.get("/experiments").status_code == 200


def _revoke_by_sql(server, key):
    with server.accounts.engine.begin() as conn:
        conn.execute(sa.text("UPDATE api_keys SET revoked_at = :now WHERE id = :id"),
                     {"now": time.time(), "id": key.split("_")[1]})


@pytest.mark.parametrize("how", ["revoke", "remove member", "sql", "delete key"])
def test_a_key_used_a_moment_ago_is_refused_right_after_it_is_revoked(live_server, how):
    for _ in range(8):  # each round: a key the server has just checked, changed, then used at once
        project_id, _ = live_server.new_project()
        live_server.accounts.ensure_member(project_id, "ada")
        key = live_server.accounts.create_key(project_id, "ada")
        with _client(live_server, key) as client:
            _warm(client)
            if how == "revoke":
                live_server.accounts.revoke_key(key)
            elif how == "remove member":
                live_server.accounts.remove_member(project_id, "ada")
            elif how == "sql":
                _revoke_by_sql(live_server, key)
            else:
                with live_server.accounts.engine.begin() as conn:
                    conn.execute(sa.text("DELETE FROM api_keys WHERE id = :id"), {"id": key.split("_")[1]})
            refused = client.get("/experiments")
            assert refused.status_code == 401, (how, refused.text)


def _watcher_pids(server) -> list:
    with server.accounts.engine.connect() as conn:
        return [r[0] for r in conn.execute(sa.text(
            "SELECT pid FROM pg_stat_activity WHERE application_name = 'podstack-accounts-watch' "
            "AND datname = current_database()"))]


def test_while_its_listening_connection_is_lost_every_key_is_looked_up(live_server):
    _, key = live_server.new_project()
    _, other_key = live_server.new_project()
    with _client(live_server, key) as client, _client(live_server, other_key) as other:
        _warm(client)
        _warm(other)
        (watcher,) = _watcher_pids(live_server)
        with live_server.accounts.engine.connect() as conn:
            assert conn.execute(sa.text("SELECT pg_terminate_backend(:pid, 10000)"), {"pid": watcher}).scalar()
        assert watcher not in _watcher_pids(live_server)  # (the wait above: its connection is closed)
        _revoke_by_sql(live_server, key)  # no one listens: the notification is lost
        assert client.get("/experiments").status_code == 401
        assert other.get("/experiments").status_code == 200  # looked up: still valid
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and _watcher_pids(live_server) in ([], [watcher]):
            time.sleep(0.1)
        assert _watcher_pids(live_server) not in ([], [watcher]), "the server did not listen again"
        _warm(other)
        _revoke_by_sql(live_server, other_key)
        assert other.get("/experiments").status_code == 401
