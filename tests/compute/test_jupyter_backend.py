"""The jupyter backend against a real jupyter-kernel-gateway and a real jupyter_server on loopback.

The servers run as other machines would (their own HOME, none of the notebook's PODSTACK_*
settings, a token): what a %%gpu cell does there must come back as if it ran here.
"""

from __future__ import annotations

import time

import numpy as np
import pytest

from podstack_jupyter import config
from podstack_jupyter.compute import GPUSpec, sessions
from podstack_jupyter.compute.backends._websocket import (CHUNK_BYTES, V1_PROTOCOL, decode_legacy, decode_v1,
                                                          encode_legacy, encode_v1)
from podstack_jupyter.errors import (AuthenticationError, ConfigurationError, GPUNotAvailableError,
                                     InvalidArgumentError, SessionDiedError)

from jupyter_servers import start_jupyter_server, start_kernel_gateway
from _cells import only_session, run


@pytest.fixture(scope="module")
def gateway(tmp_path_factory):
    # the server's own settings must not reach its kernels either (they would log to the wrong place)
    server = start_kernel_gateway(tmp_path_factory.mktemp("gateway"), env={"PODSTACK_HOME": "/nonexistent/server-home"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def jupyter_server(tmp_path_factory):
    server = start_jupyter_server(tmp_path_factory.mktemp("jupyter-server"))  # default rate limits
    yield server
    server.stop()


def use(server, monkeypatch, **settings):
    monkeypatch.setenv("PODSTACK_BACKEND", "jupyter")
    monkeypatch.setenv("PODSTACK_JUPYTER_URL", server.url)
    monkeypatch.setenv("PODSTACK_JUPYTER_TOKEN", server.token)
    for key, value in settings.items():
        monkeypatch.setenv("PODSTACK_" + key.upper(), value)
    config.reset()


def test_websocket_framings_round_trip_binary_buffers():
    big = np.arange(1000, dtype=np.float64)
    parts = [b'{"msg_id": "1"}', b"{}", b"{}", b'{"a": 1}', memoryview(big), b""]
    channel, decoded = decode_v1(b"".join(bytes(p) for p in encode_v1("shell", parts)))
    assert channel == "shell" and [bytes(p) for p in decoded] == [bytes(p) for p in parts]
    message = {"header": {"msg_id": "1"}, "parent_header": {}, "metadata": {}, "content": {"a": 1}}
    channel, msg, buffers = decode_legacy(b"".join(bytes(p) for p in encode_legacy("iopub", message, [big.data])))
    assert channel == "iopub" and msg["content"] == {"a": 1}
    assert np.array_equal(np.frombuffer(buffers[0], dtype=np.float64), big)
    assert decode_legacy(encode_legacy("shell", message, []))[1]["header"] == {"msg_id": "1"}


def test_a_kernel_gateway_runs_cells_with_variables_both_ways(ip, gateway, monkeypatch, capsys):
    use(gateway, monkeypatch)
    run(ip, "import numpy as np\nweights = np.arange(6_000_000, dtype=np.float64)\nlog = ['start']")
    assert ip.user_ns["weights"].nbytes > 5 * CHUNK_BYTES  # more than a Jupyter server takes in one message
    run(ip, "%%gpu\nimport os\nprint('on the server', flush=True)\ndoubled = weights * 2\nlog.append('remote')\n"
            "seen = sorted(k for k in os.environ if k.startswith('PODSTACK_'))")
    assert "on the server" in capsys.readouterr().out
    assert np.array_equal(ip.user_ns["doubled"], np.arange(6_000_000) * 2.0)  # 48 MB back in one message
    assert ip.user_ns["log"] == ["start", "remote"]
    # the session's marks only: not the server's PODSTACK_HOME, not the notebook's settings
    assert "PODSTACK_HOME" not in ip.user_ns["seen"] and "PODSTACK_SESSION" in ip.user_ns["seen"]
    session = only_session()
    assert session.kernel.protocol == V1_PROTOCOL and session.kernel.same_host is False
    assert session.kernel.bytes_sent >= 48_000_000 and session.kernel.bytes_received >= 48_000_000
    run(ip, "weights[0] = -1")
    run(ip, "%%gpu\nfirst = float(weights[0])")  # changed here: sent again, in pieces, and joined there
    assert ip.user_ns["first"] == -1.0
    kernel_id = session.kernel.kernel_id
    assert kernel_id in {k["id"] for k in gateway.kernels()}
    sessions.stop("all")
    assert kernel_id not in {k["id"] for k in gateway.kernels()}  # deleted on the server


def test_a_wrong_token_or_no_server_fails_clearly_and_starts_nothing(ip, gateway, monkeypatch):
    use(gateway, monkeypatch, jupyter_token="wrong")
    with pytest.raises(AuthenticationError, match="refused .* set PODSTACK_JUPYTER_TOKEN"):
        run(ip, "%%gpu\nx = 1")
    monkeypatch.delenv("PODSTACK_JUPYTER_URL")
    config.reset()
    with pytest.raises(ConfigurationError, match="needs the address of a Jupyter server: set PODSTACK_JUPYTER_URL"):
        run(ip, "%%gpu\nx = 1")
    use(gateway, monkeypatch, jupyter_url="http://127.0.0.1:9")
    with pytest.raises(ConfigurationError, match="cannot reach the Jupyter server at http://127.0.0.1:9/"):
        run(ip, "%%gpu\nx = 1")
    assert "x" not in ip.user_ns and sessions.list() == []


def test_packages_are_refused_with_what_to_do_instead(ip, gateway, monkeypatch):
    use(gateway, monkeypatch)
    with pytest.raises(InvalidArgumentError, match="cannot install packages .*PODSTACK_JUPYTER_KERNEL"):
        run(ip, "%%gpu --pip tinypod\nx = 1")
    assert sessions.list() == []


def test_gpus_asked_of_the_server_or_declared_and_each_kernel_sees_its_own(ip, gateway, monkeypatch):
    use(gateway, monkeypatch)
    with pytest.raises(GPUNotAvailableError, match="has no T4 GPU; it has: no GPUs \\(CPU only\\)"):
        run(ip, "%%gpu T4\nx = 1")  # asked of a kernel on the server: this machine has none
    run(ip, "%%gpu\nimport os\ncpu_devices = os.environ.get('CUDA_VISIBLE_DEVICES')")
    assert ip.user_ns["cpu_devices"] == ""
    sessions.stop("all")
    use(gateway, monkeypatch, jupyter_gpus="T4:2")
    run(ip, "%%gpu T4 --fraction 50\nimport os\nhalf = os.environ['CUDA_VISIBLE_DEVICES']")
    backend = only_session().backend
    other_half = backend.allocate(GPUSpec("T4", fraction=50))  # as another 50% session would
    run(ip, "%%gpu T4\nimport os\nwhole = os.environ['CUDA_VISIBLE_DEVICES']")
    assert ip.user_ns["half"] == "0" and other_half.gpus == [0] and ip.user_ns["whole"] == "1"
    table = ip.run_line_magic("gpu", "gpus")
    assert [(r["node"], r["type"], r["used_percent"]) for r in table] == [
        (gateway.url.split("//")[1], "T4", 100), (gateway.url.split("//")[1], "T4", 100)]
    with pytest.raises(GPUNotAvailableError, match="only 0 of 2 T4"):
        run(ip, "%%gpu T4 --fraction 30\nx = 1")
    backend.release(other_half)


def test_a_kernel_that_dies_on_the_server_is_a_dead_session_not_a_fresh_one(ip, jupyter_server, monkeypatch):
    use(jupyter_server, monkeypatch)
    run(ip, "%%gpu\nstate = 41")
    old = only_session().kernel.kernel_id
    started = time.monotonic()
    with pytest.raises(SessionDiedError, match="died and the server restarted it, so its state is lost"):
        run(ip, "%%gpu\nimport os, time\nprint('going', flush=True)\ntime.sleep(0.5)\nos.kill(os.getpid(), 9)")
    assert time.monotonic() - started < 30
    assert "state" in ip.user_ns and ip.user_ns["state"] == 41  # the notebook keeps what it had
    run(ip, "%%gpu\nfresh = 'state' not in globals()")
    assert ip.user_ns["fresh"] is True  # a new kernel: the old one's variables are gone, as the error said
    kernels = {k["id"] for k in jupyter_server.kernels()}
    assert old not in kernels and only_session().kernel.kernel_id in kernels


def test_output_a_server_drops_for_its_rate_limit_fails_the_cell_loudly(ip, jupyter_server, monkeypatch):
    use(jupyter_server, monkeypatch)
    run(ip, "result = 'before'")
    with pytest.raises(SessionDiedError, match="dropped messages .*iopub_data_rate_limit"):
        run(ip, "%%gpu\nfor i in range(80):\n    print('x' * 100_000, flush=True)\nresult = 'after'")
    assert ip.user_ns["result"] == "before"  # nothing half-applied


def test_a_server_without_the_v1_protocol_still_moves_buffers(ip, tmp_path, monkeypatch):
    server = start_jupyter_server(tmp_path / "legacy", "--ZMQChannelsWebsocketConnection.kernel_ws_protocol=")
    try:
        use(server, monkeypatch)
        run(ip, "import numpy as np\nvalues = np.arange(2_000_000)")
        run(ip, "%%gpu\nvalues += 1\ntotal = int(values.sum())")
        assert only_session().kernel.protocol is None
        assert ip.user_ns["total"] == int(np.arange(2_000_000).sum()) + 2_000_000
        assert ip.user_ns["values"][0] == 1
    finally:
        sessions.stop("all")
        server.stop()
