"""The sequential loops of the cover (greedy, reverse deletion, components), compiled with
numba.

Each step of these loops reads and updates a few entries of per-cell and per-relation arrays;
written with numpy, a step is some thirty array calls on arrays of a few hundred entries, and
their fixed cost made the cover about a third of a 450-cell table's protection. Compiled, a
step costs a few microseconds. The arithmetic is that of the numpy formulation (kept as the
reference in ``tests/protection/secondary/test_cover.py``), in the same order (sums
accumulate in index order), so the choices, ties included, are the same.

Imported on first use (by :mod:`identity_analytics.protection.secondary.structure`): numba's import
and the load of the compiled loops (cached next to this file; compiling them takes about 10 s,
on the first run after installing, or in every process where no cache can be written) are
paid only by processes that protect a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

__all__ = ["component_roots", "greedy_loop", "reverse_loop"]


def _jit(fn: Any) -> Any:
    """``njit`` with an on-disk cache where one can be written (else compiled per process)."""
    try:
        return njit(cache=True)(fn)
    except RuntimeError:  # no writable cache location for this file
        return njit(fn)


# Longer than 80 lines on purpose: one compiled loop over flat arrays, the mirror of the
# reference in the tests step for step (which is how it is checked); split into functions,
# its state would have to travel through a dozen arrays per call.
@_jit
def greedy_loop(
    cur: Any, blocked: Any, weight: Any,
    p_cell: Any, p_row: Any, p_cap: Any, row_ptr: Any, by_cell: Any, cell_ptr: Any,
    nb_ptr: Any, nb_row: Any, nb_cell: Any,
    lc_row: Any, lc_cell: Any, lc_own: Any, lc_cap: Any,
    cuts: Any, pos_cuts: Any, trig: Any,
    cnt: Any, rowcap: Any, lc_lhs: Any, lhs: Any, alone: Any, empty: Any,
    k: float, alpha: float, tol: float,
) -> None:
    """Add cells to ``cur`` until every known condition holds (see ``_Cover.greedy``).

    State in (updated in place): per relation the suppressed cells ``cnt`` and their capacity
    ``rowcap``; the capacity conditions' left-hand sides ``lc_lhs``; the cuts' ``lhs``; per
    cell its relations holding one suppressed cell (``alone``) and none (``empty``), the
    cell itself left out.
    """
    m = cur.size
    n = trig.size
    n_lc = lc_row.size
    lc_viol = np.zeros(n_lc, dtype=np.bool_)
    for i in range(n_lc):
        lc_viol[i] = cur[lc_cell[i]] and lc_lhs[i] < -tol
    viol = np.zeros(n, dtype=np.bool_)
    for c in range(n):
        viol[c] = cur[trig[c]] and lhs[c] < -tol
    n_alone = 0
    for r in range(cnt.size):
        if cnt[r] == 1:
            n_alone += 1
    gain = np.empty(m)
    part = np.empty(m)
    pen = np.empty(m)
    for _ in range(m + 1):
        any_lc = False
        for i in range(n_lc):
            if lc_viol[i]:
                any_lc = True
                break
        any_cut = False
        for c in range(n):
            if viol[c]:
                any_cut = True
                break
        if n_alone == 0 and not any_lc and not any_cut:
            return
        # repairs: relations no longer alone, shares of capacity and of cut deficits
        gain[:] = alone
        if any_lc:
            part[:] = 0.0
            for i in range(n_lc):
                if lc_viol[i]:
                    need = -lc_lhs[i]
                    r = lc_row[i]
                    for p in range(row_ptr[r], row_ptr[r + 1]):
                        part[p_cell[p]] += min(p_cap[p], need) / need
            gain += part
        if any_cut:
            first = True
            for c in range(n):
                if viol[c]:
                    need = -lhs[c]
                    if first:
                        for i in range(m):
                            part[i] = min(pos_cuts[c, i], need) / need
                        first = False
                    else:
                        for i in range(m):
                            part[i] += min(pos_cuts[c, i], need) / need
            gain += part
        # obligations: relations where a new cell would be alone, its capacity and cuts
        part[:] = 0.0
        for i in range(n_lc):
            short = 0.0 if cur[lc_cell[i]] else max(-(lc_lhs[i] + lc_cap[i]), 0.0)
            part[lc_cell[i]] += short / k
        pen[:] = empty + part
        idle = False
        for c in range(n):
            if not cur[trig[c]]:
                idle = True
                break
        if idle:
            part[:] = 0.0
            for c in range(n):
                t = trig[c]
                if not cur[t]:
                    part[t] += max(-(lhs[c] + cuts[c, t]), 0.0) / k
            pen += part
        j = 0
        best = -np.inf
        for i in range(m):
            score = -1.0 if blocked[i] or gain[i] <= tol else gain[i] / (weight[i] + alpha * pen[i])
            if score > best:
                best = score
                j = i
        if best <= 0:
            cur[:] = True  # nothing repairs the conditions: everything (always safe)
            return
        cur[j] = True
        blocked[j] = True
        # the state after adding j: only j's relations, their conditions and the cuts move
        for q in range(nb_ptr[j], nb_ptr[j + 1]):
            before = cnt[nb_row[q]]
            if before == 0:
                empty[nb_cell[q]] -= 1.0
                alone[nb_cell[q]] += 1.0
            elif before == 1:
                alone[nb_cell[q]] -= 1.0
        for q in range(cell_ptr[j], cell_ptr[j + 1]):
            p = by_cell[q]
            r = p_row[p]
            if cnt[r] == 0:
                n_alone += 1
            elif cnt[r] == 1:
                n_alone -= 1
            cnt[r] += 1
            rowcap[r] += p_cap[p]
        for i in range(n_lc):
            lc_lhs[i] = rowcap[lc_row[i]] + lc_own[i]
            lc_viol[i] = cur[lc_cell[i]] and lc_lhs[i] < -tol
        for c in range(n):
            lhs[c] = lhs[c] + cuts[c, j]
            viol[c] = cur[trig[c]] and lhs[c] < -tol


@_jit
def reverse_loop(
    cand: Any, cur: Any,
    p_row: Any, p_cap: Any, by_cell: Any, cell_ptr: Any,
    lc_ptr: Any, lc_cell: Any, cuts: Any, trig: Any,
    cnt: Any, lc_lhs: Any, lhs: Any, tol: float,
) -> bool:
    """Publish again each cell of ``cand`` (in order) that the known conditions allow (see
    ``_Cover.reverse``); ``cnt``, ``lc_lhs`` and ``lhs`` as in :func:`greedy_loop`."""
    n = trig.size
    changed = False
    for j in cand:
        lo, hi = cell_ptr[j], cell_ptr[j + 1]
        ok = True
        for q in range(lo, hi):
            if cnt[p_row[by_cell[q]]] == 2:
                ok = False  # the other suppressed cell would be alone
                break
        if not ok:
            continue
        for q in range(lo, hi):
            p = by_cell[q]
            r = p_row[p]
            for i in range(lc_ptr[r], lc_ptr[r + 1]):
                c = lc_cell[i]
                if cur[c] and c != j and lc_lhs[i] - p_cap[p] < -tol:
                    ok = False
                    break
            if not ok:
                break
        if not ok:
            continue
        for c in range(n):
            if cur[trig[c]] and trig[c] != j and lhs[c] - cuts[c, j] < -tol:
                ok = False
                break
        if not ok:
            continue
        for c in range(n):
            lhs[c] = lhs[c] - cuts[c, j]
        for q in range(lo, hi):
            p = by_cell[q]
            r = p_row[p]
            for i in range(lc_ptr[r], lc_ptr[r + 1]):
                lc_lhs[i] -= p_cap[p]
            cnt[r] -= 1
        cur[j] = False
        changed = True
    return changed


@_jit
def component_roots(cells: Any, c_ptr: Any, c_idx: Any, n_rows: int) -> Any:
    """Per cell of ``cells`` the root (a position in ``cells``) of its connected component,
    cells being linked when they share a relation (union-find over the relations)."""
    m = cells.size
    parent = np.arange(m)
    first = np.full(n_rows, -1, dtype=np.int64)  # per relation, the first cell seen in it
    for i in range(m):
        cell = cells[i]
        for q in range(c_ptr[cell], c_ptr[cell + 1]):
            r = c_idx[q]
            if first[r] < 0:
                first[r] = i
                continue
            a = i
            while parent[a] != a:
                parent[a] = parent[parent[a]]
                a = parent[a]
            b = first[r]
            while parent[b] != b:
                parent[b] = parent[parent[b]]
                b = parent[b]
            if a != b:
                parent[a] = b
    roots = np.empty(m, dtype=np.int64)
    for i in range(m):
        r = i
        while parent[r] != r:
            r = parent[r]
        roots[i] = r
    return roots
