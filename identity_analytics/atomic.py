"""Directories written atomically: built in a hidden sibling, then swapped into place.

A reader never sees half a store or half a report. On Linux an existing directory is replaced
in one step by exchanging it with the finished work directory (``renameat2`` with
``RENAME_EXCHANGE``); the previous tree is then removed. Where that call is unavailable the
swap takes two renames (target to ``.<name>.old``, work directory to target); a run killed
between them leaves the previous directory as ``.<name>.old``, and the next run puts it back
before doing anything else. Each work directory is locked while its run lives, so the next
successful run can tell the leftovers of killed runs from live work and removes them.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import os
import re
import secrets
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

if sys.platform != "win32":
    import fcntl

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2
#: ``renameat2`` failures that mean "not on this system or file system", not "this rename failed".
_EXCHANGE_UNSUPPORTED = {errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP}

Renameat2 = Callable[[int, bytes, int, bytes, int], int]


@functools.cache
def _renameat2() -> Renameat2 | None:
    """The C library's ``renameat2`` (glibc 2.28 and later), or None."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    rename: Renameat2 = function
    return rename


def exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one atomic step; False where the system cannot do that."""
    rename = _renameat2()
    if rename is None:
        return False
    if rename(_AT_FDCWD, os.fsencode(first), _AT_FDCWD, os.fsencode(second), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _EXCHANGE_UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))


def previous_copy(target: Path) -> Path:
    """Where the two-rename swap parks the previous ``target`` between its renames."""
    return target.with_name(f".{target.name}.old")


def _is_work_directory(path: Path, target: Path) -> bool:
    return re.fullmatch(rf"\.{re.escape(target.name)}\.[0-9a-f]{{12}}", path.name) is not None


def _lock(fd: int, *, wait: bool) -> bool:
    """Take an exclusive ``flock`` on ``fd``; False where the file system has no such locks (NFS)."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise
    except OSError:
        return False
    return True


def _make_work_directory(target: Path) -> tuple[Path, int | None]:
    """A new hidden sibling of ``target``, and an open descriptor holding its lock.

    The directory is created and locked under a name leftover cleanup ignores, then renamed
    to its work name, so another run never sees it unlocked.
    """
    while True:
        token = secrets.token_hex(6)
        work = target.with_name(f".{target.name}.{token}")
        making = target.with_name(f".{target.name}.{token}.new")
        try:
            making.mkdir()
            break
        except FileExistsError:
            continue
    try:
        making.chmod(0o755)  # stores and reports are meant to be read
        lock: int | None = None
        if sys.platform != "win32":
            lock = os.open(making, os.O_RDONLY)
            if not _lock(lock, wait=True):
                os.close(lock)
                lock = None
        os.rename(making, work)
    except BaseException:
        shutil.rmtree(making, ignore_errors=True)
        raise
    return work, lock


def _remove_if_abandoned(path: Path) -> None:
    """Remove a work directory unless a live run holds its lock."""
    if sys.platform == "win32":
        return  # without the lock a killed run's leftovers cannot be told from live work
    try:
        lock = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        if _lock(lock, wait=False):
            shutil.rmtree(path, ignore_errors=True)
    except BlockingIOError:
        pass  # a live run is writing it
    finally:
        os.close(lock)


def _restore_previous(target: Path, marker: str) -> None:
    """Put back a previous directory stranded by a two-rename swap that was cut short."""
    old = previous_copy(target)
    if not target.exists() and (old / marker).is_file():
        os.rename(old, target)


def _remove_leftovers(target: Path, marker: str, keep: Path) -> None:
    """Remove what killed runs left beside ``target``: work directories and a stale previous copy."""
    for sibling in target.parent.iterdir():
        if sibling != keep and _is_work_directory(sibling, target):
            _remove_if_abandoned(sibling)
    if (target / marker).is_file():
        shutil.rmtree(previous_copy(target), ignore_errors=True)


def _check_replaceable(target: Path, marker: str, what: str, overwrite: bool) -> None:
    """Refuse to replace a non-empty ``target`` without ``overwrite``, or one that is not a ``what``."""
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
        if not (target / marker).is_file():
            raise FileExistsError(f"{target} exists and is not a {what}; refusing to replace it")


@contextlib.contextmanager
def _target_lock(target: Path) -> Iterator[None]:
    """Serialise the swaps and clean-ups of concurrent runs on ``target``: a lock on its parent
    directory (held for a few renames; no lock file is left behind)."""
    if sys.platform == "win32":
        yield
        return
    fd = os.open(target.parent, os.O_RDONLY)
    try:
        _lock(fd, wait=True)  # without flock (NFS) runs are not serialised, as before
        yield
    finally:
        os.close(fd)


def _swap_into_place(work: Path, target: Path, marker: str, what: str, overwrite: bool) -> None:
    """Make ``work`` the ``target`` directory; the previous ``target`` ends up at ``work`` (or gone)."""
    if not target.exists():
        os.rename(work, target)
    elif exchange(work, target):
        try:
            _check_replaceable(work, marker, what, overwrite)  # what was swapped out, had it changed
        except FileExistsError:
            exchange(work, target)
            raise
    else:
        old = previous_copy(target)
        shutil.rmtree(old, ignore_errors=True)
        os.rename(target, old)
        os.rename(work, target)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_directory(target: Path, *, marker: str, what: str, overwrite: bool) -> Iterator[Path]:
    """Yield a work directory that replaces ``target`` when the block completes.

    An existing ``target`` is replaced only with ``overwrite`` and only when it holds
    ``marker`` (it is a ``what`` written before), never an unrelated directory; this is
    checked again at the swap.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with _target_lock(target):
        _restore_previous(target, marker)
        _check_replaceable(target, marker, what, overwrite)
    work, lock = _make_work_directory(target)
    try:
        yield work
        with _target_lock(target):
            try:
                _check_replaceable(target, marker, what, overwrite)
                _swap_into_place(work, target, marker, what, overwrite)
            except BaseException:
                _restore_previous(target, marker)
                raise
            _remove_leftovers(target, marker, keep=work)
    finally:
        shutil.rmtree(work, ignore_errors=True)  # the failed work, or the previous tree after an exchange
        if lock is not None:
            os.close(lock)


@contextlib.contextmanager
def atomic_file(target: Path) -> Iterator[Path]:
    """Yield a hidden temporary path beside ``target`` that replaces it when the block completes.

    The file is flushed to disk before the rename, so a reader finds the previous file or the
    whole new one, never a part; if the block raises, ``target`` is left as it was.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    work = target.with_name(f".{target.name}.{secrets.token_hex(6)}.tmp")
    try:
        yield work
        with work.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(work, target)
    finally:
        work.unlink(missing_ok=True)
