"""Rounding protection: counts rounded to a base, and what a rounded count tells."""

from __future__ import annotations

import numpy as np
import pytest

from identity_analytics.protection import round_to_base


def test_round_to_base() -> None:
    counts = np.array([0, 1, 2, 3, 4, 5, 7, 8, 12, 13, 1_000_000_003])
    assert round_to_base(counts, 5).tolist() == [0, 0, 0, 5, 5, 5, 5, 10, 10, 15, 1_000_000_005]
    assert round_to_base([5, 14, 15], 10).tolist() == [10, 10, 20]  # halves round up
    assert round_to_base([4, 9], 1).tolist() == [4, 9]
    assert round_to_base(np.array([], dtype=np.int64), 3).tolist() == []
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError):
            round_to_base([1], bad)  # type: ignore[arg-type]
