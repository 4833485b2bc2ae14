import pytest

import podstack
from podstack import registry
from podstack_jupyter.errors import InvalidArgumentError


def test_seed_stack_registers_then_promotes(tmp_path):
    weights = tmp_path / "model.pt"
    weights.write_bytes(b"weights")

    @podstack.experiment(name="my-experiment")
    @podstack.run(name="training-v1")
    @podstack.model.register(name="my-classifier")
    def train_and_save():
        registry.log_artifact(str(weights), "model")
        return "trained"

    assert train_and_save() == "trained"
    assert train_and_save() == "trained"
    model = registry.get_model("my-classifier")
    assert sorted(v.version for v in model.versions) == [1, 2]

    @podstack.model.promote(name="my-classifier", version=1, stage="production")
    def validate_and_promote():
        accuracy = 0.95
        assert accuracy > 0.90

    validate_and_promote()
    assert registry.get_model_version("my-classifier", version=1).stage == "production"


def test_failed_validation_promotes_nothing():
    with registry.start_run("r"):
        pass
    registry.register_model("m", run_id=registry.search_runs()[0].id)

    @podstack.model.promote(name="m", version=1, stage="production")
    def validate():
        raise AssertionError("accuracy below threshold")

    with pytest.raises(AssertionError):
        validate()
    assert registry.get_model_version("m", version=1).stage == "development"


def test_register_outside_a_run_says_how_to_fix_it():
    with pytest.raises(InvalidArgumentError, match="needs an active run"):
        with podstack.model.register(name="orphan"):
            pass
    with pytest.raises(InvalidArgumentError, match="stage 'gold'"):
        podstack.model.promote(name="m", version=1, stage="gold")
