"""Independent audit: the interval an attacker can derive for every suppressed cell.

The attacker knows the additive structure (``A @ x == 0``), every published count and that
counts are non-negative.  For each suppressed cell the tightest bounds follow from two linear
programs (min and max of that cell).  This module deliberately shares nothing with the
suppression heuristic except the additivity matrix and the HiGHS loader: it is the check, not
the method (no witnesses, no shortcuts: two LPs per suppressed cell over its component).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from identity_analytics.protection._lp import INF, new_highs, pass_lp, run
from identity_analytics.protection.grid import CellGrid, additivity_matrix

__all__ = ["attacker_intervals"]

FloatArray = npt.NDArray[np.float64]


def attacker_intervals(
    grid: CellGrid, suppressed_mask: npt.ArrayLike
) -> tuple[FloatArray, FloatArray]:
    """Return ``(lo, hi)`` over all cells: the attacker's LP bounds on each cell.

    Published cells get ``lo == hi == count``; suppressed cells get the minimum and maximum
    of the cell over all non-negative tables that satisfy the additivity relations and agree
    with every published count (``hi`` may be ``inf``).  Raises ``ValueError`` if the grid is
    not additive (then no table is consistent with it).  Bounds within ``INTEGER_SNAP`` of a
    whole number are that number: the solver's floating-point noise (2.9999999999999947 for 3)
    must not read as a narrower interval.
    """
    mask = np.asarray(suppressed_mask, dtype=bool)
    if mask.shape != (grid.n_cells,):
        raise ValueError("suppressed_mask must have one entry per cell")
    counts = grid.counts.astype(np.float64)
    lo = counts.copy()
    hi = counts.copy()
    sup = np.flatnonzero(mask)
    if sup.size == 0:
        return lo, hi
    a_full = additivity_matrix(grid)
    if a_full.shape[0] and np.abs(a_full @ counts).max() > 0:
        raise ValueError("grid counts are not additive")
    pub = np.flatnonzero(~mask)
    a_sup = sp.csr_matrix(a_full[:, sup])
    rhs = -(a_full[:, pub] @ counts[pub])
    used_rows = np.flatnonzero(np.diff(a_sup.indptr) > 0)
    a_sup = sp.csr_matrix(a_sup[used_rows])
    rhs = rhs[used_rows]
    # independent sub-problems: suppressed cells linked through shared relations
    link = sp.csr_matrix((a_sup.T != 0).astype(np.int8) @ (a_sup != 0).astype(np.int8))
    n_comp, labels = connected_components(link, directed=False)
    a_csc = sp.csc_matrix(a_sup)
    for comp in range(n_comp):
        cols = np.flatnonzero(labels == comp)
        sub = sp.csr_matrix(a_csc[:, cols])
        rows = np.flatnonzero(np.diff(sub.indptr) > 0)
        if rows.size == 0:
            # no relation constrains these cells: anything >= 0 is consistent
            lo[sup[cols]] = 0.0
            hi[sup[cols]] = np.inf
            continue
        lp = _ComponentLP(sub[rows], rhs[rows])
        for pos, col in enumerate(cols.tolist()):
            lo[sup[col]] = lp.minimise(pos, 1.0)
            hi[sup[col]] = -lp.minimise(pos, -1.0)
    return _snap(lo), _snap(hi)


#: Distance from a whole number under which an LP bound is taken to be that number.
INTEGER_SNAP = 1e-6


def _snap(values: FloatArray) -> FloatArray:
    whole = np.round(values)
    with np.errstate(invalid="ignore"):  # inf - inf: infinite bounds stay as they are
        near = np.abs(values - whole) <= INTEGER_SNAP
    return np.where(near, whole, values)


class _ComponentLP:
    """``min +-x_j`` subject to ``a_eq @ x == b_eq``, ``x >= 0``, for one cell at a time.

    One HiGHS model per component, re-solved with a new objective (warm start); presolve is
    off so that an unbounded objective is reported as such.
    """

    def __init__(self, a_eq: sp.csr_matrix, b_eq: FloatArray) -> None:
        self.n = a_eq.shape[1]
        self.h: Any = new_highs()
        self.h.setOptionValue("presolve", "off")
        pass_lp(self.h, np.zeros(self.n), np.zeros(self.n), np.full(self.n, INF), a_eq, b_eq,
                b_eq)
        self.last: int | None = None

    def minimise(self, col: int, sign: float) -> float:
        """Minimum of ``sign * x_col`` (``-inf`` if unbounded)."""
        if self.last is not None and self.last != col:
            self.h.changeColCost(self.last, 0.0)
        self.h.changeColCost(col, sign)
        self.last = col
        run(self.h)
        status = self.h.modelStatusToString(self.h.getModelStatus())
        if status == "Optimal":
            return float(self.h.getInfo().objective_function_value)
        if status in ("Unbounded", "Primal infeasible or unbounded"):
            # the true table is feasible (additivity was checked), so this is unbounded
            return -np.inf
        raise RuntimeError(f"attacker LP failed: {status}")
