"""The codec both ends run: identity across batches, in-place landing, buffers, fingerprints.

Two codecs stand for the two ends (the notebook's keys are positive, the session's
negative); a real second process checks the direct memory copies.
"""

import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest
import torch

from podstack_jupyter.compute import wire


class Ends:
    """Two ends with their own namespaces, as the notebook and a session."""

    def __init__(self):
        self.here_ns, self.there_ns = {}, {}
        self.here = wire.Codec(+1, self.here_ns)
        self.there = wire.Codec(-1, self.there_ns)

    def send(self, source, target, values, frames=None):
        source.begin()
        plain = True
        for value in values.values():  # as the sequence does: a fingerprint says whether marshal may carry it
            source.fingerprint(value)
            plain = plain and source.plain
        packet = source.encode(values, plain=plain)
        buffers = frames(packet.buffers) if frames else [bytearray(b) for b in packet.buffers]
        decoded, landing = target.decode(packet.stream, buffers, packet.sources, packet.format)
        landing.commit()
        source.commit_sent(packet)
        return decoded, packet

    def push(self, **values):
        decoded, packet = self.send(self.here, self.there, values)
        self.there_ns.update(decoded)
        return packet

    def pull(self, *names):
        decoded, packet = self.send(self.there, self.here, {n: self.there_ns[n] for n in names})
        self.here_ns.update(decoded)
        return packet


def test_objects_shared_across_batches_stay_shared():
    ends = Ends()
    net = torch.nn.Linear(3, 1)
    ends.push(net=net)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)  # made after net was sent
    packet = ends.push(opt=opt)
    assert not packet.buffers  # net's weights are referred to by key, not sent again
    there_net, there_opt = ends.there_ns["net"], ends.there_ns["opt"]
    assert there_opt.param_groups[0]["params"][0] is there_net.weight


def test_changes_land_in_place_so_aliases_see_them():
    ends = Ends()
    net = torch.nn.Linear(3, 1)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    alias = net.weight
    ends.push(net=net, opt=opt)
    x, y = torch.randn(32, 3), torch.randn(32, 1)
    remote_net, remote_opt = ends.there_ns["net"], ends.there_ns["opt"]
    before = net.weight.detach().clone()
    for _ in range(5):
        remote_opt.zero_grad()
        torch.nn.functional.mse_loss(remote_net(x), y).backward()
        remote_opt.step()
    ends.pull("net")  # only one of the two sharing objects comes back
    assert ends.here_ns["net"] is net and net.weight is alias
    assert not torch.equal(before, net.weight.detach())
    assert torch.equal(net.weight.detach(), remote_net.weight.detach())
    assert opt.param_groups[0]["params"][0] is net.weight  # the optimizer here still drives the same weight


def test_a_pair_created_there_is_shared_here():
    ends = Ends()
    exec("import torch\nnet = torch.nn.Linear(2, 2)\nopt = torch.optim.Adam(net.parameters())", ends.there_ns)
    ends.pull("net", "opt")
    net, opt = ends.here_ns["net"], ends.here_ns["opt"]
    assert opt.param_groups[0]["params"][0] is net.weight


def test_arrays_and_tensors_travel_out_of_band_and_unchanged_ones_as_keys():
    ends = Ends()
    array = np.arange(1_000_000, dtype=np.float64)
    tensor = torch.arange(500_000, dtype=torch.float32)
    packet = ends.push(a=array, t=tensor)
    assert len(packet.stream) < 2_000  # structure only
    assert sorted(b.nbytes for b in packet.buffers) == [2_000_000, 8_000_000]
    assert ends.there_ns["t"].dtype == torch.float32 and torch.equal(ends.there_ns["t"], tensor)
    assert not ends.push(a=array, t=tensor).buffers  # the other end holds exactly this content
    array[0] = -1
    packet = ends.push(a=array, t=tensor)
    assert [b.nbytes for b in packet.buffers] == [8_000_000]
    assert ends.there_ns["a"][0] == -1


def test_rebuilt_arrays_use_the_received_memory_and_are_writable():
    import zmq

    ends = Ends()
    context = zmq.Context.instance()
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    receiver.bind("inproc://wire-test")
    sender.connect("inproc://wire-test")
    received = []

    def through_zmq(buffers):
        sender.send_multipart(buffers, copy=False)
        frames = receiver.recv_multipart(copy=False)
        received.extend(frames)
        return [memoryview(f) for f in frames]

    decoded, _ = ends.send(ends.here, ends.there, {"a": np.arange(500_000, dtype=np.int64)}, through_zmq)
    result = decoded["a"]
    result += 1  # in place, as a cell would
    assert result[-1] == 500_000
    assert result.ctypes.data == np.frombuffer(received[0], dtype=np.uint8).ctypes.data  # no copy
    sender.close()
    receiver.close()


def test_views_dtypes_and_layouts_round_trip():
    ends = Ends()
    base = np.arange(24, dtype=np.int32).reshape(4, 6)
    values = {"fortran": np.asfortranarray(base), "strided": base[:, ::2], "empty": np.empty((0, 3)),
              "scalar": np.array(3.5), "bf16": torch.ones(3, dtype=torch.bfloat16), "param": torch.nn.Parameter(
                  torch.ones(2, 2)), "zero": torch.empty(0), "bools": torch.tensor([True, False])}
    ends.push(**values)
    for name, value in values.items():
        got = ends.there_ns[name]
        assert type(got) is type(value), name
        if isinstance(value, np.ndarray):
            assert got.shape == value.shape and got.dtype == value.dtype and np.array_equal(got, value), name
        else:
            assert got.dtype == value.dtype and got.shape == value.shape and torch.equal(got, value), name
    assert ends.there_ns["param"].requires_grad


def test_fingerprints_change_with_content_and_identity_and_agree_between_ends():
    ends = Ends()
    a = np.zeros(1000)
    ends.here.begin()
    before = ends.here.fingerprint(a)
    ends.here.begin()
    assert ends.here.fingerprint(a) == before
    a[500] = 1
    ends.here.begin()
    assert ends.here.fingerprint(a) != before
    ends.here.begin()
    assert ends.here.fingerprint(a.copy()) != ends.here.fingerprint(a)  # another object: another key
    assert ends.here.fingerprint([1, 2]) != ends.here.fingerprint([1, 2, 3])
    data = {"w": np.ones(10), "rows": [{"k": i} for i in range(100)], "name": "x"}
    ends.push(data=data)
    ends.here.begin()
    ends.there.begin()
    assert ends.here.fingerprint(data) == ends.there.fingerprint(ends.there_ns["data"])


def test_cyclic_and_widely_shared_values_fingerprint():
    ends = Ends()
    cyclic = [1]
    cyclic.append(cyclic)
    shared = [0]
    wide = [shared] * 10_000
    ends.here.begin()
    assert ends.here.fingerprint(cyclic) and ends.here.fingerprint(wide)


def test_a_failed_decode_restores_objects_changed_in_place():
    ends = Ends()

    class Box:
        pass

    box = Box()
    box.value = 1
    ends.there_ns["__builtins__"] = __builtins__
    ends.push(box=box)
    remote = ends.there_ns["box"]
    remote.value = 2

    class Unloadable:
        def __reduce__(self):
            return (_fail, ())

    ends.there.begin()
    packet = ends.there.encode({"box": remote, "bad": Unloadable()})
    with pytest.raises(RuntimeError, match="cannot load"):
        ends.here.decode(packet.stream, [bytearray(b) for b in packet.buffers])
    assert box.value == 1 and box.__dict__ == {"value": 1}


def _fail():
    raise RuntimeError("cannot load")


def test_functions_of_the_namespace_use_the_other_ends_namespace():
    ends = Ends()
    exec("def scale(v):\n    return v * factor\n", ends.here_ns)
    ends.push(scale=ends.here_ns["scale"])
    ends.there_ns["factor"] = 3
    assert ends.there_ns["scale"](2) == 6
    assert ends.there_ns["scale"].__globals__ is ends.there_ns


def test_missing_keys_are_reported_not_guessed():
    ends = Ends()
    array = np.ones(100)
    ends.push(a=array)
    del ends.there_ns["a"]  # the other end dropped it (and its table entry dies with it)
    import gc

    gc.collect()
    ends.here.begin()
    packet = ends.here.encode({"a": array})
    assert packet.format == "pickle"
    with pytest.raises(wire.MissingKeyError):
        ends.there.decode(packet.stream, [bytearray(b) for b in packet.buffers])
    assert ends.there.table.take_forgotten()  # it says so, so the notebook sends it whole next time


def test_unpicklable_values_raise():
    ends = Ends()
    with pytest.raises(TypeError):
        ends.here.fingerprint(threading.Lock())


def test_memory_is_copied_straight_between_processes():
    """process_vm_readv / writev against a real second process."""
    source = np.arange(3_000_000, dtype=np.float64)
    child = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys
        from podstack_jupyter.compute import wire
        memory = wire.allocate(int(sys.argv[1]))
        print(wire.address_of(memory), flush=True)
        sys.stdin.readline()
        import numpy as np
        arr = np.frombuffer(memory, dtype=np.float64)
        first, last = float(arr[0]), float(arr[-1])
        arr *= 2
        print(first, last, flush=True)
        sys.stdin.readline()
    """), str(source.nbytes)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        address = int(child.stdout.readline())
        wire.vm_write(child.pid, memoryview(source).cast("B"), address)
        child.stdin.write("\n")
        child.stdin.flush()
        assert child.stdout.readline().split() == ["0.0", "2999999.0"]
        back = np.frombuffer(wire.vm_read(child.pid, address, source.nbytes), dtype=np.float64)
        assert back[-1] == 2 * 2999999.0 and source[-1] == 2999999.0  # ours was never touched
        child.stdin.write("\n")
        child.stdin.flush()
    finally:
        child.stdin.close()
        child.wait(timeout=30)
        child.stdout.close()


def test_plain_builtins_travel_by_marshal_and_stay_shared():
    ends = Ends()
    row = {"a": 1}
    rows = [row, row, {"b": [1.5, None, "x"]}]
    packet = ends.push(rows=rows, first=row)
    assert packet.format == "marshal"
    assert ends.there_ns["rows"][0] is ends.there_ns["rows"][1] is ends.there_ns["first"]
    assert ends.there_ns["rows"][2] == {"b": [1.5, None, "x"]}
    for other in ([row, np.ones(2)], bytearray(b"x"), [1 + 2j]):
        assert ends.push(other=other).format == "pickle", other  # anything else: pickle, never bytes
    assert type(ends.there_ns["other"]) is not bytes


def test_object_arrays_rebuild_from_marshalled_elements():
    import pandas as pd

    ends = Ends()
    frame = pd.DataFrame({"s": pd.Series(["a", "bb", None, "a"], dtype=object), "n": [1.0, 2.0, float("nan"), 4.0],
                          "nested": pd.Series([[1], [2, 3], [], [4]], dtype=object)})
    grid = np.array([["x", 1], [None, 2.5]], dtype=object)
    ends.push(frame=frame, grid=grid)
    pd.testing.assert_frame_equal(ends.there_ns["frame"], frame)
    assert ends.there_ns["grid"].shape == (2, 2) and ends.there_ns["grid"][1, 1] == 2.5
    assert ends.there_ns["frame"]["nested"][1] == [2, 3]


def test_containers_held_inside_others_are_found_and_land_as_the_receivers_own():
    inner, lone = [1], [2]
    holder = {"rows": [inner], "pair": (inner, 3)}
    namespace = {"inner": inner, "lone": lone, "holder": holder, "ipython_cache": [inner]}
    found = wire.held_inside({"holder": holder, "lone": lone}, namespace, allowed=lambda n: n != "ipython_cache")
    assert found == {"holder": {"inner"}}
    new_inner = [1, 2]
    values = {"holder": {"rows": [new_inner], "pair": (new_inner, 3)}, "inner": new_inner}
    assert wire.merge_container(inner, new_inner)
    values["inner"] = inner
    wire.keep_merged_shared([(new_inner, inner)], values)
    assert values["holder"]["rows"][0] is inner and values["holder"]["pair"][0] is inner and inner == [1, 2]


needs_tracking = pytest.mark.skipif(not wire.write_tracker().available,
                                    reason="no userfaultfd write protection here: every buffer is hashed")


@needs_tracking
def test_the_write_tracker_sees_every_kind_of_write_to_received_memory():
    tracker = wire.write_tracker()
    pool = wire.BufferPool(tracker=tracker)
    memory = pool.take(4 << 20)
    start = wire.address_of(memory)
    arr = np.frombuffer(memory, dtype=np.uint8)
    writes = {
        "numpy": lambda: arr.__setitem__(3 << 20, 1),
        "another thread": lambda: _in_thread(lambda: arr.__setitem__(5, 1)),
        "torch": lambda: torch.from_numpy(arr)[-1:].fill_(1),
        "a read() syscall": lambda: _read_into(memoryview(memory)[8192:8200]),
    }
    for how, write in writes.items():
        pool.filled(memory)  # as after a copy in
        start_epoch = tracker.region_of(start, len(memory))
        assert tracker.unchanged(*start_epoch, start, len(memory)), how
        write()
        assert not tracker.unchanged(*start_epoch, start, len(memory)), f"a write through {how} went unseen"
    pool.filled(memory)
    epoch = tracker.region_of(start, len(memory))
    pool.filled(memory)  # filled again: what was known of the region before is void
    assert not tracker.unchanged(*epoch, start, len(memory))
    del arr
    pool.clear()


def _in_thread(fn):
    thread = threading.Thread(target=fn)
    thread.start()
    thread.join()


def _read_into(view):
    import os

    fd = os.open(sys.executable, os.O_RDONLY)
    try:
        os.readv(fd, [view])
    finally:
        os.close(fd)


@needs_tracking
def test_a_received_array_is_not_hashed_again_until_written(monkeypatch):
    """Arrays rebuilt on tracked received memory keep the sender's hash while unwritten; any
    write (even after the cell, from a thread) makes the next fingerprint hash them again."""
    ends = Ends()
    pool = wire.BufferPool(tracker=wire.write_tracker())
    ends.there.tracker = pool.tracker

    def into_pool(buffers):  # as the session receives: copied into pool memory, then protected
        views = []
        for buf in buffers:
            memory = pool.take(buf.nbytes)
            memoryview(memory)[:buf.nbytes] = buf
            pool.filled(memory)
            views.append(memoryview(memory)[:buf.nbytes])
        return views

    big = np.random.default_rng(0).random(1 << 18)  # 2 MB
    decoded, _ = ends.send(ends.here, ends.there, {"big": big}, frames=into_pool)
    there = decoded["big"]
    ends.here.begin()
    sent = ends.here.fingerprint(big)
    hashed = []  # sizes of the large inputs hashed
    real_hash = wire._new_hash

    class Counting:
        def __init__(self, name):
            self.real = real_hash(name)

        def update(self, data):
            if memoryview(data).nbytes >= 1 << 20:
                hashed.append(memoryview(data).nbytes)
            self.real.update(data)

        def hexdigest(self):
            return self.real.hexdigest()

    monkeypatch.setattr(wire, "_new_hash", Counting)
    ends.there.begin()
    assert ends.there.fingerprint(there) == sent and not hashed  # unchanged: the sender's hash, not read
    old = there[-1]
    there[-1] = 5.0
    ends.there.begin()
    assert ends.there.fingerprint(there) != sent and hashed  # written: hashed, and seen as changed
    there[-1] = old
    ends.there.begin()
    assert ends.there.fingerprint(there) == sent  # hashed from now on, so right again
    del there, decoded
    pool.clear()
