"""The cell sequence, written once: push -> run -> pull -> apply.

``%%gpu`` (:func:`run_cell`), ``%gpu push`` / ``%gpu pull`` (:func:`push_names`,
:func:`pull_names`), ``@podstack.gpu`` (:func:`call`) and ``run_on_gpu``
(:func:`run_code`) are all one :func:`run_step`:

1. *push*: the names the step reads that the session does not already hold
   unchanged (a fingerprint decides), plus, first, the values a failed cell left
   different there; pickled together, so objects they share stay shared;
2. *run*: one ``exec`` message to the session's agent, output relayed live;
3. *pull*: the agent answers with the names bound and the inputs changed;
4. *apply*: decoded completely, then applied to the namespace in one step, in
   place where the value is the same object the session was given (so aliases
   stay true). If anything fails, the namespace is left exactly as it was, and
   the session is told what to undo before the next step.
"""

from __future__ import annotations

import ast
import contextlib
import functools
import sys
import uuid
from dataclasses import dataclass, field

from ..errors import CellSyntaxError, PodstackError, RemoteExecutionError, SerializationError, SessionDiedError
from . import hooks, wire
from .namespace import CellNames, analyze_tree, globals_of, shippable
from .session import GPUSession, OutputSink, StepResult, sessions
from .spec import GPUSpec

__all__ = ["run_cell", "run_step", "run_code", "call", "push_names", "pull_names", "RemoteResult", "Landed",
           "parse_cell"]


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


@dataclass
class Landed:
    """What a step brought back, already applied."""

    step: StepResult
    values: dict = field(default_factory=dict)  # names applied to the namespace
    call: dict = field(default_factory=dict)  # the @gpu call's own values (ret, args, kwargs)
    removed: list = field(default_factory=list)
    left_remote: dict = field(default_factory=dict)  # name -> why it stays in the session

    @property
    def result(self) -> dict | None:
        return self.step.result


@dataclass
class _Call:
    site: str
    values: dict  # fn, args, kwargs
    shape: str | None = None  # wire.containers' hash of (args, kwargs): their structure, sharing included
    before: list = field(default_factory=list)  # wire.containers of (args, kwargs) as sent, before landing


# -- the entry points ---------------------------------------------------------------------------------

def run_cell(shell, cell: str, spec: GPUSpec, *, fresh: bool = False, push=(), pull=(), timeout: float | None = None,
             line_offset: int = 1):
    """Run ``cell`` remotely with ``shell.user_ns`` as its namespace (what ``%%gpu`` does).

    Returns a :class:`RemoteResult` for the last expression (or None). On any
    failure the local namespace is left exactly as it was.
    """
    code, transformed, names = parse_cell(shell, cell, line_offset)
    ns = shell.user_ns
    missing = [n for n in push if n not in ns]
    if missing:
        raise NameError(f"--push names {missing} are not defined in this notebook")
    session = sessions.get(spec, fresh=fresh)
    landed = run_step(session, ns, kind="cell", code=code, transformed=transformed, names=names, push=push,
                      pull=pull, timeout=timeout, hidden=getattr(shell, "user_ns_hidden", {}),
                      allow_stdin=_can_ask(shell))
    return RemoteResult(landed.result) if landed.result else None


def push_names(session: GPUSession, namespace: dict, names) -> int:
    """Send ``names`` to the session even if it holds them unchanged; returns bytes sent."""
    landed = run_step(session, namespace, kind="sync", push=list(names))
    return landed.step.bytes_sent


def pull_names(session: GPUSession, namespace: dict, names) -> Landed:
    """Bring ``names`` back from the session (``landed.removed``: those it does not have)."""
    return run_step(session, namespace, kind="sync", pull=list(names))


def call(spec: GPUSpec, fn, args: tuple, kwargs: dict, *, site: str, namespace: dict | None = None):
    """Call ``fn(*args, **kwargs)`` in the session for ``spec`` as a local call would behave:
    the return value comes back, arguments changed in place come back changed, the
    remote exception is raised as its own type, and the function's globals are the
    notebook's. The session keeps the last arguments, so unchanged ones are not sent again."""
    session = sessions.get(spec)
    namespace = _namespace() if namespace is None else namespace
    reads, binds = globals_of([fn], namespace)
    with _by_value(fn):
        landed = run_step(session, namespace, kind="call", names=CellNames(reads=reads, binds=binds),
                          call=_Call(site, {"fn": fn, "args": args, "kwargs": kwargs}), timeout=spec.timeout)
    if "ret" not in landed.call:
        why = landed.left_remote.get(f"@{site}:ret", "it could not be pickled")
        raise SerializationError(f"the return value of {getattr(fn, '__name__', fn)}() could not come back: {why}")
    return landed.call["ret"]


def run_code(session: GPUSession, code: str, *, timeout: float | None = None, sink: OutputSink | None = None) -> Landed:
    """Run a code string in the session without sharing variables (``run_on_gpu``)."""
    return run_step(session, _namespace(), kind="cell", code=code, names=CellNames(), timeout=timeout, sink=sink)


# -- the sequence ---------------------------------------------------------------------------------------

def run_step(session: GPUSession, namespace: dict, *, kind: str, code: str | None = None,
             transformed: str | None = None, names: CellNames | None = None, push=(), pull=(),
             timeout: float | None = None, sink: OutputSink | None = None, call: _Call | None = None,
             hidden=frozenset(), allow_stdin: bool = False, _full: bool = False) -> Landed:
    """One step of the sequence; see the module docstring. Raises RemoteExecutionError (the
    remote raised; also an instance of the remote exception's type when that can be rebuilt
    here), SerializationError, ExecutionTimeoutError, KeyboardInterrupt or SessionDiedError."""
    names = names or CellNames()
    state = session.sync_state(namespace)
    state.prune(namespace)
    codec = state.codec
    push, pull = list(push), list(pull)

    reads = set(names.reads)
    binds = set(names.binds) | set(pull)
    if kind == "cell":  # notebook functions the cell calls read (and may assign) notebook globals too
        extra_reads, extra_binds = globals_of([namespace[n] for n in names.reads if n in namespace], namespace)
        reads |= extra_reads
        binds |= extra_binds
    # containers that the values read hold and that are variables too (S = [N]) travel in one batch with
    # them, so they are one object there and back; inside the batch they cost a reference, not a copy
    holders = wire.held_inside({n: namespace[n] for n in reads | set(push) if n in namespace}, namespace,
                               allowed=lambda n: shippable(n, hidden), kept=state.kept)
    together = {(holder, name) for holder, held in holders.items() for name in held}
    first_time = {n for pair in together - state.together for n in pair}  # not yet one object there
    reads |= first_time
    forced = set(push) | state.diverged | first_time
    candidates = [n for n in dict.fromkeys([*sorted(reads), *push, *sorted(state.diverged)])
                  if n in namespace and shippable(n, hidden)]
    drop = []
    if namespace is state.namespace:  # names agreed earlier and deleted here since: delete them there too
        drop = sorted({n for n in state.synced if not n.startswith("@") and n not in namespace
                       and n not in state.left_remote} | {n for n in state.diverged if n not in namespace})
    placeholders = [n for n in sorted(names.deletes) if n in namespace and n not in candidates
                    and n not in state.synced]

    codec.begin()
    pushed: dict[str, tuple] = {}
    plain = True  # every value sent is plain builtins: marshal carries the batch
    for name in candidates:
        value = namespace[name]
        previous = state.synced.get(name)
        same_obj = state.is_synced_obj(name, value)
        if name not in forced and previous is not None and same_obj and wire.is_atom(value):
            continue
        fp = _fingerprint(codec, name, value)
        if name not in forced and fp == previous and (same_obj or wire.is_atom(value)):
            continue
        pushed[name] = (value, fp)
        plain = plain and codec.plain
    for holder, held in holders.items():  # a holder that goes takes what it holds along
        for name in held if holder in pushed else ():
            if name not in pushed:
                pushed[name] = (namespace[name], _fingerprint(codec, name, namespace[name]))
                plain = plain and codec.plain
            reads.add(name)
    for name in placeholders:  # `del x` of a value the session never had: it needs something to delete
        pushed[name] = (None, None)
    inputs = [n for n in sorted(reads) if n in pushed or n in state.synced]
    drop_after = []
    if call is not None:
        # the session's arguments must have the caller's structure, sharing included, for changes made in
        # place at any depth to land in the caller's own containers: unchanged content in a new structure goes
        call.before, call.shape = wire.containers((call.values["args"], call.values["kwargs"]))
        reshaped = call.shape is None or state.call_shapes.get(call.site) != call.shape
        for key, value in call.values.items():
            qualified = f"@{call.site}:{key}"
            fp = _fingerprint(codec, getattr(call.values["fn"], "__name__", "the function") if key == "fn"
                              else f"argument of {getattr(call.values['fn'], '__name__', 'the function')}()", value)
            if fp != state.synced.get(qualified) or (reshaped and key != "fn"):
                pushed[qualified] = (value, fp)
                plain = plain and codec.plain
        inputs += [f"@{call.site}:args", f"@{call.site}:kwargs"]
        binds.add(f"@{call.site}:ret")
        drop_after.append(f"@{call.site}:ret")

    values = {name: value for name, (value, fp) in pushed.items()}
    packet = None
    if values:
        try:
            packet = codec.encode(values, full=_full, plain=plain)
        except Exception as exc:
            raise SerializationError(f"cannot send the cell's variables to the GPU session: {exc}") from exc
    same = [n for n, v in values.items() if type(v) in (list, dict, set, bytearray) and state.is_synced_obj(n, v)]
    same_as = _aliases(values, state, namespace)
    data = {
        "op": "exec", "id": uuid.uuid4().hex, "kind": kind, "code": code, "transformed": transformed,
        "inputs": inputs, "binds": sorted(binds), "deletes": sorted(names.deletes), "pull": pull, "drop": drop,
        "drop_after": drop_after, "star": names.star, "allow_stdin": bool(allow_stdin),
        "context": hooks.cell_context() if kind in ("cell", "call") else {},
        "push": None if packet is None else {
            "names": list(values), "fps": {n: fp for n, (v, fp) in pushed.items() if fp is not None},
            "same": same, "same_as": same_as, "placeholders": placeholders, "sources": packet.sources,
            "format": packet.format},
        "python": list(sys.version_info[:2]),
    }
    if call is not None:
        data["site"] = call.site
    touched = sorted({*pushed, *binds, *names.deletes, *inputs, *drop})
    if kind == "cell" and names.awaits:
        data["kind"] = "await"
    request = {k: data[k] for k in ("id", "code", "inputs", "binds", "deletes", "pull", "drop_after", "star",
                                    "context", "allow_stdin")}
    state.inflight[data["id"]] = {"pushed": pushed, "packet": packet, "dropped": drop, "names": touched,
                                  "request": request, "together": {p for p in together if p[0] in pushed}}
    try:
        step = session.run_step(data, packet, sink=sink, timeout=timeout, names=touched)
    except SessionDiedError:
        sessions.died(session)
        raise
    try:
        reply = step.reply
        status = step.status
        if kind == "probe":
            state.inflight.pop(data["id"], None)
            if status != "ok":
                raise SerializationError(_evalue(reply))
            return Landed(step)
        if status == "missing" and not _full:  # the session lost objects we referred to by key: send them whole
            state.inflight.pop(data["id"], None)
            codec.forget(reply.get("keys", ()))
            return run_step(session, namespace, kind=kind, code=code, transformed=transformed, names=names, push=push,
                            pull=pull, timeout=timeout, sink=sink, call=call, hidden=hidden, allow_stdin=allow_stdin,
                            _full=True)
        state.resolve(data["id"], reply)
        if call is not None:  # known again once the call's results landed
            state.call_shapes[call.site] = None
        if status == "failed":
            if (reply.get("error") or {}).get("ename") == "KeyboardInterrupt":  # it landed before the cell ran
                raise KeyboardInterrupt
            if reply.get("stage") == "push":
                raise _push_failure(session, namespace, values, reply)
            raise PodstackError(f"the GPU session's agent failed: {_evalue(reply)}. The session's variables "
                                f"will be sent again before the next cell.")
        if status == "error":
            raise _remote_error(reply, step, data["id"])
        if status != "ok":
            raise PodstackError(f"the GPU session answered {status!r}; run %gpu restart if this persists")
        landed = _apply(session, state, namespace, step, names, call)
        if call is not None:  # the structure of the arguments the session holds now: the caller's
            state.call_shapes[call.site] = call.shape
        return landed
    except KeyboardInterrupt:  # the session finished the step, but its results were not taken in here
        state.lose(data["id"], touched)
        raise


def _aliases(values: dict, state, namespace: dict) -> dict:
    """Containers being sent that are the very object the session already holds under another
    name (``alias = lst``, one of them sent before): the session binds its own, so they stay one."""
    containers = {id(v): n for n, v in values.items() if type(v) in (list, dict, set, bytearray)}
    if not containers:
        return {}
    aliases = {}
    for other in state.synced:
        if other in values or other.startswith("@"):
            continue
        value = namespace.get(other)
        name = containers.get(id(value))
        if name is not None and state.is_synced_obj(other, value):
            aliases[name] = other
    return aliases


def _fingerprint(codec: wire.Codec, name: str, value) -> str:
    try:
        return codec.fingerprint(value)
    except Exception as exc:
        type_name = f"{type(value).__module__}.{type(value).__qualname__}"
        raise SerializationError(
            f"cannot send variable {name!r} (a {type_name}) to the GPU session: {exc}. Create it inside "
            f"the %%gpu cell instead, or keep the cell from reading it.", name=name, type_name=type_name
        ) from exc


def _apply(session: GPUSession, state, namespace: dict, step: StepResult, names: CellNames, call) -> Landed:
    """Decode what came back completely, then apply it in one step."""
    reply = step.reply
    pull = reply["pull"]
    landed = Landed(step)
    fps = pull["fps"]
    wanted = list(pull["names"])
    values: dict = {}
    landings: list = []  # decoded but not yet committed: objects updated in place can still be restored
    if wanted:
        try:
            values = _decode(session, state, step, landings)
        except MemoryError as exc:
            state.nacks[reply["id"]] = wanted
            for name in wanted:
                if not name.startswith("@") and name in namespace:
                    with contextlib.suppress(Exception):
                        state.synced[name] = state.codec.fingerprint(namespace[name])
                    state.left_remote.add(name)
            sizes = pull.get("bytes", 0)
            raise SerializationError(
                f"the cell finished, but what it changed ({', '.join(wanted)}: {sizes / 1e6:,.0f} MB) does not fit "
                f"in this notebook's memory ({exc}). Nothing here was changed; the new values stay in the GPU "
                f"session: use them from %%gpu cells, or bring back a smaller part.") from None
        except _LeftRemote as partial:
            values = partial.values
            landed.left_remote.update(partial.why)
        except KeyboardInterrupt:
            for landing in landings:
                landing.rollback()
            raise
    with wire.interrupts_held():  # what came back is taken in whole: a Ctrl-C now waits for the end
        for landing in landings:
            landing.commit()
        same = set(pull.get("same", ()))
        same_as = pull.get("same_as", {})
        merged = []  # (a new container, the notebook's object that took its contents)
        for name, value in values.items():
            if name.startswith("@"):
                continue
            other = same_as.get(name)
            if other is not None:  # the session bound another name to an object we share: keep them one here
                old = namespace.get(other, wire.MISSING)
                if old is not wire.MISSING and state.is_synced_obj(other, old) and wire.merge_container(old, value):
                    merged.append((value, old))
                    values[name] = old
                continue
            old = namespace.get(name, wire.MISSING)
            if name in same and old is not wire.MISSING and old is not value and state.is_synced_obj(name, old) \
                    and wire.merge_container(old, value):
                merged.append((value, old))
                values[name] = old
        value = None  # the loop's last value must not count as a reference to replace
        wire.keep_merged_shared(merged, values)  # S = [N] with N: S[0] stays the notebook's N
        del merged
        if call is not None:
            prefix = f"@{call.site}:"
            _merge_arguments(call, values, pull.get("origins"))
            landed.call = {k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}
            for key in ("args", "kwargs"):
                if prefix + key in values:
                    values[prefix + key] = call.values[key]
        applied = {n: v for n, v in values.items() if not n.startswith("@")}
        removed = [n for n in reply.get("absent", ()) if n in namespace and (n in state.synced or n in names.deletes)]
        namespace.update(applied)
        if applied and state.together:  # what came back holds what it holds now (the session sends both)
            state.together = {pair for pair in state.together if pair[0] not in applied}
        if len(applied) > 1:
            held = wire.held_inside(applied, namespace, allowed=lambda n: n in applied, kept=state.kept)
            state.together |= {(holder, name) for holder, names_held in held.items() for name in names_held}
        for name in removed:
            namespace.pop(name, None)
            state.forget(name)
        for name in reply.get("absent", ()):
            state.forget(name)
        for name, value in values.items():
            if name in fps:
                state.agree(name, value, fps[name])
        state.acks.append(reply["id"])
    landed.values, landed.removed = applied, [n for n in reply.get("absent", ())]
    for name, why in {**reply.get("unsendable", {}), **landed.left_remote}.items():
        landed.left_remote[name] = why
        if name in namespace:  # in sync as far as pushing goes: do not overwrite the session's newer value
            with contextlib.suppress(Exception):
                state.synced[name] = state.codec.fingerprint(namespace[name])
            state.left_remote.add(name)
        if not name.startswith("@"):
            print(f"[podstack] {name!r} stays in the GPU session: {why}", file=sys.stderr)
    return landed


def _merge_arguments(call: _Call, values: dict, origins) -> None:
    """Arguments the function changed in place: the caller's own containers change, at any depth.
    ``origins`` pairs each container of the returned arguments with the one it was when the
    session received them (``wire.containers`` order on both ends); without it (arguments
    too large to walk) only the top-level ones are merged."""
    prefix = f"@{call.site}:"
    new_args, new_kwargs = values.get(prefix + "args"), values.get(prefix + "kwargs")
    if new_args is None and new_kwargs is None:
        return
    args, kwargs = call.values["args"], call.values["kwargs"]
    if origins is None:
        pairs = []
        if new_args is not None:
            pairs += zip(new_args, args)
        if new_kwargs is not None:
            pairs += ((new_kwargs[k], kwargs[k]) for k in kwargs if k in new_kwargs)
    else:
        before = call.before  # walked before the results landed: keyed instances among them changed since
        after = wire.containers((args if new_args is None else new_args, kwargs if new_kwargs is None else new_kwargs))[0]
        pairs = [(after[j], before[i]) for j, i in origins if j < len(after) and i < len(before)]
        del before, after
    merged = [(new, old) for new, old in pairs if new is not old and wire.merge_container(old, new)]
    if origins is not None and len(merged) < sum(1 for new, old in pairs if new is not old):
        call.shape = None  # some could not be merged: the structures differ, send them whole next time
    del pairs
    # what the merged containers hold is the caller's too (the caller's kwargs dict took the new one's items)
    wire.keep_merged_shared(merged, {"args": args if new_args is None else new_args, "kwargs": kwargs})


class _LeftRemote(Exception):
    def __init__(self, values, why):
        super().__init__(why)
        self.values, self.why = values, why


def _decode(session: GPUSession, state, step: StepResult, landings: list) -> dict:
    """The values that came back; what they change in existing objects is added to ``landings``,
    to commit (or roll back on an interrupt) when everything is here."""
    codec = state.codec
    pull = step.reply["pull"]
    stream, buffers, fmt = session.fetch(step)
    try:
        values, landing = codec.decode(stream, buffers, pull.get("sources"), fmt)
    except wire.MissingKeyError as exc:  # we no longer hold something it referred to by key: ask for it whole
        stream, buffers, fmt = session.fetch(step, full_keys=[int(k) for k in exc.args])
        values, landing = codec.decode(stream, buffers, pull.get("sources"), fmt)
    except Exception:  # e.g. a class this notebook cannot import: bring back what can be rebuilt here
        return _decode_each(session, state, step)
    landings.append(landing)
    return values


def _decode_each(session: GPUSession, state, step: StepResult) -> dict:
    codec = state.codec
    reply, buffers, _ = session.fetch(step, split=True)
    values, why = {}, {}
    position = 0
    for name, count, fmt in zip(reply["split"], reply["counts"], reply["formats"]):
        stream, frames = buffers[position], buffers[position + 1:position + 1 + count]
        position += 1 + count
        try:
            decoded, landing = codec.decode(stream, frames, step.reply["pull"].get("sources"), fmt)
        except Exception as exc:
            why[name] = f"cannot be rebuilt here: {type(exc).__name__}: {exc}"
            continue
        landing.commit()
        values.update(decoded)
    state.nacks.setdefault(step.reply["id"], []).extend(why)
    raise _LeftRemote(values, why)


def _push_failure(session: GPUSession, namespace: dict, values: dict, reply: dict) -> SerializationError:
    """The session could not rebuild the pushed batch: find which variable, to name it."""
    error = _evalue(reply)
    culprit = None
    if len(values) == 1:
        culprit = next(iter(values))
    else:
        for name in values:
            if name.startswith("@"):
                continue
            try:
                probe = run_step(session, namespace, kind="probe", push=[name])
            except SerializationError:
                culprit = name
                break
            del probe
    if culprit is not None and culprit.startswith("@"):
        culprit = None
    where = f"variable {culprit!r}" if culprit else "the cell's variables"
    return SerializationError(
        f"the session could not rebuild {where}: {error}. Is the package that defines it installed there "
        f"(use --pip)?", name=culprit)


def _evalue(reply: dict) -> str:
    error = reply.get("error") or {}
    return f"{error.get('ename', 'Error')}: {error.get('evalue', '')}"


_DUAL_TYPES: dict = {}


def _remote_error(reply: dict, step: StepResult, step_id: str) -> Exception:
    """The remote exception, raised here: a RemoteExecutionError that is also an instance of the
    remote exception's own type when that type exists here (``except ZeroDivisionError`` works)."""
    error = reply.get("error") or {}
    shown = step.error or {}
    traceback = shown.get("traceback") or error.get("traceback") or []
    ename, evalue = error.get("ename", shown.get("ename", "Error")), error.get("evalue", shown.get("evalue", ""))
    if ename == "KeyboardInterrupt":
        return KeyboardInterrupt()
    base = RemoteExecutionError(ename, evalue, traceback, execution_id=step_id)
    index = reply.get("exception")
    if index is None:
        return base
    try:
        original = __import__("cloudpickle").loads(step.frames[index])
        cls = type(original)
        if not isinstance(original, Exception) or isinstance(original, RemoteExecutionError):
            return base
        dual = _DUAL_TYPES.get(cls)
        if dual is None:
            dual = type(cls.__name__, (cls, RemoteExecutionError),
                        {"__module__": cls.__module__, "__qualname__": cls.__qualname__, "__doc__": cls.__doc__})
            _DUAL_TYPES[cls] = dual
        err = dual.__new__(dual, *original.args)
        err.__dict__.update(original.__dict__)
        err.__dict__.update(base.__dict__)
        err.args = original.args
    except Exception:  # noqa: BLE001 - the remote error is still worth raising as it is
        return base
    if hasattr(err, "add_note"):  # shown by plain Python; IPython shows the remote traceback itself
        err.add_note("(raised in the GPU session; remote traceback:)\n" + _plain("\n".join(traceback)))
    return err


def _plain(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)


# -- cells ------------------------------------------------------------------------------------------------

def parse_cell(shell, cell: str, line_offset: int = 1) -> tuple[str, str | None, CellNames]:
    """(code to run remotely, the same already transformed or None, the names it reads and binds).
    IPython syntax (``!cmd``, ``%magic``) is transformed once here only when the cell is not
    plain Python; the session then skips its own transform for plain cells."""
    return _parse_cached(cell, line_offset, shell.transform_cell)


@functools.lru_cache(maxsize=256)
def _parse_cached(cell: str, line_offset: int, transform) -> tuple[str, str | None, CellNames]:
    prefix = "#\n" * line_offset  # "#" lines keep the cell's line numbers (IPython strips leading blank lines)
    try:
        tree = ast.parse(cell)  # (top-level await parses; analyze_tree notes it)
        plain = True
    except SyntaxError:
        plain = False
        try:
            tree = ast.parse(transform(cell))
        except SyntaxError as exc:
            raise CellSyntaxError(exc, line_offset) from None
    names = analyze_tree(tree)
    code = prefix + cell
    return code, (code if plain else None), names


def _can_ask(shell) -> bool:
    """Whether this notebook can answer ``input()`` for the session."""
    kernel = getattr(shell, "kernel", None)
    if kernel is not None:
        return bool(getattr(kernel, "_allow_stdin", False))
    try:
        return sys.stdin is not None and not sys.stdin.closed and sys.stdin.fileno() >= 0 and sys.stdin.isatty()
    except (AttributeError, OSError, ValueError):
        return False


def _namespace() -> dict:
    """The namespace notebook functions live in: the IPython shell's, else ``__main__``'s."""
    try:
        from IPython import get_ipython

        shell = get_ipython()
    except ImportError:  # pragma: no cover - IPython is a dependency
        shell = None
    if shell is not None:
        return shell.user_ns
    return sys.modules["__main__"].__dict__


@contextlib.contextmanager
def _by_value(fn):
    """Ship the function's own module by value when it is a script or test file the
    session could not import (installed packages still travel by reference)."""
    import os
    import sysconfig

    import cloudpickle

    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    path = getattr(module, "__file__", None)
    installed = path is None or any(
        os.path.abspath(path).startswith(os.path.abspath(p) + os.sep)
        for p in {sysconfig.get_paths()[k] for k in ("stdlib", "purelib", "platlib")})
    if module is None or module.__name__ == "__main__" or installed:
        yield
        return
    cloudpickle.register_pickle_by_value(module)
    try:
        yield
    finally:
        cloudpickle.unregister_pickle_by_value(module)
