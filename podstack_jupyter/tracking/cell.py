"""``%%track``: run a notebook cell as a tracked run.

``run_tracked_cell`` is what the magic calls. The cell runs in the notebook's
namespace inside a new run (nested in the active run, if there is one); the
cell's source is kept with the run, the named variables are logged as params,
and the run ends ``completed``, ``failed`` (the cell raised; the exception goes
on to the notebook) or ``killed`` (interrupted).
"""

from __future__ import annotations

from .._shell import run_in_shell
from ..errors import InvalidArgumentError

__all__ = ["run_tracked_cell"]

_MAX_PARAM_CHARS = 1000
_MISSING = object()


def _param_text(value) -> str:
    text = value if isinstance(value, str) else repr(value) if not isinstance(value, (int, float, bool)) else str(value)
    return text if len(text) <= _MAX_PARAM_CHARS else text[:_MAX_PARAM_CHARS - 1] + "…"


def run_tracked_cell(shell, cell: str, *, name: str | None = None, experiment: str | None = None,
                     tags: dict | None = None, param_names: list | None = None, run_cell=None):
    """Run ``cell`` as a tracked run and return the value of its last expression.

    ``shell``: the IPython shell (its ``user_ns`` is the namespace). ``name``: the run name.
    ``experiment``: experiment for this run only (created if needed). ``tags``: run tags.
    ``param_names``: notebook variables logged as params (their values when the cell ends).
    ``run_cell``: a callable with no arguments that executes the cell instead (used to stack
    ``%%track`` over ``%%gpu``); it returns the cell's value or raises.
    """
    from . import registry
    from .runs import active_runs

    names = list(param_names or ())
    bad = [n for n in names if not isinstance(n, str) or not n.isidentifier()]
    if bad:
        raise InvalidArgumentError(f"%%track: params must be variable names, got {bad}")
    namespace = shell.user_ns
    before = {n: namespace.get(n, _MISSING) for n in names}
    # --experiment applies to this run only; the notebook's current experiment stays
    experiment_id = registry.client().ensure_experiment(experiment).id if experiment else None
    run = registry.start_run(name=name, nested=active_runs.top() is not None, tags=tags, source=cell,
                             experiment_id=experiment_id)

    def log_named_params():
        values = {}
        for n in names:
            value = namespace.get(n, before[n])
            if value is not _MISSING:
                values[n] = _param_text(value)
        if values:
            registry.log_params(values, run_id=run.id)

    try:
        value = run_cell() if run_cell is not None else run_in_shell(shell, cell, "<tracked cell>")
    except BaseException as exc:
        status = "killed" if isinstance(exc, KeyboardInterrupt) else "failed"
        try:
            log_named_params()
        finally:
            registry.end_run(status, run_id=run.id)
        raise
    try:
        log_named_params()
    except BaseException:
        registry.end_run("failed", run_id=run.id)
        raise
    registry.end_run("completed", run_id=run.id)
    return value
