"""The Python API of seed 000 on the compute plane: @podstack.gpu, run_on_gpu, errors."""

from __future__ import annotations

import base64
import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
import zipfile

import numpy as np
import pytest

import podstack
from podstack_jupyter.compute import sessions
from podstack_jupyter.errors import ExecutionTimeoutError, PodstackError, RemoteExecutionError


@pytest.fixture(autouse=True)
def _stop_sessions():
    yield
    sessions.stop("all")


def scale_rows(matrix, factor=2):
    print("scaling", matrix.shape, flush=True)
    return matrix * factor, os.getpid()


def test_decorated_function_runs_remotely_and_returns(capsys):
    remote_scale = podstack.gpu()(scale_rows)
    result, pid = remote_scale(np.ones((3, 2)), factor=5)
    assert result.tolist() == [[5.0, 5.0]] * 3
    assert pid != os.getpid()
    assert "scaling (3, 2)" in capsys.readouterr().out
    # the call's scratch variables do not pin memory remotely
    (session,) = sessions.find("all")
    leftover = podstack.run_on_gpu("print(sorted(n for n in globals() if n.startswith('__podstack_call')))")
    assert leftover.output.strip() == "[]"
    assert session.alive


def test_remote_exception_raises_with_remote_traceback():
    @podstack.gpu()
    def broken():
        return {}["missing"]

    with pytest.raises(RemoteExecutionError) as info:
        broken()
    assert info.value.ename == "KeyError" and "missing" in info.value.evalue
    assert isinstance(info.value, PodstackError)


def test_remote_false_runs_here():
    @podstack.gpu(type="L40S", remote=False)
    def where():
        return os.getpid()

    assert where() == os.getpid()
    assert sessions.find("all") == []


def test_context_manager_exposes_the_config_and_sets_the_default():
    with podstack.gpu(type="A100-80G", count=2) as cfg:
        assert cfg.type == "A100-80G" and cfg.count == 2
        from podstack_jupyter.compute import current_spec

        assert current_spec().type == "A100-80G"
    assert current_spec() is None


def test_bad_decorator_arguments_fail_at_decoration_time():
    with pytest.raises(ValueError, match="valid types"):
        podstack.gpu(type="Z80")
    with pytest.raises(ValueError, match="fraction"):
        podstack.gpu(fraction=150)


def test_run_on_gpu_returns_output_success_duration():
    result = podstack.run_on_gpu("import time\nprint('hello gpu')\ntime.sleep(0.2)")
    assert result.success and result.output == "hello gpu\n" and result.duration_seconds >= 0.2
    failed = podstack.run_on_gpu("print('before')\n1/0")
    assert not failed.success and failed.output == "before\n" and "ZeroDivisionError" in failed.error


def test_run_on_gpu_timeout_carries_the_execution_id():
    with pytest.raises(ExecutionTimeoutError) as info:
        podstack.run_on_gpu("import time\ntime.sleep(30)", timeout=1)
    assert info.value.execution_id


def test_seed_error_classes_form_one_tree():
    for name in ("AuthenticationError", "GPUNotAvailableError", "RateLimitError", "ExecutionTimeoutError"):
        assert issubclass(getattr(podstack, name), podstack.PodstackError)
    assert podstack.RateLimitError("slow down", retry_after=3).retry_after == 3
    assert podstack.PodstackError("msg").message == "msg"


def _tiny_wheel(directory) -> str:
    """A real, minimal wheel built by hand: the session's environment installs it."""
    files = {
        "tinypod/__init__.py": b"VALUE = 42\n",
        "tinypod-0.1.dist-info/METADATA": b"Metadata-Version: 2.1\nName: tinypod\nVersion: 0.1\n",
        "tinypod-0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: podstack-tests\nRoot-Is-Purelib: true\n"
                                       b"Tag: py3-none-any\n",
    }
    record = []
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{name},sha256={digest},{len(data)}")
    record.append("tinypod-0.1.dist-info/RECORD,,")
    path = os.path.join(directory, "tinypod-0.1-py3-none-any.whl")
    with zipfile.ZipFile(path, "w") as wheel:
        for name, data in files.items():
            wheel.writestr(name, data)
        wheel.writestr("tinypod-0.1.dist-info/RECORD", "\n".join(record) + "\n")
    return path


@pytest.mark.slow
def test_pip_builds_a_cached_environment_the_session_runs_in(tmp_path, capsys):
    wheel = _tiny_wheel(str(tmp_path))
    with pytest.raises(ImportError):
        import tinypod  # noqa: F401 - not installed in the notebook's environment

    @podstack.gpu(pip=[wheel])
    def value():
        import tinypod

        return tinypod.VALUE

    assert value() == 42
    out = capsys.readouterr().out
    assert "building environment" in out and "ready" in out  # progress shown
    sessions.stop("all")
    value()  # the cached environment is reused: no second build
    assert "building environment" not in capsys.readouterr().out


def test_failed_environment_build_leaves_nothing(tmp_path, podstack_home):
    from podstack_jupyter.errors import EnvironmentBuildError

    with pytest.raises(EnvironmentBuildError, match="Check the package names"):
        podstack.gpu(pip=[str(tmp_path / "does-not-exist-0.1-py3-none-any.whl")])(os.getpid)()
    envs = podstack_home / "envs"
    assert not envs.exists() or list(envs.iterdir()) == []
    assert sessions.find("all") == []


def _kernel_pid_of_child(script: str):
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], stdout=subprocess.PIPE, text=True)
    pid = int(child.stdout.readline())
    return child, pid


def _gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # reap if it is our zombie grandchild's parent gone
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.1)
    return False


@pytest.mark.parametrize("how", ["exit", "sigkill"])
def test_sessions_close_when_the_notebook_process_ends(how):
    child, pid = _kernel_pid_of_child("""
        import time, podstack
        r = podstack.run_on_gpu("import os; print(os.getpid())")
        print(r.output.strip(), flush=True)
        time.sleep(0 if '%s' == 'exit' else 60)
    """ % how)
    if how == "sigkill":
        child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)
    child.stdout.close()
    assert _gone(pid, within=10), f"session kernel {pid} outlived the notebook ({how})"


def test_client_runs_code_and_creates_notebooks_attachable_by_jupyter():
    from jupyter_client import BlockingKernelClient

    client = podstack.Client()
    assert client.sync_run("print(6 * 7)").output == "42\n"
    notebook = client.sync_create_notebook(name="experiment")
    assert notebook.name == "experiment" and notebook.id in [s["id"] for s in client.list_notebooks()]
    kc = BlockingKernelClient()
    kc.load_connection_file(notebook.connection_file)
    kc.start_channels()
    try:
        reply = kc.execute_interactive("import os; os.environ['PODSTACK_SESSION']", timeout=30,
                                       output_hook=lambda msg: None)
        assert reply["content"]["status"] == "ok"
    finally:
        kc.stop_channels()
    notebook.stop()
    assert client.list_notebooks() == []
