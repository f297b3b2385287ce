"""A throwaway PostgreSQL cluster in a temporary folder, for the tests and the benchmarks.

    with pg_local.cluster() as admin:       # a superuser URL: postgresql:///postgres?host=<folder>&user=postgres
        ...

It listens on a Unix socket in its folder only (no TCP), trusts local connections, runs without
fsync, and is stopped and deleted at the end. initdb refuses root, so as root (CI) the server's
tools run as the `postgres` user. The binaries come from $SQLTUNE_PG_BIN, else /usr/local/bin, else
PostgreSQL's usual Debian folder; without them `Missing` says how to install them.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

CANDIDATES = ("/usr/local/bin", "/usr/lib/postgresql/15/bin", "/usr/lib/postgresql/16/bin", "/usr/lib/postgresql/17/bin")


class Missing(RuntimeError):
    """No initdb / pg_ctl here."""


def bin_dir() -> Path:
    for folder in ([os.environ["SQLTUNE_PG_BIN"]] if os.environ.get("SQLTUNE_PG_BIN") else list(CANDIDATES)):
        if (Path(folder) / "initdb").exists() and (Path(folder) / "pg_ctl").exists():
            return Path(folder)
    raise Missing("PostgreSQL server binaries (initdb, pg_ctl) not found in "
                  f"{os.environ.get('SQLTUNE_PG_BIN') or ', '.join(CANDIDATES)}: install PostgreSQL 15 "
                  "(e.g. apt install postgresql-15) or set SQLTUNE_PG_BIN to the folder holding them")


def _run(command: list[str]) -> subprocess.CompletedProcess:
    if os.geteuid() == 0:  # initdb refuses root
        command = ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(f"'{c}'" for c in command)]
    return subprocess.run(command, capture_output=True, text=True, timeout=120)


@contextlib.contextmanager
def cluster() -> Iterator[str]:
    """Start a cluster; yield its superuser URL (database `postgres`); stop and delete it after."""
    pg_bin = bin_dir()
    root = Path(tempfile.mkdtemp(prefix="sqltune-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
    data = root / "data"
    try:
        done = _run([str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync"])
        if done.returncode != 0:
            raise RuntimeError(f"initdb failed: {done.stderr[-2000:]}")
        options = f"-c listen_addresses= -c unix_socket_directories={root} -c fsync=off"
        done = _run([str(pg_bin / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "start"])
        if done.returncode != 0:
            log = (root / "log").read_text() if (root / "log").exists() else ""
            raise RuntimeError(f"pg_ctl start failed: {done.stderr[-2000:]}{log[-2000:]}")
        yield f"postgresql:///postgres?host={root}&user=postgres"
    finally:
        if (data / "postmaster.pid").exists():
            _run([str(pg_bin / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"])
        shutil.rmtree(root, ignore_errors=True)
