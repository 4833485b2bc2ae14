import asyncio

import pytest

import podstack
from podstack import registry
from podstack_jupyter.errors import InvalidArgumentError, ModelNotFoundError


def versions_of(name):
    return sorted(v.version for v in registry.get_model(name).versions)


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
    assert versions_of("my-classifier") == [1, 2]
    runs = {r.id for r in registry.search_runs()}
    assert {v.run_id for v in registry.get_model("my-classifier").versions} == runs and len(runs) == 2

    @podstack.model.promote(name="my-classifier", version=1, stage="production")
    def validate_and_promote():
        accuracy = 0.95
        assert accuracy > 0.90, "Model doesn't meet threshold"

    validate_and_promote()
    assert registry.get_model_version("my-classifier", version=1).stage == "production"
    assert registry.get_model_version("my-classifier", version=2).stage == "development"


def test_register_above_the_run_uses_the_run_that_just_ended():
    @podstack.model.register(name="outer", description="registered after the run ended")
    @podstack.run(name="inner-run")
    def train():
        registry.log_params({"lr": 0.1})

    train()
    (version,) = registry.get_model("outer").versions
    assert registry.get_run(version.run_id).name == "inner-run"
    assert version.description == "registered after the run ended"


def test_register_as_a_context_manager_around_a_run():
    with podstack.model.register(name="ctx") as reg:
        with registry.start_run("a"):
            pass
        with registry.start_run("b") as latest:
            pass
    assert reg.result.version == 1 and reg.result.run_id == latest.id
    with registry.start_run("c") as active:
        with podstack.model.register(name="ctx") as reg:
            pass
    assert reg.result.version == 2 and reg.result.run_id == active.id


def test_nothing_is_registered_when_training_fails():
    @podstack.run(name="crashing")
    @podstack.model.register(name="never")
    def train():
        raise RuntimeError("CUDA out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        train()
    with pytest.raises(ModelNotFoundError):
        registry.get_model("never")


def test_failed_validation_promotes_nothing():
    with registry.start_run("r") as run:
        pass
    registry.register_model("m", run_id=run.id)

    @podstack.model.promote(name="m", version=1, stage="production")
    def validate():
        raise AssertionError("accuracy below threshold")

    with pytest.raises(AssertionError, match="below threshold"):
        validate()
    assert registry.get_model_version("m", version=1).stage == "development"
    with pytest.raises(AssertionError):
        with podstack.model.promote(name="m", version=1, stage="staging"):
            assert 0.5 > 0.9
    assert registry.get_model_version("m", version=1).stage == "development"
    with podstack.model.promote(name="m", version=1, stage="staging") as promoted:
        pass
    assert promoted.result.stage == "staging" == registry.get_model_version("m", version=1).stage


def test_async_function_is_registered_after_it_has_run():
    @podstack.run(name="async-train")
    def train():
        @podstack.model.register(name="async-model")
        async def fit():
            await asyncio.sleep(0)
            registry.log_params({"done": "yes"})
            return 7

        return asyncio.run(fit())

    assert train() == 7
    (version,) = registry.get_model("async-model").versions
    assert registry.get_run(version.run_id).params["done"] == "yes"


def test_register_without_any_run_and_bad_arguments_say_how_to_fix_it():
    with pytest.raises(InvalidArgumentError, match="found no run.*@podstack.run"):
        with podstack.model.register(name="orphan"):
            pass
    with pytest.raises(ModelNotFoundError):
        registry.get_model("orphan")
    with pytest.raises(InvalidArgumentError, match="stage 'gold'"):
        podstack.model.promote(name="m", version=1, stage="gold")
    with pytest.raises(InvalidArgumentError, match="version must be a version number"):
        podstack.model.promote(name="m", version="1")
    with pytest.raises(InvalidArgumentError, match="name must be a non-empty string"):
        podstack.model.register(name="")


def test_a_run_another_process_completes_meanwhile_is_not_registered(podstack_home):
    import subprocess
    import sys

    teammate = "from podstack import registry\nwith registry.start_run('teammate'):\n    pass\n"
    with pytest.raises(InvalidArgumentError, match="found no run"):
        with podstack.model.register(name="mine"):
            subprocess.run([sys.executable, "-c", teammate], check=True, timeout=120)
    assert [r.name for r in registry.search_runs()] == ["teammate"]
    with pytest.raises(ModelNotFoundError):
        registry.get_model("mine")
