import base64
import hashlib
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

import podstack
from podstack_jupyter import config
from podstack_jupyter.compute import sessions
from podstack_jupyter.compute.backends import Environment
from podstack_jupyter.compute.backends.local import LocalBackend
from podstack_jupyter.compute.session import GPUSession
from podstack_jupyter.compute.spec import GPUSpec
from podstack_jupyter.errors import (ConfigurationError, EnvironmentBuildError, GPUNotAvailableError,
                                     InvalidArgumentError, SessionDiedError)
from _cells import run


@pytest.fixture
def one_l40s(monkeypatch):
    monkeypatch.setenv("PODSTACK_LOCAL_GPUS", "L40S")
    config.reset()
    return LocalBackend()


def test_two_half_sessions_share_a_gpu_and_a_third_is_refused(one_l40s):
    half = GPUSpec("L40S", fraction=50)
    first, second = one_l40s.allocate(half), one_l40s.allocate(half)
    assert first.gpus == second.gpus == [0]
    with pytest.raises(GPUNotAvailableError, match="only 0 of 1 L40S"):
        one_l40s.allocate(half)
    one_l40s.release(first)
    assert one_l40s.allocate(half).gpus == [0]  # released share can be had again
    assert one_l40s.inventory()[0]["used_percent"] == 100


def test_whole_gpu_requests_count_devices(monkeypatch):
    monkeypatch.setenv("PODSTACK_LOCAL_GPUS", "A100-80G:2,T4")
    config.reset()
    backend = LocalBackend()
    assert backend.allocate(GPUSpec("A100-80G", count=2)).gpus == [0, 1]
    with pytest.raises(GPUNotAvailableError) as info:
        backend.allocate(GPUSpec("A100-80G"))
    assert info.value.available["A100-80G"]["free_percent"] == [0, 0]
    assert backend.allocate(GPUSpec()).gpus == [2]  # no type: any free GPU
    assert backend.allocate(GPUSpec()).gpus == []  # none left: the CPU


def test_bad_declared_inventory_is_a_configuration_error(monkeypatch):
    monkeypatch.setenv("PODSTACK_LOCAL_GPUS", "Z9000:2")
    config.reset()
    with pytest.raises(ConfigurationError, match="TYPE\\[:COUNT\\]"):
        LocalBackend().allocate(GPUSpec())


def test_without_nvml_or_declaration_sessions_run_on_the_cpu():
    try:
        import pynvml  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("NVML is installed here: the inventory is the machine's real GPUs")
    backend = LocalBackend()
    assert backend.inventory() == []
    assert backend.allocate(GPUSpec()).gpus == []
    with pytest.raises(GPUNotAvailableError, match="no GPUs \\(CPU only\\)"):
        backend.allocate(GPUSpec("T4"))


def test_conda_is_the_local_backends_rule_not_the_specs():
    spec = GPUSpec(conda=("cudatoolkit",))  # a valid request; another backend may serve it
    with pytest.raises(InvalidArgumentError, match="conda packages need a conda-based backend.*pip="):
        LocalBackend().validate(spec)
    with pytest.raises(InvalidArgumentError, match="conda"):
        podstack.gpu(conda=["cudatoolkit"])(os.getpid)()
    assert sessions.list() == []


def test_session_kernels_get_no_podstack_secrets_but_know_they_are_sessions(ip, monkeypatch, podstack_home):
    monkeypatch.setenv("PODSTACK_API_KEY", "sk-secret")
    monkeypatch.setenv("PODSTACK_TRACKING_URI", "postgresql://user:pw@db/podstack")
    monkeypatch.setenv("PODSTACK_PROJECT_ID", "p1")
    config.reset()
    ip.run_cell("%%gpu\nimport os\nseen = {k: v for k, v in os.environ.items() if k.startswith('PODSTACK_')}")
    seen = ip.user_ns["seen"]
    assert not {"PODSTACK_API_KEY", "PODSTACK_TRACKING_URI", "PODSTACK_PROJECT_ID"} & set(seen)
    assert seen["PODSTACK_SESSION"] == "1" and seen["PODSTACK_BACKEND"] == "local"
    assert seen["PODSTACK_SESSION_ID"] == sessions.find("all")[0].id
    assert seen["PODSTACK_HOME"] == str(podstack_home)  # same machine: the notebook's folders, not its keys


def test_a_kernel_that_dies_starting_says_what_it_printed(tmp_path, capsys):
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'fatal: this interpreter has no ipykernel' >&2\nexit 3\n")
    fake.chmod(0o755)

    class BrokenInterpreter(LocalBackend):
        def prepare(self, spec, progress, *, rebuild=False):
            return Environment(name="broken", python=str(fake))

    backend = BrokenInterpreter()
    session = GPUSession(GPUSpec(), backend)
    with pytest.raises(SessionDiedError) as info:
        session.open()
    assert "could not start: the kernel exited with code 3" in info.value.message
    assert "fatal: this interpreter has no ipykernel" in info.value.message
    assert session.state == "stopped" and backend.inventory() == []


def _tiny_wheel(directory: Path, name: str = "tinypod", version: str = "0.1", value: int = 42) -> str:
    """A real, minimal wheel built by hand: the session's environment installs it."""
    files = {f"{name}/__init__.py": f"VALUE = {value}\n".encode(),
             f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
             f"{name}-{version}.dist-info/WHEEL": b"Wheel-Version: 1.0\nGenerator: podstack-tests\n"
                                                  b"Root-Is-Purelib: true\nTag: py3-none-any\n"}
    record = [f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},"
              f"{len(data)}" for path, data in files.items()] + [f"{name}-{version}.dist-info/RECORD,,"]
    path = directory / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for member, data in files.items():
            wheel.writestr(member, data)
        wheel.writestr(f"{name}-{version}.dist-info/RECORD", "\n".join(record) + "\n")
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("builder", ["pip", "uv"])
def test_pip_environment_layers_on_the_notebooks_virtualenv(ip, tmp_path, capsys, monkeypatch, builder):
    from podstack_jupyter.compute.backends import _venvs

    if builder == "uv":  # a notebook virtualenv made by uv, without pip
        if _venvs.find_uv() is None:
            pytest.skip("uv is not installed")
        monkeypatch.setattr(_venvs, "pip_available", lambda: False)
    wheel = _tiny_wheel(tmp_path)
    ip.run_cell("import numpy as np\nweights = np.arange(4)")
    run(ip, f"%%gpu --pip {wheel}\nimport sys, tinypod, podstack_jupyter, cloudpickle\n"
            "scaled = weights * tinypod.VALUE\nprefix = sys.prefix\nfrom podstack import registry")
    out = capsys.readouterr().out
    assert "building environment" in out and f"with {builder}" in out and "ready" in out
    assert ip.user_ns["scaled"].tolist() == [0, 42, 84, 126]
    # the kernel runs in the built environment, on top of the notebook's packages (podstack, numpy, ipykernel)
    assert ip.user_ns["prefix"].startswith(str(config.settings().home / "envs"))
    assert ip.user_ns["prefix"] != sys.prefix


@pytest.mark.slow
def test_a_broken_cached_environment_is_rebuilt(ip, tmp_path, capsys):
    wheel = _tiny_wheel(tmp_path)
    run(ip, f"%%gpu --pip {wheel}\nimport tinypod\nv = tinypod.VALUE")
    (session,) = sessions.find("all")
    python = Path(session.environment.python)
    sessions.stop("all")
    capsys.readouterr()
    # break it as a recreated notebook virtualenv or a bad manual install would: the kernel cannot start there
    for layer in python.parent.parent.glob("lib/python*/site-packages/_podstack_layers.pth"):
        layer.unlink()
    run(ip, f"%%gpu --pip {wheel}\nimport tinypod\nw = tinypod.VALUE + 1")
    out = capsys.readouterr().out
    assert "a kernel cannot start in the cached environment" in out and "No module named" in out
    assert "rebuilding" in out and "ready" in out
    assert ip.user_ns["w"] == 43
    sessions.stop("all")
    run(ip, f"%%gpu --pip {wheel}\nimport tinypod\nw = tinypod.VALUE + 2")  # the rebuilt one is reused as is
    assert "building" not in capsys.readouterr().out and ip.user_ns["w"] == 44


@pytest.mark.slow
def test_an_environment_whose_kernel_cannot_start_is_not_kept(ip, tmp_path, podstack_home):
    # a package that shadows ipykernel with a broken module: the build succeeds, a kernel cannot start
    broken = _tiny_wheel(tmp_path, name="ipykernel_launcher", version="9.9", value="1/0")
    with pytest.raises(EnvironmentBuildError, match="(?s)a kernel cannot run in it.*ZeroDivisionError"):
        run(ip, f"%%gpu --pip {broken}\nx = 1")
    assert [p.name for p in (podstack_home / "envs").iterdir()] == []
    assert sessions.list() == [] and "x" not in ip.user_ns


@pytest.mark.slow
def test_the_notebooks_packages_are_reused_and_a_pinned_version_shadows_without_touching_them(
        ip, tmp_path, monkeypatch, capsys):
    from podstack_jupyter.compute.backends import _venvs

    # a package the notebook has, in a site folder of its own (as its virtualenv's site-packages would hold it)
    notebook_site = tmp_path / "notebook-site"
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(notebook_site),
                    _tiny_wheel(tmp_path, value=1)], check=True)
    layers = _venvs.notebook_site_dirs()
    monkeypatch.setattr(_venvs, "notebook_site_dirs", lambda: [*layers, str(notebook_site)])
    newer = tmp_path / "newer"
    newer.mkdir()
    run(ip, "%%gpu --pip tinypod\nimport tinypod\nhad = tinypod.VALUE")  # satisfied by the notebook's: no download
    assert ip.user_ns["had"] == 1 and "already satisfied" in capsys.readouterr().out
    run(ip, f"%%gpu --pip {_tiny_wheel(newer, version='0.2', value=2)}\nimport tinypod\npinned = tinypod.VALUE")
    assert ip.user_ns["pinned"] == 2
    assert (notebook_site / "tinypod-0.1.dist-info").is_dir() and "VALUE = 1" in (
        notebook_site / "tinypod" / "__init__.py").read_text()  # the notebook's copy is untouched
