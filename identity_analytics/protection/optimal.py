"""Exact secondary suppression by integer programming (benchmark reference only).

Model (Fischetti-Salazar): binary ``x_i`` (cell ``i`` suppressed) and, for every primary cell
``s``, two tables ``y^{s,+}``, ``y^{s,-}`` consistent with the published cells: additive
(``A y = 0``), non-negative, and equal to the true count ``a_i`` wherever ``x_i = 0``
(``a_i (1 - x_i) <= y_i <= a_i + M x_i``), with ``y^{s,+}_s - y^{s,-}_s >= k``.  Objective:
information loss ``sum_i (1 + a_i / (T + 1)) x_i`` over the non-primary cells.

The model is solved exactly by Benders decomposition (the classic branch-and-cut of
Fischetti and Salazar, done as a loop): a master integer program over ``x`` alone
(``scipy.optimize.milp``) and, for every primary cell, the two continuous LPs (max and min of
``y_s``) for the current ``x``.  Their duals give a valid inequality
``sum_i c_i x_i >= k`` whenever the cell is not protected; coefficients are strengthened to
``min(c_i, k)`` (valid for binary ``x``), which also makes ``M`` arbitrarily large
(``M = inf``, the weakest and therefore exact big-M).  Every master solution is a lower bound;
the loop stops when the master solution protects all primary cells, which is then optimal.

Only primary cells are required to be protected, so the optimum is a lower bound on the loss
of any pattern protecting every suppressed cell (the rule the heuristic enforces).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.optimize import Bounds, LinearConstraint, milp

from identity_analytics.protection._lp import INF, new_highs, pass_lp, run
from identity_analytics.protection.grid import CellGrid, additivity_matrix

__all__ = ["information_loss", "optimal_secondary"]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]

_TOL = 1e-6


def grand_total(grid: CellGrid) -> float:
    """Count of the grand-total cell (sum of interior cells when there are no margins)."""
    total = np.flatnonzero((grid.codes < 0).all(axis=1))
    if total.size:
        return float(grid.counts[total[0]])
    return float(grid.counts[~grid.is_margin].sum())


def information_loss(grid: CellGrid, mask: npt.ArrayLike) -> float:
    """Loss of suppressing the cells of ``mask``: ``sum(1 + count / (total + 1))``."""
    sel = np.asarray(mask, dtype=bool)
    counts = grid.counts[sel].astype(np.float64)
    return float(np.sum(1.0 + counts / (grand_total(grid) + 1.0)))


def optimal_secondary(
    grid: CellGrid,
    primary_mask: npt.ArrayLike,
    k: int,
    time_limit: float = 60.0,
    protect_all: bool = False,
) -> BoolArray:
    """Minimum-loss suppression mask protecting every primary cell (exact, HiGHS).

    With ``protect_all`` every suppressed cell (secondary ones too) must have an attacker
    interval at least ``k`` wide: the rule ``secondary_suppression`` enforces, so this gives
    its true optimum (slower; for tests and analysis).  Raises ``TimeoutError`` when the
    optimum is not proven within ``time_limit`` seconds.
    """
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    primary = np.asarray(primary_mask, dtype=bool)
    if primary.shape != (grid.n_cells,):
        raise ValueError("primary_mask must have one entry per cell")
    amat = additivity_matrix(grid)
    prim = np.flatnonzero(primary)
    if amat.shape[0] == 0 or prim.size == 0:
        return primary.copy()
    deadline = time.monotonic() + time_limit
    n = grid.n_cells
    a = grid.counts.astype(np.float64)
    weight = np.where(primary, 0.0, 1.0 + a / (grand_total(grid) + 1.0))
    sub = _Subproblem(amat, a, float(k))
    cut_rows: list[sp.csr_matrix] = []
    cut_rhs: list[FloatArray] = []
    # Structural inequalities: a suppressed cell that is the only suppressed cell of one of
    # its relations is determined, so no witness moves it and an optimal solution would not
    # suppress it (for a primary cell: its relations need another suppressed cell).  Hence
    # x_i <= sum of x_j over the other cells of each relation containing i.
    coo = sp.coo_matrix(amat)
    csr = sp.csr_matrix(amat != 0, dtype=np.float64)
    pair_rows = np.arange(coo.nnz)
    others = sp.csr_matrix(csr[coo.row])
    others = others - sp.csr_matrix(
        (np.ones(coo.nnz), (pair_rows, coo.col)), shape=(coo.nnz, n)
    )
    own = sp.csr_matrix((np.ones(coo.nnz), (pair_rows, coo.col)), shape=(coo.nnz, n))
    is_prim = primary[coo.col]
    cut_rows.append(sp.csr_matrix(others - own.multiply(~is_prim[:, None])))
    cut_rhs.append(np.where(is_prim, 1.0, 0.0))
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("optimal_secondary: time limit reached before optimality")
        x = _master(weight, primary, cut_rows, cut_rhs, remaining)
        new_cuts = 0
        check = np.flatnonzero(x) if protect_all else prim
        for s in check.tolist():
            coef = sub.cut(s, x)
            if coef is None:
                continue
            if primary[s]:
                cut_rhs.append(np.array([float(k) - _TOL]))
            else:
                # only binding when s itself is suppressed: coef @ x >= k * x_s
                coef[s] -= float(k)
                cut_rhs.append(np.array([-_TOL]))
            cut_rows.append(sp.csr_matrix(coef[None, :]))
            new_cuts += 1
        if new_cuts == 0:
            return x


def _master(
    weight: FloatArray,
    primary: BoolArray,
    cut_rows: list[sp.csr_matrix],
    cut_rhs: list[FloatArray],
    time_limit: float,
) -> BoolArray:
    """Solve the master problem: min weight @ x, x binary, x = 1 on primaries, cuts."""
    n = weight.size
    cuts = sp.csr_matrix(sp.vstack(cut_rows))
    rhs = np.concatenate(cut_rhs)
    res = milp(
        weight,
        constraints=[LinearConstraint(cuts, rhs, np.full(rhs.size, np.inf))],
        integrality=np.ones(n),
        bounds=Bounds(primary.astype(np.float64), np.ones(n)),
        options={"time_limit": max(time_limit, 1e-3), "disp": False},
    )
    if res.status != 0 or res.x is None:
        if res.status == 1:
            raise TimeoutError("optimal_secondary: time limit reached in the master problem")
        raise RuntimeError(f"optimal_secondary master problem failed: {res.message}")
    return np.asarray(res.x > 0.5, dtype=bool)


class _Subproblem:
    """The attacker LPs for one primary cell under a candidate pattern, with their duals.

    Variables: deviations ``d`` from the true table, ``A d = 0``, ``-a_i <= d_i <= inf`` on
    suppressed cells and ``d_i = 0`` on published ones.
    """

    def __init__(self, amat: sp.csr_matrix, counts: FloatArray, k: float) -> None:
        self.n = amat.shape[1]
        self.a = counts
        self.k = k
        self.h: Any = new_highs()
        self.h.setOptionValue("presolve", "off")
        zeros = np.zeros(amat.shape[0])
        pass_lp(self.h, np.zeros(self.n), -counts, np.full(self.n, INF), amat, zeros, zeros)
        self.x: BoolArray | None = None
        self.cost_cell: int | None = None

    def _load(self, x: BoolArray) -> None:
        if self.x is not None and np.array_equal(self.x, x):
            return
        idx = np.arange(self.n, dtype=np.int32)
        lower = np.where(x, -self.a, 0.0)
        upper = np.where(x, INF, 0.0)
        self.h.changeColsBounds(self.n, idx, lower, upper)
        self.x = x.copy()

    def _solve(self, s: int, sign: float) -> tuple[float, FloatArray]:
        """Minimise ``sign * d_s``; value and per-cell cut coefficients (inf = unbounded)."""
        if self.cost_cell is not None and self.cost_cell != s:
            self.h.changeColCost(self.cost_cell, 0.0)
        self.h.changeColCost(s, sign)
        self.cost_cell = s
        run(self.h)
        status = self.h.getModelStatus()
        name = self.h.modelStatusToString(status)
        if name == "Unbounded" or name.startswith("Primal unbounded"):
            return -INF, np.zeros(0)
        if name != "Optimal":
            raise RuntimeError(f"optimal_secondary: attacker LP status {name}")
        value = float(self.h.getInfo().objective_function_value)
        dual = np.asarray(self.h.getSolution().col_dual)
        # weak duality: -value <= sum_i (max(dual,0) a_i + max(-dual,0) M) x_i, M = inf
        coef = np.where(dual > 1e-9, dual * self.a, 0.0)
        coef = np.where(dual < -1e-9, np.inf, coef)
        return value, coef

    def cut(self, s: int, x: BoolArray) -> FloatArray | None:
        """A violated inequality ``coef @ x >= k`` if ``s`` is not protected by ``x``."""
        self._load(x)
        up_val, up_coef = self._solve(s, -1.0)
        if up_val <= -INF:
            return None
        down_val, down_coef = self._solve(s, 1.0)
        width = -up_val - down_val
        if width >= self.k - _TOL:
            return None
        return np.asarray(np.minimum(up_coef + down_coef, self.k), dtype=np.float64)
