"""Helpers the compute tests share: run a cell in a real IPython shell, find the one session,
press Ctrl-C once a remote loop is running."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading


def run(ip, cell):
    """Run ``cell`` in the shell ``ip``; raise what it raised (before or during execution), else
    return its result."""
    result = ip.run_cell(cell)
    error = result.error_before_exec or result.error_in_exec
    if error is not None:
        raise error
    return result.result


def only_session():
    """The one live GPU session (fails if there is none or more than one)."""
    from podstack_jupyter.compute import sessions

    (session,) = sessions.find("all")
    return session


@contextlib.contextmanager
def interrupt_when_printed(marker: str, delay: float = 0.3, give_up: float = 60.0):
    """Press Ctrl-C (SIGINT to this process) ``delay`` seconds after ``marker`` appears on stdout,
    i.e. once the remote loop is known to run, however slow the machine; if it never appears,
    after ``give_up`` seconds anyway, so that the test fails instead of hanging."""
    real = sys.stdout
    press = functools.partial(os.kill, os.getpid(), signal.SIGINT)
    timers = [threading.Timer(give_up, press)]

    class Watcher:
        def write(self, text):
            if marker in text and len(timers) == 1:
                timers.append(threading.Timer(delay, press))
                timers[-1].start()
            return real.write(text)

        def flush(self):
            real.flush()

    timers[0].start()
    sys.stdout = Watcher()
    try:
        yield
    finally:
        sys.stdout = real
        for timer in timers:
            timer.cancel()
