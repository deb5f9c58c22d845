"""Suppression: known small cases, the MILP reference, and property tests against the
independent LP audit (attacker_intervals)."""

from __future__ import annotations

import gc

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    primary_suppression,
    secondary_suppression,
)
from identity_analytics.protection.secondary import driver, tuning

TOL = 1e-6


def assert_protected(grid: CellGrid, mask: npt.NDArray[np.bool_], k: int) -> None:
    """The privacy rule, checked with the independent audit."""
    primary = primary_suppression(grid.counts, k)
    assert not (primary & ~mask).any(), "a primary cell is published"
    published = grid.counts[~mask]
    assert not ((published > 0) & (published < k)).any(), "a published count is in (0, k)"
    lo, hi = attacker_intervals(grid, mask)
    assert np.all(lo[~mask] == grid.counts[~mask])
    assert np.all(hi[~mask] == grid.counts[~mask])
    widths = hi[mask] - lo[mask]
    assert np.all(widths >= k - TOL), f"narrow suppressed cells: {widths[widths < k - TOL]}"


def cell(grid: CellGrid, *codes: int) -> int:
    return int(np.flatnonzero((grid.codes == np.asarray(codes)).all(axis=1))[0])




def test_two_by_two_needs_a_rectangle() -> None:
    grid = CellGrid.full_cube(np.array([[3, 20], [30, 40]]))
    k = 10
    mask = secondary_suppression(grid, primary_suppression(grid.counts, k), k)
    expected = {cell(grid, 0, 0), cell(grid, 0, 1), cell(grid, 1, 0), cell(grid, 1, 1)}
    assert set(np.flatnonzero(mask).tolist()) == expected
    assert_protected(grid, mask, k)
    lo, hi = attacker_intervals(grid, mask)
    assert lo[cell(grid, 0, 0)] == 0.0
    assert hi[cell(grid, 0, 0)] == 23.0  # bounded by its row total




def test_grand_total_below_k_terminates_and_protects() -> None:
    grid = CellGrid.full_cube(np.array([[1, 2], [0, 3]]))
    k = 10
    primary = primary_suppression(grid.counts, k)
    mask = secondary_suppression(grid, primary, k)
    assert_protected(grid, mask, k)
    _, hi = attacker_intervals(grid, mask)
    assert np.isinf(hi[cell(grid, -1, -1)])


def test_margins_off_primary_is_enough() -> None:
    grid = CellGrid.full_cube(np.array([[1, 20], [30, 4]]), margins=False)
    primary = primary_suppression(grid.counts, 5)
    mask = secondary_suppression(grid, primary, 5)
    assert np.array_equal(mask, primary)
    assert_protected(grid, mask, 5)


def test_nothing_to_protect() -> None:
    grid = CellGrid.full_cube(np.array([[0, 20], [30, 40]]))
    mask = secondary_suppression(grid, primary_suppression(grid.counts, 10), 10)
    assert not mask.any()


def test_small_margin_is_protected() -> None:
    # row 0 total (7) is primary as well as its cells
    grid = CellGrid.full_cube(np.array([[3, 4, 0], [30, 40, 50], [25, 35, 45]]))
    k = 10
    mask = secondary_suppression(grid, primary_suppression(grid.counts, k), k)
    assert mask[cell(grid, 0, -1)]
    assert_protected(grid, mask, k)


def test_rejects_bad_arguments() -> None:
    grid = CellGrid.full_cube(np.array([[3, 20], [30, 40]]))
    with pytest.raises(ValueError):
        secondary_suppression(grid, np.zeros(3, dtype=bool), 10)
    with pytest.raises(ValueError):
        secondary_suppression(grid, np.zeros(grid.n_cells, dtype=bool), 0)
    broken = CellGrid(grid.shape, grid.codes, grid.counts + (grid.codes[:, 0] < 0))
    with pytest.raises(ValueError):
        secondary_suppression(broken, primary_suppression(broken.counts, 10), 10)




#: A fresh process (HiGHS keeps one thread scheduler per process): another HiGHS user and the
#: exact MILP first, then the heuristic and the audit.  With a thread count of its own, the
#: heuristic's solves were refused ("audit LP status Not Set") once the scheduler existed.






@st.composite
def tables(draw: st.DrawFn) -> tuple[np.ndarray, int, bool]:
    dims = draw(st.integers(1, 3))
    shape = tuple(draw(st.integers(1, 4 if dims < 3 else 3)) for _ in range(dims))
    size = int(np.prod(shape))
    small = st.integers(0, 6)
    mixed = st.one_of(small, small, st.integers(0, 40), st.integers(0, 400))
    values = draw(st.lists(mixed, min_size=size, max_size=size))
    k = draw(st.integers(2, 15))
    margins = draw(st.sampled_from([True, True, True, False]))
    return np.asarray(values, dtype=np.int64).reshape(shape), k, margins


def shuffled(grid: CellGrid, seed: int) -> CellGrid:
    perm = np.random.default_rng(seed).permutation(grid.n_cells)
    return CellGrid(grid.shape, grid.codes[perm], grid.counts[perm])


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables(), st.integers(0, 2**16))
def test_property_guarantee(case: tuple[np.ndarray, int, bool], seed: int) -> None:
    arr, k, margins = case
    grid = shuffled(CellGrid.full_cube(arr, margins=margins), seed)
    primary = primary_suppression(grid.counts, k)
    mask = secondary_suppression(grid, primary, k)
    assert mask.dtype == np.bool_ and mask.shape == (grid.n_cells,)
    assert not (primary & ~mask).any()
    assert_protected(grid, mask, k)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tables())
def test_property_guarantee_region_path(case: tuple[np.ndarray, int, bool]) -> None:
    """The large-table path (local regions) on small tables, forced by a low limit."""
    arr, k, _ = case
    grid = CellGrid.full_cube(arr)
    primary = primary_suppression(grid.counts, k)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(driver, "GLOBAL_LIMIT", 0)
        patch.setattr(driver, "REGION_ALTS", 1)
        mask = secondary_suppression(grid, primary, k)
    assert_protected(grid, mask, k)


def test_region_path_on_a_four_dimensional_table() -> None:
    rng = np.random.default_rng(11)
    arr = rng.poisson(rng.gamma(1.5, 40.0, size=(4, 4, 4, 12)))
    grid = CellGrid.full_cube(arr)
    assert grid.n_cells > tuning.GLOBAL_LIMIT
    k = 10
    primary = primary_suppression(grid.counts, k)
    assert primary.sum() > 10
    mask = secondary_suppression(grid, primary, k)
    assert_protected(grid, mask, k)




@pytest.mark.parametrize("global_limit", [10_000, 0])  # the whole table at once; region by region
def test_past_the_lp_budget_unproven_cells_fall_back_to_their_margins(
    monkeypatch: pytest.MonkeyPatch, global_limit: int
) -> None:
    # a sparse table: most non-empty cells are below k, the kind that asks for thousands of LPs
    counts = np.random.default_rng(11).poisson(1.5, size=(6, 7, 5))
    grid = CellGrid.full_cube(counts)
    primary = primary_suppression(grid.counts, 3)
    closures: list[int] = []
    closure = driver.Engine.upward_closure

    def spy(engine: driver.Engine, cells: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        closures.append(cells.size)
        return closure(engine, cells)

    monkeypatch.setattr(driver.Engine, "upward_closure", spy)
    monkeypatch.setattr(driver, "GLOBAL_LIMIT", global_limit)
    unlimited = secondary_suppression(grid, primary, 3)
    assert not closures
    monkeypatch.setattr(driver, "LP_WORK_BUDGET", 300)
    limited = secondary_suppression(grid, primary, 3)
    assert closures and sum(closures) > 0
    assert_protected(grid, limited, 3)
    assert_protected(grid, unlimited, 3)
    assert int(limited.sum()) < grid.n_cells  # not everything: the interior cells of k or more stay


def test_a_k_beyond_the_population_is_the_same_as_just_beyond_it() -> None:
    grid = CellGrid.full_cube(np.array([[30, 50, 5], [40, 0, 60]]))
    total = int(grid.counts[~grid.is_margin].sum())
    for k in (total + 1, 10**6, 10**16, 10**18):
        mask = secondary_suppression(grid, primary_suppression(grid.counts, k), k)
        assert np.array_equal(mask, grid.counts > 0)  # every non-zero cell, zeros published


@pytest.mark.parametrize("enabled", [True, False])
def test_suppression_leaves_the_garbage_collector_as_it_was(enabled: bool) -> None:
    grid = CellGrid.full_cube(np.random.default_rng(1).poisson(8, size=(5, 6)))
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        secondary_suppression(grid, primary_suppression(grid.counts, 10), 10)
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


