"""Rounding of published counts to a base (an alternative or complement to suppression)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["round_to_base"]


def round_to_base(counts: npt.ArrayLike, base: int) -> npt.NDArray[np.int64]:
    """Round every count to the nearest multiple of ``base``; exact halves round up.

    Integer arithmetic throughout, so large counts round exactly.
    """
    if isinstance(base, bool) or int(base) != base or base < 1:
        raise ValueError(f"base must be an integer >= 1, got {base!r}")
    b = int(base)
    arr = np.asarray(counts)
    if arr.size and not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
        raise ValueError("counts must be integers")
    values = arr.astype(np.int64)
    # floor((x + b/2) / b) * b with halves up, using 2x to stay in integers
    return np.asarray(((2 * values + b) // (2 * b)) * b, dtype=np.int64)


def rounding_interval(published: npt.ArrayLike, base: int) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """The counts that :func:`round_to_base` publishes as ``published``: ``[lo, hi]`` (integers).

    ``x`` rounds to ``r`` exactly when ``r - base/2 <= x < r + base/2``, so ``lo`` is
    ``r - base // 2`` (never below 0) and ``hi`` is ``r - base // 2 + base - 1``.
    """
    values = np.asarray(published, dtype=np.int64)
    b = int(base)
    lo = values - b // 2
    return np.maximum(lo, 0), lo + b - 1
