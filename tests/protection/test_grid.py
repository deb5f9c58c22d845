"""CellGrid construction and the additivity matrix."""

from __future__ import annotations

import numpy as np
import pytest

from identity_analytics.protection import CellGrid, additivity_matrix


def test_full_cube_has_every_grouping_set() -> None:
    arr = np.arange(24).reshape(2, 3, 4)
    grid = CellGrid.full_cube(arr)
    assert grid.n_cells == 3 * 4 * 5
    total = grid.counts[(grid.codes < 0).all(axis=1)]
    assert total.tolist() == [arr.sum()]
    # a 1-d margin: codes (1, -1, -1) is the sum of arr[1]
    sel = (grid.codes[:, 0] == 1) & (grid.codes[:, 1] < 0) & (grid.codes[:, 2] < 0)
    assert grid.counts[sel].tolist() == [arr[1].sum()]


def test_full_cube_without_margins() -> None:
    grid = CellGrid.full_cube(np.ones((3, 2), dtype=int), margins=False)
    assert grid.n_cells == 6
    assert (grid.codes >= 0).all()
    assert additivity_matrix(grid).shape == (0, 6)


def test_additivity_holds_and_detects_perturbation() -> None:
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 50, size=(3, 4, 2))
    grid = CellGrid.full_cube(arr)
    amat = additivity_matrix(grid)
    # one row per (margin cell, aggregated dimension)
    assert amat.shape[0] == int((grid.codes < 0).sum())
    assert np.abs(amat @ grid.counts).max() == 0
    for cell in (0, grid.n_cells // 2, grid.n_cells - 1):
        bad = grid.counts.copy()
        bad[cell] += 1
        assert np.abs(amat @ bad).max() > 0


def test_additivity_independent_of_cell_order() -> None:
    arr = np.array([[1, 2, 3], [4, 5, 6]])
    grid = CellGrid.full_cube(arr)
    perm = np.random.default_rng(1).permutation(grid.n_cells)
    shuffled = CellGrid(grid.shape, grid.codes[perm], grid.counts[perm])
    amat = additivity_matrix(shuffled)
    assert np.abs(amat @ shuffled.counts).max() == 0
    assert amat.shape == additivity_matrix(grid).shape


def test_one_dimension_and_unit_sizes() -> None:
    grid = CellGrid.full_cube(np.array([[7]]))
    assert grid.n_cells == 4
    assert set(grid.counts.tolist()) == {7}
    amat = additivity_matrix(grid)
    assert np.abs(amat @ grid.counts).max() == 0
    one = CellGrid.full_cube(np.array([3, 0, 9]))
    assert one.n_cells == 4
    assert np.abs(additivity_matrix(one) @ one.counts).max() == 0


def test_invalid_grids_are_rejected() -> None:
    with pytest.raises(ValueError):
        CellGrid((2,), np.array([[0], [2]]), np.array([1, 1]))
    with pytest.raises(ValueError):
        CellGrid((2,), np.array([[0], [1]]), np.array([1, -1]))
    with pytest.raises(ValueError):
        CellGrid.full_cube(np.zeros((2, 2, 2, 2, 2), dtype=int))
    # a margin without its children
    partial = CellGrid((2,), np.array([[0], [-1]]), np.array([1, 1]))
    with pytest.raises(ValueError):
        additivity_matrix(partial)
    dup = CellGrid((2,), np.array([[0], [0], [1], [-1]]), np.array([1, 1, 1, 2]))
    with pytest.raises(ValueError):
        additivity_matrix(dup)


