"""A killed process loses no metric point that ``log_metrics`` returned for; its runs end ``killed``.

The processes killed here are real subprocesses logging into the test's store (SQLite file or
PostgreSQL database); "the next start" is a real new process opening that store.
"""

from __future__ import annotations

import mmap
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time

import pytest

from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.journal import Journal, journal_directory, recover
from podstack_jupyter.tracking.runs import metric_buffer
from podstack_jupyter.tracking.store import current_store


def _env(podstack_home, store_url) -> dict:
    env = {**os.environ, "PODSTACK_HOME": str(podstack_home)}
    if store_url.startswith("postgresql"):
        env["PODSTACK_TRACKING_URI"] = store_url
    return env


def _python(code: str, env: dict, *args, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env, **kwargs)


def _open_store_in_a_new_process(env: dict) -> None:
    """What every new process does on its first registry call: recover the journals of dead ones."""
    out = subprocess.run([sys.executable, "-c", "from podstack_jupyter.tracking import registry\n"
                          "registry.list_experiments()"], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr


def _steps_and_values(run_id: str, key: str) -> list:
    return [(p.step, p.value) for p in registry.get_metric_history(run_id, key)]


# The victim: logs as fast as it can; after each log_metrics call returns it counts the call as
# acknowledged in a shared page (out of band: the page outlives the process, as the journal does).
VICTIM = """
    import mmap, os, struct, sys
    from podstack_jupyter.tracking import registry
    ack = mmap.mmap(os.open(sys.argv[1], os.O_RDWR), 4096)
    auto = sys.argv[3] == "auto"
    run = registry.start_run(sys.argv[2])
    ack[16:52] = run.id.encode()
    struct.pack_into("q", ack, 8, 1)
    log, i = registry.log_metrics, 0
    while True:
        log({"a": float(i), "b": -float(i)}, step=None if auto else i)
        struct.pack_into("q", ack, 0, i + 1)
        i += 1
"""


def _ack_page(tmp_path, name):
    path = tmp_path / f"{name}.ack"
    path.write_bytes(bytes(4096))
    return path


def _read_ack(path) -> tuple[int, bool, str]:
    with open(path, "rb") as f:
        page = mmap.mmap(f.fileno(), 4096, access=mmap.ACCESS_READ)
        acknowledged, ready = struct.unpack_from("qq", page, 0)
        run_id = page[16:52].decode()
        page.close()
    return acknowledged, bool(ready), run_id


def _wait_ready(path, process, deadline=90.0) -> None:
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        acknowledged, ready, _ = _read_ack(path)
        if ready and acknowledged > 0:
            return
        assert process.poll() is None, "the logging process died before it logged"
        time.sleep(0.01)
    raise AssertionError("the logging process did not start logging in time")


@pytest.mark.slow
def test_sigkill_at_random_moments_loses_no_acknowledged_point_and_duplicates_none(tmp_path, podstack_home,
                                                                                    store_url):
    env = _env(podstack_home, store_url)
    rng = random.Random(int(time.time()))
    victims = []
    for round_ in range(5):
        ack = _ack_page(tmp_path, f"victim{round_}")
        mode = "auto" if round_ % 2 else "explicit"
        process = _python(VICTIM, env, ack, f"victim-{round_}", mode)
        _wait_ready(ack, process)
        # a random moment: before, during or after a background flush (every 0.5 s, or a full segment)
        time.sleep(rng.uniform(0.0, 1.6))
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        acknowledged, _, run_id = _read_ack(ack)
        victims.append((run_id, acknowledged, mode))
    _open_store_in_a_new_process(env)
    for run_id, acknowledged, mode in victims:
        for key, sign in (("a", 1.0), ("b", -1.0)):
            points = _steps_and_values(run_id, key)
            # every acknowledged call's point, once, in order; at most the one call in flight beyond
            assert acknowledged <= len(points) <= acknowledged + 1, (mode, acknowledged, len(points))
            assert points == [(i, sign * i) for i in range(len(points))], mode
        assert registry.get_run(run_id).status == "killed"
    mine = metric_buffer.journal.folder if metric_buffer.journal is not None else None
    assert [p for p in metric_buffer._store_dir.iterdir() if p.is_dir() and p != mine] == []  # recovered, removed


def test_sigterm_and_os_exit_lose_nothing_and_the_next_process_marks_the_run_killed(tmp_path, podstack_home,
                                                                                   store_url):
    env = _env(podstack_home, store_url)
    script = """
        import os, sys, time
        from podstack_jupyter.tracking import registry
        run = registry.start_run("victim")
        for i in range(20000):
            registry.log_metrics({"loss": float(i)}, step=i)
        print(run.id, flush=True)
        if sys.argv[1] == "os._exit":
            os._exit(0)
        time.sleep(60)
    """
    registry.client()  # this process opened the store before the deaths: it does not recover them
    runs = {}
    for how in ("os._exit", "SIGTERM"):
        process = _python(script, env, how, stdout=subprocess.PIPE, text=True)
        run_id = process.stdout.readline().strip()
        if how == "SIGTERM":
            process.terminate()
        process.communicate(timeout=60)
        assert process.returncode in (0, -signal.SIGTERM)
        runs[how] = run_id
        assert registry.get_run(run_id).status == "running"  # nobody has looked yet
    _open_store_in_a_new_process(env)
    for how, run_id in runs.items():
        run = registry.get_run(run_id)
        assert run.status == "killed" and run.end_time is not None, how
        assert _steps_and_values(run_id, "loss") == [(i, float(i)) for i in range(20000)], how


def test_a_kill_between_the_store_commit_and_its_mark_in_the_journal_duplicates_nothing(tmp_path, podstack_home,
                                                                                       store_url):
    env = _env(podstack_home, store_url)
    script = """
        import os
        from podstack_jupyter.tracking import registry
        from podstack_jupyter.tracking.journal import Journal
        Journal.committed = lambda self, batch: os._exit(9)  # dies right after the transaction committed
        run = registry.start_run("victim")
        for i in range(5000):
            registry.log_metrics({"loss": float(i), "acc": i / 5000}, step=i)
        print(run.id, flush=True)
        registry.flush()
    """
    process = _python(script, env, stdout=subprocess.PIPE, text=True)
    run_id = process.stdout.readline().strip()
    process.communicate(timeout=60)
    assert process.returncode == 9
    store = current_store()  # not through the registry, which would recover on its first call
    assert len(store.get_run(run_id)["metrics"]) == 2  # the store has the points; the journal does not know
    summary = recover(store, journal_directory(podstack_home, store.url))
    assert summary["duplicates_skipped"] == 10000 and summary["points"] == 0 and summary["runs_killed"] == [run_id]
    assert _steps_and_values(run_id, "loss") == [(i, float(i)) for i in range(5000)]
    assert len(_steps_and_values(run_id, "acc")) == 5000


def test_processes_starting_together_recover_a_dead_journal_exactly_once(tmp_path, podstack_home, store_url):
    env = _env(podstack_home, store_url)
    script = """
        import os
        from podstack_jupyter.tracking import registry
        from podstack_jupyter.tracking.runs import metric_buffer
        metric_buffer.interval = 3600  # nothing reaches the store before the death
        run = registry.start_run("victim")
        for i in range(30000):
            registry.log_metrics({"loss": float(i)})
        print(run.id, flush=True)
        os._exit(0)
    """
    process = _python(script, env, stdout=subprocess.PIPE, text=True)
    run_id = process.stdout.readline().strip()
    process.communicate(timeout=60)
    assert current_store().get_metric_history(run_id, "loss")["count"] == 0  # (the registry would recover)
    openers = [_python("from podstack_jupyter.tracking import registry\nregistry.list_experiments()", env)
               for _ in range(3)]
    assert [p.wait(timeout=120) for p in openers] == [0, 0, 0]
    assert _steps_and_values(run_id, "loss") == [(i, float(i)) for i in range(30000)]
    assert registry.get_run(run_id).status == "killed"


def test_the_journal_of_a_live_process_is_left_alone(tmp_path, podstack_home, store_url):
    env = _env(podstack_home, store_url)
    script = """
        import sys
        from podstack_jupyter.tracking import registry
        from podstack_jupyter.tracking.runs import metric_buffer
        metric_buffer.interval = 3600
        run = registry.start_run("alive")
        for i in range(100):
            registry.log_metric("loss", float(i))
        print(run.id, flush=True)
        sys.stdin.read()  # until the test closes it; then a normal exit writes everything
    """
    process = _python(script, env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    run_id = process.stdout.readline().strip()
    registry.client()
    summary = metric_buffer.recover_dead()
    assert summary["journals"] == 0 and registry.get_run(run_id).status == "running"
    assert registry.get_metric_history(run_id, "loss") == []
    process.communicate(timeout=60)
    assert process.returncode == 0
    assert registry.get_run(run_id).status == "completed" and len(registry.get_metric_history(run_id, "loss")) == 100
    assert [p.name for p in metric_buffer._store_dir.iterdir()] == []  # it removed its journal


def test_recovery_stops_at_a_record_cut_short_and_keeps_a_journal_it_cannot_write_yet(tmp_path, store_url):
    registry.client()
    with registry.start_run("r") as run:
        pass
    folder = tmp_path / "journals"
    journal = Journal.create(folder)
    for i in range(10):
        journal.log(run.id, {"loss": float(i)}, i, 1000.0 + i)
    # the 11th record was being written when the process died: step and value there, slot not yet
    journal._mm[journal._pos:journal._pos + 16] = struct.pack("=qd", 10, 10.0)
    # and it had just created the next segment file, header not yet written
    next_segment = journal.folder / "seg-000002"
    next_segment.write_bytes(bytes(64 + 32 * 100))
    os.close(journal._lock_fd)  # as if the process died: the lock goes, the files stay
    journal._lock_fd = None

    class Unavailable:
        url = "sqlite:///unavailable"

        def log_metric_series(self, series):
            raise ConnectionError("the database is down")

        def get_metric_history(self, run_id, key):
            raise ConnectionError("the database is down")

    kept = recover(Unavailable(), folder)
    assert kept["kept"] == 1 and kept["journals"] == 0 and any(folder.iterdir())
    done = recover(registry._store(), folder)
    assert done["journals"] == 1 and done["points"] == 10
    assert _steps_and_values(run.id, "loss") == [(i, float(i)) for i in range(10)]
    assert [p for p in folder.iterdir() if p.is_dir()] == []


def test_a_forked_worker_that_dies_has_its_points_recovered_by_the_live_parent(store_url):
    with registry.start_run("parent") as run:
        registry.log_metric("parent", 1.0)
        registry.flush()
        pid = os.fork()
        if pid == 0:  # the child logs into the parent's run and leaves without any cleanup
            try:
                for i in range(1000):
                    registry.log_metric("child", float(i), run_id=run.id)
            finally:
                os._exit(0)
        os.waitpid(pid, 0)
        summary = metric_buffer.recover_dead()
        assert summary["journals"] == 1 and summary["runs_killed"] == []  # the parent's run is not the child's
        assert len(registry.get_metric_history(run.id, "child")) == 1000
        assert registry.get_run(run.id).status == "running"
    assert registry.get_run(run.id).status == "completed"
