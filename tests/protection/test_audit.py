"""The independent audit: attacker intervals by LP, checked against plain linprog."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    primary_suppression,
)
from tests.protection.secondary.test_driver import cell, tables

TOL = 1e-6


def test_audit_detects_an_unprotected_cell() -> None:
    grid = CellGrid.full_cube(np.array([[3, 20], [30, 40]]))
    only_primary = primary_suppression(grid.counts, 10)
    lo, hi = attacker_intervals(grid, only_primary)
    s = cell(grid, 0, 0)
    assert lo[s] == hi[s] == 3.0  # recomputable from its row: the rule is violated


@settings(max_examples=30, deadline=None)
@given(tables(), st.integers(0, 2**16))
def test_audit_matches_plain_linprog(case: tuple[np.ndarray, int, bool], seed: int) -> None:
    """attacker_intervals against a direct scipy LP over the whole table."""
    from scipy.optimize import linprog

    from identity_analytics.protection import additivity_matrix

    arr, _, margins = case
    grid = CellGrid.full_cube(arr, margins=margins)
    mask = np.random.default_rng(seed).random(grid.n_cells) < 0.4
    lo, hi = attacker_intervals(grid, mask)
    amat = additivity_matrix(grid).toarray()
    counts = grid.counts.astype(float)
    bounds = [(0, None) if m else (c, c) for m, c in zip(mask, counts, strict=True)]
    a_eq = amat if amat.shape[0] else None
    b_eq = np.zeros(amat.shape[0]) if amat.shape[0] else None
    for i in np.flatnonzero(mask):
        cost = np.zeros(grid.n_cells)
        cost[i] = 1.0
        low = linprog(cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        high = linprog(-cost, A_eq=a_eq, b_eq=b_eq, bounds=bounds, method="highs")
        assert low.status == 0
        assert lo[i] == pytest.approx(low.fun, abs=1e-6)
        if high.status == 3:
            assert np.isinf(hi[i])
        else:
            assert high.status == 0
            assert hi[i] == pytest.approx(-high.fun, abs=1e-6)
