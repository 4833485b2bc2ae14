"""How values travel between the notebook and a GPU session, and how they land.

Both ends run this module: the session ships it as source into the remote
kernel, so the remote needs only the standard library and cloudpickle (xxhash
when present). It is written once and used in both directions.

**Identity.** Every mutable object that crosses -- an instance with a
``__dict__``, a numpy array, a torch tensor -- gets a *key* that both ends
remember (weakly). When an object whose key the receiver knows crosses again,
the receiver updates its own copy *in place* instead of making a new one. So
aliases stay true (``alias = t``, then a remote ``t.add_(1)``), and objects that
values share stay shared across cells: an optimizer created after its model was
sent still holds the session's ``net.weight``. Keys made in the notebook are
positive, keys made in the session negative. Plain lists, dicts and sets have no
key (pickle gives no hook for them): they keep their identity as top-level
variables (updated in place) and stay shared within one batch. A container held
inside a value that is a variable too (``S = [N]``) is therefore sent in the same
batch as its holder (:func:`held_inside`), and lands as the receiver's own object
(:func:`keep_merged_shared`).

**Buffers.** Array and tensor data travel out of band (pickle protocol 5): as
message frames, or, when both ends are on one machine, copied straight between
the two processes' memory (:func:`vm_read` / :func:`vm_write`). A buffer whose
exact content the receiver already holds under its key is not sent at all.

**Fingerprints.** Whether a variable changed is decided by a hash of a fast,
memo-less pickle of it in which keyed buffers appear as their key and content
hash: several times cheaper than the pickle that moves it, and computed by each
end in its own process.
A large buffer copied into this process's memory keeps the hash the sender
gave it for as long as none of its pages is written (:class:`WriteTracker`:
userfaultfd write protection read back through ``PAGEMAP_SCAN``), so an array
a cell only reads is not read again to find that out.

**Landing.** A batch is decoded completely before anything is committed;
objects updated in place during decoding are restored if decoding fails; array
data is copied into existing objects only after the whole batch decoded; the
caller then updates the namespace in one step.
"""

from __future__ import annotations

import contextlib
import copyreg
import ctypes
import linecache
import marshal
import mmap
import os
import pickle
import signal
import sys
import threading
import types
import weakref

import cloudpickle

try:
    import xxhash
except ImportError:  # pragma: no cover - a dependency of the package; the session may lack it
    xxhash = None

__all__ = ["Codec", "ObjectTable", "Packet", "Landing", "MissingKeyError", "HASH_NAME", "INLINE_LIMIT",
           "MISSING", "is_atom", "vm_read", "vm_write", "allocate", "address_of", "merge_container",
           "keep_merged_shared", "held_inside", "containers", "BufferPool", "WriteTracker", "write_tracker",
           "interrupts_held"]

HASH_NAME = "xxh3_128" if xxhash is not None else "blake2b"
INLINE_LIMIT = 1 << 20  # buffers below this ride in the message even when both ends share a machine
_FAST_STREAM_LIMIT = 256 << 20  # a memo-less fingerprint stream this long means a wide DAG: use the memo
MISSING = type("Missing", (), {"__repr__": lambda self: "<missing>"})()
_ATOMS = frozenset({int, float, complex, str, bytes, bool, type(None)})
_CONTAINERS = (list, dict, set, bytearray)


def is_atom(value) -> bool:
    """Immutable scalars: they cannot change in place, only be rebound."""
    return type(value) in _ATOMS


@contextlib.contextmanager
def interrupts_held():
    """Hold Ctrl-C (SIGINT) until the block ends, then raise it. On either side, what must not be cut
    halfway: a message being written (the connection would carry half of it), a cell's results being
    taken in (the namespace would hold half of them), an import while values land (the module would
    stay half-loaded for good). Off the main thread, a plain block: signals reach the main thread only."""
    caught = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    except ValueError:  # not the main thread: signals are delivered to the main thread only
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(*caught[0])
            elif previous == signal.SIG_DFL:
                os.kill(os.getpid(), signal.SIGINT)


def _new_hash(name: str):
    if name == "xxh3_128" and xxhash is not None:
        return xxhash.xxh3_128()
    import hashlib

    return hashlib.blake2b(digest_size=16)


class MissingKeyError(KeyError):
    """The sender referred to an object by key that the receiver no longer holds."""


# -- object identity ------------------------------------------------------------------------------------

class ObjectTable:
    """Objects this end shares with the other, by key, held weakly.

    ``held[key]`` is the content hash of the buffer that *both* ends hold for an
    array or tensor: when the current content still hashes to it, the object
    crosses as its key alone. ``forgotten`` collects keys whose object died here,
    for the other end to drop from its ``held``.
    """

    def __init__(self, sign: int):
        self._sign = sign
        self._counter = 0
        self._key_of: dict[int, int] = {}
        self._refs: dict[int, weakref.ref] = {}
        self.held: dict[int, str] = {}
        self.forgotten: set[int] = set()
        self.on_died: list = []  # callables(key) run when an object we hold a key for dies

    def key(self, obj) -> int | None:
        """The key of ``obj``, made now if it has none (None: cannot be tracked)."""
        key = self._key_of.get(id(obj))
        if key is not None:
            ref = self._refs.get(key)
            if ref is not None and ref() is obj:
                return key
        self._counter += 1
        key = self._sign * self._counter
        return key if self.bind(key, obj) else None

    def known_key(self, obj) -> int | None:
        key = self._key_of.get(id(obj))
        if key is None:
            return None
        ref = self._refs.get(key)
        return key if ref is not None and ref() is obj else None

    def bind(self, key: int, obj) -> bool:
        """Remember ``obj`` under ``key`` (a key the other end made, or ours)."""
        oid = id(obj)
        table = self

        def died(ref, key=key, oid=oid):
            if table._refs.get(key) is ref:
                del table._refs[key]
                table.held.pop(key, None)
                table.forgotten.add(key)
                for callback in table.on_died:
                    callback(key)
            if table._key_of.get(oid) == key:
                del table._key_of[oid]

        try:
            ref = weakref.ref(obj, died)
        except TypeError:
            return False
        old = self._key_of.get(oid)
        if old is not None and old != key and self._refs.get(old) is not None and self._refs[old]() is obj:
            self._refs.pop(old, None)  # the same object under another key: the newest wins
            self.held.pop(old, None)
        self._key_of[oid] = key
        self._refs[key] = ref
        return True

    def lookup(self, key: int):
        ref = self._refs.get(key)
        return None if ref is None else ref()

    def take_forgotten(self) -> list[int]:
        keys = sorted(self.forgotten)
        self.forgotten.clear()
        return keys

    def __len__(self):
        return len(self._refs)


# -- encoding -----------------------------------------------------------------------------------------

class Packet:
    """One encoded batch: ``stream`` (the pickle), its out-of-band ``buffers``,
    the content hashes of keyed buffers sent in full (``tokens``: key -> hash),
    and the source files of functions in it (filename -> lines) for tracebacks.
    ``format`` is "pickle", or "marshal" for a batch of plain builtins (lists, dicts,
    strings, numbers...), which marshal moves several times faster."""

    __slots__ = ("stream", "buffers", "tokens", "sources", "format")

    def __init__(self, stream, buffers, tokens, sources, format="pickle"):
        self.stream, self.buffers, self.tokens, self.sources = stream, buffers, tokens, sources
        self.format = format

    @property
    def nbytes(self) -> int:
        return len(self.stream) + sum(memoryview(b).nbytes for b in self.buffers)


class _HashWriter:
    """A file that hashes what is written to it (the fingerprint of a pickle stream)."""

    __slots__ = ("hash_name", "hash", "written", "limit")

    def __init__(self, hash_name: str, limit: int | None = None):
        self.hash_name = hash_name
        self.limit = limit
        self.reset()

    def reset(self):
        self.hash = _new_hash(self.hash_name)
        self.written = 0

    def write(self, data):
        self.hash.update(data)
        self.written += len(data)
        if self.limit is not None and self.written > self.limit:
            raise _StreamTooLong
        return len(data)


class _StreamTooLong(Exception):
    pass


class _BytesWriter:
    __slots__ = ("parts",)

    def __init__(self):
        self.parts = []

    def write(self, data):
        self.parts.append(bytes(data))
        return len(data)

    def getvalue(self) -> bytes:
        return b"".join(self.parts)


class _Pickler(cloudpickle.Pickler):
    """cloudpickle with keys, raw-buffer arrays and tensors, and namespace functions.

    ``mode`` is "send" (the real transfer, memo on), "fingerprint" (memo off,
    buffers as key + hash) or "token" (memo on, buffers as key + hash: a stable
    hash of something pickled by value, e.g. a notebook class).
    """

    def __init__(self, file, codec: "Codec", mode: str, full: bool = False):
        self._codec = codec
        self._mode = mode
        self._full = full  # send every buffer, even those the receiver holds
        self.buffers: list = []
        self.sent_tokens: dict[int, str] = {}
        if mode == "fingerprint":
            # protocol 4: a bytearray is then reduced through its class, so reducer_override sees it
            # and the value is not taken for plain builtins (marshal would turn it into bytes)
            super().__init__(file, protocol=4)
            self.fast = True
        else:
            super().__init__(file, protocol=5, buffer_callback=self._buffer if mode == "send" else self._hash_buffer)

    def _buffer(self, buf):
        self.buffers.append(buf)

    def _hash_buffer(self, buf):  # buffers of types we do not key (e.g. from a library's own reduce)
        self.plain = False
        view = buf.raw()
        self.file_hash(view.nbytes.to_bytes(8, "little"))
        self.file_hash(view)
        return None  # out of band: hashed here, never copied into the stream

    def reducer_override(self, obj):
        # called for every object but None, bools, ints, floats, str, bytes and exact dicts, lists,
        # tuples, sets, frozensets, bytearrays: a value it is never called for is plain builtins
        self.plain = False
        codec = self._codec
        t = type(obj)
        if t is types.FunctionType:
            if obj.__globals__ is codec.namespace:
                return self._namespace_function(obj)
            return self._by_value(obj, super().reducer_override(obj))
        if isinstance(obj, type):
            return self._by_value(obj, super().reducer_override(obj))
        if t is types.CodeType:
            codec._note_source(obj.co_filename)
            return NotImplemented
        if t in _ATOMS:
            return NotImplemented
        numpy = sys.modules.get("numpy")
        if numpy is not None and t is numpy.ndarray:
            reduced = self._object_array(obj, numpy) if obj.dtype.hasobject else self._array(obj, numpy)
            if reduced is not NotImplemented:
                return reduced
        torch = sys.modules.get("torch")
        if torch is not None and (t is torch.Tensor or t is torch.nn.Parameter):
            reduced = self._tensor(obj, torch, numpy)
            if reduced is not NotImplemented:
                return reduced
        if getattr(obj, "__dict__", None) is not None and not isinstance(obj, _UNKEYED):
            return self._keyed(obj)
        return NotImplemented

    # --- functions and classes ---
    def _by_value(self, obj, reduced):
        """Functions and classes cloudpickle sends by value. A fingerprint sees a stable
        hash of them instead of their full (memo-less, repeated) pickle."""
        if reduced is NotImplemented or self._mode != "fingerprint":
            return reduced
        return _token, ("code", self._codec._token_of(obj))

    def _namespace_function(self, fn):
        """A function defined in the namespace travels without its globals: on the other side
        it looks its globals up in that side's namespace, as it did here."""
        self._codec._note_source(fn.__code__.co_filename)
        state = (fn.__kwdefaults__, fn.__qualname__, fn.__module__, fn.__doc__, fn.__dict__ or None,
                 fn.__annotations__ or None)
        return _namespace_fn, (fn.__code__, fn.__name__, fn.__defaults__, fn.__closure__, state)

    # --- keyed objects ---
    def _keyed(self, obj, key=None):
        table = self._codec.table
        reduce = self.dispatch_table.get(type(obj))
        reduced = reduce(obj) if reduce is not None else obj.__reduce_ex__(5)
        if isinstance(reduced, str):
            return NotImplemented  # a global, pickled by name
        key = table.key(obj) if key is None else key
        if key is None:
            return reduced
        func, args, *rest = reduced
        rest += [None] * (4 - len(rest))
        state, listitems, dictitems, state_setter = rest
        if func is copyreg.__newobj__ and len(args) == 1 and args[0] is type(obj) and state_setter is None:
            return _obj, (key, args[0]), state, listitems, dictitems
        return _new, (key, func, args), state, listitems, dictitems, state_setter

    def _array(self, arr, numpy):
        key = self._codec.table.key(arr)
        if key is None:
            return NotImplemented
        if not (arr.flags.c_contiguous or arr.flags.f_contiguous):
            arr = numpy.ascontiguousarray(arr)
        order = "F" if (arr.flags.f_contiguous and not arr.flags.c_contiguous) else "C"
        dtype = arr.dtype.str if arr.dtype.fields is None and arr.dtype.subdtype is None else arr.dtype
        meta = ("ndarray", dtype, arr.shape, order)
        return self._buffered(key, arr, meta)

    def _object_array(self, arr, numpy):
        """An array of Python objects (e.g. a DataFrame's string column). When its elements are
        immutable scalars (str, int, float, bool, None, bytes) they are marshalled into one
        buffer: several times faster than pickling them one by one, many times faster to
        rebuild; and its hash is remembered while it holds the very same element objects."""
        if arr.dtype != object:
            return NotImplemented  # structured dtypes with object fields: numpy's own reduction
        key = self._codec.table.key(arr)
        if key is None:
            return NotImplemented
        order = "F" if (arr.flags.f_contiguous and not arr.flags.c_contiguous) else "C"
        flat = arr.ravel(order=order)
        token, data = self._codec._objects_token(key, flat)
        meta = ("objects", arr.size, arr.shape, order)
        if self._mode != "send":
            return _token, ("objects", key, token, meta)
        if not token.startswith("m:"):  # elements marshal cannot carry exactly: numpy's own reduction
            return self._keyed(arr, key)
        if not self._full and self._codec.table.held.get(key) == token:
            return _buffer, (key, token, meta, None)
        if data is None:
            data = marshal.dumps(flat.tolist(), 4)
        self.sent_tokens[key] = token
        return _buffer, (key, token, meta, pickle.PickleBuffer(data))

    def _tensor(self, tensor, torch, numpy):
        if (numpy is None or tensor.layout != torch.strided or tensor.device.type != "cpu" or tensor.is_quantized
                or getattr(tensor, "is_nested", False) or tensor.is_conj() or tensor.is_neg()):
            return NotImplemented  # torch's own pickling (e.g. CUDA tensors: rebuilt where CUDA is)
        key = self._codec.table.key(tensor)
        if key is None:
            return NotImplemented
        data = tensor.detach()
        if not data.is_contiguous():
            data = data.contiguous()
        raw = data.reshape(-1).view(torch.uint8).numpy() if data.numel() else numpy.empty(0, numpy.uint8)
        kind = "parameter" if type(tensor) is torch.nn.Parameter else "tensor"
        extra = tensor.__dict__ or None  # attributes set on a parameter, e.g. by a sharding library
        meta = (kind, str(tensor.dtype).rpartition(".")[2], tuple(tensor.shape), tensor.requires_grad, extra)
        return self._buffered(key, raw, meta)

    def _buffered(self, key, data, meta):
        token = self._codec._buffer_token(key, data)
        if self._mode != "send":
            return _token, ("buffer", key, token, meta)
        if not self._full and self._codec.table.held.get(key) == token:
            return _buffer, (key, token, meta, None)  # the receiver holds exactly this
        self.sent_tokens[key] = token
        return _buffer, (key, token, meta, pickle.PickleBuffer(data))


# element types marshal carries exactly (it would turn any other buffer-like object into bytes)
_MARSHAL_SCALARS = frozenset({str, int, float, bool, type(None), bytes})


def _pointers_hash(flat, hash_name: str) -> str | None:
    """A hash of the element pointers of a contiguous object array (which objects it holds)."""
    if not flat.size or not flat.flags.c_contiguous:
        return None
    h = _new_hash(hash_name)
    h.update((ctypes.c_char * flat.nbytes).from_address(flat.ctypes.data))
    return h.hexdigest()


_UNKEYED = (types.ModuleType, types.MethodType, types.BuiltinFunctionType, property, classmethod, staticmethod,
            BaseException, weakref.ref)


class Codec:
    """One end's view of what it shares with the other: the object table, the
    namespace functions belong to, and the hash both ends agreed on."""

    def __init__(self, sign: int, namespace: dict, hash_name: str = HASH_NAME):
        self.table = ObjectTable(sign)
        self.namespace = namespace
        self.hash_name = hash_name
        self.marshal_ok = True  # both ends run the same Python (marshal's format is version-specific)
        self._buffer_tokens: dict[int, str] = {}
        self._class_tokens: dict[int, tuple] = {}
        self._sources: set[str] = set()
        self.sources_sent: set[str] = set()
        self._fingerprinter = None
        self._fingerprint_out = None
        self.plain = False  # whether the last value fingerprinted was plain builtins (marshal may carry it)
        self._object_tokens: dict[int, tuple] = {}  # key -> (pointers hash, elements kept alive, token, plain)
        self.tracker: WriteTracker | None = None  # the tracker of the pool received buffers land in, if any
        self._received: dict[int, tuple] = {}  # key -> (region, epoch, address, nbytes, token): see _buffer_token
        self.table.on_died.append(self._died)

    def _died(self, key):
        self._object_tokens.pop(key, None)
        self._received.pop(key, None)

    # --- one pass group: fingerprints and the transfer that follows them see the same values ---
    def begin(self):
        """Start a pass over current values (cached buffer hashes are from before user code ran)."""
        self._buffer_tokens.clear()
        self._class_tokens.clear()
        self._fingerprinter = None

    def _buffer_token(self, key, data) -> str:
        token = self._buffer_tokens.get(key)
        if token is None:
            view = pickle.PickleBuffer(data).raw()  # flat bytes of any contiguous layout
            received = self._received.get(key)
            if received is not None:  # the very memory it arrived in, and not one page written since
                region, epoch, address, nbytes, token = received
                if view.nbytes != nbytes or view.readonly or address_of(view) != address \
                        or not self.tracker.unchanged(region, epoch, address, nbytes):
                    del self._received[key]  # hashed from now on
                    token = None
            if token is None:
                h = _new_hash(self.hash_name)
                h.update(view)
                token = f"{view.nbytes:x}:{h.hexdigest()}"
            self._buffer_tokens[key] = token
        return token

    def _note_received(self, key, value, token):
        """``value`` (an array or tensor just rebuilt on received memory) holds what ``token`` says:
        remembered while its memory is tracked and unwritten (:class:`WriteTracker`)."""
        tracker = self.tracker
        if tracker is None or not token:
            return
        try:
            if type(value).__module__ != "numpy":  # a tensor: its bytes, as _tensor hashes them
                value = value.detach().reshape(-1).view(sys.modules["torch"].uint8).numpy()
            view = pickle.PickleBuffer(value).raw()
            address = address_of(view)
        except (BufferError, TypeError, ValueError, AttributeError, RuntimeError):
            return
        if view.nbytes < INLINE_LIMIT:
            return
        where = tracker.region_of(address, view.nbytes)
        if where is not None:
            self._received[key] = (*where, address, view.nbytes, token)

    def _objects_token(self, key, flat) -> tuple[str, bytes | None]:
        """(hash, marshalled elements or None) of a flat object array. "m:" hashes are of the
        marshalled elements, which are immutable scalars; they are remembered, with the elements
        kept alive, while the array holds the very same element objects (the same pointers: their
        addresses cannot be reused while kept). The receiving end remembers the sender's hash the
        same way. Other arrays get a ("p:") hash of their pickled elements each time."""
        cached = self._buffer_tokens.get(("objects", key))
        if cached is not None:
            return cached
        pointers = _pointers_hash(flat, self.hash_name)
        known = self._object_tokens.get(key)
        if known is not None and pointers is not None and known[0] == pointers:
            result = (known[2], None)
        else:
            elements = flat.tolist()
            if self.marshal_ok and set(map(type, elements)) <= _MARSHAL_SCALARS:
                data = marshal.dumps(elements, 4)
                h = _new_hash(self.hash_name)
                h.update(data)
                result = ("m:" + h.hexdigest(), data)
                if pointers is not None:
                    self._object_tokens[key] = (pointers, flat.copy(), result[0])
            else:
                writer = _HashWriter(self.hash_name)
                nested = _Pickler(writer, self, "fingerprint")
                nested.file_hash = writer.hash.update
                nested.dump(elements)
                result = ("p:" + writer.hash.hexdigest(), None)
        self._buffer_tokens[("objects", key)] = result
        return result

    def remember_objects(self, key, obj, token):
        """An object array just received with ``token``: remember it as the sender did."""
        if token.startswith("m:"):
            flat = obj.ravel(order="K")
            pointers = _pointers_hash(flat, self.hash_name)
            if pointers is not None:
                self._object_tokens[key] = (pointers, flat.copy(), token)

    def _token_of(self, obj) -> str:
        cached = self._class_tokens.get(id(obj))
        if cached is not None:
            return cached[1]
        writer = _HashWriter(self.hash_name)
        pickler = _Pickler(writer, self, "token")
        pickler.file_hash = writer.hash.update
        pickler.dump(obj)
        token = writer.hash.hexdigest()
        self._class_tokens[id(obj)] = (obj, token)
        return token

    def _note_source(self, filename: str):
        if filename and filename not in self.sources_sent:
            self._sources.add(filename)

    def fingerprint(self, value) -> str:
        """A hash of ``value``'s content and of the identity of its keyed parts.
        Raises what pickling raises (the value cannot travel)."""
        if self._fingerprinter is None:  # one memo-less pickler per pass, its output hashed afresh per value
            writer = _HashWriter(self.hash_name, _FAST_STREAM_LIMIT)
            self._fingerprinter = _Pickler(writer, self, "fingerprint")
            self._fingerprint_out = writer
        writer, pickler = self._fingerprint_out, self._fingerprinter
        writer.reset()
        pickler.file_hash = writer.hash.update
        pickler.plain = True
        self.plain = False
        try:
            pickler.dump(value)
            self.plain = pickler.plain
            return writer.hash.hexdigest()
        except (ValueError, RecursionError, _StreamTooLong):
            # cyclic (fast mode cannot) or a DAG that a memo-less pickle would repeat: pickle with the memo
            writer = _HashWriter(self.hash_name)
            pickler = _Pickler(writer, self, "token")
            pickler.file_hash = writer.hash.update
            pickler.dump(value)
            return writer.hash.hexdigest()
        except BaseException:
            self._fingerprinter = None  # its state after a failed dump is unknown
            raise

    def encode(self, values: dict, full: bool = False, plain: bool = False) -> Packet:
        """One pickle of ``values`` (a dict), so objects they share stay shared. ``plain``: every
        value fingerprinted as plain builtins (exact lists, dicts, tuples, sets, str, bytes, numbers,
        None): then one marshal stream, several times faster, which keeps shared objects shared too."""
        if plain and self.marshal_ok:
            try:
                return Packet(marshal.dumps(values, 4), [], {}, {}, "marshal")
            except ValueError:  # e.g. nested deeper than marshal goes
                pass
        out = _BytesWriter()
        pickler = _Pickler(out, self, "send", full=full)
        self._sources = set()
        pickler.dump(values)
        sources = {}
        for filename in self._sources:
            lines = linecache.getlines(filename)
            if lines and sum(map(len, lines)) < (1 << 20):
                sources[filename] = lines
        buffers = [buf.raw() for buf in pickler.buffers]  # flat byte views, whatever the array's order
        return Packet(out.getvalue(), buffers, pickler.sent_tokens, sources)

    def decode(self, stream, buffers, sources: dict | None = None, format: str = "pickle") -> tuple[dict, "Landing"]:
        """Rebuild a batch. Nothing is committed until ``landing.commit()``; on error the
        objects updated in place are restored and the error is raised."""
        if format == "marshal":
            return marshal.loads(stream), Landing(self)
        for filename, lines in (sources or {}).items():
            if not os.path.exists(filename):
                linecache.cache[filename] = (sum(map(len, lines)), None, list(lines), filename)
        landing = Landing(self)
        _landing.current = landing
        try:
            values = pickle.loads(stream, buffers=buffers)
        except BaseException:
            landing.rollback()
            raise
        finally:
            _landing.current = None
        return values, landing

    def commit_sent(self, packet: Packet):
        """The other end confirmed it holds what ``packet`` carried."""
        self.table.held.update(packet.tokens)

    def forget(self, keys):
        """The other end no longer holds these keys."""
        for key in keys:
            self.table.held.pop(key, None)


# -- decoding -------------------------------------------------------------------------------------------

_landing = threading.local()


class Landing:
    """What decoding a batch changes, held back until :meth:`commit`."""

    def __init__(self, codec: Codec):
        self.codec = codec
        self.snapshots: list = []
        self.copies: list = []
        self.bindings: list = []
        self.tokens: dict[int, str] = {}
        self.remembered: list = []
        self.received: list = []  # (key, array or tensor rebuilt on received memory, its token)

    def rollback(self):
        for obj, saved_dict, saved_items in reversed(self.snapshots):
            obj.__dict__.clear()
            obj.__dict__.update(saved_dict)
            if saved_items is not None:
                _restore_items(obj, saved_items)
        self.snapshots.clear()

    def commit(self):
        """Copy data into existing objects and remember the keys. Cannot fail halfway
        for the types it handles (shapes and dtypes were checked while decoding)."""
        for target, source in self.copies:
            _copy_into(target, source)
        table = self.codec.table
        for key, obj in self.bindings:
            table.bind(key, obj)
        table.held.update(self.tokens)
        for key, obj, token in self.remembered:
            self.codec.remember_objects(key, obj, token)
        for key, obj, token in self.received:
            self.codec._note_received(key, obj, token)
        self.copies.clear()
        self.snapshots.clear()


def _current() -> Landing:
    landing = getattr(_landing, "current", None)
    if landing is None:
        raise pickle.UnpicklingError("podstack values can only be rebuilt by Codec.decode")
    return landing


def _obj(key, cls):
    """An instance the sender knows by ``key``: our existing one, emptied for its new state, else new."""
    landing = _current()
    existing = landing.codec.table.lookup(key)
    if existing is not None and type(existing) is cls and getattr(existing, "__dict__", None) is not None:
        items = _take_items(existing)
        landing.snapshots.append((existing, dict(existing.__dict__), items))
        existing.__dict__.clear()
        return existing
    obj = cls.__new__(cls)
    landing.bindings.append((key, obj))
    return obj


def _new(key, func, args):
    obj = func(*args)
    _current().bindings.append((key, obj))
    return obj


def _take_items(obj):
    if isinstance(obj, list):
        items = list(obj)
        list.clear(obj)
        return items
    if isinstance(obj, dict):
        items = list(dict.items(obj))
        dict.clear(obj)
        return items
    if isinstance(obj, set):
        items = set(obj)
        set.clear(obj)
        return items
    return None


def _restore_items(obj, items):
    if isinstance(obj, list):
        list.clear(obj)
        list.extend(obj, items)
    elif isinstance(obj, dict):
        dict.clear(obj)
        dict.update(obj, items)
    elif isinstance(obj, set):
        set.clear(obj)
        set.update(obj, items)


def _buffer(key, token, meta, buf):
    """An array or tensor: ours updated in place (after the batch decoded), else new."""
    landing = _current()
    existing = landing.codec.table.lookup(key)
    if buf is None:
        if existing is None:
            raise MissingKeyError(key)
        return existing
    value = _rebuild(meta, buf)
    landing.tokens[key] = token
    target = existing if existing is not None and _fits(existing, value) else value
    if target is existing:
        landing.copies.append((existing, value))
    else:
        landing.bindings.append((key, value))
        if meta[0] != "objects" and landing.codec.tracker is not None:
            landing.received.append((key, value, token))
    if meta[0] == "objects":
        landing.remembered.append((key, target, token))
    return target


def _rebuild(meta, buf):
    kind = meta[0]
    view = memoryview(buf)
    if kind == "objects":
        import numpy

        _, size, shape, order = meta
        return numpy.fromiter(marshal.loads(view), dtype=object, count=size).reshape(shape, order=order)
    if kind == "ndarray":
        import numpy

        _, dtype, shape, order = meta
        return numpy.frombuffer(view, dtype=dtype).reshape(shape, order=order)
    import torch

    _, dtype_name, shape, requires_grad, extra = meta
    dtype = getattr(torch, dtype_name)
    if view.nbytes == 0:
        tensor = torch.empty(shape, dtype=dtype)
    else:
        if view.readonly:
            view = memoryview(bytearray(view))
        tensor = torch.frombuffer(view, dtype=torch.uint8).view(dtype).reshape(shape)
    if kind == "parameter":
        tensor = torch.nn.Parameter(tensor, requires_grad=requires_grad)
    elif requires_grad:
        tensor.requires_grad_(True)
    if extra:
        tensor.__dict__.update(extra)
    return tensor


def _fits(existing, value) -> bool:
    """Whether ``value``'s data can be copied into ``existing`` (same type, dtype, shape, writable)."""
    if type(existing) is not type(value):
        return False
    if type(value).__module__ == "numpy":
        return existing.dtype == value.dtype and existing.shape == value.shape and existing.flags.writeable
    return (existing.dtype == value.dtype and existing.shape == value.shape and existing.device == value.device
            and existing.layout == value.layout and not existing.is_inference())


def _copy_into(target, source):
    if type(target).__module__ == "numpy":
        import numpy

        numpy.copyto(target, source)
        return
    import torch

    with torch.no_grad():
        target.copy_(source)
    if target.requires_grad != source.requires_grad and target.is_leaf:
        target.requires_grad_(source.requires_grad)
    if source.__dict__:
        target.__dict__.update(source.__dict__)


def _namespace_fn(code, name, defaults, closure, state):
    fn = types.FunctionType(code, _current().codec.namespace, name, defaults, closure)
    kwdefaults, qualname, module, doc, fdict, annotations = state
    fn.__kwdefaults__ = kwdefaults
    fn.__qualname__ = qualname
    fn.__module__ = module
    fn.__doc__ = doc
    if fdict:
        fn.__dict__.update(fdict)
    if annotations:
        fn.__annotations__ = annotations
    return fn


def _token(*parts):  # pragma: no cover - only ever in fingerprint streams, which are hashed, never loaded
    raise pickle.UnpicklingError("a fingerprint stream cannot be loaded")


# Pickles name these functions as _podstack_wire.<name>: the module's name in the session, and an
# alias of this module in the notebook, so both ends resolve them.
for _fn in (_obj, _new, _buffer, _namespace_fn, _token):
    _fn.__module__ = "_podstack_wire"
if __name__ != "_podstack_wire":
    sys.modules.setdefault("_podstack_wire", sys.modules[__name__])


# -- landing top-level values ------------------------------------------------------------------------

def merge_container(old, new) -> bool:
    """Make the list / dict / set / bytearray ``old`` equal ``new`` in place (aliases see it).
    False when the types differ (the caller rebinds instead)."""
    if type(old) is not type(new) or type(new) not in _CONTAINERS:
        return False
    if type(new) is dict:
        old.clear()
        old.update(new)
    elif type(new) is set:
        old.clear()
        old |= new
    else:
        old[:] = new
    return True


def keep_merged_shared(pairs: list, values: dict) -> None:
    """After containers were merged in place (``pairs``: (the new object, the old one that took
    its contents)), point every reference to a new object inside ``values`` (name -> value,
    rebound here where a tuple must be rebuilt) at the old one, so that ``S = [N]`` landing
    together with ``N`` still holds this end's ``N``. Walks plain lists, dicts, tuples (rebuilt)
    and the attributes of instances (which land in place), smallest first, and stops once
    every reference to a new object is replaced."""
    if not pairs:
        return
    probe = [([], None)]
    for new, _old in probe:
        baseline = sys.getrefcount(new)  # a new object referred to by its pair alone (same loop shape)
    remaining = 0
    for new, _old in pairs:
        remaining += sys.getrefcount(new) - baseline
    merged = {id(new): old for new, old in pairs}
    replaced = [0]
    for name, value in list(values.items()):
        if type(value) is tuple:
            values[name] = _retuple(value, merged, replaced)
    seen = set(merged)
    stack = sorted((value for value in values.values() if _walkable(value) or type(value) is tuple),
                   key=_size, reverse=True)
    while stack and replaced[0] < remaining:
        obj = stack.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        if type(obj) is tuple:
            stack.extend(item for item in obj if _walkable(item) or type(item) is tuple)
            continue
        if type(obj) not in (list, dict):
            obj = _attributes(obj)
        for where, item in list(enumerate(obj) if type(obj) is list else obj.items()):
            old = merged.get(id(item))
            if old is not None:
                obj[where] = old
                replaced[0] += 1
                if _walkable(old):  # it took the new one's contents, which may be new objects too
                    stack.append(old)
            elif type(item) is tuple:
                obj[where] = _retuple(item, merged, replaced)
                stack.append(obj[where])
            elif _walkable(item):
                stack.append(item)


def _size(value) -> int:
    return len(value) if type(value) in (list, dict, tuple) else len(_attributes(value))


def _retuple(value: tuple, merged: dict, replaced: list) -> tuple:
    items = []
    for item in value:
        if id(item) in merged:
            items.append(merged[id(item)])
            replaced[0] += 1
        else:
            items.append(_retuple(item, merged, replaced) if type(item) is tuple else item)
    return value if all(a is b for a, b in zip(items, value)) else tuple(items)


_WALK_BUDGET = 200_000  # objects looked at per holder: beyond it, sharing deeper in is not looked for


def held_inside(holders: dict, namespace: dict, allowed=None, kept: dict | None = None) -> dict:
    """For each of ``holders`` (name -> value), the names in ``namespace`` bound to a list, dict or
    set that it holds (``S = [N]``, a list in an instance's attribute): {holder: {held names}}.
    Sent in one batch, they land as one object on the other end too (:func:`keep_merged_shared`).
    Only containers that something besides the namespace refers to are looked for: without
    such sharing this is one pass over the namespace's names and no walk at all. ``kept``: the
    caller's own table of references by name (one more reference each, not sharing)."""
    probe = {"": []}
    for _name, value in probe.items():
        only_the_namespace = sys.getrefcount(value)  # measured in the same loop shape as below
    kept = kept or {}
    wanted = {}
    for name, value in namespace.items():
        if type(value) in (list, dict, set) \
                and sys.getrefcount(value) > only_the_namespace + (kept.get(name) is value) \
                and (allowed is None or allowed(name)):
            wanted[id(value)] = name
    found = {}
    if not wanted:
        return found
    for holder, root in holders.items():
        kind = type(root)
        if kind in _ATOMS or kind.__module__ in ("numpy", "torch") or not (_walkable(root) or kind is tuple):
            continue
        names, seen, stack = set(), set(), [root]
        others = len(wanted) - (id(root) in wanted)
        budget = _WALK_BUDGET
        while stack and len(names) < others and budget > 0:  # stop once every candidate is found
            obj = stack.pop()
            if id(obj) in seen:
                continue
            seen.add(id(obj))
            kind = type(obj)
            items = obj.values() if kind is dict else obj if kind in (list, tuple) else _attributes(obj).values()
            for item in items:
                budget -= 1
                name = wanted.get(id(item))
                if name is not None and name != holder:
                    names.add(name)
                if _walkable(item) or type(item) is tuple:
                    stack.append(item)
        if names:
            found[holder] = names
    return found


def containers(root, budget: int = _WALK_BUDGET) -> tuple[list, str | None]:
    """The lists, dicts, sets and bytearrays inside ``root`` (through lists, dicts, tuples and the
    attributes of instances), each once, in an order both ends find alike for the same structure,
    and a hash of that structure with its sharing (None when it is larger than ``budget`` items).
    Used to tell which containers of a @gpu call's arguments the function changed in place, at
    any depth (instances themselves land in place by key)."""
    found, index, shape, instances = [], {}, [], set()
    stack = [root]
    while stack:
        obj = stack.pop()
        kind = type(obj)
        items = obj.values() if kind is dict else obj if kind in (list, tuple) else _attributes(obj).values()
        shape.append(kind.__name__[0])
        children = []
        for item in items:
            budget -= 1
            if budget < 0:
                return found, None
            kind = type(item)
            if kind in (list, dict, set, bytearray):
                seen = index.get(id(item))
                if seen is None:
                    seen = index[id(item)] = len(found)
                    found.append(item)
                    if kind in (list, dict):
                        children.append(item)
                shape.append(str(seen))
            elif kind is tuple:
                children.append(item)
                shape.append("t")
            elif kind not in _ATOMS and _walkable(item):
                if id(item) not in instances:
                    instances.add(id(item))
                    children.append(item)
                shape.append("o")
            else:
                shape.append(".")
        shape.append(";")
        stack.extend(reversed(children))
    digest = _new_hash(HASH_NAME)
    digest.update(",".join(shape).encode())
    return found, digest.hexdigest()


def _walkable(value) -> bool:
    """Lists, dicts and instances with an attribute dict (looked up without running the object's code)."""
    kind = type(value)
    if kind is list or kind is dict:
        return True
    if not kind.__dictoffset__ or kind.__module__ in ("builtins", "numpy", "torch") or isinstance(value, type):
        return False
    try:
        return type(object.__getattribute__(value, "__dict__")) is dict
    except Exception:  # noqa: BLE001 - an object that will not say: not looked into
        return False


def _attributes(value) -> dict:
    return object.__getattribute__(value, "__dict__")


# -- memory of another process on this machine -----------------------------------------------------

class _IOVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


_libc = None


def _vm_call(name: str, pid: int, local_address: int, remote_address: int, nbytes: int):
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
        for fn in (_libc.process_vm_readv, _libc.process_vm_writev):
            fn.restype = ctypes.c_ssize_t
            fn.argtypes = [ctypes.c_int, ctypes.POINTER(_IOVec), ctypes.c_ulong, ctypes.POINTER(_IOVec),
                           ctypes.c_ulong, ctypes.c_ulong]
    call = getattr(_libc, name)
    done = 0
    while done < nbytes:
        step = min(nbytes - done, 1 << 30)
        local = _IOVec(local_address + done, step)
        remote = _IOVec(remote_address + done, step)
        moved = call(pid, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
        if moved <= 0:
            err = ctypes.get_errno()
            raise OSError(err, f"{name} failed: {os.strerror(err) if err else 'no progress'}")
        done += moved


def allocate(nbytes: int) -> mmap.mmap:
    """Fresh private memory for ``nbytes`` (huge pages where the kernel allows): the
    destination of a copy from another process. Raises MemoryError if it cannot be had."""
    try:
        memory = mmap.mmap(-1, max(nbytes, 1), flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    except OSError as exc:
        raise MemoryError(f"cannot allocate {nbytes:,} bytes: {exc}") from None
    if nbytes >= (2 << 20) and hasattr(mmap, "MADV_HUGEPAGE"):
        try:
            memory.madvise(mmap.MADV_HUGEPAGE)
        except OSError:
            pass
    return memory


class _Range(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _UffdApi(ctypes.Structure):
    _fields_ = [("api", ctypes.c_uint64), ("features", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class _UffdRegister(ctypes.Structure):
    _fields_ = [("range", _Range), ("mode", ctypes.c_uint64), ("ioctls", ctypes.c_uint64)]


class _UffdProtect(ctypes.Structure):
    _fields_ = [("range", _Range), ("mode", ctypes.c_uint64)]


class _PageRegion(ctypes.Structure):
    _fields_ = [("start", ctypes.c_uint64), ("end", ctypes.c_uint64), ("categories", ctypes.c_uint64)]


class _PageScan(ctypes.Structure):
    _fields_ = [(name, ctypes.c_uint64) for name in (
        "size", "flags", "start", "end", "walk_end", "vec", "vec_len", "max_pages", "category_inverted",
        "category_mask", "category_anyof_mask", "return_mask")]


def _iowr(kind: int, number: int, size: int) -> int:
    return (3 << 30) | (size << 16) | (kind << 8) | number


_USERFAULTFD = {"x86_64": 323, "aarch64": 282}
_UFFD_FEATURES = (1 << 15) | (1 << 13)  # WP_ASYNC (the kernel resolves write faults itself), WP_UNPOPULATED
_PAGE_IS_WRITTEN = 1 << 1


class WriteTracker:
    """Whether memory this process received was written since it arrived, without reading it.

    Received buffers live in :class:`BufferPool` memory. Right after one is filled, its
    region is write-protected with userfaultfd in asynchronous mode (Linux 6.7+): a later
    write, from any thread, a syscall or another process, is let through by the kernel at
    once and marks its page written, which ``PAGEMAP_SCAN`` reports (as CRIU tracks dirty
    memory). So a received array still unchanged after a cell keeps the content hash the
    sender gave it instead of being hashed again. The price: the first write to each page
    of a protected region is a minor fault. Where any of this is missing (another OS, an
    older kernel, no permission) ``available`` is False and everything is hashed as before.
    """

    def __init__(self):
        self.available = False
        self._regions: dict[int, list] = {}  # start -> [length, epoch]
        self._uffd = self._pagemap = -1
        try:
            self._open()
            self.available = self._works()
        except (OSError, AttributeError, ValueError):
            self.available = False
        if not self.available:
            self.close()

    def _open(self):
        number = _USERFAULTFD.get(os.uname().machine)
        if number is None or not sys.platform.startswith("linux"):
            raise OSError("no userfaultfd here")
        libc = ctypes.CDLL(None, use_errno=True)
        libc.syscall.restype = ctypes.c_long
        libc.ioctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_void_p]
        self._libc = libc
        # not the user-mode-only kind an unprivileged process may get: a write by a syscall (read() into
        # the buffer) must be let through and counted too, never refused
        self._uffd = libc.syscall(number, os.O_CLOEXEC | os.O_NONBLOCK)
        if self._uffd < 0:
            raise OSError(ctypes.get_errno(), "userfaultfd")
        api = _UffdApi(0xAA, _UFFD_FEATURES, 0)
        self._ioctl(self._uffd, _iowr(0xAA, 0x3F, ctypes.sizeof(api)), api)
        self._pagemap = os.open("/proc/self/pagemap", os.O_RDONLY | os.O_CLOEXEC)

    def _ioctl(self, fd, request, arg) -> int:
        result = self._libc.ioctl(fd, request, ctypes.byref(arg))
        if result < 0:
            err = ctypes.get_errno()
            raise OSError(err, os.strerror(err))
        return result

    def _works(self) -> bool:
        """Protect two pages, write one: the scan must see exactly that (else never trust it)."""
        probe = mmap.mmap(-1, 2 * mmap.PAGESIZE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        try:
            probe[:] = b"\1" * len(probe)
            if not self.register(probe):
                return False
            start = address_of(probe)
            self.protect(start)
            clean = not self._written(start, len(probe))
            probe[mmap.PAGESIZE + 7] = 2
            seen = self._written(start + mmap.PAGESIZE, mmap.PAGESIZE) and not self._written(start, mmap.PAGESIZE)
            return clean and seen
        finally:
            self.forget(probe)
            probe.close()

    def register(self, memory: mmap.mmap) -> bool:
        """Track ``memory`` (a whole private anonymous mapping) from now on."""
        start, length = address_of(memory), -(-len(memory) // mmap.PAGESIZE) * mmap.PAGESIZE
        try:
            self._ioctl(self._uffd, _iowr(0xAA, 0x00, ctypes.sizeof(_UffdRegister)),
                        _UffdRegister(_Range(start, length), 1 << 1, 0))  # mode: write-protect
        except OSError:
            return False
        self._regions[start] = [length, 0]
        return True

    def forget(self, memory: mmap.mmap):
        """``memory`` is about to be unmapped (its registration ends with it)."""
        if not memory.closed:
            self._regions.pop(address_of(memory), None)

    def protect(self, start: int, on: bool = True) -> int | None:
        """Write-protect the whole region at ``start`` (just filled), or lift that (``on=False``:
        it is about to be filled again, which must not fault page by page); returns its new epoch."""
        region = self._regions.get(start)
        if region is None:
            return None
        region[1] += 1  # whatever was recorded for it before is void
        try:
            self._ioctl(self._uffd, _iowr(0xAA, 0x06, ctypes.sizeof(_UffdProtect)),
                        _UffdProtect(_Range(start, region[0]), 1 if on else 0))
        except OSError:
            return None
        return region[1]

    def region_of(self, address: int, nbytes: int) -> tuple[int, int] | None:
        """(start, epoch) of the tracked region holding ``[address, address + nbytes)``."""
        for start, (length, epoch) in self._regions.items():
            if start <= address and address + nbytes <= start + length:
                return start, epoch
        return None

    def unchanged(self, start: int, epoch: int, address: int, nbytes: int) -> bool:
        """Whether no byte of ``[address, address + nbytes)`` was written since the region at
        ``start`` was protected as ``epoch``. Anything uncertain counts as written."""
        region = self._regions.get(start)
        if region is None or region[1] != epoch:
            return False
        try:
            return not self._written(address, nbytes)
        except OSError:
            return False

    def _written(self, address: int, nbytes: int) -> bool:
        first = address - address % mmap.PAGESIZE
        found = _PageRegion()
        scan = _PageScan(ctypes.sizeof(_PageScan), 0, first, address + nbytes, 0, ctypes.addressof(found), 1, 0,
                         0, _PAGE_IS_WRITTEN, 0, _PAGE_IS_WRITTEN)
        return self._ioctl(self._pagemap, _iowr(ord("f"), 16, ctypes.sizeof(_PageScan)), scan) > 0

    def close(self):
        for fd in (self._uffd, self._pagemap):
            if fd >= 0:
                os.close(fd)
        self._uffd = self._pagemap = -1
        self._regions.clear()
        self.available = False


_tracker: WriteTracker | None = None


def write_tracker() -> WriteTracker:
    """This process's one :class:`WriteTracker` (made on first use; maybe not ``available``)."""
    global _tracker
    if _tracker is None:
        _tracker = WriteTracker()
    return _tracker


class BufferPool:
    """Memory for buffers copied in from the other process, reused once nothing uses it.

    Fresh memory costs page faults that dominate a copy (several times the copy
    itself on some machines); a buffer whose array was dropped is taken again for the
    next buffer of (about) its size. A buffer is free when no memoryview, array or
    tensor still exports it (the resize probe fails while one does). At most
    ``keep`` bytes of free buffers are kept.
    """

    def __init__(self, keep: int = 2 << 30, tracker: WriteTracker | None = None):
        self.keep = keep
        self.tracker = tracker if tracker is not None and tracker.available else None
        self._buffers: list[mmap.mmap] = []

    @staticmethod
    def _free(memory) -> bool:
        try:
            memory.resize(len(memory))  # refused while a buffer export exists
            return True
        except BufferError:
            return False
        except (OSError, ValueError, TypeError, SystemError):  # cannot tell: never reuse it
            return False

    def take(self, nbytes: int) -> mmap.mmap:
        size = max(nbytes, 1)
        idle = 0
        chosen = None
        for memory in self._buffers:
            if memory.closed or not self._free(memory):
                continue
            if chosen is None and size <= len(memory) <= size + size // 8:
                chosen = memory
            else:
                idle += len(memory)
        if chosen is not None:
            self._buffers.remove(chosen)
            self._buffers.append(chosen)
            if self.tracker is not None:
                self.tracker.protect(address_of(chosen), on=False)
            return chosen
        self._trim(idle)
        memory = allocate(nbytes)
        if self.tracker is not None:
            self.tracker.register(memory)
        self._buffers.append(memory)
        return memory

    def filled(self, memory):
        """``memory`` (taken from this pool) now holds what was received: from here on its
        writes are tracked (see :class:`WriteTracker`)."""
        if self.tracker is not None:
            self.tracker.protect(address_of(memory))

    def _trim(self, idle: int):
        for memory in list(self._buffers):
            if idle <= self.keep:
                break
            if not memory.closed and self._free(memory):
                idle -= len(memory)
                self._buffers.remove(memory)
                self._close(memory)
        self._buffers = [m for m in self._buffers if not m.closed]

    def clear(self):
        for memory in self._buffers:
            if not memory.closed and self._free(memory):
                self._close(memory)
        self._buffers = [m for m in self._buffers if not m.closed]

    def _close(self, memory):
        if self.tracker is not None:
            self.tracker.forget(memory)
        memory.close()


def address_of(buf) -> int:
    """The address of a contiguous buffer: writable, or the whole of a bytes object.
    Raises BufferError for other read-only buffers."""
    view = memoryview(buf).cast("B")
    if view.nbytes == 0:
        return 0
    if not view.readonly:
        return ctypes.addressof(ctypes.c_char.from_buffer(view))
    owner = view.obj
    while isinstance(owner, (memoryview, pickle.PickleBuffer)):
        owner = owner.obj if isinstance(owner, memoryview) else owner.raw().obj
    if type(owner) is bytes and len(owner) == view.nbytes:
        return ctypes.cast(ctypes.c_char_p(owner), ctypes.c_void_p).value  # bytes' own storage, no copy
    raise BufferError("a read-only buffer that is not a whole bytes object")


def vm_read(pid: int, address: int, nbytes: int, pool: BufferPool | None = None) -> memoryview:
    """Copy ``nbytes`` at ``address`` in process ``pid`` into memory here (from ``pool`` if given)."""
    memory = pool.take(nbytes) if pool is not None else allocate(nbytes)
    view = memoryview(memory)[:nbytes]
    if nbytes:
        _vm_call("process_vm_readv", pid, address_of(memory), address, nbytes)
    if pool is not None:
        pool.filled(memory)
    return view


def vm_write(pid: int, buf, address: int):
    """Copy the contiguous buffer ``buf`` to ``address`` in process ``pid``."""
    view = memoryview(buf).cast("B")
    if not view.nbytes:
        return
    try:
        local = address_of(view)
    except BufferError:
        view = memoryview(bytearray(view))
        local = address_of(view)
    _vm_call("process_vm_writev", pid, local, address, view.nbytes)
