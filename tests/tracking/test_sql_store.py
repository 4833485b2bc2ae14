"""The SQL store itself: migrations, SQLite concurrency, metric storage."""

from __future__ import annotations

import math
import subprocess
import sys
import textwrap
import time
import uuid

import pytest
import sqlalchemy as sa

from podstack_jupyter.errors import ConfigurationError, InvalidArgumentError
from podstack_jupyter.tracking import registry
from podstack_jupyter.tracking.store import current_store
from podstack_jupyter.tracking.store.sql import SQLStore

sqlite_only = pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)


def _run(store, experiment="e"):
    exp = store.ensure_experiment(str(uuid.uuid4()), experiment, time.time())
    run_id = str(uuid.uuid4())
    store.create_run({"id": run_id, "experiment_id": exp["id"], "name": "r", "status": "running",
                      "start_time": time.time()})
    return run_id


def test_migrations_create_exactly_the_declared_schema(store_url):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from podstack_jupyter.tracking.store import _schema

    store = SQLStore(store_url)
    with store._engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, _schema.metadata)
        revision = context.get_current_revision()
    store.close()
    assert diff == []
    assert revision == "0004"


def test_reopening_an_upgraded_store_keeps_its_data(store_url):
    store = SQLStore(store_url)
    run_id = _run(store)
    store.close()
    again = SQLStore(store_url)
    assert again.get_run(run_id)["name"] == "r"
    again.close()


@sqlite_only
def test_sqlite_runs_in_wal_mode_and_waits_for_locks(store_url):
    store = SQLStore(store_url)
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == store.busy_timeout * 1000
    assert store.lock_timeout >= 60  # a call waits this long in all for another process's lock
    store.close()


def test_an_unusable_url_is_a_configuration_error(tmp_path):
    with pytest.raises(ConfigurationError, match="not a SQLAlchemy URL"):
        SQLStore("no url here")
    with pytest.raises(ConfigurationError, match="not supported"):
        SQLStore("oracle://u@h/db")


def test_metric_points_round_trip_with_nan_and_out_of_order_steps(store_url):
    store = current_store()
    run_id = _run(store)
    store.log_metrics([[run_id, "loss", 0.5, 2, 10.0], [run_id, "loss", float("nan"), 0, 11.0]])
    store.log_metrics([[run_id, "loss", 0.25, 1, 12.0]])
    history = registry.get_metric_history(run_id, "loss")
    assert [p.step for p in history] == [0, 1, 2]
    assert math.isnan(history[0].value) and history[1].value == 0.25 and history[2].value == 0.5
    # latest = highest step, whatever the logging order
    assert store.get_run(run_id)["metrics"] == {"loss": 0.5}


def test_params_cannot_change_and_a_conflict_writes_nothing(store_url):
    store = current_store()
    run_id = _run(store)
    store.log_params(run_id, {"lr": "0.1"})
    with pytest.raises(InvalidArgumentError, match="lr: logged '0.1', now '0.2'"):
        store.log_params(run_id, {"lr": "0.2", "epochs": "3"})
    assert store.get_run(run_id)["params"] == {"lr": "0.1"}
    store.log_params(run_id, {"lr": "0.1", "epochs": "3"})  # same value again is fine
    store.log_params(run_id, {"podstack.model.framework": "a"})
    store.log_params(run_id, {"podstack.model.framework": "b"})  # podstack's own keys follow the latest model
    assert store.get_run(run_id)["params"] == {"lr": "0.1", "epochs": "3", "podstack.model.framework": "b"}


_WRITER = textwrap.dedent("""
    import sys
    from podstack_jupyter.tracking import registry
    tag = sys.argv[1]
    registry.set_experiment("shared")
    with registry.start_run("writer-" + tag) as run:
        registry.log_params({"writer": tag})
        for i in range(20000):
            registry.log_metrics({"loss": i * 0.5, "acc": 1.0 / (i + 1)}, step=i)
            if i % 5000 == 0:
                registry.set_tag("progress", str(i))
                registry.log_dataset("data-" + tag, path=sys.argv[2])
    print(run.id)
""")


@sqlite_only
def test_two_processes_logging_into_one_sqlite_file_lose_nothing(store_url, podstack_home, tmp_path):
    data = tmp_path / "data.csv"
    data.write_text("a,b\n1,2\n")
    env = {**__import__("os").environ, "PODSTACK_HOME": str(podstack_home)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, tag, str(data)], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    results = [p.communicate(timeout=240) for p in procs]
    for proc, (out, err) in zip(procs, results):
        assert proc.returncode == 0, err
    run_ids = [out.strip() for out, _ in results]
    for run_id in run_ids:
        run = registry.get_run(run_id)
        assert run.status == "completed" and run.metrics == {"loss": 19999 * 0.5, "acc": 1.0 / 20000}
        history = registry.get_metric_history(run_id, "loss")
        assert len(history) == 20000 and [p.step for p in history] == list(range(20000))
    store = current_store()
    with store._engine.connect() as conn:
        assert conn.execute(sa.text("SELECT sum(count) FROM metric_chunks")).scalar() == 80000
        assert conn.execute(sa.text("SELECT count(*) FROM experiments WHERE name = 'shared'")).scalar() == 1
    # the same file logged by both processes is one dataset? no: different names -> two records
    assert {d.name for r in run_ids for d in registry.get_run_datasets(r)} == {"data-a", "data-b"}
    assert len({d.id for r in run_ids for d in registry.get_run_datasets(r)}) == 2


postgres_only = pytest.mark.parametrize("store_url", [pytest.param("postgres", marks=pytest.mark.postgres)],
                                        indirect=True)


@postgres_only
def test_a_pooled_connection_the_database_closed_while_idle_is_replaced(store_url, postgres_server):
    store = SQLStore(store_url)
    try:
        run_id = _run(store)
        database = sa.make_url(store_url).database
        postgres_server.admin(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              f"WHERE datname = '{database}' AND pid <> pg_backend_pid()")
        time.sleep(5.5)  # idle past the check-on-checkout threshold
        assert store.has_run(run_id)
        store.log_params(run_id, {"lr": "0.1"})
        assert store.get_run(run_id)["params"] == {"lr": "0.1"}
    finally:
        store.close()


@postgres_only
def test_run_tables_are_analyzed_as_they_first_fill(store_url):
    store = SQLStore(store_url)
    try:
        with store._engine.connect() as conn:
            before = conn.execute(sa.text("SELECT count(*) FROM pg_stat_user_tables WHERE relname = 'runs' "
                                          "AND coalesce(analyze_count, 0) + coalesce(autoanalyze_count, 0) > 0")).scalar()
        for _ in range(60):  # 60 runs x (1 + 2 params): past the first threshold (100 rows)
            store.log_params(_run(store), {"a": "1", "b": "2"})
        deadline = time.monotonic() + 10  # (autovacuum looks once a minute: this is the store's own ANALYZE)
        while time.monotonic() < deadline:
            with store._engine.connect() as conn:
                planned = conn.execute(sa.text("SELECT reltuples FROM pg_class WHERE relname = 'runs'")).scalar()
            if planned >= 30:  # analyzed when 100 rows were written: 34 runs
                break
            time.sleep(0.2)
        assert before == 0 and planned >= 30, planned  # the planner knows the table's size (never analyzed: -1)
    finally:
        store.close()
