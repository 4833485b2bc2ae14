"""The metric journal in one process: where it lives, what it leaves behind, what it does when it cannot."""

from __future__ import annotations

import logging
import stat

from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.runs import metric_buffer


def test_points_are_journaled_in_a_private_folder_that_goes_away_once_written(podstack_home):
    with registry.start_run("r") as run:
        registry.log_metrics({"loss": 0.5, "acc": 0.25}, step=0)
        journal = metric_buffer.journal
        assert journal.durable and journal.folder.parent.parent == podstack_home / "journal"
        assert stat.S_IMODE(journal.folder.stat().st_mode) == 0o700
        assert sorted(p.name for p in journal.folder.iterdir()) == ["lock", "log", "seg-000001"]
        assert metric_buffer.pending() == 2
        registry.flush()
        assert metric_buffer.pending() == 0
    registry._reset_store()  # closes the journal: everything is in the store, so its folder goes
    assert not journal.folder.exists()
    assert registry.get_run(run.id).metrics == {"loss": 0.5, "acc": 0.25}


def test_a_home_where_no_journal_can_be_made_still_logs_and_says_so(podstack_home, caplog):
    podstack_home.mkdir(parents=True, exist_ok=True)
    (podstack_home / "journal").write_text("a file where the journal folder should be")
    with caplog.at_level(logging.ERROR, logger="podstack.tracking"):
        with registry.start_run("r") as run:
            for i in range(100):
                registry.log_metric("loss", float(i))
            assert not metric_buffer.journal.durable
    assert "cannot create a metric journal" in caplog.text and "would be lost if this process were killed" \
        in caplog.text
    assert len(registry.get_metric_history(run.id, "loss")) == 100


def test_points_across_segment_boundaries_and_a_call_that_does_not_fit_keep_every_point_in_order():
    with registry.start_run("r") as run:
        for i in range(30_000):
            registry.log_metric("loss", float(i))
        # 5,000 points do not fit in what is left of the first segment (32,768 records): all go to the next
        registry.log_metrics({f"k{j}": float(j) for j in range(5_000)}, step=5)
        for i in range(30_000, 100_000):  # and past the second one (98,304 records in all)
            registry.log_metric("loss", float(i))
    history = registry.get_metric_history(run.id, "loss")
    assert [p.step for p in history] == list(range(100_000)) and history[65_432].value == 65_432.0
    assert registry.get_run(run.id).metrics["k4999"] == 4999.0
    assert registry.get_metric_history(run.id, "k0")[0].step == 5
