"""Helpers the compute tests share: run a cell in a real IPython shell, find the one session."""

from __future__ import annotations


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
