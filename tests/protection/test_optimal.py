"""The exact integer program of secondary suppression (the benchmark reference)."""

from __future__ import annotations

import numpy as np
import pytest

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    optimal_secondary,
    primary_suppression,
    secondary_suppression,
)
from identity_analytics.protection.optimal import information_loss
from tests.protection.secondary.test_driver import assert_protected, cell

TOL = 1e-6


def test_milp_known_optimum() -> None:
    # one small cell: the cheapest protection is a rectangle with the smallest cells that
    # can absorb a move of k: rows 0/1 are the only ones, column 1 is the cheapest partner
    arr = np.array([[2, 15, 90], [40, 12, 80], [70, 60, 95]])
    grid = CellGrid.full_cube(arr)
    k = 10
    primary = primary_suppression(grid.counts, k)
    opt = optimal_secondary(grid, primary, k)
    secondary = opt & ~primary
    assert set(np.flatnonzero(secondary).tolist()) == {
        cell(grid, 0, 1), cell(grid, 1, 0), cell(grid, 1, 1)
    }
    lo, hi = attacker_intervals(grid, opt)
    assert hi[cell(grid, 0, 0)] - lo[cell(grid, 0, 0)] >= k
    heuristic = secondary_suppression(grid, primary, k)
    assert information_loss(grid, heuristic & ~primary) == pytest.approx(
        information_loss(grid, secondary)
    )


def test_milp_protect_all_never_cheaper_than_primary_only() -> None:
    rng = np.random.default_rng(3)
    arr = rng.integers(0, 40, size=(4, 5))
    grid = CellGrid.full_cube(arr)
    k = 8
    primary = primary_suppression(grid.counts, k)
    base = optimal_secondary(grid, primary, k)
    strict = optimal_secondary(grid, primary, k, protect_all=True)
    assert_protected(grid, strict, k)
    assert information_loss(grid, strict & ~primary) >= information_loss(
        grid, base & ~primary
    ) - 1e-9
    heuristic = secondary_suppression(grid, primary, k)
    assert information_loss(grid, heuristic & ~primary) >= information_loss(
        grid, strict & ~primary
    ) - 1e-9
