"""Bad input is a clear error and leaves the store as it was (SQLite and PostgreSQL alike).

The cases of issue 7, item 6, one by one; a locked database; then the registry API driven
with arbitrary values (hypothesis), checking that only clear errors escape and that what
the store holds always matches what was accepted.
"""

from __future__ import annotations

import contextlib
import math
import subprocess
import sys
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from podstack_jupyter import registry
from podstack_jupyter.errors import InvalidArgumentError, PodstackError, StoreError
from podstack_jupyter.tracking import use_store
from podstack_jupyter.tracking.store.sql import SQLStore


def _clear(exc: BaseException) -> bool:
    """A podstack error, or a ValueError/TypeError of ours: never a driver's, an encoder's or an overflow."""
    if isinstance(exc, StoreError):
        return False  # the database refused something the checks should have refused first
    if isinstance(exc, PodstackError):
        return bool(exc.message)
    return isinstance(exc, (ValueError, TypeError)) and not isinstance(exc, UnicodeError) and bool(str(exc))


@pytest.fixture
def a_file(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("notes")
    return path


@pytest.mark.parametrize("call, named", [
    (lambda: registry.log_param("p", 10 ** 5000), "value of 'p' cannot be turned into text"),
    (lambda: registry.log_metric("loss", 1.0, step=2 ** 64 - 1), "step 18446744073709551615 is out"),
    (lambda: registry.log_param("\ud800", 1), "lone surrogate"),
    (lambda: registry.log_param("lr", "0.1\ud800"), "lone surrogate"),
    (lambda: registry.set_tag("t", "a\x00b"), "NUL character"),
    (lambda: registry.log_param("a\x00b", 1), "NUL character"),
    (lambda: registry.set_experiment("e\x00"), "NUL character"),
    (lambda: registry.log_param("k" * 256, 1), "longer than 255 characters"),
    (lambda: registry.log_params({("a", "tuple"): 1}), "names are text"),
    (lambda: registry.search_runs(metrics={"loss": ("<", 10 ** 400)}), "too large for a 64-bit float"),
    (lambda: registry.search_runs(params={"lr": 10 ** 400}), "too large for a 64-bit float"),
    (lambda: registry.search_runs(filter="tags.t = 'a\x00'"), "NUL character"),
    (lambda: registry.search_runs(filter="tags.t = '\udcff'"), "lone surrogate"),
    (lambda: registry.search_runs(order_by="metrics.`\ud800`"), "lone surrogate"),
    (lambda: registry.search_runs(max_results=0), "max_results must be a positive integer"),
    (lambda: registry.get_run("a\x00"), "run_id contains a NUL"),
    (lambda: registry.get_run(42), "run_id must be an id string"),
    (lambda: registry.log_dataset("d\x00", path="s3://bucket/d.csv"), "NUL character"),
    (lambda: registry.log_dataset("d", path="s3://bucket/\ud800"), "lone surrogate"),
    (lambda: registry.log_dataset("d", path="s3://bucket/d.csv", tags={"k": "\x00"}), "NUL character"),
    (lambda: registry.register_model("m\x00"), "NUL character"),
    (lambda: registry.register_model("m", description="\ud800"), "lone surrogate"),
    (lambda: registry.compare_runs([registry.active_run().id], metric_keys=["\x00"]), "NUL character"),
])
def test_each_bad_value_is_a_clear_error_and_nothing_is_written(call, named):
    with registry.start_run("bad-input") as run:
        registry.log_params({"kept": 1})
        with pytest.raises(PodstackError, match=named):
            call()
        assert registry.active_run() is run
    stored = registry.get_run(run.id)
    assert stored.status == "completed" and stored.params == {"kept": "1"} and stored.tags == {}
    assert [e.name for e in registry.list_experiments()] == ["Default"]
    assert registry.list_models() == []


def test_arguments_of_the_wrong_kind_name_the_argument(a_file, tmp_path):
    with registry.start_run("kinds") as run:
        with pytest.raises(InvalidArgumentError, match="artifact_path must be a string path .* got int 123"):
            registry.log_artifact(a_file, 123)
        with pytest.raises(InvalidArgumentError, match="local_path must be a path, got int"):
            registry.log_artifact(7)
        registry.log_artifact(a_file, "docs/")
    assert [a["path"] for a in registry.list_artifacts(run.id)] == ["docs/notes.txt"]
    with pytest.raises(InvalidArgumentError, match="is a file; local_path is the folder"):
        registry.download_artifact(run.id, "docs/notes.txt", a_file)  # FileExistsError before
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "docs").write_text("a file where the folder should go")
    with pytest.raises(InvalidArgumentError, match="a file stands where a folder on its path should be"):
        registry.download_artifact(run.id, "docs", tmp_path / "out" / "docs" / "deeper")
    assert a_file.read_text() == "notes"


def test_a_huge_max_results_means_no_limit():
    with registry.start_run("one"):
        pass
    assert [r.name for r in registry.search_runs(max_results=10 ** 20)] == ["one"]


_HOLD_LOCK = textwrap.dedent("""
    import sqlite3, sys, time
    connection = sqlite3.connect(sys.argv[1], isolation_level=None)
    connection.execute("BEGIN IMMEDIATE")
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
    connection.execute("COMMIT")
""")


@contextlib.contextmanager
def _lock_held(path, seconds):
    """Another process holds the database's write lock for ``seconds`` from when this block starts."""
    with subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(path), str(seconds)], stdout=subprocess.PIPE,
                          text=True) as holder:
        assert holder.stdout.readline().strip() == "locked"
        yield
        holder.wait(timeout=60)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
def test_a_database_locked_by_another_process_is_waited_for_then_reported(store_url, podstack_home, caplog):
    store = SQLStore(store_url, busy_timeout=0.2, lock_timeout=1.5)
    use_store(store)
    try:
        run = registry.start_run("locked-out")
        with _lock_held(podstack_home / "podstack.db", 0.8):  # shorter than the wait: retried, then written
            registry.log_params({"lr": 0.1})
        assert "is locked by another process; still waiting" in caplog.text
        with _lock_held(podstack_home / "podstack.db", 5):  # longer than the wait: a clear error
            with pytest.raises(StoreError, match=r"stayed locked by another process for 2 s; nothing was written"):
                registry.log_params({"epochs": 3})
        registry.log_params({"epochs": 3})  # the lock is gone: the same call works
        registry.end_run()
        assert registry.get_run(run.id).params == {"lr": "0.1", "epochs": "3"}
    finally:
        use_store(None)
        store.close()


# -- arbitrary values --------------------------------------------------------------------------------
_text = st.text(st.characters(blacklist_categories=()), max_size=8)  # surrogates and NUL included
_odd = st.one_of(st.sampled_from(["", " ", "k" * 256, "a\x00b", "\ud800", "\udcff", "ok", "lr", "loss"]),
                 st.builds(str.__mul__, st.just("x"), st.just(70_000)))  # past the value limit
_key = st.one_of(_text, _odd)
_anything = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.just(10 ** 400), st.just(2 ** 63), st.just(-2 ** 63 - 1),
    _text, _odd, st.binary(max_size=4), st.lists(st.integers(), max_size=2), st.tuples(_key, st.integers()),
    st.dictionaries(_key, st.integers(), max_size=2))
# each argument: mostly a value that is fine (so that calls get through and write), else anything at all
def _mostly(valid, bad=_anything):
    return st.integers(0, 4).flatmap(lambda n: valid if n else bad)


_good_name = st.one_of(st.sampled_from(["lr", "loss", "batch", "t", "m"]), st.text("abcxyz_-.", min_size=1, max_size=5))
_name = _mostly(_good_name, st.one_of(_key, _anything))
_dict_key = _mostly(_good_name, st.one_of(_key, st.integers(), st.none(), st.tuples(_key)))
_value = _mostly(st.one_of(st.integers(), st.floats(), st.text(max_size=5)))
_pairs = _mostly(st.dictionaries(_dict_key, _value, max_size=3))
_maybe = lambda strategy: st.one_of(st.none(), strategy)  # noqa: E731
_filters = st.sampled_from(["metrics.loss < 0.5", "params.lr = 0.1", "tags.t != 'x' and status = 'completed'",
                            "name LIKE 'arb%'", "datasets.name = 'd'", "start_time >= '2020-01-01'",
                            "metrics.loss IN (1, 2)", "params.lr > 10000000000000000000000000"])
_orders = st.sampled_from(["metrics.loss DESC", "params.lr", "start_time", ["tags.t", "name ASC"]])
# metric names and values the metric buffer checks (issue 7, item 1; its own suite drives them)
_metric_key = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), min_size=1, max_size=8)
_metric_value = st.one_of(st.floats(), st.integers(-2 ** 53, 2 ** 53))
_RUN = object()  # stands for the id of the run under test

_CALLS = st.one_of(
    st.tuples(st.just("set_experiment"), _name),
    st.tuples(st.just("start_and_end_run"), _maybe(_name), _maybe(_pairs),
              _mostly(st.sampled_from(["completed", "failed", "killed", "running"]))),
    st.tuples(st.just("log_params"), _pairs),
    st.tuples(st.just("log_param"), _name, _value),
    st.tuples(st.just("set_tags"), _pairs),
    st.tuples(st.just("delete_tag"), _name),
    st.tuples(st.just("log_metrics"), st.dictionaries(_metric_key, _metric_value, max_size=3),
              _mostly(st.one_of(st.none(), st.integers(-2 ** 63, 2 ** 63 - 1)))),
    st.tuples(st.just("log_dataset"), _name, _maybe(_mostly(st.just("s3://bucket/d.csv"))),
              _mostly(st.sampled_from(["training", "validation", "test"])), _maybe(_pairs)),
    st.tuples(st.just("search_runs"), _maybe(_mostly(_filters, _text)), _maybe(_pairs),
              _maybe(_mostly(st.dictionaries(_dict_key, st.tuples(st.sampled_from(["<", ">", "=", "~"]), _value),
                                             max_size=2))),
              _maybe(_mostly(_orders)), _mostly(st.integers(1, 10 ** 20))),
    st.tuples(st.just("get_run"), _mostly(st.just(_RUN))),
    st.tuples(st.just("get_metric_history"), _mostly(_metric_key)),
    st.tuples(st.just("register_model"), _name, _maybe(_value)),
    st.tuples(st.just("set_model_stage"), _mostly(st.integers(-1, 3)),
              _mostly(st.sampled_from(["development", "staging", "production", "archived"]))),
    st.tuples(st.just("set_model_alias"), _name, _mostly(st.integers(-1, 3))),
    st.tuples(st.just("log_artifact"), _maybe(_mostly(st.sampled_from(["a/b/", "x.txt", "../up", "/abs"])))),
    st.tuples(st.just("compare_runs"), _maybe(_mostly(st.lists(_metric_key, max_size=2)))),
)
_calls = st.deferred(lambda: _CALLS)  # a short repr in reports


class _Expected:
    """What the store should hold for the run under test, from the calls that succeeded."""

    def __init__(self):
        self.params, self.tags, self.points = {}, {}, {}

    def check(self, run_id):
        stored = registry.get_run(run_id)
        assert stored.params == self.params and stored.tags == self.tags
        for key, count in self.points.items():
            assert len(registry.get_metric_history(run_id, key)) == count
        registry.search_runs(max_results=5)
        registry.list_experiments()
        for model in registry.list_models():
            assert all(v.stage in ("development", "staging", "production", "archived") for v in model.versions)


def _apply(call, run, expected: _Expected, a_file):
    name, *args = call
    if name == "set_experiment":
        registry.set_experiment(args[0])
    elif name == "start_and_end_run":
        child = registry.start_run(args[0], nested=True, tags=args[1])
        try:
            registry.end_run(args[2], run_id=child.id)
        finally:
            if registry.active_run() is child:
                registry.end_run("killed")
    elif name == "log_params":
        registry.log_params(args[0])
        expected.params.update({k: v if isinstance(v, str) else str(v) for k, v in args[0].items()})
    elif name == "log_param":
        registry.log_param(args[0], args[1])
        expected.params[args[0]] = args[1] if isinstance(args[1], str) else str(args[1])
    elif name == "set_tags":
        registry.set_tags(args[0])
        expected.tags.update({k: v if isinstance(v, str) else str(v) for k, v in args[0].items()})
    elif name == "delete_tag":
        registry.delete_tag(args[0])
        expected.tags.pop(args[0], None)
    elif name == "log_metrics":
        registry.log_metrics(args[0], step=args[1])
        for key in args[0]:
            expected.points[key] = expected.points.get(key, 0) + 1
    elif name == "log_dataset":
        registry.log_dataset(args[0], path=args[1], context=args[2], tags=args[3])
    elif name == "search_runs":
        registry.search_runs(filter=args[0], params=args[1], metrics=args[2], order_by=args[3], max_results=args[4])
    elif name == "get_run":
        registry.get_run(run.id if args[0] is _RUN else args[0])
    elif name == "get_metric_history":
        registry.get_metric_history(run.id, args[0])
    elif name == "register_model":
        registry.register_model(args[0], run_id=run.id, description=args[1])
    elif name == "set_model_stage":
        for model in registry.list_models()[:1]:
            registry.set_model_stage(model.name, args[0], args[1])
    elif name == "set_model_alias":
        for model in registry.list_models()[:1]:
            registry.set_model_alias(model.name, args[0], args[1])
    elif name == "log_artifact":
        registry.log_artifact(a_file, args[0])
    elif name == "compare_runs":
        registry.compare_runs([run.id], metric_keys=args[0])


@pytest.mark.slow
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
@given(calls=st.lists(_calls, min_size=1, max_size=8))
def test_arbitrary_values_give_only_clear_errors_and_the_store_stays_consistent(calls, a_file):
    with registry.start_run("arbitrary") as run:
        expected = _Expected()
        for call in calls:
            params, tags = dict(expected.params), dict(expected.tags)
            try:
                _apply(call, run, expected, a_file)
            except Exception as exc:  # noqa: BLE001 - judged right here
                assert _clear(exc), f"{call!r} raised {type(exc).__module__}.{type(exc).__name__}: {exc}"
                expected.params, expected.tags = params, tags  # a refused call wrote nothing
            assert registry.active_run() is run
            expected.check(run.id)
    assert registry.get_run(run.id).status == "completed"
    for key, count in expected.points.items():
        history = registry.get_metric_history(run.id, key)
        assert len(history) == count and all(isinstance(p.value, float) or math.isnan(p.value) for p in history)


def test_the_limits_are_the_same_on_every_store_at_their_edges():
    key, value = "é" * 255, "🙂" * 65_535  # characters, not bytes, on both databases
    with registry.start_run("edges") as run:
        registry.log_params({key: value})
        registry.set_tags({key: value})
        registry.set_experiment("ε" * 255)
        with pytest.raises(InvalidArgumentError, match="longer than 255 characters"):
            registry.log_params({key + "é": 1})
        with pytest.raises(InvalidArgumentError, match="longer than 65,535 characters"):
            registry.set_tag("t", value + "🙂")
        registry.log_metric("m", 1.0, step=2 ** 63 - 1)
        registry.log_metric("m", -1.0, step=-2 ** 63)
    stored = registry.get_run(run.id)
    assert stored.params == {key: value} and stored.tags == {key: value}
    assert [p.step for p in registry.get_metric_history(run.id, "m")] == [-2 ** 63, 2 ** 63 - 1]
    assert registry.search_runs(params={key: value})[0].id == run.id
