"""Directories written atomically: built in a temporary sibling, then renamed into place.

A reader never sees half a store or half a report: a run that fails or is killed leaves the
previous directory (or none) in place; only its hidden temporary sibling may remain.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_directory(target: Path, *, marker: str, what: str, overwrite: bool) -> Iterator[Path]:
    """Yield a work directory that replaces ``target`` when the block completes.

    An existing ``target`` is replaced only with ``overwrite`` and only when it holds
    ``marker`` (it is a ``what`` written before), never an unrelated directory.
    """
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        if not overwrite:
            raise FileExistsError(f"{target} already exists; pass overwrite=True to replace it")
        if not (target / marker).is_file():
            raise FileExistsError(f"{target} exists and is not a {what}; refusing to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    work.chmod(0o755)  # mkdtemp makes it private; stores and reports are meant to be read
    try:
        yield work
        if target.exists():
            old = target.with_name(f".{target.name}.old")
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            work.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            work.rename(target)
    except BaseException:
        shutil.rmtree(work, ignore_errors=True)
        raise
