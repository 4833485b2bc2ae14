"""PostgreSQL: a change to API keys, memberships, users or projects notifies the channel
``podstack_accounts``, so that a running server may keep the keys it has checked in memory and
forget them the moment one is revoked (by ``podstack admin`` or by any other writer). Nothing on
SQLite, whose servers look every key up.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

CHANNEL = "podstack_accounts"
# a key's last use is written once a minute: it changes nothing a server remembers
_WATCHED = {
    "api_keys": "UPDATE OF secret_hash, project_id, user_id, revoked_at OR DELETE OR TRUNCATE",
    "memberships": "UPDATE OR DELETE OR TRUNCATE",
    "users": "UPDATE OR DELETE OR TRUNCATE",
    "projects": "UPDATE OR DELETE OR TRUNCATE",
}


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("CREATE OR REPLACE FUNCTION podstack_accounts_changed() RETURNS trigger LANGUAGE plpgsql AS "
               f"$$ BEGIN PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME); RETURN NULL; END $$")
    for table, events in _WATCHED.items():
        op.execute(f"CREATE TRIGGER {table}_changed AFTER {events} ON {table} "
                   "FOR EACH STATEMENT EXECUTE FUNCTION podstack_accounts_changed()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    for table in _WATCHED:
        op.execute(f"DROP TRIGGER IF EXISTS {table}_changed ON {table}")
    op.execute("DROP FUNCTION IF EXISTS podstack_accounts_changed()")
