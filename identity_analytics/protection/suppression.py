"""k-anonymity cell suppression on aggregated cells (primary and secondary).

Primary suppression hides every cell with ``0 < count < k``.  Secondary suppression then hides
further cells ("complements") until, for every suppressed cell, the interval an attacker can
derive by linear programming from the published cells is at least ``k`` wide.

Method: a greedy cover of necessary conditions, driven by exact LP audits (Benders cuts);
exact with respect to the guarantee, close to the minimum loss, and with few LPs.

* Cover (compiled loops, no LP): the pattern grows one cell at a time until it meets
  conditions that every protected pattern meets.  Structural: a suppressed cell alone in one
  of its relations is determined by it.  Capacity of one relation: a suppressed cell with count ``a < k`` that
  is a child of a relation moves up only by lowering its suppressed siblings or raising the
  parent, so the siblings' counts (each capped at ``k``) plus ``k`` for a suppressed parent
  must reach ``k - a``.  And the Benders cuts found so far.  The next cell is the one that
  repairs most violated conditions per unit of loss (``1 + count / (total + 1)``) and of the
  obligations it brings (relations where it would be alone, its own capacity and cuts).
* Audit (LP): each suppressed cell not yet proven safe gets an attacker LP that maximises
  its interval: two blocks of columns (a table moved up and one moved down, deviations from
  the true counts, the audited cell capped at ``k`` both ways) over the suppressed cells,
  rows = the relations touching them.  One HiGHS model per cover is kept and only grows
  (new cells become columns, cells published again are fixed at 0, the audited cell is a
  cost and bound change), so every solve is a warm (dual simplex) re-solve.  The optimal
  tables, cut down to the cell's connected component, are kept as *witnesses*: two
  consistent tables ``k`` apart prove a cell safe for as long as every cell they move stays
  suppressed, so one LP usually proves several cells.  If the interval is too narrow, weak
  duality on the row duals gives a Benders cut ``sum_j c_j x_j >= k`` (coefficients
  strengthened to ``min(c_j, k)``; for a secondary cell the cut only binds when it is
  suppressed).  Any dual vector gives a valid cut, so the same duals also bound the other
  cells of the component: those already shown narrower than ``k`` get their cut without an
  LP of their own.  The cells suppressed from the start (the primary cells) are audited
  first; the others only once those are all safe.  Cover and audit alternate until the
  audit passes.
* Reverse deletion: once a pattern passes the audit, every secondary cell the known
  conditions allow is published again (smallest count first) and the pattern is audited
  again (``_MAX_REVERSE`` times at most).
* Local search (tables up to ``_GLOBAL_LIMIT`` cells): a few secondary cells, largest loss
  first, are published and forbidden in turn and the cover resumes from there; a cheaper
  pattern that passes the audit replaces the current one.  Then the cover restarts from the
  primary cells with every cut learnt so far, once freely and once with each of the
  ``_RESTARTS`` costliest secondary cells forbidden; the cheapest audited pattern wins.
* Pruning: secondary cells are then tentatively published, largest loss first, and stay
  published when every suppressed cell whose witnesses used them is proven safe again by
  the remaining witnesses or new LPs.  A cell the known conditions keep needs no LP.

The result is exact with respect to the guarantee: every suppressed cell ends with valid
witnesses ``k`` apart, or with all its margins suppressed (checked independently by
:func:`attacker_intervals` in the tests).
Should the rounds (``_MAX_ROUNDS``) or the LP work budget of the run (``_LP_WORK_BUDGET``) run
out before a pattern is proven, the unproven cells are suppressed with all their margins (the
upward closure), which is safe by itself: each can move up by k with all its margins; no
pruning follows. Improvement and pruning stop at the budget with the last proven pattern.

Large tables (more than ``_GLOBAL_LIMIT`` cells) are processed region by region: the cover
runs on a sub-cube around each primary cell not yet safe (whole dimensions, smallest first,
up to ``_REGION_CELLS`` cells; in the other dimensions its code, the margin and a few cheap
codes); cells outside the region count as published for the audit, which only narrows
intervals, so the witnesses stay valid.  Suppressing more cells never narrows an interval,
so earlier regions stay safe.  There is no pruning across regions.
"""
from __future__ import annotations

import contextlib
import gc
import threading
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from identity_analytics.protection._lp import INF, OPTIMAL, new_highs, pass_csc, run
from identity_analytics.protection.grid import CellGrid, additivity_matrix, cell_lookup

__all__ = ["primary_suppression", "secondary_suppression"]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOL = 1e-6
#: reduced costs below minus this are negative (the cut coefficient is then unbounded)
_DUAL_TOL = 1e-9
#: tables with at most this many cells are covered as a whole
_GLOBAL_LIMIT = 1500
#: alternative codes per dimension in a local region (large tables)
_REGION_ALTS = 2
#: regions take whole dimensions (smallest first) up to this many cells
_REGION_CELLS = 3000
#: weight of one new obligation against one unit of loss in the greedy choice
_ALPHA = 0.5
#: cover/audit rounds before falling back to the upward closure (safe)
_MAX_ROUNDS = 100
#: reverse-deletion passes (each one is audited again)
_MAX_REVERSE = 3
#: cover/audit rounds per local-search move
_IMPROVE_ROUNDS = 4
#: local-search moves tried at most
_IMPROVE_TRIALS = 2
#: restarts of the cover with one of the costliest secondary cells forbidden
_RESTARTS = 3
#: LP work of one run (columns summed over solves; a solve costs ~5 us per column). The
#: hardest realistic tables measured use ~0.4 M (a 13,230-cell 4-D table; 450-cell cohort
#: tables ~6 k). Sparse tables where most cells are below k can ask for far more; past the
#: budget no pattern is left unproven: an unsettled region falls back to the upward closure
#: of its unproven cells (safe by itself), improvement and pruning stop with the last proven
#: pattern.
_LP_WORK_BUDGET = 1_000_000


def _loops() -> Any:
    """The compiled loops of the cover (imported on first use: see ``_cover_loops``)."""
    from identity_analytics.protection import _cover_loops

    return _cover_loops


def _check_k(k: int) -> int:
    if isinstance(k, bool) or int(k) != k or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    return int(k)


def primary_suppression(counts: npt.ArrayLike, k: int) -> BoolArray:
    """Mask of the cells that must be hidden on their own: ``0 < count < k``."""
    k = _check_k(k)
    arr = np.asarray(counts)
    return np.asarray((arr > 0) & (arr < k), dtype=bool)


def secondary_suppression(grid: CellGrid, primary_mask: npt.ArrayLike, k: int) -> BoolArray:
    """Final suppression mask: ``primary_mask`` plus complements protecting every hidden cell.

    Guarantee: for every suppressed cell the attacker's LP interval is at least ``k`` wide.
    Without margins there are no relations between cells, so the primary mask is returned.
    """
    k = _check_k(k)
    primary = np.asarray(primary_mask, dtype=bool)
    if primary.shape != (grid.n_cells,):
        raise ValueError("primary_mask must have one entry per cell")
    if not primary.any():
        return primary.copy()
    amat, structure = _relations(grid)
    if amat.shape[0] == 0:
        return primary.copy()
    if np.abs(amat @ grid.counts.astype(np.float64)).max() > 0:
        raise ValueError("grid counts are not additive (margins differ from sums)")
    # A finite interval is never wider than the total count (a cell lies between 0 and any
    # published cell above it), so any k beyond it asks the same as total + 1: the LPs keep
    # numbers they can solve (k = 10**16 made HiGHS fail).
    total = int(grid.counts[~grid.is_margin].sum())
    with _cyclic_gc_paused():
        return _Engine(grid, structure, min(k, total + 1)).run(primary)


#: additive structures of recent grids (a report's tables share a few shapes): no counts
_STRUCTURES: OrderedDict[bytes, tuple[sp.csr_matrix, _Structure]] = OrderedDict()
_STRUCTURES_KEPT = 16
_structures_lock = threading.Lock()


def _relations(grid: CellGrid) -> tuple[sp.csr_matrix, _Structure]:
    """The additivity matrix of ``grid`` and its compressed arrays, kept for the last
    ``_STRUCTURES_KEPT`` cell layouts (they depend on the cells' codes, not on their counts;
    about 1.5 ms for a 450-cell cube)."""
    key = repr(grid.shape).encode() + grid.codes.tobytes()
    with _structures_lock:
        kept = _STRUCTURES.get(key)
        if kept is not None:
            _STRUCTURES.move_to_end(key)
            return kept
    amat = additivity_matrix(grid)
    kept = (amat, _Structure(amat))
    with _structures_lock:
        _STRUCTURES[key] = kept
        while len(_STRUCTURES) > _STRUCTURES_KEPT:
            _STRUCTURES.popitem(last=False)
    return kept


@contextlib.contextmanager
def _cyclic_gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector (reference counting goes on).

    The search allocates many short-lived containers (a few per numpy call) and makes no
    reference cycles; in a process holding 100 k objects (pandas, DuckDB, a notebook) the
    collections they trigger took 4-16% of a 450-cell table's time.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _segments(ptr: IntArray, which: IntArray) -> tuple[IntArray, IntArray]:
    """Flat positions of the compressed segments ``which`` (concatenated) and their lengths."""
    starts = ptr[which]
    lens = ptr[which + 1] - starts
    if which.size == 1:  # the common case in the greedy's loop, without the cumulative sums
        return np.arange(starts[0], starts[0] + lens[0], dtype=np.int64), lens
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64), lens
    offsets = np.repeat(starts - (np.cumsum(lens) - lens), lens)
    return offsets + np.arange(total, dtype=np.int64), lens


def _strides(shape: tuple[int, ...]) -> IntArray:
    """Mixed-radix strides of cell keys (radices ``shape_j + 1``; see ``cell_lookup``)."""
    radix = np.asarray(shape, dtype=np.int64) + 1
    strides = np.ones(len(shape), dtype=np.int64)
    for j in range(len(shape) - 2, -1, -1):
        strides[j] = strides[j + 1] * radix[j + 1]
    return strides


def _solver() -> Any:
    h = new_highs()
    h.setOptionValue("presolve", "off")
    return h


def _audit_solver(whole_table: bool, h: Any = None) -> Any:
    h = _solver() if h is None else h
    # Dual simplex on whole (small) tables: its warm re-solves per target take a few more
    # iterations than primal simplex, but land on vertices whose witnesses prove more cells
    # (about 40% fewer LPs). On the regions of large tables, with larger LPs, primal simplex
    # is about twice as fast.
    h.setOptionValue("simplex_strategy", 1 if whole_table else 4)
    return h


class _OutOfBudget(Exception):
    """The LP work budget of one run is spent: the pattern at hand is left unproven."""


class _Meter:
    """LP work of one run, in columns solved (the cost of a warm re-solve grows with them)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.spent = 0

    @property
    def exhausted(self) -> bool:
        return self.spent >= self.budget

    def charge(self, columns: int) -> None:
        if self.exhausted:
            raise _OutOfBudget
        self.spent += columns


class _Structure:
    """The additive relations as raw compressed arrays (row = relation, column = cell)."""

    def __init__(self, amat: sp.csr_matrix) -> None:
        csr = sp.csr_matrix(amat)
        csr.sort_indices()
        self.n_rows, self.n = (int(s) for s in csr.shape)
        self.r_ptr = csr.indptr.astype(np.int64)
        self.r_idx = csr.indices.astype(np.int64)
        self.r_val = csr.data.astype(np.float64)
        csc = sp.csc_matrix(csr)
        csc.sort_indices()
        self.c_ptr = csc.indptr.astype(np.int64)
        self.c_idx = csc.indices.astype(np.int64)
        self.c_val = csc.data.astype(np.float64)
        #: one "pair" per nonzero (relation, cell), in row order
        self.pair_row = np.repeat(np.arange(self.n_rows, dtype=np.int64), np.diff(self.r_ptr))
        self.pair_cell = self.r_idx

    def rows_of(self, cell: int) -> IntArray:
        rows: IntArray = self.c_idx[self.c_ptr[cell] : self.c_ptr[cell + 1]]
        return rows

    def components(self, cells: IntArray) -> list[IntArray]:
        """Connected components (sorted cell arrays) of ``cells`` (sorted), linked by
        relations."""
        if cells.size == 0:
            return []
        lab = _loops().component_roots(cells, self.c_ptr, self.c_idx, self.n_rows)
        order = np.argsort(lab, kind="stable")
        splits = np.flatnonzero(np.diff(lab[order])) + 1
        return [cells[part] for part in np.split(order, splits)]


def _paired_entries(
    owner: IntArray, count: IntArray, other: IntArray, value: FloatArray
) -> tuple[IntArray, IntArray, FloatArray]:
    """Sparse vectors in pairs (u_0, w_0, u_1, w_1, ...) for HiGHS: vector ``i`` of each pair
    has the entries ``owner == i`` (``count[i]`` of them), at ``2 * other`` in its u-vector
    and ``2 * other + 1`` in its w-vector.  Returns (starts, index, values)."""
    first = np.cumsum(count) - count
    rank = np.arange(owner.size) - first[owner]
    at = 2 * first[owner] + rank
    index = np.empty(2 * owner.size, dtype=np.int64)
    values = np.empty(2 * owner.size)
    index[at], values[at] = 2 * other, value
    index[at + count[owner]], values[at + count[owner]] = 2 * other + 1, value
    starts = np.zeros(2 * count.size, dtype=np.int64)
    starts[1:] = np.cumsum(np.repeat(count, 2))[:-1]
    return starts, index, values


class _Pool:
    """Witness tables: sparse deviations from the true table, each consistent with the
    published cells whenever every cell it moves is suppressed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._idx: list[IntArray] = []
        self._val: list[FloatArray] = []
        self.count = 0
        self._built = -1
        self._e_cell = np.zeros(0, dtype=np.int64)
        self._e_wid = np.zeros(0, dtype=np.int64)
        self._w_ptr = np.zeros(1, dtype=np.int64)
        self._cell_ptr = np.zeros(n + 1, dtype=np.int64)
        self._cell_wid = np.zeros(0, dtype=np.int64)
        self._cell_val = np.zeros(0)

    def add(self, idx: IntArray, val: FloatArray) -> None:
        keep = np.abs(val) > _TOL
        if keep.any():
            self._idx.append(idx[keep])
            self._val.append(val[keep])
            self.count += 1

    def _build(self) -> None:
        if self._built == self.count:
            return
        if self.count:
            lens = np.fromiter((i.size for i in self._idx), dtype=np.int64, count=self.count)
            e_cell = np.concatenate(self._idx)
            e_val = np.concatenate(self._val)
        else:
            lens = np.zeros(0, dtype=np.int64)
            e_cell = np.zeros(0, dtype=np.int64)
            e_val = np.zeros(0)
        self._w_ptr = np.concatenate([[0], np.cumsum(lens)])
        self._e_cell = e_cell
        self._e_wid = np.repeat(np.arange(self.count, dtype=np.int64), lens)
        order = np.argsort(e_cell, kind="stable")
        self._cell_ptr = np.searchsorted(e_cell[order], np.arange(self.n + 1))
        self._cell_wid = self._e_wid[order]
        self._cell_val = e_val[order]
        self._built = self.count

    def valid(self, sup: BoolArray) -> BoolArray:
        """Which witnesses move only cells of ``sup``."""
        self._build()
        bad = np.bincount(self._e_wid[~sup[self._e_cell]], minlength=self.count)
        return np.asarray(bad == 0, dtype=bool)

    def bounds(self, cells: IntArray, valid: BoolArray) -> tuple[FloatArray, FloatArray]:
        """Max and min deviation of ``cells`` over the ``valid`` witnesses."""
        self._build()
        hi = np.zeros(cells.size)
        lo = np.zeros(cells.size)
        pos, lens = _segments(self._cell_ptr, cells)
        if pos.size:
            val = np.where(valid[self._cell_wid[pos]], self._cell_val[pos], 0.0)
            some = lens > 0
            starts = (np.cumsum(lens) - lens)[some]
            hi[some] = np.maximum.reduceat(val, starts)
            lo[some] = np.minimum.reduceat(val, starts)
        return np.maximum(hi, 0.0), np.minimum(lo, 0.0)

    def touching(self, cell: int) -> IntArray:
        """Witnesses moving ``cell`` (built state)."""
        return self._cell_wid[self._cell_ptr[cell] : self._cell_ptr[cell + 1]]

    def cells_of(self, wids: IntArray) -> IntArray:
        """Cells moved by the witnesses ``wids`` (built state), without repeats."""
        pos, _ = _segments(self._w_ptr, wids)
        return np.asarray(np.unique(self._e_cell[pos]), dtype=np.int64)


class _WorldLP:
    """Attacker LPs over the suppressed cells of one cover, re-solved for each audited cell.

    Every cell suppressed at some point of the cover is a column pair (``u``: a table moved
    up, ``w``: one moved down, deviations from the true counts, ``>= -count``), every
    relation touching them a row pair (``A u = 0``, ``A w = 0``); cells published again are
    fixed at 0.  The model only grows (columns and rows are added, bounds changed), so every
    solve is a warm simplex re-solve.  Target ``l``: maximise ``u_l - w_l`` with both
    moves capped at ``k``.  Components of suppressed cells do not interact: the duals of one
    target vanish outside its component, and its witnesses are cut down to the component.
    """

    def __init__(self, st: _Structure, counts: FloatArray, k: int, h: Any, meter: _Meter) -> None:
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
            pos, lens = _segments(st.c_ptr, new)
            rel = st.c_idx[pos]
            new_rels = np.unique(rel[self.row_of[rel] < 0])
            if new_rels.size:
                # row pairs of the new relations, with the entries of the existing columns
                rpos, rlens = _segments(st.r_ptr, new_rels)
                have = self.col_of[st.r_idx[rpos]] >= 0
                owner = np.repeat(np.arange(new_rels.size, dtype=np.int64), rlens)[have]
                col = self.col_of[st.r_idx[rpos][have]]
                val = st.r_val[rpos][have]
                cnt = np.bincount(owner, minlength=new_rels.size)
                # rows u_0, w_0, u_1, w_1, ...: entries of u-row i on u-columns, then w-row i
                starts, index, values = _paired_entries(owner, cnt, col, val)
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
            starts, index, values = _paired_entries(owner, lens, local_rel, vals)
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
            pos, lens = _segments(st.r_ptr, self.rels)
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
                rho0 < -_DUAL_TOL, np.inf, np.maximum(rho0, 0.0) * self.counts[touched]
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
        return np.asarray((others_inf == 0) & (bound < self.k - _TOL), dtype=bool)


class _Cover:
    """Greedy covering of the known necessary conditions, restricted to one region.

    Conditions on the suppression pattern ``cur`` (region-local), all met by every protected
    pattern: no suppressed cell alone in a relation; the capacity of one relation for every
    suppressed child with count below k; the Benders cuts found by the audit (rows with the
    entry ``t - k`` on their cell ``l``, active while ``l`` is suppressed).
    """

    def __init__(self, eng: _Engine, region: IntArray, sup: BoolArray) -> None:
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
        nb_pos, nb_lens = _segments(self.row_ptr, self.p_row[self.by_cell])
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
        lc_viol = cur[self.lc_cell] & (lc_lhs < -_TOL)
        n = self.n_cuts
        lhs = self.cuts[:n] @ cur.astype(np.float64) if n else np.zeros(0)
        viol = cur[self.trig[:n]] & (lhs < -_TOL)
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
        _loops().greedy_loop(
            self.cur, self.cur | self.forbid, self.weight,
            self.p_cell, self.p_row, self.p_cap, self.row_ptr, self.by_cell, self.cell_ptr,
            self.nb_ptr, self.nb_row, self.nb_cell,
            self.lc_row, self.lc_cell, self.lc_own, self.lc_cap,
            self.cuts[:n], self.pos_cuts[:n], self.trig[:n],
            cnt, rowcap, lc_lhs, np.asarray(lhs, dtype=np.float64), alone, empty,
            self.k, _ALPHA, _TOL,
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
            _loops().reverse_loop(
                cand, self.cur, self.p_row, self.p_cap, self.by_cell, self.cell_ptr,
                self.lc_ptr, self.lc_cell, self.cuts[:n], self.trig[:n],
                cnt, lc_lhs, np.asarray(lhs, dtype=np.float64), _TOL,
            )
        )


class _Engine:
    """State of one secondary-suppression run: relations, witness pool, LP solvers."""

    def __init__(self, grid: CellGrid, structure: _Structure, k: int) -> None:
        self.grid = grid
        self.k = k
        self.n = grid.n_cells
        self.st = structure
        self.counts = grid.counts.astype(np.float64)
        total_cells = np.flatnonzero((grid.codes < 0).all(axis=1))
        total = (
            float(self.counts[total_cells[0]])
            if total_cells.size
            else float(self.counts[~grid.is_margin].sum())
        )
        self.weight = 1.0 + self.counts / (total + 1.0)
        self.pool = _Pool(self.n)
        self._lookup: IntArray | None = None
        self._free: list[Any] = []  # HiGHS instances to reuse (passModel replaces the model)
        self.meter = _Meter(_LP_WORK_BUDGET)
        #: a cover fell back to the upward closure (its cells have no witnesses: no pruning)
        self.fell_back = False
        self._cover: _Cover | None = None  # conditions known after the last cover
        self._world: _WorldLP | None = None  # its attacker LPs

    def _new_lp(self, whole_table: bool) -> _WorldLP:
        h = _audit_solver(whole_table, self._free.pop() if self._free else None)
        return _WorldLP(self.st, self.counts, self.k, h, self.meter)

    # -- audit ---------------------------------------------------------------------------

    def audit(
        self, world: BoolArray, targets: IntArray, pool: _Pool, lp: _WorldLP,
        first: BoolArray | None = None,
    ) -> list[tuple[int, IntArray, FloatArray, float]]:
        """Prove ``targets`` (suppressed cells of ``world``) safe in ``world``; returns the
        cuts ``(cell, cells, coefficients, own term)`` of the unprotected ones.  With
        ``first``, the other targets are only audited once those are all safe."""
        k = self.k
        cuts: list[tuple[int, IntArray, FloatArray, float]] = []
        if targets.size == 0:
            return cuts
        valid = pool.valid(world)
        hi_t, lo_t = pool.bounds(targets, valid)
        todo = targets[hi_t - lo_t < k - _TOL]
        if todo.size == 0:
            return cuts
        if first is not None:
            todo = todo[np.lexsort((self.counts[todo], ~first[todo]))]
        else:
            todo = todo[np.argsort(self.counts[todo], kind="stable")]
        hi = np.zeros(self.n)
        lo = np.zeros(self.n)
        hi[targets], lo[targets] = hi_t, lo_t
        lp.sync(world)
        comps = self.st.components(np.flatnonzero(world))
        label = np.full(self.n, -1, dtype=np.int64)
        for i, comp in enumerate(comps):
            label[comp] = i
        handled = np.zeros(self.n, dtype=bool)
        for cell in todo.tolist():
            if hi[cell] - lo[cell] >= k - _TOL or handled[cell]:
                continue
            if first is not None and cuts and not first[cell]:
                break  # the later cells are audited once the first ones are safe
            lab = int(label[cell])
            comp = comps[lab]
            u, w, width = lp.solve(cell, comp)
            pool.add(comp, u)
            pool.add(comp, w)
            hi[comp] = np.maximum(hi[comp], np.maximum(u, w))
            lo[comp] = np.minimum(lo[comp], np.minimum(u, w))
            if width >= k - _TOL:
                continue
            cuts.append((cell, *lp.cut(cell)))
            handled[cell] = True
            # the same duals bound the other cells: cuts without their own LP
            rest = todo[(label[todo] == lab) & ~handled[todo]]
            rest = rest[hi[rest] - lo[rest] < k - _TOL]
            if rest.size:
                for other in rest[lp.narrow(rest, world)].tolist():
                    cuts.append((other, *lp.cut(other)))
                    handled[other] = True
        return cuts

    # -- cover ---------------------------------------------------------------------------

    def cover(self, region: IntArray, sup: BoolArray, targets: BoolArray,
              pool: _Pool, improve: bool) -> BoolArray:
        """Extend ``sup`` inside ``region`` until every suppressed region cell in ``targets``
        (and every new one) is safe; cells outside the region count as published."""
        cov = _Cover(self, region, sup)
        lp = self._new_lp(region.size == self.n)
        check_mask = targets[region] | ~sup[region]
        if not self._settle(cov, lp, region, check_mask, pool, _MAX_ROUNDS, None):
            # safe without an LP: each unproven cell moves up by k with all its margins
            self.fell_back = True
            out = sup.copy()
            out[self.upward_closure(region[cov.fixed & check_mask])] = True
            return out
        if improve:
            self._improve(cov, lp, region, check_mask, pool)
        self._cover = cov
        if self._world is not None:
            self._free.append(self._world.h)
        self._world = lp
        world = np.zeros(self.n, dtype=bool)
        world[region[cov.cur]] = True
        return sup | world

    def _settle(self, cov: _Cover, lp: _WorldLP, region: IntArray, check_mask: BoolArray,
                pool: _Pool, rounds: int, bound: float | None) -> bool:
        """Alternate greedy cover and audit (with reverse deletions) until the pattern
        passes the audit (True), or ``rounds`` or the LP work budget run out or its loss
        reaches ``bound``."""
        try:
            return self._settle_rounds(cov, lp, region, check_mask, pool, rounds, bound)
        except _OutOfBudget:
            return False

    def _settle_rounds(self, cov: _Cover, lp: _WorldLP, region: IntArray, check_mask: BoolArray,
                       pool: _Pool, rounds: int, bound: float | None) -> bool:
        reverses = 0
        reversed_at: BoolArray | None = None
        for _ in range(rounds):
            cov.greedy()
            if bound is not None:
                cov.reverse()
            if bound is not None and cov.loss() >= bound - _TOL:
                return False
            world = np.zeros(self.n, dtype=bool)
            world[region[cov.cur]] = True
            first = np.zeros(self.n, dtype=bool)
            first[region[cov.fixed]] = True
            cuts = self.audit(world, region[cov.cur & check_mask], pool, lp, first)
            if cuts:
                for cell, cells, coef, term in cuts:
                    cov.add_cut(int(cov.pos[cell]), cells, coef, term)
                continue
            done = reverses >= _MAX_REVERSE or (
                reversed_at is not None and np.array_equal(reversed_at, cov.cur)
            )
            if done or not cov.reverse():
                return True
            reverses += 1
            reversed_at = cov.cur.copy()
        return False

    def _improve(self, cov: _Cover, lp: _WorldLP, region: IntArray, check_mask: BoolArray,
                 pool: _Pool) -> None:
        """Local search: publish one secondary cell, forbid it, cover again from there;
        keep the result if it is cheaper and passes the audit."""
        best = cov.cur.copy()
        best_loss = cov.loss()
        tried = np.zeros(cov.m, dtype=bool)
        for _ in range(_IMPROVE_TRIALS):
            cand = np.flatnonzero(best & ~cov.fixed & ~tried)
            if cand.size == 0 or self.meter.exhausted:
                break
            j = int(cand[np.argmax(cov.weight[cand])])
            tried[j] = True
            cov.cur = best.copy()
            cov.cur[j] = False
            cov.forbid[j] = True
            settled = self._settle(cov, lp, region, check_mask, pool, _IMPROVE_ROUNDS,
                                   best_loss)
            if settled and cov.loss() < best_loss - _TOL:
                best = cov.cur.copy()
                best_loss = cov.loss()
                tried[:] = False
            cov.forbid[j] = False
        # restarts: the cover again from the primary cells with every cut learnt so far,
        # once freely and once with each of the costliest secondary cells forbidden
        cand = np.flatnonzero(best & ~cov.fixed)
        forbidden = [-1, *cand[np.argsort(-cov.weight[cand], kind="stable")][:_RESTARTS].tolist()]
        for j in forbidden:
            if self.meter.exhausted:
                break
            cov.cur = cov.fixed.copy()
            if j >= 0:
                cov.forbid[j] = True
            settled = self._settle(cov, lp, region, check_mask, pool, 2 * _IMPROVE_ROUNDS,
                                   best_loss)
            if settled and cov.loss() < best_loss - _TOL:
                best = cov.cur.copy()
                best_loss = cov.loss()
            if j >= 0:
                cov.forbid[j] = False
        cov.cur = best

    def upward_closure(self, cells: IntArray) -> IntArray:
        """``cells`` with all their margins (every cell that aggregates away some of their
        dimensions). Suppressed together, they need no LP: each can move up by k, and all
        its margins with it, consistently with every relation."""
        grid = self.grid
        if self._lookup is None:
            self._lookup = cell_lookup(grid)
        codes = grid.codes[cells].astype(np.int64)
        strides = _strides(grid.shape)
        found = []
        for subset in range(1 << grid.n_dims):
            away = np.array([subset >> j & 1 for j in range(grid.n_dims)], dtype=bool)
            found.append(self._lookup[(np.where(away, -1, codes) + 1) @ strides])
        closure = np.concatenate(found)
        return np.asarray(np.unique(closure[closure >= 0]), dtype=np.int64)

    # -- regions (large tables) ----------------------------------------------------------

    def region(self, cell: int, sup: BoolArray) -> IntArray:
        """Sub-cube around ``cell``: whole dimensions, smallest first, while the sub-cube
        stays within ``_REGION_CELLS`` cells; in the others its code, the margin and a few
        cheap codes (already suppressed first, then counts of at least k)."""
        grid = self.grid
        if self._lookup is None:
            self._lookup = cell_lookup(grid)
        lookup = self._lookup
        radix = np.asarray(grid.shape, dtype=np.int64) + 1
        strides = _strides(grid.shape)
        codes_per_dim = np.minimum(radix, _REGION_ALTS + 2)
        for j in np.argsort(radix, kind="stable").tolist():
            wider = codes_per_dim.copy()
            wider[j] = radix[j]
            if int(np.prod(wider)) <= _REGION_CELLS:
                codes_per_dim = wider
        base = grid.codes[cell].astype(np.int64)
        key = int((base + 1) @ strides)
        per_dim: list[IntArray] = []
        for j, size in enumerate(grid.shape):
            alts = np.arange(-1, size, dtype=np.int64)
            if codes_per_dim[j] >= size + 1:
                per_dim.append(alts)
                continue
            alts = alts[(alts != base[j]) & (alts >= 0)]
            nb = lookup[key + (alts - base[j]) * strides[j]]
            ok = nb >= 0
            alts, nb = alts[ok], nb[ok]
            score = np.where(sup[nb], 0.0, np.where(self.counts[nb] >= self.k, 1.0, 2.0))
            score = score + self.weight[nb] * 1e-3
            best = alts[np.argsort(score, kind="stable")[:_REGION_ALTS]]
            per_dim.append(np.unique(np.concatenate([[base[j], -1], best])))
        grids = np.meshgrid(*per_dim, indexing="ij")
        keys = (np.stack([g.reshape(-1) for g in grids], axis=1) + 1) @ strides
        cells = lookup[keys]
        return np.asarray(np.sort(cells[cells >= 0]), dtype=np.int64)

    # -- pruning -------------------------------------------------------------------------

    def prune(self, sup: BoolArray, primary: BoolArray) -> None:
        """Publish secondary cells again (largest loss first) while every suppressed cell
        stays proven (by its remaining witnesses or new LPs)."""
        k = self.k
        st = self.st
        pool = self.pool
        cand = np.flatnonzero(sup & ~primary)
        cand = cand[np.argsort(-self.weight[cand], kind="stable")]
        per_row = np.bincount(st.pair_row[sup[st.pair_cell]], minlength=st.n_rows)
        lp = self._world
        # the conditions the cover learnt are necessary: no LP for a cell they keep
        cov = self._cover if lp is not None else None
        valid = pool.valid(sup)
        label = np.full(self.n, -1, dtype=np.int64)
        comps = st.components(np.flatnonzero(sup)) if lp is not None else []
        for i, comp in enumerate(comps):
            label[comp] = i
        for j in cand.tolist():
            # publishing j would leave another cell alone (determined) in one of j's relations
            if (per_row[st.rows_of(j)] < 3).any():
                continue
            if cov is not None and not cov.can_drop(j):
                continue
            pool._build()
            if valid.size < pool.count:
                valid = np.concatenate([valid, np.ones(pool.count - valid.size, dtype=bool)])
            broken = pool.touching(j)
            broken = broken[valid[broken]]
            sup[j] = False
            affected = pool.cells_of(broken)
            affected = affected[sup[affected]]
            valid_j = valid.copy()
            valid_j[broken] = False
            hi, lo = pool.bounds(affected, valid_j)
            short = affected[hi - lo < k - _TOL]
            ok = short.size == 0
            if not ok and lp is not None and not self.meter.exhausted:
                ok = True
                lp.sync(sup)
                for cell in short.tolist():
                    # the component of the cell before j was published: a union of components
                    comp = comps[int(label[cell])]
                    try:
                        u, w, width = lp.solve(cell, comp)
                    except _OutOfBudget:
                        ok = False
                        break
                    pool.add(comp, u)
                    pool.add(comp, w)
                    if width < k - _TOL:
                        ok = False
                        break
            if ok:
                valid = valid_j
                per_row[st.rows_of(j)] -= 1
                if cov is not None:
                    cov.cur[j] = False
            else:
                sup[j] = True

    # -- driver --------------------------------------------------------------------------

    def run(self, primary: BoolArray) -> BoolArray:
        if self.n <= _GLOBAL_LIMIT:
            everything = np.ones(self.n, dtype=bool)
            sup = self.cover(np.arange(self.n, dtype=np.int64), primary.copy(), everything,
                             self.pool, True)
            if not self.fell_back:
                self.prune(sup, primary)
            return sup
        # large tables: one region around each cell not yet safe (no pruning: without LPs
        # over the whole table, the witnesses of other regions rarely allow any)
        sup = primary.copy()
        safe = np.zeros(self.n, dtype=bool)
        order = np.flatnonzero(primary)
        order = order[np.argsort(self.counts[order], kind="stable")]
        for cell in order.tolist():
            if safe[cell]:
                continue
            region = self.region(cell, sup)
            new = self.cover(region, sup, ~safe, _Pool(self.n), False)
            safe[region] |= new[region]
            sup = new
        return sup
