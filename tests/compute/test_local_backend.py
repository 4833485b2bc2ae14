import pytest

from podstack_jupyter import config
from podstack_jupyter.compute.backends.local import LocalBackend
from podstack_jupyter.compute.spec import GPUSpec
from podstack_jupyter.errors import ConfigurationError, GPUNotAvailableError


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
