"""Run a notebook cell in a GPU session: what ``%%gpu`` does after parsing its arguments."""

from __future__ import annotations

import sys
import warnings

from ..errors import CellSyntaxError, SerializationError, SessionDiedError
from . import wire
from .namespace import analyze, shippable
from .session import ExecutionOutcome, GPUSession, sessions
from .spec import GPUSpec

__all__ = ["run_cell", "RemoteResult", "encode_for_push", "apply_outcome"]


class RemoteResult:
    """The value of a remote cell's last expression, shown as its rich output.

    The value itself stays remote; assign it in the cell (``y = ...``) to bring it back.
    """

    def __init__(self, bundle: dict):
        self.data = bundle.get("data", {})
        self.metadata = bundle.get("metadata", {})

    def _repr_mimebundle_(self, include=None, exclude=None):
        return self.data, self.metadata

    def __repr__(self):
        return self.data.get("text/plain", "")


def encode_for_push(session: GPUSession, values: dict, force: set = frozenset()) -> dict[str, wire.Encoded]:
    """Encode the values the session does not already hold unchanged (all of ``force``)."""
    to_send = {}
    for name, value in values.items():
        try:
            enc = wire.encode(value)
        except Exception as exc:
            type_name = f"{type(value).__module__}.{type(value).__qualname__}"
            raise SerializationError(
                f"cannot send variable {name!r} (a {type_name}) to the GPU session: {exc}. Create it inside "
                f"the %%gpu cell instead, or keep the cell from reading it.", name=name, type_name=type_name
            ) from exc
        if name in force or session.remote_fingerprints.get(name) != enc.fingerprint:
            to_send[name] = enc
    return to_send


def apply_outcome(session: GPUSession, outcome: ExecutionOutcome, namespace: dict, deletes=()) -> None:
    """Apply returned values to ``namespace`` in one step, and say what stayed remote."""
    namespace.update(outcome.values)
    session.remote_fingerprints.update(outcome.fingerprints)
    for name in deletes:
        if name in outcome.absent:
            namespace.pop(name, None)
            session.remote_fingerprints.pop(name, None)
    for name, why in outcome.left_remote.items():
        # in sync as far as pushing goes: do not overwrite the remote's newer value with ours
        if name in namespace:
            try:
                session.remote_fingerprints[name] = wire.encode(namespace[name]).fingerprint
            except Exception:
                pass
        print(f"[podstack] {name!r} stays in the GPU session: {why}", file=sys.stderr)


def run_cell(shell, cell: str, spec: GPUSpec, *, fresh: bool = False, push: list[str] = (),
             pull: list[str] = (), timeout: float | None = None, line_offset: int = 1):
    """Run ``cell`` remotely with ``shell.user_ns`` as its namespace.

    Returns a :class:`RemoteResult` for the last expression (or None). On any
    failure the local namespace is left exactly as it was.
    """
    code = shell.transform_cell(cell)  # IPython syntax (!cmd, %magic) -> Python, as the remote will see it
    try:
        names = analyze(code)
    except SyntaxError as exc:
        raise CellSyntaxError(exc, line_offset) from None
    ns = shell.user_ns
    hidden = getattr(shell, "user_ns_hidden", {})
    missing = [n for n in push if n not in ns]
    if missing:
        raise NameError(f"--push names {missing} are not defined in this notebook")

    session = sessions.get(spec, fresh=fresh)
    reads = {n for n in names.reads | set(push) if n in ns and shippable(n, hidden)}
    to_send = encode_for_push(session, {n: ns[n] for n in sorted(reads)}, force=set(push))
    try:
        session.push(to_send, timeout=spec.timeout)
        outcome = session.execute(
            cell, inputs=sorted(reads | {n for n in names.reads if n in session.remote_fingerprints}),
            binds=sorted(names.binds | names.deletes | set(pull)), timeout=timeout, line_offset=line_offset)
    except SessionDiedError:
        sessions.died(session)
        raise
    apply_outcome(session, outcome, ns, deletes=names.deletes)
    return RemoteResult(outcome.result) if outcome.result else None
