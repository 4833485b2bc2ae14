"""Team mode on a Ray cluster: the server places sessions on its cluster (``--backend ray``) and
relays them, whichever way it reaches the kernels (their ports, or through the session's actor);
the notebook knows only the server."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "compute"))

from _cells import run  # noqa: E402
from _services.podstack_server import LiveServer  # noqa: E402
from ray_cluster import GPU_COUNT, GPU_TYPE, ray_cluster  # noqa: E402
from team_server import forget_team_server, use_team_server  # noqa: E402

from podstack_jupyter import config  # noqa: E402
from podstack_jupyter.compute import sessions  # noqa: E402
from podstack_jupyter.errors import GPUNotAvailableError  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ray_address():
    with ray_cluster() as address:
        yield address


@pytest.mark.parametrize("connect", ["direct", "tunnel"])
def test_the_server_places_sessions_on_its_ray_cluster(ray_address, connect, tmp_path, ip, monkeypatch):
    server = LiveServer(f"sqlite:///{tmp_path / 'server.db'}", str(tmp_path / "artifacts"), tmp_path,
                        env={"PODSTACK_RAY_ADDRESS": ray_address, "PODSTACK_RAY_CONNECT": connect},
                        extra_args=("--rate-limit", "0", "--backend", "ray"))
    server.start()
    try:
        use_team_server(monkeypatch, server, *server.new_project())
        config.reset()
        ip.user_ns["weights"] = np.arange(2_000_000, dtype=np.float64)
        run(ip, f"%%gpu {GPU_TYPE} --count 2\nimport os\nweights += 1\n"
                "devices = os.environ['CUDA_VISIBLE_DEVICES']\nprint('on the node', flush=True)")
        assert np.array_equal(ip.user_ns["weights"], np.arange(2_000_000) + 1.0)
        assert sorted(ip.user_ns["devices"].split(",")) == ["0", "1"]
        (session,) = sessions.find("all")
        assert session.info()["backend"] == "team" and session.allocation.gpu_type == GPU_TYPE
        with pytest.raises(GPUNotAvailableError, match=f"{GPU_COUNT} x {GPU_TYPE}"):
            run(ip, f"%%gpu {GPU_TYPE} --count {GPU_COUNT + 1}\npass")
    finally:
        sessions.stop("all")
        forget_team_server()
        server.stop()
        server.close_accounts()
