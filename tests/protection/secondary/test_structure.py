"""Additive structures: kept per cell layout, never per counts."""

from __future__ import annotations

import numpy as np

from identity_analytics.protection import (
    CellGrid,
    primary_suppression,
    secondary_suppression,
)
from identity_analytics.protection.secondary import structure
from tests.protection.secondary.test_driver import assert_protected

TOL = 1e-6


def test_additive_structures_are_kept_per_layout_not_per_counts() -> None:
    first = CellGrid.full_cube(np.array([[3, 20], [30, 40]]))
    same_layout = CellGrid.full_cube(np.array([[30, 2], [1, 40]]))
    other = CellGrid.full_cube(np.array([[3, 20, 5], [30, 40, 6]]))
    assert structure.relations(first) is structure.relations(same_layout)
    assert structure.relations(other) is not structure.relations(first)
    # the kept structure serves grids of other counts: each pattern is that of a fresh run
    for grid in (first, same_layout, other, first):
        mask = secondary_suppression(grid, primary_suppression(grid.counts, 10), 10)
        assert_protected(grid, mask, 10)
    for size in range(2, 2 + 2 * structure.STRUCTURES_KEPT):
        structure.relations(CellGrid.full_cube(np.ones((size, 2), dtype=np.int64)))
    assert len(structure.STRUCTURES) == structure.STRUCTURES_KEPT
