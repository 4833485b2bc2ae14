"""The podstack agent: the code that runs inside a GPU session's kernel.

The session ships this file (and :mod:`wire`) as source into the remote
IPython kernel at start, so the remote needs nothing of podstack installed,
only cloudpickle. The agent answers one comm target, ``podstack.agent``; each
``exec`` message from the notebook is one whole step of the cell sequence:

1. *land* the pushed values (one pickle, decoded completely, then bound all at
   once; objects the session already holds are updated in place);
2. *run* the cell with IPython on this kernel's main thread (its stdout,
   displays, widgets and errors are ordinary Jupyter messages, parented to the
   ``exec`` message, which the notebook relays live), or call a function;
3. *check* what the cell changed: a fingerprint of every input and binding,
   compared with what both sides last agreed on;
4. answer ``done`` with the changed values (one pickle) -- or, when the cell
   failed, with what now differs from the notebook, which then sends its own
   values back before the next cell, so both sides agree again.

Values the notebook has not confirmed yet are not counted as agreed: the
notebook confirms (``acks``) in its next message.

Cells with top-level ``await`` run as ordinary ``execute_request`` messages
(ipykernel runs them on its event loop); the agent then does steps 3-4 from
IPython's ``post_run_cell`` event.
"""

import json
import os
import sys
import threading
import uuid
import weakref

wire = sys.modules.get("_podstack_wire")
if wire is None:  # imported as part of the package (tests, local debugging)
    from podstack_jupyter.compute import wire

TARGET = "podstack.agent"
RPC_PROMPT = "\x00podstack-rpc:"  # an input_request with this prompt waits for an RPC's answer
CALL_PREFIX = "@"  # "@site:fn": a name in the namespace of one @gpu function, not in the user's


class Agent:
    def __init__(self, shell):
        self.shell = shell
        self.kernel = shell.kernel
        self.comm = None
        self.codec = wire.Codec(-1, shell.user_ns)
        self.synced = {}  # name -> fingerprint the notebook holds too
        self.synced_obj = {}  # name -> the object bound when last agreed (weakly where possible)
        self.spaces = {}  # call site -> namespace of one @gpu function's calls
        self.outbox = {}  # request id -> results sent, until the notebook confirms them
        self.waiting = {}  # request id -> an exec whose large buffers the notebook is writing
        self.pool = wire.BufferPool(tracker=wire.write_tracker())  # where the notebook writes large buffers
        self.codec.tracker = self.pool.tracker  # received arrays still unwritten after a cell are not hashed again
        self.context = {}  # the notebook's context for the running cell (e.g. its active tracked run)
        self.on_cell_end = []  # callables run before a cell's results are sent (e.g. flush metrics)
        self._tagged = None  # the execute_request (async cell) now running, if any
        self._received_args = None  # (site, containers of a running @gpu call's arguments as received)
        self.kernel.comm_manager.register_target(TARGET, self._on_open)
        shell.events.register("pre_run_cell", self._pre_run_cell)
        shell.events.register("post_run_cell", self._post_run_cell)

    # -- comm -------------------------------------------------------------
    def _on_open(self, comm, open_msg):
        self.comm = comm
        comm.on_msg(self._on_msg)
        comm.send({"op": "ready", "python": sys.version.split()[0], "pid": os.getpid(), "hash": wire.HASH_NAME})

    def _on_msg(self, msg):
        data = msg["content"]["data"]
        op = data.get("op")
        buffers = msg.get("buffers") or []
        try:
            if op == "exec":
                self._exec(data, buffers)
            elif op == "filled":
                self._filled(data, buffers)
            elif op == "settle":  # the notebook gave up waiting for this step: did an interrupt swallow it?
                self._settle(data["id"])
            elif op == "release":
                entry = self.outbox.get(data["id"])
                if entry is not None:  # the notebook copied them: do not pin their memory any longer
                    entry["packet"].buffers = []
                    entry["released"] = True
            elif op == "resend":
                self._resend(data)
            elif op == "forget":  # the notebook starts over (e.g. after its own state was reset)
                self.synced.clear()
                self.synced_obj.clear()
        except BaseException as exc:  # never leave the notebook waiting, not even on an interrupt
            # where it stopped is unknown: the notebook treats every name of this step as changed
            self._send({"op": "done", "id": data.get("id"), "status": "failed", "stage": "unknown",
                        "error": _describe(exc)[0]})

    def _settle(self, rid):
        """Answer for a step the notebook stopped waiting for. Messages are handled in order, so a
        step that ran has sent its ``done`` before this answer; one still running (an async cell)
        sends it when it ends. Otherwise the interrupt landed in the kernel before the step reached
        this agent (ipykernel swallows it there): the step is lost, and the notebook sends again
        everything it touched."""
        if self._tagged is not None and self._tagged[0] == rid:
            return
        stopped = self.waiting.pop(rid, None) is not None
        self._send({"op": "done", "id": rid, "status": "failed" if stopped else "lost",
                    "stage": "push" if stopped else "unknown",
                    "error": {"ename": "KeyboardInterrupt", "evalue": "stopped before the cell ran", "traceback": []}})

    def _send(self, data, buffers=None, after_output=False):
        """Send to the notebook. ``after_output``: behind everything the step printed (its
        ``done``), without waiting for the kernel's output thread to confirm a flush."""
        data.setdefault("pid", os.getpid())
        data.setdefault("hash", self.codec.hash_name)
        data.setdefault("forgotten", self.codec.table.take_forgotten())
        thread = getattr(sys.stdout, "pub_thread", None)
        flushes = [s._flush for s in (sys.stdout, sys.stderr)
                   if getattr(s, "pub_thread", None) is thread and hasattr(s, "_flush")]
        if not after_output or thread is None or not flushes or getattr(thread, "thread", None) is None \
                or not thread.thread.is_alive():
            if after_output:
                _flush_output()
            self.comm.send(data, buffers=buffers)
            return
        comm = self.comm

        def deliver():  # on ipykernel's output thread: the flushes queue their messages, then ours
            for flush in flushes:
                flush()
            comm.send(data, buffers=buffers)

        thread.schedule(deliver)

    # -- names ------------------------------------------------------------
    def _space(self, name):
        if name.startswith(CALL_PREFIX):
            site, _, key = name[1:].partition(":")
            return self.spaces.setdefault(site, {}), key
        return self.shell.user_ns, name

    def _get(self, name):
        space, key = self._space(name)
        return space.get(key, wire.MISSING)

    def _set(self, name, value):
        space, key = self._space(name)
        space[key] = value

    def _pop(self, name):
        space, key = self._space(name)
        space.pop(key, None)
        self.synced.pop(name, None)
        self.synced_obj.pop(name, None)

    def _agree(self, name, value, fingerprint):
        self.synced[name] = fingerprint
        try:
            self.synced_obj[name] = weakref.ref(value)
        except TypeError:  # lists, dicts, ints, strings: held (the namespace holds them anyway)
            self.synced_obj[name] = value

    def _is_synced_obj(self, name, value) -> bool:
        held = self.synced_obj.get(name, wire.MISSING)
        if isinstance(held, weakref.ref):
            held = held()
        return held is value

    # -- one step of the sequence ------------------------------------------
    def _exec(self, data, buffers):
        self._confirm(data)
        push = data.get("push")
        large = [i for i, part in enumerate(push["parts"]) if "n" in part] if push else []
        if large:
            try:
                memories = {i: self.pool.take(push["parts"][i]["n"]) for i in large}
            except MemoryError as exc:
                total = sum(push["parts"][i]["n"] for i in large)
                self._send({"op": "done", "id": data["id"], "status": "failed", "stage": "push",
                            "error": {"ename": "MemoryError", "evalue": f"the session cannot hold {total:,} more "
                                                                        f"bytes: {exc}", "traceback": []}})
                return
            self.waiting[data["id"]] = (data, buffers, memories)
            self._send({"op": "alloc", "id": data["id"],
                        "addresses": {str(i): wire.address_of(m) for i, m in memories.items()}})
            return
        self._step(data, buffers, {})

    def _filled(self, data, buffers):
        entry = self.waiting.pop(data["id"], None)
        if entry is None:
            return
        original, original_buffers, memories = entry
        parts = original["push"]["parts"]
        if data.get("inline"):  # the notebook could not write into this process: the parts came along
            memories = {int(i): buffers[k] for i, k in data["inline"].items()}
        else:
            for memory in memories.values():
                self.pool.filled(memory)
            memories = {i: memoryview(m)[:parts[i]["n"]] for i, m in memories.items()}
        self._step(original, original_buffers, memories)

    def _step(self, data, buffers, memories):
        rid = data["id"]
        self._received_args = None
        kind = data.get("kind", "cell")
        names = _Names(data)
        existed = {n for n in (*names.binds, *names.deletes) if self._get(n) is not wire.MISSING}
        try:
            with wire.interrupts_held():  # an interrupt now would cut an import short: it waits for the cell
                landed = self._land(data, buffers, memories)
        except wire.MissingKeyError as exc:
            self._send({"op": "done", "id": rid, "status": "missing", "keys": [int(k) for k in exc.args]})
            return
        except BaseException as exc:  # nothing was bound: the cell did not run
            self._send({"op": "done", "id": rid, "status": "failed", "stage": "push", "error": _describe(exc)[0]})
            return
        if kind == "probe":  # decoded and undone: the notebook only wanted to know whether it can be
            self._send({"op": "done", "id": rid, "status": "ok", "probe": True})
            return
        self.context = data.get("context") or {}
        before = dict(self.shell.user_ns) if data.get("star") else None
        error = None
        try:
            if kind == "cell":
                error = self._run_cell(data)
                if before is not None:  # `from m import *`: every name the cell bound comes back
                    hidden = getattr(self.shell, "user_ns_hidden", {})
                    names.binds += [n for n, v in self.shell.user_ns.items() if not n.startswith("_")
                                    and n not in hidden and (n not in before or before[n] is not v)]
            elif kind == "call":
                error = self._call(data["site"])
            if kind != "sync":
                self._cell_end()
        except BaseException as exc:  # an interrupt that landed between the cell and its results
            error = _describe(exc)
        finally:
            self.context = {}
        self._finish(rid, names, existed, error, landed)

    def _confirm(self, data):
        """The notebook says which of our earlier results it applied, and which keys it dropped."""
        for rid in data.get("acks", ()):
            entry = self.outbox.pop(rid, None)
            if entry is not None:
                for name, (value, fp) in entry["agreed"].items():
                    if name not in entry.get("dropped", ()):
                        self._agree(name, value, fp)
                self.codec.commit_sent(entry["packet"])
        for rid, left in (data.get("nacks") or {}).items():
            entry = self.outbox.pop(rid, None)
            if entry is not None:  # values that stay here: count them as agreed so they are not resent
                for name in left:
                    if name in entry["agreed"] and name not in entry.get("dropped", ()):
                        self._agree(name, *entry["agreed"][name])
        self.codec.forget(data.get("forgotten", ()))
        if data.get("reset_held"):
            self.codec.table.held.clear()
        if data.get("hash") in (wire.HASH_NAME, "blake2b"):  # both ends must fingerprint alike
            self.codec.hash_name = data["hash"]
        if "python" in data:  # marshal's format is only shared by the same Python
            self.codec.marshal_ok = data["python"] == list(sys.version_info[:2])

    def _land(self, data, buffers, memories) -> set:
        """Decode the pushed batch and bind it: all names or none."""
        push = data.get("push")
        values = {}
        if push:
            parts = [memories[i] if "n" in part else buffers[part["i"]] for i, part in enumerate(push["parts"])]
            values, landing = self.codec.decode(parts[0], parts[1:], push.get("sources"), push.get("format", "pickle"))
            if data.get("kind") == "probe":
                landing.rollback()
                return set(values)
            landing.commit()
        for name in data.get("drop", ()):
            self._pop(name)
        same = set(push.get("same", ())) if push else set()
        same_as = push.get("same_as", {}) if push else {}
        placeholders = set(push.get("placeholders", ())) if push else set()
        fingerprints = push.get("fps", {}) if push else {}
        merged = []  # (a new container, our object that took its contents)
        for name, value in list(values.items()):
            old = self._get(name)
            other = same_as.get(name)
            if other is not None:  # the notebook's value is the object it shares with us under another name
                old = self._get(other)
                if old is not wire.MISSING and self._is_synced_obj(other, old) and wire.merge_container(old, value):
                    merged.append((value, old))
                    values[name] = old
            elif name in same and old is not wire.MISSING and self._is_synced_obj(name, old) \
                    and wire.merge_container(old, value):
                merged.append((value, old))
                values[name] = old
        value = None  # the loop's last value must not count as a reference to replace
        wire.keep_merged_shared(merged, values)  # S = [N] with N: S[0] stays our N
        del merged
        for name, value in values.items():
            self._set(name, value)
            if name in placeholders:
                self.synced.pop(name, None)
            else:
                self._agree(name, value, fingerprints[name])
        return set(values)

    def _run_cell(self, data):
        shell, kernel = self.shell, self.kernel
        forward = getattr(kernel, "_forward_input", None)
        if forward is not None:
            forward(bool(data.get("allow_stdin")))
        shell._last_traceback = None
        try:
            transformed = data.get("transformed")
            if transformed is None:
                result = shell.run_cell(data["code"], store_history=True)
            else:  # the notebook already knows it is plain Python: do not transform it again
                coro = shell.run_cell_async(data["code"], store_history=True, transformed_cell=transformed)
                try:
                    coro.send(None)
                except StopIteration as stop:
                    result = stop.value
                else:
                    coro.close()
                    raise RuntimeError("this cell needs an event loop; run it with top-level await support")
        finally:
            restore = getattr(kernel, "_restore_input", None)
            if restore is not None:
                restore()
            payloads = getattr(shell, "payload_manager", None)
            if payloads is not None:
                payloads.clear_payload()
        if result.success:
            return None
        return _cell_error(shell, result)

    def _call(self, site):
        """Call a @gpu function as a local call would: no cell around it, its own frames only."""
        space = self.spaces[site]
        fn, args, kwargs = space["fn"], space["args"], space["kwargs"]
        self._received_args = (site, wire.containers((args, kwargs))[0])  # to say which came back changed
        self.shell.events.trigger("pre_execute")
        try:
            space["ret"] = fn(*args, **kwargs)
            return None
        except BaseException as exc:
            tb = exc.__traceback__
            tb = tb.tb_next if tb is not None else None  # this frame is ours, not the user's
            try:
                lines = self.shell.InteractiveTB.structured_traceback(type(exc), exc, tb)
            except Exception:  # a formatter failure must not hide the error itself
                import traceback as tb_module

                lines = tb_module.format_exception(type(exc), exc, tb)
            info, exc = _describe(exc)
            info["traceback"] = list(lines)
            return info, exc
        finally:
            self.shell.events.trigger("post_execute")

    def _cell_end(self):
        for callback in list(self.on_cell_end):
            try:
                callback()
            except Exception as exc:  # a failed flush must not lose the cell's results
                print(f"[podstack] {exc}", file=sys.stderr)

    # -- results ------------------------------------------------------------
    def _finish(self, rid, names, existed, error, landed):
        """Send what the cell changed, or, after a failure, what now differs from the notebook."""
        codec = self.codec
        codec.begin()
        if error is None:
            changed, absent, unsendable, plain = self._changes(names)
            values = {name: value for name, (value, fp) in changed.items()}
            try:
                packet = codec.encode(values, plain=plain)
            except BaseException as exc:  # e.g. an interrupt while pickling: nothing came back
                self._after_failure(rid, names, existed, _describe(exc), landed)
                return
            self._reply_values(rid, packet, changed, absent, unsendable, names, landed)
        else:
            self._after_failure(rid, names, existed, error, landed)

    def _changes(self, names):
        changed, absent, unsendable, plain = {}, [], {}, True
        for name in names.checked():
            value = self._get(name)
            if value is wire.MISSING:
                if name in self.synced or name in names.deletes or name in names.pull:
                    absent.append(name)
                continue
            forced = name in names.pull
            previous = self.synced.get(name)
            same_obj = self._is_synced_obj(name, value)
            if previous is not None and not forced and same_obj and wire.is_atom(value):
                continue  # an immutable value still bound: cannot have changed
            try:
                fp = self.codec.fingerprint(value)
            except Exception as exc:
                if name in names.binds or forced:  # an input that never could travel stays here without a word
                    unsendable[name] = f"{type(value).__module__}.{type(value).__qualname__}: {exc}"
                continue
            if fp == previous and not forced and (same_obj or wire.is_atom(value)):
                continue
            changed[name] = (value, fp)
            plain = plain and self.codec.plain
        if changed:  # variables held inside what goes back (S = [N]) go with it, so the notebook keeps them one
            holders = wire.held_inside({n: v for n, (v, _) in changed.items()}, self.shell.user_ns,
                                       allowed=lambda n: n in self.synced, kept=self.synced_obj)
            for name in sorted(set().union(*holders.values()) - set(changed)):
                value = self._get(name)
                try:
                    changed[name] = (value, self.codec.fingerprint(value))
                except Exception:  # noqa: BLE001 - it travels inside the other value or not at all
                    continue
                plain = plain and self.codec.plain
        return changed, absent, unsendable, plain

    def _reply_values(self, rid, packet, changed, absent, unsendable, names, landed):
        parts, inline = [], []
        for part in (memoryview(packet.stream), *packet.buffers):  # flat byte views
            address = None
            if names.same_host and part.nbytes >= wire.INLINE_LIMIT:
                try:
                    address = wire.address_of(part)
                except BufferError:  # read-only and not bytes: through the socket
                    pass
            if address is not None:
                parts.append({"n": part.nbytes, "a": address})  # the notebook copies it from here
            else:
                parts.append({"i": len(inline)})
                inline.append(part)
        offer = sum(part.nbytes for part in inline) > names.offer_limit
        # a call's return value is dropped here after it goes: it must not count as agreed once confirmed,
        # or the same value (None, say) returned by the next call would be taken as unchanged and not sent
        self.outbox[rid] = {"packet": packet, "agreed": dict(changed), "dropped": set(names.drop_after)}
        same = [n for n in changed if self._is_synced_obj(n, changed[n][0])]
        same_as = _aliases({n: v for n, (v, fp) in changed.items()}, self.synced, self._get, self._is_synced_obj)
        for name in absent:
            self.synced.pop(name, None)
            self.synced_obj.pop(name, None)
        for name in names.drop_after:
            self._pop(name)
        origins = self._origins(changed)
        reply = {"op": "done", "id": rid, "status": "ok", "landed": sorted(landed),
                 "pull": {"names": list(changed), "fps": {n: fp for n, (_, fp) in changed.items()}, "same": same,
                          "same_as": same_as,
                          "parts": parts, "sources": packet.sources, "bytes": packet.nbytes,
                          "format": packet.format, "origins": origins},
                 "absent": absent, "unsendable": unsendable}
        if offer:  # too much to push at the notebook unasked: it says whether it has room first
            reply["offer"] = True
            self._send(reply, after_output=True)
        else:
            self._send(reply, buffers=inline, after_output=True)
        self.codec.sources_sent.update(packet.sources)

    def _origins(self, changed):
        """For a @gpu call whose arguments go back: [after, before] index pairs of their containers
        that are the very ones received (``wire.containers`` order), so the notebook changes the
        caller's own containers in place at any depth. None: not a call, or too large to walk."""
        received, self._received_args = self._received_args, None
        if received is None:
            return None
        site, before = received
        args, kwargs = f"{CALL_PREFIX}{site}:args", f"{CALL_PREFIX}{site}:kwargs"
        if args not in changed and kwargs not in changed:
            return None
        after, shape = wire.containers((self._get(args), self._get(kwargs)))
        if shape is None:
            return None
        index = {id(obj): i for i, obj in enumerate(before)}
        return [[j, index[id(obj)]] for j, obj in enumerate(after) if id(obj) in index]

    def _resend(self, data):
        """Send results again: as frames (the notebook cannot read this process's memory, or it
        accepted an offer), or re-encoded in full (it lost some objects we referred to by key)."""
        rid = data["id"]
        entry = self.outbox.get(rid)
        if entry is None:
            self._send({"op": "done", "id": rid, "status": "failed", "stage": "resend",
                        "error": {"ename": "LookupError", "evalue": "those results are gone", "traceback": []}})
            return
        if data.get("split"):  # one pickle per name, so the notebook can rebuild those it can
            names, counts, formats, buffers = [], [], [], []
            self.codec.begin()
            for name, (value, fp) in entry["agreed"].items():
                try:
                    packet = self.codec.encode({name: value}, full=True)
                except Exception:
                    continue
                names.append(name)
                counts.append(len(packet.buffers))
                formats.append(packet.format)
                buffers += [packet.stream, *packet.buffers]
            self._send({"op": "frames", "id": rid, "split": names, "counts": counts, "formats": formats},
                       buffers=buffers)
            return
        packet = entry["packet"]
        if data.get("full") or entry.get("released"):
            self.codec.forget(data.get("keys", ()))
            self.codec.begin()
            packet = self.codec.encode({n: v for n, (v, fp) in entry["agreed"].items()}, full=True)
            entry["packet"] = packet
        self._send({"op": "frames", "id": rid, "format": packet.format}, buffers=[packet.stream, *packet.buffers])

    def _after_failure(self, rid, names, existed, error, landed):
        """The cell failed: say which agreed values it changed, so the notebook sends its own
        again; names it bound for the first time are removed here."""
        diverged = []
        for name in names.checked():
            value = self._get(name)
            if name not in self.synced:
                if value is not wire.MISSING and name not in existed and not name.startswith(CALL_PREFIX):
                    self._pop(name)  # first bound by the failed cell: the notebook never had it
                continue
            if value is wire.MISSING:
                diverged.append(name)
                continue
            if wire.is_atom(value) and self._is_synced_obj(name, value):
                continue
            try:
                fp = self.codec.fingerprint(value)
            except Exception:
                fp = None
            if fp != self.synced[name] or not (self._is_synced_obj(name, value) or wire.is_atom(value)):
                diverged.append(name)
        held = self.codec.table.held
        diverged_keys = [k for k, token in self.codec._buffer_tokens.items() if held.get(k) not in (None, token)]
        for name in diverged:
            self.synced.pop(name, None)
        for key in diverged_keys:
            held.pop(key, None)
        for name in names.drop_after:
            self._pop(name)
        buffers, exception_frame = [], None
        error, exc = error
        if exc is not None and not isinstance(exc, KeyboardInterrupt):
            try:
                import cloudpickle

                buffers.append(cloudpickle.dumps(exc))
                exception_frame = 0
            except Exception:
                pass
        self._send({"op": "done", "id": rid, "status": "error", "error": error, "exception": exception_frame,
                    "landed": sorted(landed), "diverged": diverged, "diverged_keys": diverged_keys},
                   buffers=buffers, after_output=True)

    # -- cells with top-level await (ordinary execute_requests) ------------
    def _meta(self):
        request = self.kernel.get_parent("shell") or {}
        return (request.get("metadata") or {}).get("podstack")

    def _pre_run_cell(self, info):
        meta = self._meta()
        self._tagged = None
        if meta:
            self.context = meta.get("context") or {}
            names = _Names(meta)
            self._tagged = (meta["id"], names, {n for n in (*names.binds, *names.deletes)
                                                  if self._get(n) is not wire.MISSING})

    def _post_run_cell(self, result):
        tagged, self._tagged = self._tagged, None
        if tagged is None or self.comm is None:
            return
        rid, names, existed = tagged
        self._cell_end()
        self.context = {}
        error = None if result.success else _cell_error(self.shell, result)
        self._finish(rid, names, existed, error, set())

    # -- messages a running cell sends to the notebook ----------------------
    def emit(self, op, data, buffers=None):
        """Send a message to the notebook, from any thread; it is handled in order with
        every other message this kernel sends (the notebook's ``on_agent_event`` handlers)."""
        if self.comm is None:
            raise RuntimeError("the notebook has not connected to this session's agent")
        self.comm.send(dict(data, op=op), buffers=buffers)

    def call(self, op, data):
        """Send ``op`` to the notebook and wait for its answer (main thread, inside a cell).

        The request travels in order with everything printed and emitted before it;
        the answer comes back as the reply to an ``input_request``, the one channel a
        busy kernel still reads.
        """
        if threading.current_thread() is not threading.main_thread():
            raise RuntimeError("podstack calls that need an answer from the notebook must run on the "
                               "main thread of the GPU session")
        _flush_output()  # what was printed before the call shows before its effects
        request_id = uuid.uuid4().hex
        self.emit(op, dict(data, id=request_id, reply=True))
        allowed = getattr(self.kernel, "_allow_stdin", False)
        self.kernel._allow_stdin = True
        try:
            answer = json.loads(self.kernel.raw_input(RPC_PROMPT + request_id))
        finally:
            self.kernel._allow_stdin = allowed
        if "error" in answer:
            raise _rebuild_error(answer)
        return answer.get("result")


class _Names:
    """What an exec message says about names: which to check after the cell and how."""

    __slots__ = ("inputs", "binds", "deletes", "pull", "drop_after", "same_host", "offer_limit")

    def __init__(self, data):
        self.inputs = list(data.get("inputs", ()))
        self.binds = list(data.get("binds", ()))
        self.deletes = list(data.get("deletes", ()))
        self.pull = set(data.get("pull", ()))
        self.drop_after = list(data.get("drop_after", ()))
        self.same_host = bool(data.get("same_host"))
        self.offer_limit = data.get("offer_limit", 64 << 20)

    def checked(self):
        return list(dict.fromkeys([*self.binds, *self.deletes, *self.pull, *self.inputs]))


def _aliases(values: dict, synced, get, is_synced_obj) -> dict:
    """Containers being sent that are the very object the other end already holds under another
    name (``alias = lst``): the receiver binds its own object for that name, so they stay one."""
    containers = {id(v): n for n, v in values.items() if type(v) in (list, dict, set, bytearray)}
    if not containers:
        return {}
    aliases = {}
    for other in synced:
        if other in values:
            continue
        value = get(other)
        name = containers.get(id(value))
        if name is not None and is_synced_obj(other, value):
            aliases[name] = other
    return aliases


def _flush_output():
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:  # noqa: BLE001 - a closed or replaced stream must not cost the results
            pass


def _describe(exc):
    """(what the notebook shows of an error, the exception itself)."""
    return {"ename": type(exc).__name__, "evalue": str(exc), "traceback": []}, exc


def _cell_error(shell, result):
    err = result.error_before_exec if result.error_before_exec is not None else result.error_in_exec
    if err is None:  # e.g. the display hook failed after the cell ran
        return {"ename": "Error", "evalue": "the cell's result could not be displayed",
                "traceback": list(getattr(shell, "_last_traceback", None) or [])}, None
    info, exc = _describe(err)
    info["traceback"] = list(getattr(shell, "_last_traceback", None) or [])
    return info, exc


def _rebuild_error(answer):
    """The notebook's exception type when podstack is importable here, else a RuntimeError."""
    if answer.get("type") is None:
        return RuntimeError(answer["error"])
    try:
        from podstack_jupyter import errors

        cls = getattr(errors, answer["type"], None)
    except ImportError:
        cls = None
    if cls is not None:
        return cls(answer["error"])
    return RuntimeError(f"{answer['type']}: {answer['error']}")


_agent = None


def install(shell=None):
    """Start the agent in this kernel (idempotent)."""
    global _agent
    if _agent is None:
        if shell is None:
            shell = get_ipython()  # noqa: F821 - defined inside IPython kernels
        _agent = Agent(shell)
    return _agent
