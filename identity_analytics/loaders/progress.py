"""Progress of long pulls, reported through a callback: the library counts, the caller draws.

A :data:`ProgressCallback` is told ``(what, done, total)`` after every batch: what is being
pulled (``identities from https://…``, the URL without credentials), how many records so far
(resumed ones included) and the total when it is known (``None`` for a paginated list). The
CLI draws it as a rich progress bar on a terminal; a notebook may pass its own.
"""

from __future__ import annotations

from collections.abc import Callable

#: Called as ``progress(what, done, total)`` while a pull advances.
ProgressCallback = Callable[[str, int, int | None], None]


def reporter(progress: ProgressCallback | None, what: str, total: int | None = None) -> Callable[[int], None]:
    """A function that advances the count of ``what`` by its argument and tells ``progress``."""
    done = 0

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(what, done, total)

    return advance
