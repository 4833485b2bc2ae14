"""The backend registry (entry points) and the backend contract, exercised by a second backend.

``tcp_backend.TcpBackend`` knows only ``backends/_base.py``: if ``%%gpu`` works through it
(variables, output, interrupts, a dying kernel), the Ray and Jupyter backends need nothing more.
"""

from __future__ import annotations

import os
import signal
import threading
from pathlib import Path

import pytest

from podstack_jupyter import config
from podstack_jupyter.compute import backends, sessions
from podstack_jupyter.errors import (ConfigurationError, ExecutionTimeoutError, GPUNotAvailableError,
                                     InvalidArgumentError, SessionDiedError)
from _cells import run


@pytest.fixture
def install_backend(tmp_path, monkeypatch):
    """Install a distribution whose ``podstack.backends`` entry point names ``target``, as pip would."""
    monkeypatch.setattr(backends, "_instances", {})
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.syspath_prepend(str(Path(__file__).parent))  # where tcp_backend.py lives

    def install(name: str, target: str):
        dist = tmp_path / f"podstack_test_{name.replace('-', '_')}-0.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: podstack-test-{name}\nVersion: 0\n")
        (dist / "entry_points.txt").write_text(f"[podstack.backends]\n{name} = {target}\n")

    return install


def test_local_is_registered_by_entry_point_and_unknown_names_list_what_is_installed(install_backend):
    from importlib.metadata import entry_points

    assert "local" in {ep.name for ep in entry_points(group="podstack.backends")}  # pyproject's entry
    assert type(backends.get_backend("local")).__name__ == "LocalBackend"
    install_backend("tcp-test", "tcp_backend:TcpBackend")
    with pytest.raises(ConfigurationError) as info:
        backends.get_backend("rya")
    assert "unknown compute backend 'rya'" in info.value.message
    assert "installed: jupyter, local, ray, tcp-test, team" in info.value.message


def test_a_backend_that_cannot_load_is_a_configuration_error(install_backend):
    install_backend("broken", "podstack_no_such_module:Backend")
    with pytest.raises(ConfigurationError, match="'broken' .* cannot be loaded: ModuleNotFoundError"):
        backends.get_backend("broken")
    install_backend("notabackend", "os:getcwd")
    with pytest.raises(ConfigurationError, match="not a podstack Backend class"):
        backends.get_backend("notabackend")


def test_unknown_backend_setting_fails_the_cell_clearly(ip, monkeypatch, capsys):
    monkeypatch.setenv("PODSTACK_BACKEND", "nope")
    config.reset()
    with pytest.raises(ConfigurationError, match="unknown compute backend .nope..*installed: jupyter, local, ray"):
        run(ip, "%%gpu\nx = 1")
    assert "x" not in ip.user_ns


@pytest.fixture
def tcp_backend(install_backend, monkeypatch):
    install_backend("tcp-test", "tcp_backend:TcpBackend")
    monkeypatch.setenv("PODSTACK_BACKEND", "tcp-test")
    config.reset()
    return backends.get_backend("tcp-test")


def test_a_second_backend_runs_cells_through_the_contract_alone(ip, tcp_backend, capsys):
    run(ip, "data = [1, 2, 3]\nfactor = 10")
    run(ip, "%%gpu T4\nimport os\nscaled = [v * factor for v in data]\ndata.append(4)\nprint('remote', os.getpid())\n"
            "marks = {k: os.environ.get(k) for k in ('PODSTACK_SESSION', 'PODSTACK_BACKEND', 'PODSTACK_GPU_TYPE')}")
    assert ip.user_ns["scaled"] == [10, 20, 30] and ip.user_ns["data"] == [1, 2, 3, 4]
    assert f"remote {os.getpid()}" not in capsys.readouterr().out
    # the session layer marked the kernel as a session; the backend did nothing for it
    assert ip.user_ns["marks"] == {"PODSTACK_SESSION": "1", "PODSTACK_BACKEND": "tcp-test", "PODSTACK_GPU_TYPE": "T4"}
    (session,) = sessions.find("all")
    assert session.kernel.same_host is False and session.kernel.bytes_sent > 0
    assert session.info()["backend"] == "tcp-test" and session.info()["gpus"] == "1xT4 [0]"
    sessions.stop("all")
    assert tcp_backend.released and tcp_backend.released[-1].gpu_type == "T4"


def test_the_second_backend_interrupts_over_the_control_channel_and_reports_death(ip, tcp_backend):
    run(ip, "%%gpu\ncount = 1")
    with pytest.raises(ExecutionTimeoutError):
        run(ip, "%%gpu --timeout 2\nimport time\ntime.sleep(60)")
    run(ip, "%%gpu\ncount += 1")  # the interrupted kernel is usable again, state kept
    assert ip.user_ns["count"] == 2
    (session,) = sessions.find("all")
    killer = threading.Timer(1.0, os.kill, (session.kernel.km.provisioner.pid, signal.SIGKILL))
    killer.start()  # mid-cell
    try:
        with pytest.raises(SessionDiedError, match="the test node lost its kernel"):
            run(ip, "%%gpu\nimport time\ntime.sleep(60)")
    finally:
        killer.join()


def test_backend_rules_apply_before_anything_starts(ip, tcp_backend):
    with pytest.raises(InvalidArgumentError, match="cannot share a GPU"):
        run(ip, "%%gpu --fraction 50\nx = 1")
    with pytest.raises(GPUNotAvailableError, match="no H100; it has: T4"):
        run(ip, "%%gpu H100\nx = 1")
    with pytest.raises(InvalidArgumentError, match="cannot install packages"):
        run(ip, "%%gpu --pip tinypod\nx = 1")
    assert sessions.list() == [] and "x" not in ip.user_ns
