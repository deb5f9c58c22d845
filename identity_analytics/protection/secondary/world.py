"""The attacker's LP world of one cover: one warm HiGHS model over the suppressed cells, its
work meter, and the Benders cuts its duals give."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from identity_analytics.protection._lp import INF, OPTIMAL, new_highs, pass_csc, run
from identity_analytics.protection.secondary.structure import Structure, paired_entries, segment_positions
from identity_analytics.protection.secondary.tuning import DUAL_TOL, TOL

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def solver() -> Any:
    h = new_highs()
    h.setOptionValue("presolve", "off")
    return h


def audit_solver(whole_table: bool, h: Any = None) -> Any:
    h = solver() if h is None else h
    # Dual simplex on whole (small) tables: its warm re-solves per target take a few more
    # iterations than primal simplex, but land on vertices whose witnesses prove more cells
    # (about 40% fewer LPs). On the regions of large tables, with larger LPs, primal simplex
    # is about twice as fast.
    h.setOptionValue("simplex_strategy", 1 if whole_table else 4)
    return h


class OutOfBudget(Exception):
    """The LP work budget of one run is spent: the pattern at hand is left unproven."""


class Meter:
    """LP work of one run, in columns solved (the cost of a warm re-solve grows with them)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.spent = 0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def charge(self, columns: int) -> None:
        if self.exhausted:
            raise OutOfBudget
        self.spent += columns


class WorldLP:
    """Attacker LPs over the suppressed cells of one cover, re-solved for each audited cell.

    Every cell suppressed at some point of the cover is a column pair (``u``: a table moved
    up, ``w``: one moved down, deviations from the true counts, ``>= -count``), every
    relation touching them a row pair (``A u = 0``, ``A w = 0``); cells published again are
    fixed at 0.  The model only grows (columns and rows are added, bounds changed), so every
    solve is a warm simplex re-solve.  Target ``l``: maximise ``u_l - w_l`` with both
    moves capped at ``k``.  Components of suppressed cells do not interact: the duals of one
    target vanish outside its component, and its witnesses are cut down to the component.
    """

    def __init__(self, st: Structure, counts: FloatArray, k: int, h: Any, meter: Meter) -> None:
        self.st = st
        self.counts = counts
        self.k = float(k)
        self.h = h
        self.meter = meter
        pass_csc(h, np.zeros(0), np.zeros(0), np.zeros(0),
                 (np.zeros(1, dtype=np.int64), np.zeros(0, dtype=np.int64), np.zeros(0), 0),
                 np.zeros(0), np.zeros(0))
        self.col_of = np.full(st.n, -1, dtype=np.int64)  # cell -> local cell (cols 2c, 2c+1)
        self.row_of = np.full(st.n_rows, -1, dtype=np.int64)  # relation -> local (2r, 2r+1)
        self.cells = np.zeros(0, dtype=np.int64)
        self.rels = np.zeros(0, dtype=np.int64)
        self.free = np.zeros(0, dtype=bool)
        self._target = -1
        self._duals = np.zeros(0)
        self._cache: tuple[IntArray, FloatArray, FloatArray] | None = None
        self._mem: tuple[int, IntArray, IntArray, IntArray, FloatArray] | None = None

    def sync(self, world: BoolArray) -> None:
        """Make the suppressed cells of ``world`` free columns, the others fixed at 0."""
        st = self.st
        h = self.h
        self._release()
        cells = np.flatnonzero(world)
        new = cells[self.col_of[cells] < 0]
        if new.size:
            pos, lens = segment_positions(st.c_ptr, new)
            rel = st.c_idx[pos]
            new_rels = np.unique(rel[self.row_of[rel] < 0])
            if new_rels.size:
                # row pairs of the new relations, with the entries of the existing columns
                rpos, rlens = segment_positions(st.r_ptr, new_rels)
                have = self.col_of[st.r_idx[rpos]] >= 0
                owner = np.repeat(np.arange(new_rels.size, dtype=np.int64), rlens)[have]
                col = self.col_of[st.r_idx[rpos][have]]
                val = st.r_val[rpos][have]
                cnt = np.bincount(owner, minlength=new_rels.size)
                # rows u_0, w_0, u_1, w_1, ...: entries of u-row i on u-columns, then w-row i
                starts, index, values = paired_entries(owner, cnt, col, val)
                h.addRows(
                    2 * new_rels.size, np.zeros(2 * new_rels.size), np.zeros(2 * new_rels.size),
                    index.size, starts.astype(np.int32), index.astype(np.int32), values,
                )
                self.row_of[new_rels] = self.rels.size + np.arange(new_rels.size)
                self.rels = np.concatenate([self.rels, new_rels])
            # column pairs of the new cells: entries in the row pairs of their relations
            local_rel = self.row_of[rel]
            vals = st.c_val[pos]
            owner = np.repeat(np.arange(new.size, dtype=np.int64), lens)
            starts, index, values = paired_entries(owner, lens, local_rel, vals)
            low = np.repeat(-self.counts[new], 2)
            h.addCols(
                2 * new.size, np.zeros(2 * new.size), low, np.full(2 * new.size, INF),
                index.size, starts.astype(np.int32), index.astype(np.int32), values,
            )
            self.col_of[new] = self.cells.size + np.arange(new.size)
            self.cells = np.concatenate([self.cells, new])
            self.free = np.concatenate([self.free, np.ones(new.size, dtype=bool)])
        now = world[self.cells]
        change = np.flatnonzero(now != self.free)
        if change.size:
            cols = np.empty(2 * change.size, dtype=np.int32)
            cols[0::2], cols[1::2] = 2 * change, 2 * change + 1
            low = np.repeat(np.where(now[change], -self.counts[self.cells[change]], 0.0), 2)
            up = np.repeat(np.where(now[change], INF, 0.0), 2)
            h.changeColsBounds(cols.size, cols, low, up)
            self.free = now

    def _release(self) -> None:
        """Give the last target back its plain cost and bounds."""
        c = self._target
        if c >= 0:
            both = np.array([2 * c, 2 * c + 1], dtype=np.int32)
            a = -float(self.counts[self.cells[c]]) if self.free[c] else 0.0
            up = INF if self.free[c] else 0.0
            self.h.changeColsCost(2, both, np.zeros(2))
            self.h.changeColsBounds(2, both, np.full(2, a), np.full(2, up))
            self._target = -1

    def solve(self, cell: int, comp: IntArray) -> tuple[FloatArray, FloatArray, float]:
        """Witness tables ``u``, ``w`` over ``comp`` (the cell's component) and the width
        they prove for ``cell``."""
        h = self.h
        self.meter.charge(2 * self.cells.size)
        c = int(self.col_of[cell])
        if c != self._target:
            self._release()
            cap = min(float(self.counts[cell]), self.k)
            both = np.array([2 * c, 2 * c + 1], dtype=np.int32)
            h.changeColsCost(2, both, np.array([-1.0, 1.0]))
            h.changeColsBounds(2, both, np.full(2, -cap), np.full(2, self.k))
            self._target = c
        run(h)
        if h.getModelStatus() != OPTIMAL:
            status = h.modelStatusToString(h.getModelStatus())
            raise RuntimeError(f"secondary_suppression: audit LP status {status}")
        sol = h.getSolution()
        x = np.asarray(sol.col_value)
        self._duals = np.asarray(sol.row_dual)
        self._cache = None
        cols = 2 * self.col_of[comp]
        u, w = x[cols], x[cols + 1]
        return u, w, float(x[2 * c] - x[2 * c + 1])

    def _members(self) -> tuple[IntArray, IntArray, IntArray, FloatArray]:
        """Cells of the model's relations (published ones included), and per entry of the
        relations: row pair, local cell, coefficient (rebuilt when relations are added)."""
        if self._mem is None or self._mem[0] != self.rels.size:
            st = self.st
            pos, lens = segment_positions(st.r_ptr, self.rels)
            touched, local = np.unique(st.r_idx[pos], return_inverse=True)
            row = np.repeat(np.arange(self.rels.size, dtype=np.int64), lens)
            self._mem = (self.rels.size, touched, row, local, st.r_val[pos])
        _, touched, row, local, coef = self._mem
        return touched, row, local, coef

    def _terms(self) -> tuple[IntArray, FloatArray, FloatArray]:
        """From the row duals ``y`` of the last solve, over the cells of the model's
        relations: the cells, each one's bound term (sum over both blocks, ``inf`` if
        unbounded) and each one's reduced costs ``rho0 = -(A^T y)`` per block."""
        if self._cache is None:
            touched, row, local, coef = self._members()
            y = self._duals
            rho0 = np.empty((2, touched.size))
            for blk in (0, 1):
                rho0[blk] = -np.bincount(
                    local, weights=coef * y[2 * row + blk], minlength=touched.size
                )
            term = np.where(
                rho0 < -DUAL_TOL, np.inf, np.maximum(rho0, 0.0) * self.counts[touched]
            ).sum(axis=0)
            self._cache = (touched, term, rho0)
        return self._cache

    def _target_terms(self, cells: IntArray) -> tuple[FloatArray, FloatArray]:
        """Bound terms of ``cells`` as an ordinary cell and as the audited cell (box
        ``[-min(a, k), k]``)."""
        touched, term, rho0 = self._terms()
        own = np.zeros(cells.size)
        rho = np.zeros((2, cells.size))
        if touched.size:
            at = np.minimum(np.searchsorted(touched, cells), touched.size - 1)
            hit = touched[at] == cells
            own[hit] = term[at[hit]]
            rho[:, hit] = rho0[:, at[hit]]
        cap = np.minimum(self.counts[cells], self.k)
        target = np.zeros(cells.size)
        for blk, c_target in ((0, -1.0), (1, 1.0)):
            r = rho[blk] + c_target
            target += np.maximum(np.maximum(-r * self.k, r * cap), 0.0)
        return own, target

    def cut(self, cell: int) -> tuple[IntArray, FloatArray, float]:
        """Cells, coefficients ``c`` and the audited cell's own term ``t`` of the valid
        inequality ``sum_{j != cell} min(c_j, k) x_j >= (k - t) x_cell``, from the duals of
        the last solve (of any cell of the same component).

        Weak duality with the row duals ``y`` of one block: the reduced cost of a cell is
        ``rho_j = c_j - (A^T y)_j``; a cell ``j`` with box ``[-a_j, inf)`` adds ``rho_j a_j``
        to the bound on the cell's move if ``rho_j >= 0`` and is unbounded otherwise; a
        published cell adds nothing.  Any ``y`` gives a valid inequality, so the duals of
        one cell's LP also bound the other cells.
        """
        touched, term, rho0 = self._terms()
        i = int(np.searchsorted(touched, cell))
        coef = term.copy()
        r_up = r_down = 0.0
        if i < touched.size and touched[i] == cell:
            coef[i] = 0.0
            r_up, r_down = float(rho0[0, i]), float(rho0[1, i])
        cap = min(float(self.counts[cell]), self.k)
        r_up -= 1.0  # the audited cell's costs: -1 (up block), +1 (down block)
        r_down += 1.0
        target = max(-r_up * self.k, r_up * cap, 0.0) + max(-r_down * self.k, r_down * cap, 0.0)
        return touched, coef, target

    def narrow(self, cells: IntArray, world: BoolArray) -> BoolArray:
        """Which of ``cells`` (suppressed cells of the last solve's component) the duals of
        the last solve already prove narrower than k (their cut is then :meth:`cut`)."""
        touched, term, _ = self._terms()
        sup_terms = term[world[touched]]
        inf = ~np.isfinite(sup_terms)
        finite_sum = float(sup_terms[~inf].sum())
        own, target = self._target_terms(cells)
        own_inf = ~np.isfinite(own)
        others_inf = int(inf.sum()) - own_inf.astype(np.int64)
        bound = finite_sum - np.where(own_inf, 0.0, own) + target
        return np.asarray((others_inf == 0) & (bound < self.k - TOL), dtype=bool)

