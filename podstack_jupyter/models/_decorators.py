"""``@podstack.model.register`` and ``@podstack.model.promote``: decorators that are also context managers."""

from __future__ import annotations

import functools

from ..errors import InvalidArgumentError

__all__ = ["model"]


class _AfterSuccess:
    """Runs ``self._act()`` when the wrapped function or block finishes without an exception."""

    def _act(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.result = self._act()
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            value = func(*args, **kwargs)
            self.result = self._act()
            return value

        return wrapper


class register(_AfterSuccess):  # noqa: N801 - used like a function
    """Register the active run's model as the next version of ``name`` once the function
    (or block) succeeds. Put it inside ``@podstack.run`` so a run is active; ``.result`` is
    the new model version."""

    def __init__(self, name: str, description: str | None = None, artifact_path: str | None = None):
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"podstack.model.register: name must be a non-empty string, got {name!r}")
        self.name, self.description, self.artifact_path = name, description, artifact_path

    def _act(self):
        from ..tracking import registry

        run = registry.active_run()
        if run is None:
            raise InvalidArgumentError(
                f"podstack.model.register({self.name!r}) needs an active run: stack it under @podstack.run "
                "(or inside `with registry.start_run(...)`)")
        return registry.register_model(self.name, run_id=run.id, description=self.description,
                                       artifact_path=self.artifact_path)


class promote(_AfterSuccess):  # noqa: N801
    """Move version ``version`` of ``name`` to ``stage`` once the function (or block) succeeds,
    e.g. after validation asserts pass; nothing is promoted if it raises."""

    def __init__(self, name: str, version: int, stage: str = "production", archive_existing: bool = False):
        from ..tracking.store import MODEL_STAGES

        if stage not in MODEL_STAGES:
            raise InvalidArgumentError(f"podstack.model.promote: stage {stage!r} is not one of {list(MODEL_STAGES)}")
        self.name, self.version, self.stage, self.archive_existing = name, version, stage, archive_existing

    def _act(self):
        from ..tracking import registry

        return registry.set_model_stage(self.name, self.version, self.stage, archive_existing=self.archive_existing)


class _Model:
    """``podstack.model``: ``register`` and ``promote``."""

    register = register
    promote = promote

    def __repr__(self):
        return "podstack.model (register, promote)"


model = _Model()
