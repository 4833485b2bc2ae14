import numpy as np
import pytest

from podstack_jupyter.compute import wire


def test_large_buffers_travel_out_of_band():
    array = np.arange(1_000_000, dtype=np.float64)
    enc = wire.encode(array)
    assert len(enc.frames) == 2
    assert len(enc.frames[0]) < 1_000  # the pickle stream holds structure only
    assert memoryview(enc.frames[1]).nbytes == array.nbytes


def test_received_frames_rebuild_writable_arrays_without_a_copy():
    import zmq

    context = zmq.Context.instance()
    sender, receiver = context.socket(zmq.PAIR), context.socket(zmq.PAIR)
    receiver.bind("inproc://wire-test")
    sender.connect("inproc://wire-test")
    sender.send_multipart(wire.encode(np.arange(500_000, dtype=np.int64)).frames)
    frames = receiver.recv_multipart(copy=False)
    result = wire.decode(frames)
    result += 1  # in place, as a cell would
    assert result[0] == 1 and result[-1] == 500_000
    assert result.ctypes.data == np.frombuffer(frames[1], dtype=np.uint8).ctypes.data  # no copy
    sender.close()
    receiver.close()


def test_read_only_buffers_still_rebuild_writable_arrays():
    frames = [bytes(memoryview(f).cast("B")) for f in wire.encode(np.zeros(10)).frames]
    result = wire.decode(frames)
    result += 1
    assert result.sum() == 10


def test_fingerprint_changes_with_content_not_identity():
    a = np.zeros(1000)
    before = wire.fingerprint(a)
    assert wire.fingerprint(a.copy()) == before
    a[500] = 1
    assert wire.fingerprint(a) != before
    assert wire.fingerprint([1, 2]) != wire.fingerprint([1, 2, 3])


def test_pack_unpack_round_trip():
    values = {"x": wire.encode(np.ones(10)), "s": wire.encode("hello"), "f": wire.encode(lambda v: v + 1)}
    manifest, frames = wire.pack(values)
    out = {name: wire.decode(fr) for name, _fp, fr in wire.unpack(manifest, frames)}
    assert out["s"] == "hello" and out["f"](1) == 2 and out["x"].sum() == 10


def test_unpicklable_values_raise():
    import threading

    with pytest.raises(TypeError):
        wire.encode(threading.Lock())
