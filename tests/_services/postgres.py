"""A real PostgreSQL server for tests: ``initdb`` into a temporary folder as an unprivileged user,
``pg_ctl`` on a free port, a migrated template database that each test copies."""

from __future__ import annotations

import glob
import itertools
import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

__all__ = ["PostgresServer", "pg_bin"]


def pg_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb")) or ([shutil.which("initdb")] if shutil.which("initdb")
                                                                       else [])
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PostgresServer:
    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="podstack-pg-"))
        self.port = _free_port()
        self.user = None
        self._counter = itertools.count()
        if os.geteuid() == 0:  # initdb refuses root: run the server as the 'postgres' account
            try:
                import pwd

                account = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError("running as root and there is no 'postgres' user to run PostgreSQL as") from None
            self.user = "postgres"
            os.chown(self.root, account.pw_uid, account.pw_gid)
            self.root.chmod(0o755)

    def _run(self, *args, **kwargs):
        command = [str(a) for a in args]
        if self.user:
            command = ["runuser", "-u", self.user, "--"] + command
        return subprocess.run(command, check=True, capture_output=True, text=True, **kwargs)

    def start(self):
        data = self.root / "data"
        self._run(self.bindir / "initdb", "-D", data, "-U", "podstack", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                   "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
        self._run(self.bindir / "pg_ctl", "-D", data, "-o", options, "-l", self.root / "log", "-w", "start")
        self.admin("CREATE DATABASE podstack_template")
        from podstack_jupyter.tracking.store.sql import SQLStore

        SQLStore(self.url("podstack_template")).close()  # migrate once; tests copy it

    def url(self, database: str) -> str:
        return f"postgresql+psycopg://podstack@127.0.0.1:{self.port}/{database}"

    def admin(self, sql: str):
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={self.port} user=podstack dbname=postgres", autocommit=True) as c:
            c.execute(sql)

    def new_database(self) -> str:
        name = f"t{next(self._counter)}"
        self.admin(f"CREATE DATABASE {name} TEMPLATE podstack_template")
        return self.url(name)

    def stop(self):
        try:
            self._run(self.bindir / "pg_ctl", "-D", self.root / "data", "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
