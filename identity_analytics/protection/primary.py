"""Primary suppression: the cells that must be hidden on their own (``0 < count < k``).

Secondary suppression (the complements that protect them) is :mod:`identity_analytics.protection.secondary`.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

__all__ = ["check_k", "primary_suppression"]

BoolArray = npt.NDArray[np.bool_]


def check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def primary_suppression(counts: npt.ArrayLike, k: int) -> BoolArray:
    """Mask of the cells that must be hidden on their own: ``0 < count < k``."""
    k = check_k(k)
    arr = np.asarray(counts)
    return np.asarray((arr > 0) & (arr < k), dtype=bool)

