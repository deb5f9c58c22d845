"""Suppression: known small cases, the MILP reference, and property tests against the
independent LP audit (attacker_intervals)."""

from __future__ import annotations

import gc
import subprocess
import sys

import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    optimal_secondary,
    primary_suppression,
    secondary_suppression,
)
from identity_analytics.protection.optimal import information_loss
from identity_analytics.protection.secondary import driver, structure, tuning

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


def test_primary_suppression() -> None:
    counts = np.array([0, 1, 4, 5, 9, 10, 300])
    assert primary_suppression(counts, 5).tolist() == [False, True, True, False, False, False,
                                                       False]
    assert not primary_suppression(counts, 1).any()
    with pytest.raises(ValueError):
        primary_suppression(counts, 0)


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


def test_audit_detects_an_unprotected_cell() -> None:
    grid = CellGrid.full_cube(np.array([[3, 20], [30, 40]]))
    only_primary = primary_suppression(grid.counts, 10)
    lo, hi = attacker_intervals(grid, only_primary)
    s = cell(grid, 0, 0)
    assert lo[s] == hi[s] == 3.0  # recomputable from its row: the rule is violated


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


#: A fresh process (HiGHS keeps one thread scheduler per process): another HiGHS user and the
#: exact MILP first, then the heuristic and the audit.  With a thread count of its own, the
#: heuristic's solves were refused ("audit LP status Not Set") once the scheduler existed.
SHARED_SCHEDULER = """
import highspy, numpy as np
from identity_analytics.protection import (
    CellGrid, attacker_intervals, optimal_secondary, primary_suppression, secondary_suppression)
other = highspy.Highs()
other.setOptionValue("output_flag", False)
other.addVar(0.0, 1.0)
other.run()
rng = np.random.default_rng(3)
grid = CellGrid.full_cube(rng.poisson(12, size=(6, 7, 3)))
primary = primary_suppression(grid.counts, 10)
optimal_secondary(grid, primary, 10)
mask = secondary_suppression(grid, primary, 10)
lo, hi = attacker_intervals(grid, mask)
assert (hi - lo)[mask].min() >= 10 - 1e-6
print(int(primary.sum()), int(mask.sum()))
"""


def test_heuristic_after_other_highs_users_in_the_process() -> None:
    done = subprocess.run([sys.executable, "-c", SHARED_SCHEDULER], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    n_primary, n_suppressed = map(int, done.stdout.splitlines()[-1].split())
    assert 0 < n_primary < n_suppressed


#: Another HiGHS user replaces the process's scheduler with one of another size after our
#: solvers learnt its thread count: their solves are refused until the count is probed again.
REPLACED_SCHEDULER = """
import highspy, numpy as np
from identity_analytics.protection import CellGrid, attacker_intervals, primary_suppression, secondary_suppression
from identity_analytics.protection import _lp
rng = np.random.default_rng(3)
grid = CellGrid.full_cube(rng.poisson(12, size=(6, 7, 3)))
primary = primary_suppression(grid.counts, 10)
first = secondary_suppression(grid, primary, 10)
before = _lp._threads()
highspy.Highs.resetGlobalScheduler(True)
other = highspy.Highs()
other.setOptionValue("output_flag", False)
other.setOptionValue("threads", before + 1)
other.addVar(0.0, 1.0)
other.run()
again = secondary_suppression(grid, primary, 10)
assert np.array_equal(first, again)
lo, hi = attacker_intervals(grid, again)
assert (hi - lo)[again].min() >= 10 - 1e-6
print(before, _lp._threads())
"""


def test_heuristic_after_the_scheduler_is_replaced() -> None:
    done = subprocess.run([sys.executable, "-c", REPLACED_SCHEDULER], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    before, after = map(int, done.stdout.splitlines()[-1].split())
    assert after == before + 1


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
