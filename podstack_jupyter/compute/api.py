"""The Python face of the compute plane (seed 000): ``@podstack.gpu`` and ``podstack.run_on_gpu``."""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import time
import uuid
from dataclasses import dataclass

from ..errors import RemoteExecutionError
from . import runner
from .session import CapturingSink, sessions
from .spec import DEFAULT_TIMEOUT, GPUSpec

__all__ = ["gpu", "run_on_gpu", "GPURunResult", "current_spec"]

_active_spec: contextvars.ContextVar[GPUSpec | None] = contextvars.ContextVar("podstack_gpu_spec", default=None)


def current_spec() -> GPUSpec | None:
    """The spec set by an enclosing ``with podstack.gpu(...)`` block, if any."""
    return _active_spec.get()


class gpu:  # noqa: N801 - used as @podstack.gpu(...), like a function
    """Run a function on a GPU session, or set the GPU for a block.

    As a decorator, each call ships the function, its arguments and the
    globals it uses to a warm session with these GPUs; output streams live and
    the return value comes back::

        @podstack.gpu(type="L40S", fraction=50, pip=["transformers"])
        def train(lr):
            ...
            return metrics

        metrics = train(3e-4)

    As a context manager it sets the spec that ``%%gpu`` cells and
    ``run_on_gpu`` calls without their own type use inside the block::

        with podstack.gpu(type="A100-80G", count=2) as cfg:
            print(cfg.type)

    Arguments: ``type`` (T4, L4, A10, L40S, A100-40G, A100-80G, H100, H200, ...;
    None: any free GPU, else the CPU), ``count``, ``fraction`` (1-100 percent of
    each GPU), ``pip``/``uv`` (packages; ``uv`` also prefers uv to build),
    ``requirements`` (a requirements file), ``use_uv``, ``conda``, ``env``
    (preset: ml, nlp, cv, audio, tabular, rl, scientific), ``timeout`` seconds
    (default 3600), ``remote=False`` to run here, for debugging.
    """

    def __init__(self, type: str | None = None, count: int = 1, fraction: int = 100, pip=None, uv=None,
                 requirements: str | None = None, use_uv: bool = True, conda=None, env: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, remote: bool = True):
        packages = [*(_as_list(pip)), *(_as_list(uv))]
        self.spec = GPUSpec(type=type, count=count, fraction=fraction, env=env, pip=tuple(packages),
                            requirements=requirements, conda=tuple(_as_list(conda)),
                            use_uv=use_uv or bool(uv), timeout=timeout)
        self.remote = remote
        self._token = None

    # attribute access as in the seed: cfg.type, cfg.count, ...
    def __getattr__(self, name):
        spec = self.__dict__.get("spec")
        if spec is not None and hasattr(spec, name):
            return getattr(spec, name)
        raise AttributeError(name)

    def __enter__(self):
        self._token = _active_spec.set(self.spec)
        return self

    def __exit__(self, *exc):
        _active_spec.reset(self._token)
        return False

    def __call__(self, fn):
        site = uuid.uuid4().hex[:12]  # the session keeps this function's last arguments under it

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            if not self.remote:
                return fn(*args, **kwargs)
            return runner.call(self.spec, fn, args, kwargs, site=site)

        wrapper.spec = self.spec
        return wrapper

    def __repr__(self):
        return f"podstack.gpu({self.spec.describe()})"


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


@dataclass
class GPURunResult:
    """What ``run_on_gpu`` returns: captured ``output``, ``success``, ``duration_seconds``, and ``error``."""

    output: str
    success: bool
    duration_seconds: float
    error: str | None = None
    execution_id: str | None = None


def run_on_gpu(code: str, gpu: str | None = None, count: int | None = None, fraction: int | None = None,
               timeout: float | None = None, pip=None, env: str | None = None) -> GPURunResult:
    """Run a code string on a GPU session and return its captured output.

    Inside ``with podstack.gpu(...)``, the block's settings apply to whatever is not
    given here. Exceptions in the code are reported in the result (``success=False``,
    ``error``), not raised; a timeout raises ExecutionTimeoutError.
    """
    spec = resolve_spec(type=gpu, count=count, fraction=fraction, timeout=timeout, pip=pip, env=env)
    session = sessions.get(spec)
    sink = CapturingSink()
    started = time.monotonic()
    try:
        landed = runner.run_code(session, code, timeout=spec.timeout, sink=sink)
    except RemoteExecutionError as exc:
        return GPURunResult(sink.text, False, round(time.monotonic() - started, 3), error=f"{exc.ename}: {exc.evalue}",
                            execution_id=exc.execution_id)
    if landed.result:
        sink.display(landed.result)
    return GPURunResult(sink.text, True, round(landed.step.duration, 3), execution_id=landed.step.step_id)


def resolve_spec(**given) -> GPUSpec:
    """A spec from the arguments given (None: not given), the rest from the enclosing
    ``with podstack.gpu(...)`` block, else the defaults."""
    base = current_spec() or GPUSpec()
    changes = {}
    for name, value in given.items():
        if value is None:
            continue
        if name == "pip":
            changes["pip"] = tuple(_as_list(value))
        else:
            changes[name] = value
    return dataclasses.replace(base, **changes) if changes else base
