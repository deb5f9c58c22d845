"""Primary suppression: exactly the cells of 1 to k-1 people."""

from __future__ import annotations

import numpy as np
import pytest

from identity_analytics.protection import (
    primary_suppression,
)

TOL = 1e-6


def test_primary_suppression() -> None:
    counts = np.array([0, 1, 4, 5, 9, 10, 300])
    assert primary_suppression(counts, 5).tolist() == [False, True, True, False, False, False,
                                                       False]
    assert not primary_suppression(counts, 1).any()
    with pytest.raises(ValueError):
        primary_suppression(counts, 0)
