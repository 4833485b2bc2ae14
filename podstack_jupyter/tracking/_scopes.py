"""``podstack.experiment`` and ``podstack.run``: decorators that are also context managers.

::

    @podstack.experiment(name="my-experiment")
    @podstack.run(name="training-v1", track_gpu=True)
    def train():
        podstack.registry.log_params({"lr": 0.001})

    with podstack.experiment(name="transformer-experiments") as exp:
        with podstack.run(name="training-v1") as run:
            print(exp.id, run.id)
"""

from __future__ import annotations

import functools
import inspect
import textwrap

from ..errors import InvalidArgumentError

__all__ = ["experiment", "run"]


class experiment:
    """Put the runs started inside into the experiment ``name`` (created if needed).

    As a context manager it yields the :class:`Experiment` (``exp.id``); as a decorator it
    applies to each call of the function. The previous current experiment comes back after.
    """

    def __init__(self, name: str):
        if not isinstance(name, str) or not name.strip():
            raise InvalidArgumentError(f"podstack.experiment: name must be a non-empty string, got {name!r}")
        self.name = name
        self._saved: list = []

    def __enter__(self):
        from . import registry

        previous = registry._set_current_experiment((registry._experiment_name, registry._experiment_cache))
        self._saved.append(previous)
        try:
            return registry.set_experiment(self.name)
        except BaseException:
            registry._set_current_experiment(self._saved.pop())
            raise

    def __exit__(self, *exc_info):
        from . import registry

        registry._set_current_experiment(self._saved.pop())
        return False

    def __call__(self, func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with experiment(self.name):
                return func(*args, **kwargs)

        return wrapper


def _source_of(func) -> str | None:
    try:
        return textwrap.dedent(inspect.getsource(func))
    except (OSError, TypeError):
        return None


class run:
    """Track a block or each call of a function as a run.

    ``name``: the run's name (default: the function's name, or generated); ``tags``: run tags;
    ``track_gpu=True``: record the GPUs visible to the process (NVML / nvidia-smi /
    ``CUDA_VISIBLE_DEVICES``, else ``cpu``) as ``gpu*`` tags and in ``run.gpu``;
    ``nested``: start inside the active run as a child (default: when a run is active).
    The run's duration is its start and end time; its status ``completed``, ``failed`` (an
    exception) or ``killed`` (KeyboardInterrupt). As a context manager it yields the
    :class:`Run`; a decorated function's source is kept with the run.
    """

    def __init__(self, name: str | None = None, track_gpu: bool = False, tags: dict | None = None,
                 nested: bool | None = None):
        if name is not None and (not isinstance(name, str) or not name.strip()):
            raise InvalidArgumentError(f"podstack.run: name must be a non-empty string, got {name!r}")
        if tags is not None and not isinstance(tags, dict):
            raise InvalidArgumentError(f"podstack.run: tags must be a dict, got {type(tags).__name__}")
        self.name, self.track_gpu, self.tags, self.nested = name, bool(track_gpu), dict(tags or {}), nested
        self._runs: list = []

    def _start(self, name=None, source=None):
        from . import registry
        from .runs import active_runs

        tags, gpu = dict(self.tags), None
        if self.track_gpu:
            from ._gpu import gpu_info, gpu_tags

            gpu = gpu_info()
            tags = {**gpu_tags(gpu), **tags}
        nested = self.nested if self.nested is not None else active_runs.top() is not None
        return registry.start_run(name=name or self.name, nested=nested, tags=tags, source=source, gpu=gpu)

    def __enter__(self):
        started = self._start()
        self._runs.append(started)
        return started

    def __exit__(self, exc_type, exc, tb):
        return self._runs.pop().__exit__(exc_type, exc, tb)

    def __call__(self, func):
        source = _source_of(func)

        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            with self._start(name=self.name or func.__name__, source=source):
                return func(*args, **kwargs)

        return wrapper
