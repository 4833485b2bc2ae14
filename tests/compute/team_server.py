"""A real ``podstack server`` on loopback that hands out team-mode GPU sessions (SQLite, a folder,
the local backend, a short grace period), and a notebook pointed at it.

    server = start_team_server(folder, gpus="L40S:2")   # returns once /health answers
    project_id, key = server.new_project()
    use_team_server(monkeypatch, server, project_id, key)  # PODSTACK_BACKEND=team + the registry settings
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _services.podstack_server import LiveServer, point_registry_at  # noqa: E402

GRACE = 3.0  # seconds a session outlives its notebook's websocket here (the server's --kernel-grace)


def start_team_server(directory: Path, gpus: str | None = None, grace: float = GRACE) -> LiveServer:
    directory = Path(directory)
    env = {"PODSTACK_LOCAL_GPUS": gpus} if gpus else {}
    server = LiveServer(f"sqlite:///{directory / 'server.db'}", str(directory / "artifacts"), directory, env=env,
                        extra_args=("--rate-limit", "0", "--backend", "local", "--kernel-grace", str(grace)))
    server.env.pop("PODSTACK_BACKEND", None)
    if not gpus:
        server.env.pop("PODSTACK_LOCAL_GPUS", None)
    return server.start()


def use_team_server(monkeypatch, server: LiveServer, project_id: str, key: str) -> None:
    """This notebook's %%gpu asks ``server`` for sessions (and its registry is the server's)."""
    monkeypatch.setenv("PODSTACK_BACKEND", "team")
    point_registry_at(server, monkeypatch, project_id, key)


def forget_team_server() -> None:
    """After a test: the registry forgets the server's store and experiment (the next test's is its own)."""
    from podstack_jupyter.tracking import registry, use_store

    use_store(None)
    registry._reset_store()
    registry._set_current_experiment((None, None))
