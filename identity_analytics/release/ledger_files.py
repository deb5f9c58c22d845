"""The ledger directory on disk: its lock and its durable writes.

The lock is an flock on ``<ledger>/lock``, held across processes and re-entrant within one
(two Datasets over one store take turns, never deadlock); files are written to a temporary
name, fsynced and renamed into place; a store being replaced gets the ledger's files linked
into the new store's directory (:func:`carry`).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

if sys.platform != "win32":
    import fcntl

LOCK = "lock"


def write_parquet(table: pa.Table, path: Path) -> None:
    work = path.with_name(f".{path.name}.{secrets.token_hex(6)}")
    try:
        pq.write_table(table, work)
        fsync_file(work)
        os.replace(work, path)
    finally:
        work.unlink(missing_ok=True)


def fsync_file(path: Path) -> None:
    with path.open("rb") as stream:
        os.fsync(stream.fileno())


def fsync_directory(path: Path) -> None:
    if sys.platform == "win32":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)



# --- the lock: one holder across processes, re-entrant within one ------------------------


class _ProcessLock:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.depth = 0
        self.fd: int | None = None


_locks: dict[tuple[int, int], _ProcessLock] = {}
_locks_guard = threading.Lock()


@contextlib.contextmanager
def hold(root: Path) -> Iterator[None]:
    """Hold the ledger directory ``root`` (created if missing): an flock on its ``lock`` file,
    re-entrant within this process (two Datasets over one store take turns, never deadlock)."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        stat = os.fstat(fd)
        with _locks_guard:
            entry = _locks.setdefault((stat.st_dev, stat.st_ino), _ProcessLock())
    except BaseException:
        os.close(fd)
        raise
    with entry.lock:
        if entry.depth == 0:
            if sys.platform != "win32":
                fcntl.flock(fd, fcntl.LOCK_EX)
            entry.fd = fd
        else:
            os.close(fd)
        entry.depth += 1
        try:
            yield
        finally:
            entry.depth -= 1
            if entry.depth == 0 and entry.fd is not None:
                os.close(entry.fd)  # closing the descriptor releases the flock
                entry.fd = None


def carry(ledger: Path, into: Path) -> None:
    """Link every file of the ledger directory ``ledger`` into ``into`` (a store being written
    to replace the one it lives in); hold the ledger while the new store is swapped in."""
    for path in sorted(ledger.rglob("*")):
        target = into / path.relative_to(ledger)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, target)
        except OSError:
            shutil.copy2(path, target)
