"""How this process ends decides how the runs it leaves open end.

At exit, the runs this process started and did not end are ended with the status the
exit deserves: ``failed`` after an uncaught exception or ``sys.exit(n)`` with ``n`` not 0,
``killed`` after an uncaught ``KeyboardInterrupt`` (Ctrl-C), ``completed`` otherwise. A
thread that dies of an exception ends its own runs ``failed``. The hooks are installed
when the first run starts; each calls the one it replaced.

A process killed outright (SIGKILL, SIGTERM, ``os._exit``) runs none of this: its metric
journal is recovered and its runs are marked ``killed`` by the next process that opens the
store (see ``journal.py``). No signal handler is installed: a library that takes over
SIGTERM changes how the user's program stops, and the journal does not need it.

Limits: an exit code is known only through ``sys.exit`` (a bare ``raise SystemExit(3)`` at
top level ends runs ``completed``); inside IPython, ``sys.exit`` in a cell does not end the
kernel and is not counted.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

__all__ = ["install", "exit_status"]

log = logging.getLogger("podstack.tracking")

_install_lock = threading.Lock()
_installed = False
_exit_code = None          # the argument of the last sys.exit() outside IPython
_uncaught: type | None = None  # the type of an uncaught exception in the main thread


def exit_status() -> str:
    """The status the runs still open get when the interpreter exits now."""
    if _uncaught is not None:
        return "killed" if issubclass(_uncaught, KeyboardInterrupt) else "failed"
    if _exit_code not in (None, 0):
        return "failed"
    return "completed"


def _interactive() -> bool:
    ipython = sys.modules.get("IPython")
    return ipython is not None and getattr(ipython, "get_ipython", lambda: None)() is not None


def install() -> None:
    """Install the exit hooks (once per process)."""
    global _installed
    if _installed:
        return
    with _install_lock:
        if _installed:
            return
        _installed = True
        import atexit

        real_exit = sys.exit

        def exit(status=None):
            global _exit_code
            if not _interactive():
                _exit_code = status
            real_exit(status)

        exit.__doc__, exit.__wrapped__ = real_exit.__doc__, real_exit
        sys.exit = exit

        previous_hook = sys.excepthook

        def excepthook(exc_type, exc, tb):
            global _uncaught
            _uncaught = exc_type
            previous_hook(exc_type, exc, tb)

        sys.excepthook = excepthook

        previous_thread_hook = threading.excepthook

        def thread_excepthook(args):
            try:
                _end_runs(_own(_thread_runs()), "failed")
            finally:
                previous_thread_hook(args)

        threading.excepthook = thread_excepthook
        atexit.register(_end_runs_at_exit)


def _thread_runs() -> list:
    from .runs import active_runs

    return active_runs.mine()


def _own(runs: list) -> list:
    me = os.getpid()
    return [run for run in runs if getattr(run, "_pid", None) == me]


def _end_runs(runs: list, status: str) -> None:
    from . import registry

    for run in reversed(runs):  # innermost first
        if run.status != "running":
            continue  # ended with its parent
        try:
            registry.end_run(status, run_id=run.id)
        except Exception as exc:  # noqa: BLE001 - the process is ending; say what could not be recorded
            log.error("podstack: could not end run %s as %s: %s", run.id, status, exc)


def _end_runs_at_exit() -> None:
    from .runs import active_runs

    _end_runs(_own(active_runs.all()), exit_status())
