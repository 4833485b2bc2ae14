import pytest

from podstack_jupyter.compute.spec import GPUSpec, gpu_type_from_device_name, normalize_gpu_type
from podstack_jupyter.errors import InvalidArgumentError


def test_types_are_normalized_and_unknown_types_list_valid_ones():
    assert normalize_gpu_type("l40s") == "L40S"
    assert normalize_gpu_type("a100-80gb") == "A100-80G"
    with pytest.raises(InvalidArgumentError, match="valid types are: T4, L4, A10, L40S"):
        normalize_gpu_type("X100")


@pytest.mark.parametrize("kwargs, message", [
    ({"fraction": 0}, "fraction must be"), ({"fraction": 101}, "fraction must be"),
    ({"count": 0}, "count must be"), ({"fraction": 50, "count": 2}, "cannot be combined"),
    ({"env": "quantum"}, "valid presets are: ml, nlp"), ({"timeout": -1}, "timeout must be"),
    ({"requirements": "/nonexistent/req.txt"}, "does not exist"),
])
def test_bad_specs_are_refused_with_the_valid_choices(kwargs, message):
    with pytest.raises(InvalidArgumentError, match=message):
        GPUSpec(**kwargs)


def test_specs_differing_only_in_timeout_share_a_session():
    assert GPUSpec("L40S", timeout=10) == GPUSpec("L40S", timeout=20)
    assert GPUSpec("L40S", fraction=50) != GPUSpec("L40S")


def test_environment_key_depends_on_the_requirement_set(tmp_path):
    req = tmp_path / "requirements.txt"
    req.write_text("tiny==1\n")
    a = GPUSpec(pip=("b", "a")).environment_key()
    assert a == GPUSpec(pip=("a", "b")).environment_key()
    assert a != GPUSpec(pip=("a",)).environment_key()
    keyed = GPUSpec(requirements=str(req)).environment_key()
    req.write_text("tiny==2\n")
    assert GPUSpec(requirements=str(req)).environment_key() != keyed
    assert GPUSpec(env="ml").packages[:2] == ["numpy", "pandas"]


def test_nvml_names_map_to_types():
    assert gpu_type_from_device_name("NVIDIA A100-SXM4-80GB") == "A100-80G"
    assert gpu_type_from_device_name("NVIDIA A100-PCIE-40GB") == "A100-40G"
    assert gpu_type_from_device_name("NVIDIA L40S") == "L40S"
    assert gpu_type_from_device_name("NVIDIA L4") == "L4"
    assert gpu_type_from_device_name("Tesla T4") == "T4"
    assert gpu_type_from_device_name("NVIDIA H100 80GB HBM3") == "H100"
    assert gpu_type_from_device_name("NVIDIA A10G") == "A10G"
    assert gpu_type_from_device_name("Matrox G200") is None
