"""The in-process event stream: topics, prefixes, isolation of failing handlers, unsubscribing."""

import threading

import pytest

from podstack_jupyter import events


def test_prefix_and_wildcard_subscribers_receive_in_subscription_order():
    seen = []
    with events.subscribe("run", lambda e: seen.append(("run", e.topic, e.data["run_id"]))), \
            events.subscribe("*", lambda e: seen.append(("*", e.topic, e.data["run_id"]))), \
            events.subscribe("run.ended", lambda e: seen.append(("ended", e.topic, e.data["run_id"]))):
        events.publish("run.started", run_id="a")
        events.publish("run.ended", run_id="b")
        events.publish("running.other", run_id="c")  # 'run' is a prefix of names, not of strings
    assert seen == [("run", "run.started", "a"), ("*", "run.started", "a"),
                    ("run", "run.ended", "b"), ("*", "run.ended", "b"), ("ended", "run.ended", "b"),
                    ("*", "running.other", "c")]
    assert not events.has_subscribers("run.started")
    assert events.publish("run.started", run_id="d") is None


def test_a_failing_handler_is_logged_and_the_others_still_run(caplog):
    got = []
    with events.subscribe("x", lambda e: 1 / 0), events.subscribe("x", lambda e: got.append(e.data)):
        event = events.publish("x.y", n=1)
    assert got == [{"n": 1}] and event.topic == "x.y"
    assert "ZeroDivisionError" in caplog.text


def test_close_is_idempotent_and_threads_can_publish():
    got = []
    lock = threading.Lock()

    def record(event):
        with lock:
            got.append(event.data["i"])

    subscription = events.subscribe("t", record)
    threads = [threading.Thread(target=lambda i=i: [events.publish("t.n", i=i) for _ in range(100)]) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    subscription.close()
    subscription.close()
    assert sorted(set(got)) == list(range(8)) and len(got) == 800
    assert not events.has_subscribers("t.n")


@pytest.mark.parametrize("pattern", ["", ".run", "run.", 3])
def test_bad_patterns_are_refused(pattern):
    with pytest.raises(ValueError, match="dotted name"):
        events.subscribe(pattern, print)
