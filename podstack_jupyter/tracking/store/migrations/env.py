"""Alembic environment of the tracking store.

The store runs these migrations itself when it opens a database (see
``podstack_jupyter.tracking.store.sql.upgrade``) and hands over its connection
in ``config.attributes["connection"]``. Run by hand, it opens ``sqlalchemy.url``.
"""

from alembic import context
from sqlalchemy import create_engine

config = context.config
connection = config.attributes.get("connection")


def _run(conn):
    context.configure(connection=conn, render_as_batch=conn.dialect.name == "sqlite",
                      compare_type=True)
    with context.begin_transaction():
        context.run_migrations()


if connection is not None:
    _run(connection)
else:
    engine = create_engine(config.get_main_option("sqlalchemy.url"))
    with engine.begin() as conn:
        _run(conn)
    engine.dispose()
