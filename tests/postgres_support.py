"""A throwaway PostgreSQL server for tests: Debian's binaries, a unix socket, no TCP.

`initdb` into a fresh directory, `pg_ctl start` with the socket in that directory and
no TCP listener, one database per test (`new_database`), `pg_ctl stop -m immediate` and
the directory removed at the end. PostgreSQL refuses to run as root: as root, the
server runs as the `postgres` user (created by Debian's package) in a directory of its
own under /tmp (pytest's tmp_path is private to root and closed to that user).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

INSTALL_HINT = "install Debian's postgresql-15 (deploy/ci/install-tools.sh does)"


def postgres_bin() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit()
                        else 0)
    return candidates[-1].parent if candidates else None


@dataclass(frozen=True)
class PostgresServer:
    root: Path
    socket_dir: Path
    user: str

    def url(self, database: str = "postgres") -> str:
        return f"postgresql:///{database}?host={self.socket_dir}&user={self.user}"

    def new_database(self) -> str:
        """A fresh empty database; its URL."""
        import psycopg

        name = "t_" + uuid.uuid4().hex[:16]
        with psycopg.connect(self.url(), autocommit=True) as db:
            db.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(f"no PostgreSQL server binaries: {INSTALL_HINT}")
        pytest.skip(f"no PostgreSQL server binaries: {INSTALL_HINT}")
    as_root = os.geteuid() == 0
    user = "postgres" if as_root else pwd.getpwuid(os.geteuid()).pw_name
    root = Path(tempfile.mkdtemp(prefix="exposure-pg-"))
    data, socket_dir = root / "data", root / "socket"
    socket_dir.mkdir()
    if as_root:
        for path in (root, socket_dir):
            shutil.chown(path, user, user)
    run_as = {"user": user} if as_root else {}
    try:
        subprocess.run([str(bindir / "initdb"), "-D", str(data), "-U", user, "--auth=trust",
                        "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"],
                       check=True, capture_output=True, timeout=120, cwd=root, **run_as)
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w",
                        "-t", "60", "-o", f"-k {socket_dir} -c listen_addresses='' -c fsync=off",
                        "start"], check=True, capture_output=True, timeout=120, cwd=root, **run_as)
        yield PostgresServer(root, socket_dir, user)
    finally:
        subprocess.run([str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, cwd=root, **run_as)
        shutil.rmtree(root, ignore_errors=True)
