"""``@podstack.model.register`` and ``@podstack.model.promote``: decorators that are also context managers."""

from __future__ import annotations

import functools
import inspect
import time

from ..errors import InvalidArgumentError

__all__ = ["model"]


class _AfterSuccess:
    """Runs ``self._act(started_at)`` when the wrapped function or block finishes without an exception.

    If it raises, nothing is done and the exception propagates. ``.result`` holds what the
    last successful action returned.
    """

    result = None

    def _act(self, started_at: float):  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self):
        self._entered = getattr(self, "_entered", [])
        self._entered.append(time.time())
        return self

    def __exit__(self, exc_type, exc, tb):
        started_at = self._entered.pop()
        if exc_type is None:
            self.result = self._act(started_at)
        return False

    def __call__(self, func):
        if not callable(func):
            raise InvalidArgumentError(f"{type(self).__name__} decorates a function; got {type(func).__name__}")
        if inspect.iscoroutinefunction(func):
            @functools.wraps(func)
            async def async_wrapper(*args, **kwargs):
                started_at = time.time()
                value = await func(*args, **kwargs)
                self.result = self._act(started_at)
                return value

            return async_wrapper

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            started_at = time.time()
            value = func(*args, **kwargs)
            self.result = self._act(started_at)
            return value

        return wrapper


def _run_ended_since(registry, started_at: float):
    """The run of this process that completed most recently since ``started_at``, or ``None``."""
    # a shared database holds other people's runs too: keep the ones this process started or used
    known = getattr(registry, "_known_runs", None)
    ended = registry.search_runs(status="completed", filter=f"end_time >= {started_at - 0.001!r}",
                                 order_by="end_time DESC", max_results=100)
    return next((r for r in ended if known is None or r.id in known), None)


class register(_AfterSuccess):  # noqa: N801 - used like a function
    """Register the run's model as the next version of ``name`` once the function (or block) succeeds.

    The run is the active one when the function returns (``@podstack.model.register`` under
    ``@podstack.run``), or else the run that completed most recently while it ran (register
    above ``@podstack.run``, or a ``with registry.start_run()`` inside the block). The new
    version points at the model that run logged with ``registry.log_model`` (or at
    ``artifact_path`` among its artifacts) and is returned in ``.result``. If the function
    raises, nothing is registered.
    """

    def __init__(self, name: str, description: str | None = None, artifact_path: str | None = None):
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"podstack.model.register: name must be a non-empty string, got {name!r}")
        if description is not None and not isinstance(description, str):
            raise InvalidArgumentError(
                f"podstack.model.register: description must be a string, got {type(description).__name__}")
        self.name, self.description, self.artifact_path = name, description, artifact_path

    def __repr__(self):
        return f"podstack.model.register(name={self.name!r})"

    def _act(self, started_at: float):
        from ..tracking import registry
        from .registry import register_model

        run = registry.active_run()
        run_id = run.id if run is not None else getattr(_run_ended_since(registry, started_at), "id", None)
        if run_id is None:
            raise InvalidArgumentError(
                f"podstack.model.register({self.name!r}) found no run to register a model from: stack it with "
                "@podstack.run (or start a run with `with registry.start_run(...)` inside it), or call "
                "registry.register_model(name, run_id=...) directly")
        return register_model(self.name, run_id=run_id, description=self.description,
                              artifact_path=self.artifact_path)


class promote(_AfterSuccess):  # noqa: N801
    """Move version ``version`` of ``name`` to ``stage`` once the function (or block) succeeds,
    e.g. after validation asserts pass; if it raises, nothing is promoted and the exception
    propagates. ``archive_existing=True`` archives the versions already in that stage.
    ``.result`` is the promoted model version."""

    def __init__(self, name: str, version: int, stage: str = "production", archive_existing: bool = False):
        from ..tracking.store import MODEL_STAGES

        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"podstack.model.promote: name must be a non-empty string, got {name!r}")
        if not isinstance(version, int) or isinstance(version, bool) or version < 1:
            raise InvalidArgumentError(
                f"podstack.model.promote: version must be a version number (1, 2, 3...), got {version!r}")
        if stage not in MODEL_STAGES:
            raise InvalidArgumentError(f"podstack.model.promote: stage {stage!r} is not one of {list(MODEL_STAGES)}")
        self.name, self.version, self.stage, self.archive_existing = name, version, stage, bool(archive_existing)

    def __repr__(self):
        return f"podstack.model.promote(name={self.name!r}, version={self.version}, stage={self.stage!r})"

    def _act(self, started_at: float):
        from .registry import set_model_stage

        return set_model_stage(self.name, self.version, self.stage, archive_existing=self.archive_existing)


class _Model:
    """``podstack.model``: ``register(name=...)`` and ``promote(name=..., version=..., stage=...)``,
    each a decorator or a context manager that acts only when the code it wraps succeeds."""

    register = register
    promote = promote

    def __repr__(self):
        return "podstack.model (register, promote)"


model = _Model()
