"""The compiled loops of the cover make the choices of their numpy formulation.

The references below are the same loops written with numpy arrays (their plain formulation,
kept as the specification); on covers taken from real runs, with the cuts they learnt, both
must add and publish again the same cells, and the components must be those of scipy's graph
search.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from identity_analytics.protection import CellGrid, additivity_matrix, primary_suppression
from identity_analytics.protection.secondary import cover, driver, structure, tuning


def reference_greedy(cov: cover.Cover) -> None:
    """The greedy cover with numpy arrays (same rule as ``_Cover.greedy``)."""
    cur, k, m, n = cov.cur, cov.k, cov.m, cov.n_cuts
    cuts, trig = cov.cuts[:n], cov.trig[:n]
    cnt, rowcap, lc_lhs, lc_viol, lhs, viol = cov._state(cur)
    alone = np.bincount(cov.p_cell, weights=cnt[cov.p_row] == 1, minlength=m)
    empty = np.bincount(cov.p_cell, weights=cnt[cov.p_row] == 0, minlength=m)
    n_alone = int(np.count_nonzero(cnt == 1))
    blocked = cur | cov.forbid
    lc_active = cur[cov.lc_cell]
    for _ in range(m + 1):
        if not (n_alone or lc_viol.any() or (n and viol.any())):
            return
        gain = alone.copy()
        broken = np.flatnonzero(lc_viol)
        if broken.size:
            deficit = -lc_lhs[broken]
            pos, lens = structure.segment_positions(cov.row_ptr, cov.lc_row[broken])
            need = np.repeat(deficit, lens)
            gain += np.bincount(cov.p_cell[pos], weights=np.minimum(cov.p_cap[pos], need) / need, minlength=m)
        if n and viol.any():
            need2 = -lhs[viol][:, None]
            gain += (np.minimum(cov.pos_cuts[:n][viol], need2) / need2).sum(axis=0)
        short = np.maximum(-(lc_lhs + cov.lc_cap), 0.0)
        short[lc_active] = 0.0
        pen = empty + np.bincount(cov.lc_cell, weights=short / k, minlength=m)
        if n:
            idle = ~cur[trig]
            if idle.any():
                tg = trig[idle]
                after = lhs[idle] + cuts[idle, tg]
                pen += np.bincount(tg, weights=np.maximum(-after, 0.0) / k, minlength=m)
        score = gain / (cov.weight + tuning.ALPHA * pen)
        score[blocked | (gain <= tuning.TOL)] = -1.0
        j = int(score.argmax())
        if score[j] <= 0:
            cur[:] = True
            return
        cur[j] = blocked[j] = True
        pj = cov.by_cell[cov.cell_ptr[j] : cov.cell_ptr[j + 1]]
        rows = cov.p_row[pj]
        nb = slice(cov.nb_ptr[j], cov.nb_ptr[j + 1])
        before = cnt[cov.nb_row[nb]]
        cells = cov.nb_cell[nb]
        empty[cells[before == 0]] -= 1.0
        alone[cells[before == 0]] += 1.0
        alone[cells[before == 1]] -= 1.0
        n_alone += int(np.count_nonzero(cnt[rows] == 0)) - int(np.count_nonzero(cnt[rows] == 1))
        cnt[rows] += 1
        rowcap[rows] += cov.p_cap[pj]
        lc_lhs = rowcap[cov.lc_row] + cov.lc_own
        lc_active = cur[cov.lc_cell]
        lc_viol = lc_active & (lc_lhs < -tuning.TOL)
        if n:
            lhs = lhs + cuts[:, j]
            viol = cur[trig] & (lhs < -tuning.TOL)


def reference_reverse(cov: cover.Cover) -> bool:
    """Reverse deletion with numpy arrays (same rule as ``_Cover.reverse``)."""
    cur, n = cov.cur, cov.n_cuts
    cuts, trig = cov.cuts[:n], cov.trig[:n]
    cnt, _, lc_lhs, _, lhs, _ = cov._state(cur)
    cand = np.flatnonzero(cur & ~cov.fixed)
    cand = cand[np.argsort(cov.counts[cand], kind="stable")]
    changed = False
    for j in cand.tolist():
        pj = cov.by_cell[cov.cell_ptr[j] : cov.cell_ptr[j + 1]]
        rows = cov.p_row[pj]
        if (cnt[rows] == 2).any():
            continue
        lcs, lens = structure.segment_positions(cov.lc_ptr, rows)
        drop = np.repeat(cov.p_cap[pj], lens)
        live = cur[cov.lc_cell[lcs]] & (cov.lc_cell[lcs] != j)
        if (live & (lc_lhs[lcs] - drop < -tuning.TOL)).any():
            continue
        new_lhs = lhs - cuts[:, j]
        if (cur[trig] & (trig != j) & (new_lhs < -tuning.TOL)).any():
            continue
        lhs = new_lhs
        lc_lhs[lcs] -= drop
        cur[j] = False
        cnt[rows] -= 1
        changed = True
    return changed


def learnt_cover(counts: np.ndarray, k: int) -> cover.Cover:
    """The cover of a whole-table run, with the cuts its audits learnt."""
    grid = CellGrid.full_cube(counts)
    engine = driver.Engine(grid, structure.relations(grid)[1], k)
    engine.run(primary_suppression(grid.counts, k))
    assert engine._cover is not None
    return engine._cover


#: (shape, mean count scale, k, seed): tables whose runs learn cuts (2-D tables learn none)
TABLES = [((5, 4, 3), 6, 5, 0), ((9, 8, 4), 25, 10, 2), ((9, 8, 4), 40, 10, 0), ((5, 5, 3), 5, 3, 1),
          ((4, 4, 3, 2), 4, 3, 0)]


def table(case: int) -> tuple[np.ndarray, int]:
    shape, scale, k, seed = TABLES[case]
    rng = np.random.default_rng(seed * 100 + shape[0])
    return rng.poisson(rng.uniform(1, scale, size=shape)), k


@pytest.mark.parametrize("case", range(len(TABLES)))
def test_greedy_and_reverse_make_the_numpy_choices(case: int) -> None:
    counts, k = table(case)
    cov = learnt_cover(counts, k)
    assert cov.n_cuts > 0  # the learnt cuts take part in the choices
    rng = np.random.default_rng(case)
    for trial in range(12):
        start = copy.deepcopy(cov)
        start.cur = start.fixed.copy()
        secondary = np.flatnonzero(cov.cur & ~cov.fixed)
        if trial % 3 == 1 and secondary.size:  # a local-search move: one cell forbidden
            start.forbid[rng.choice(secondary)] = True
        if trial % 3 == 2:  # resume from a partial pattern
            start.cur |= rng.random(start.m) < 0.05
        ours, theirs = copy.deepcopy(start), copy.deepcopy(start)
        ours.greedy()
        reference_greedy(theirs)
        assert np.array_equal(ours.cur, theirs.cur), f"greedy differs (trial {trial})"
        # reverse deletion from the covered pattern plus a few extra cells
        ours.cur |= rng.random(ours.m) < 0.1
        theirs.cur = ours.cur.copy()
        assert ours.reverse() == reference_reverse(theirs)
        assert np.array_equal(ours.cur, theirs.cur), f"reverse differs (trial {trial})"


def test_components_are_those_of_a_graph_search() -> None:
    counts, _ = table(2)
    grid = CellGrid.full_cube(counts)
    amat = sp.csr_matrix(additivity_matrix(grid))
    relations = structure.Structure(amat)
    incidence = sp.csr_matrix(amat != 0, dtype=np.int64)
    rng = np.random.default_rng(3)
    for fraction in (0.02, 0.1, 0.3, 1.0):
        cells = np.flatnonzero(rng.random(grid.n_cells) < fraction)
        comps = relations.components(cells)
        assert np.array_equal(np.sort(np.concatenate(comps)), cells)
        assert all(np.array_equal(c, np.sort(c)) for c in comps)
        sub = incidence[:, cells]
        link = sp.csr_matrix(sub.T @ sub)
        n_comp, labels = connected_components(link, directed=False)
        assert len(comps) == n_comp
        for comp in comps:
            pos = np.searchsorted(cells, comp)
            assert np.unique(labels[pos]).size == 1
