"""A bad metric point never stops metric writing: refused at the call, or set aside alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import sqlalchemy as sa

from podstack_jupyter.errors import InvalidArgumentError, PodstackError
from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.runs import metric_buffer


@pytest.mark.parametrize("metrics, step, message", [
    ({"loss": 1.0}, np.uint64(2**64 - 1), r"step 18446744073709551615 is out of range: steps are 64-bit"),
    ({"loss": 1.0}, 2**63, r"step 9223372036854775808 is out of range"),
    ({"loss": 1.0}, -2**63 - 1, r"is out of range"),
    ({"bad\ud800key": 1.0}, 0, r"metric name contains '\\ud800' at position 3, a lone surrogate"),
    ({"x" * 256: 1.0}, 0, r"metric name is longer than 255 characters \(256\)"),
    ({"nul\x00key": 1.0}, 0, r"metric name contains a NUL character"),
    ({"loss": 10**400}, 0, r"too large for a 64-bit float"),
    ({"loss": "low"}, 0, r"metric 'loss': value 'low'"),
    ({3: 1.0}, 0, r"metric names are non-empty strings, got 3"),
])
def test_a_point_the_store_cannot_hold_is_refused_at_the_call_naming_it(metrics, step, message):
    with registry.start_run("r") as run:
        with pytest.raises(InvalidArgumentError, match=message):
            registry.log_metrics({"good": 1.0, **metrics}, step=step)
        registry.log_metrics({"good": 2.0}, step=1)
    # nothing of the refused call was written, not even its good entry; later points were
    assert [(p.step, p.value) for p in registry.get_metric_history(run.id, "good")] == [(1, 2.0)]


def test_the_limits_leave_room_for_everything_the_store_can_hold():
    key = "é" * 255  # 255 characters (510 bytes): PostgreSQL counts characters
    with registry.start_run("edges") as run:
        registry.log_metrics({key: 1.0, "big": 1e308, "nan": float("nan"), "ninf": float("-inf")}, step=2**63 - 1)
        registry.log_metric("low", 0.5, step=-2**63)
        registry.log_metric("npint", np.float32(0.25), step=np.int64(7))
    assert [(p.step, p.value) for p in registry.get_metric_history(run.id, key)] == [(2**63 - 1, 1.0)]
    assert registry.get_metric_history(run.id, "low")[0].step == -2**63
    assert np.isnan(registry.get_metric_history(run.id, "nan")[0].value)
    assert registry.get_run(run.id).metrics["ninf"] == float("-inf")
    assert [(p.step, p.value) for p in registry.get_metric_history(run.id, "npint")] == [(7, 0.25)]


def test_refused_points_do_not_cost_the_points_of_this_run_or_the_next():
    """The case that was seen: run A logged 5,000 points and kept 1,000; run B kept 0 of 3,000."""
    with registry.start_run("A") as a:
        for i in range(5000):
            registry.log_metric("loss", float(i), step=i)
            if i == 1000:
                with pytest.raises(InvalidArgumentError):
                    registry.log_metric("loss", 1.0, step=np.uint64(2**64 - 1))
                with pytest.raises(InvalidArgumentError):
                    registry.log_metric("\ud800", 1.0)
    with registry.start_run("B") as b:
        for i in range(3000):
            registry.log_metric("loss", float(i))
    assert len(registry.get_metric_history(a.id, "loss")) == 5000
    assert len(registry.get_metric_history(b.id, "loss")) == 3000
    assert registry.get_run(a.id).status == registry.get_run(b.id).status == "completed"


def _refuse_key_in_the_database(store, key: str) -> None:
    """Make the database itself refuse metric rows of ``key`` (a trigger), as a store might refuse a point."""
    with store._engine.begin() as conn:
        if store.dialect == "sqlite":
            conn.execute(sa.text(f"CREATE TRIGGER refuse BEFORE INSERT ON metric_chunks WHEN NEW.key = '{key}' "
                                 "BEGIN SELECT RAISE(ABORT, 'this store refuses that metric'); END"))
        else:
            conn.execute(sa.text(f"""CREATE FUNCTION refuse() RETURNS trigger AS $$ BEGIN
                IF NEW.key = '{key}' THEN RAISE EXCEPTION 'this store refuses that metric'; END IF;
                RETURN NEW; END $$ LANGUAGE plpgsql"""))
            conn.execute(sa.text("CREATE TRIGGER refuse BEFORE INSERT ON metric_chunks "
                                 "FOR EACH ROW EXECUTE FUNCTION refuse()"))


def test_points_the_store_refuses_are_set_aside_and_reported_and_every_other_point_is_written(podstack_home):
    with registry.start_run("A") as a:
        pass
    _refuse_key_in_the_database(registry._store(), "poison")
    b = registry.start_run("B")
    for i in range(2000):
        registry.log_metrics({"loss": float(i), "acc": i / 2000}, step=i, run_id=a.id)
        registry.log_metrics({"loss": -float(i), **({"poison": 1.0} if i in (10, 1500) else {})}, step=i)
    with pytest.raises(PodstackError, match=r"refused 2 metric point\(s\), set aside in .*rejected.jsonl: "
                                            r"run .* 'poison' step 10: .*refuses that metric.*Every other point"):
        registry.end_run()
    assert registry.get_run(b.id).status == "completed"  # ended all the same
    assert len(registry.get_metric_history(a.id, "loss")) == len(registry.get_metric_history(a.id, "acc")) == 2000
    assert [p.value for p in registry.get_metric_history(b.id, "loss")] == [-float(i) for i in range(2000)]
    assert registry.get_metric_history(b.id, "poison") == []
    rejected = [json.loads(line) for line in metric_buffer._store_dir.joinpath("rejected.jsonl").read_text().splitlines()]
    assert [(r["run_id"], r["key"], r["step"], r["value"]) for r in rejected] == [(b.id, "poison", 10, 1.0),
                                                                                 (b.id, "poison", 1500, 1.0)]
    assert "refuses that metric" in rejected[0]["error"]
    registry.flush()  # reported once; nothing pending


def test_a_store_that_takes_nothing_keeps_every_point_and_writes_them_when_it_recovers():
    with registry.start_run("r") as run:
        engine = registry._store()._engine
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE metric_chunks RENAME TO metric_chunks_away"))
        for i in range(500):
            registry.log_metrics({"loss": float(i), "acc": 1.0}, step=i)
        with pytest.raises(PodstackError, match=r"could not write 1000 metric points.*kept in the journal"):
            registry.flush()
        assert metric_buffer.pending() == 1000
        with engine.begin() as conn:
            conn.execute(sa.text("ALTER TABLE metric_chunks_away RENAME TO metric_chunks"))
    assert len(registry.get_metric_history(run.id, "loss")) == 500
    assert not metric_buffer._store_dir.joinpath("rejected.jsonl").exists()  # nothing was wrongly set aside
