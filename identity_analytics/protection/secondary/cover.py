"""The greedy cover of necessary conditions (structural, capacity, Benders cuts), its reverse
deletion, and the compiled loops that run it."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from identity_analytics.protection.secondary.structure import loops, segment_positions
from identity_analytics.protection.secondary.tuning import ALPHA, TOL

if TYPE_CHECKING:
    from identity_analytics.protection.secondary.driver import Engine

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class Cover:
    """Greedy covering of the known necessary conditions, restricted to one region.

    Conditions on the suppression pattern ``cur`` (region-local), all met by every protected
    pattern: no suppressed cell alone in a relation; the capacity of one relation for every
    suppressed child with count below k; the Benders cuts found by the audit (rows with the
    entry ``t - k`` on their cell ``l``, active while ``l`` is suppressed).
    """

    def __init__(self, eng: Engine, region: IntArray, sup: BoolArray) -> None:
        st = eng.st
        k = float(eng.k)
        self.k = k
        m = region.size
        self.m = m
        self.pos = np.full(st.n, -1, dtype=np.int64)
        self.pos[region] = np.arange(m)
        self.fixed = sup[region].copy()
        self.cur = self.fixed.copy()
        self.weight = eng.weight[region]
        self.counts = eng.counts[region]
        # relations restricted to the region, local ids; pairs stay sorted by relation
        if m == st.n:
            pairs = np.arange(st.pair_row.size, dtype=np.int64)
            self.p_row = st.pair_row
            self.n_rows = st.n_rows
        else:
            pairs = np.flatnonzero(self.pos[st.pair_cell] >= 0)
            rows, prow = np.unique(st.pair_row[pairs], return_inverse=True)
            self.p_row = prow.astype(np.int64)
            self.n_rows = rows.size
        self.p_cell = self.pos[st.pair_cell[pairs]]
        parent = st.r_val[pairs] > 0
        self.p_cap = np.where(parent, k, np.minimum(self.counts[self.p_cell], k))
        self.row_ptr = np.searchsorted(self.p_row, np.arange(self.n_rows + 1))
        # capacity conditions: one per child pair of a cell with count below k
        self.lc = np.flatnonzero(~parent & (self.counts[self.p_cell] < k))
        self.lc_cell = self.p_cell[self.lc]
        self.lc_row = self.p_row[self.lc]
        # left-hand side = capacity of the relation's suppressed cells + this constant
        self.lc_own = np.minimum(self.counts[self.lc_cell], k) - k - self.p_cap[self.lc]
        self.lc_cap = self.p_cap[self.lc]  # the cell's own share, once it is added
        # pairs by cell, capacity conditions by relation (incremental checks)
        self.by_cell = np.argsort(self.p_cell, kind="stable")
        self.cell_ptr = np.searchsorted(self.p_cell[self.by_cell], np.arange(m + 1))
        self.lc_ptr = np.searchsorted(self.lc_row, np.arange(self.n_rows + 1))
        # per cell, the other cells of its relations, with the relation (to update per-cell
        # counts when it is added; two cells share at most one relation, so no cell repeats)
        owner = self.p_cell[self.by_cell]
        nb_pos, nb_lens = segment_positions(self.row_ptr, self.p_row[self.by_cell])
        nb_owner = np.repeat(owner, nb_lens)
        other = self.p_cell[nb_pos] != nb_owner
        self.nb_ptr = np.searchsorted(nb_owner[other], np.arange(m + 1))
        self.nb_row = self.p_row[nb_pos][other]
        self.nb_cell = self.p_cell[nb_pos][other]
        self.cuts = np.zeros((16, m))
        self.pos_cuts = np.zeros((16, m))  # positive part (the trigger's entry is negative)
        self.trig = np.zeros(16, dtype=np.int64)
        self.n_cuts = 0
        #: cells the greedy may not add (local search); never an empty cell: an attacker who
        #: knows which groups are empty (as the release audit assumes) learns nothing from
        #: its suppression, so it protects nothing
        self.forbid = self.counts == 0

    def add_cut(self, trigger: int, cells: IntArray, coef: FloatArray, term: float) -> None:
        if self.n_cuts == self.cuts.shape[0]:
            self.cuts = np.concatenate([self.cuts, np.zeros_like(self.cuts)])
            self.pos_cuts = np.concatenate([self.pos_cuts, np.zeros_like(self.pos_cuts)])
            self.trig = np.concatenate([self.trig, np.zeros_like(self.trig)])
        row = self.cuts[self.n_cuts]
        loc = self.pos[cells]
        keep = loc >= 0  # cells outside the region stay published
        row[loc[keep]] = np.minimum(coef[keep], self.k)
        row[trigger] = 0.0
        self.pos_cuts[self.n_cuts] = row
        row[trigger] = min(term, self.k) - self.k
        self.trig[self.n_cuts] = trigger
        self.n_cuts += 1

    def _state(
        self, cur: BoolArray
    ) -> tuple[IntArray, FloatArray, FloatArray, BoolArray, FloatArray, BoolArray]:
        """Per relation: suppressed cells and their capacity; capacity conditions: left-hand
        side and violation; cuts: left-hand side and violation."""
        inp = cur[self.p_cell]
        cnt = np.asarray(np.bincount(self.p_row[inp], minlength=self.n_rows), dtype=np.int64)
        rowcap = np.asarray(
            np.bincount(self.p_row, weights=self.p_cap * inp, minlength=self.n_rows),
            dtype=np.float64,
        )
        lc_lhs = rowcap[self.lc_row] + self.lc_own
        lc_viol = cur[self.lc_cell] & (lc_lhs < -TOL)
        n = self.n_cuts
        lhs = self.cuts[:n] @ cur.astype(np.float64) if n else np.zeros(0)
        viol = cur[self.trig[:n]] & (lhs < -TOL)
        return cnt, rowcap, lc_lhs, lc_viol, lhs, viol

    def _ok(self, cur: BoolArray) -> bool:
        cnt, _, _, lc_viol, _, viol = self._state(cur)
        return not ((cnt == 1).any() or lc_viol.any() or viol.any())

    def can_drop(self, cell: int) -> bool:
        """Whether the known (necessary) conditions allow publishing ``cell`` again."""
        cur = self.cur.copy()
        cur[cell] = False
        return self._ok(cur)

    def greedy(self) -> None:
        """Add cells until every known condition holds: at each step the cell that repairs
        most violated conditions per unit of loss and of the obligations it brings (see the
        module docstring), in compiled code."""
        n = self.n_cuts
        cnt, rowcap, lc_lhs, _, lhs, _ = self._state(self.cur)
        # per cell: its relations holding one suppressed cell (repaired by adding it) and none
        # (where it would be alone); the loop keeps them up to date as cells are added
        alone = np.bincount(self.p_cell, weights=cnt[self.p_row] == 1, minlength=self.m)
        empty = np.bincount(self.p_cell, weights=cnt[self.p_row] == 0, minlength=self.m)
        loops().greedy_loop(
            self.cur, self.cur | self.forbid, self.weight,
            self.p_cell, self.p_row, self.p_cap, self.row_ptr, self.by_cell, self.cell_ptr,
            self.nb_ptr, self.nb_row, self.nb_cell,
            self.lc_row, self.lc_cell, self.lc_own, self.lc_cap,
            self.cuts[:n], self.pos_cuts[:n], self.trig[:n],
            cnt, rowcap, lc_lhs, np.asarray(lhs, dtype=np.float64), alone, empty,
            self.k, ALPHA, TOL,
        )

    def loss(self) -> float:
        return float(self.weight[self.cur & ~self.fixed].sum())

    def reverse(self, only: BoolArray | None = None) -> bool:
        """Publish again (smallest count first) every cell (of ``only``) the known
        conditions allow."""
        n = self.n_cuts
        cnt, _, lc_lhs, _, lhs, _ = self._state(self.cur)
        sel = self.cur & ~self.fixed if only is None else self.cur & ~self.fixed & only
        cand = np.flatnonzero(sel)
        cand = cand[np.argsort(self.counts[cand], kind="stable")]
        return bool(
            loops().reverse_loop(
                cand, self.cur, self.p_row, self.p_cap, self.by_cell, self.cell_ptr,
                self.lc_ptr, self.lc_cell, self.cuts[:n], self.trig[:n],
                cnt, lc_lhs, np.asarray(lhs, dtype=np.float64), TOL,
            )
        )

