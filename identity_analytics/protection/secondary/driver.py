"""The driver of secondary suppression: cover and audit alternate per region until every
suppressed cell is proven safe, then local search and pruning."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt

from identity_analytics.protection.grid import CellGrid, cell_lookup
from identity_analytics.protection.primary import check_k
from identity_analytics.protection.secondary.cover import Cover
from identity_analytics.protection.secondary.structure import Structure, key_strides, relations
from identity_analytics.protection.secondary.tuning import (
    GLOBAL_LIMIT,
    IMPROVE_ROUNDS,
    IMPROVE_TRIALS,
    LP_WORK_BUDGET,
    MAX_REVERSE,
    MAX_ROUNDS,
    REGION_ALTS,
    REGION_CELLS,
    RESTARTS,
    TOL,
)
from identity_analytics.protection.secondary.witnesses import WitnessPool
from identity_analytics.protection.secondary.world import Meter, OutOfBudget, WorldLP, audit_solver

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def secondary_suppression(grid: CellGrid, primary_mask: npt.ArrayLike, k: int) -> BoolArray:
    """Final suppression mask: ``primary_mask`` plus complements protecting every hidden cell.

    Guarantee: for every suppressed cell the attacker's LP interval is at least ``k`` wide.
    Without margins there are no relations between cells, so the primary mask is returned.
    """
    k = check_k(k)
    primary = np.asarray(primary_mask, dtype=bool)
    if primary.shape != (grid.n_cells,):
        raise ValueError("primary_mask must have one entry per cell")
    if not primary.any():
        return primary.copy()
    amat, structure = relations(grid)
    if amat.shape[0] == 0:
        return primary.copy()
    if np.abs(amat @ grid.counts.astype(np.float64)).max() > 0:
        raise ValueError("grid counts are not additive (margins differ from sums)")
    # A finite interval is never wider than the total count (a cell lies between 0 and any
    # published cell above it), so any k beyond it asks the same as total + 1: the LPs keep
    # numbers they can solve (k = 10**16 made HiGHS fail).
    total = int(grid.counts[~grid.is_margin].sum())
    with _cyclic_gc_paused():
        return Engine(grid, structure, min(k, total + 1)).run(primary)


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


class Engine:
    """State of one secondary-suppression run: relations, witness pool, LP solvers."""

    def __init__(self, grid: CellGrid, structure: Structure, k: int) -> None:
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
        self.pool = WitnessPool(self.n)
        self._lookup: IntArray | None = None
        self._free: list[Any] = []  # HiGHS instances to reuse (passModel replaces the model)
        self.meter = Meter(LP_WORK_BUDGET)
        #: a cover fell back to the upward closure (its cells have no witnesses: no pruning)
        self.fell_back = False
        self._cover: Cover | None = None  # conditions known after the last cover
        self._world: WorldLP | None = None  # its attacker LPs

    def _new_lp(self, whole_table: bool) -> WorldLP:
        h = audit_solver(whole_table, self._free.pop() if self._free else None)
        return WorldLP(self.st, self.counts, self.k, h, self.meter)

    # -- audit ---------------------------------------------------------------------------

    def audit(
        self, world: BoolArray, targets: IntArray, pool: WitnessPool, lp: WorldLP,
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
        todo = targets[hi_t - lo_t < k - TOL]
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
            if hi[cell] - lo[cell] >= k - TOL or handled[cell]:
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
            if width >= k - TOL:
                continue
            cuts.append((cell, *lp.cut(cell)))
            handled[cell] = True
            # the same duals bound the other cells: cuts without their own LP
            rest = todo[(label[todo] == lab) & ~handled[todo]]
            rest = rest[hi[rest] - lo[rest] < k - TOL]
            if rest.size:
                for other in rest[lp.narrow(rest, world)].tolist():
                    cuts.append((other, *lp.cut(other)))
                    handled[other] = True
        return cuts

    # -- cover ---------------------------------------------------------------------------

    def cover(self, region: IntArray, sup: BoolArray, targets: BoolArray,
              pool: WitnessPool, improve: bool) -> BoolArray:
        """Extend ``sup`` inside ``region`` until every suppressed region cell in ``targets``
        (and every new one) is safe; cells outside the region count as published."""
        cov = Cover(self, region, sup)
        lp = self._new_lp(region.size == self.n)
        check_mask = targets[region] | ~sup[region]
        if not self._settle(cov, lp, region, check_mask, pool, MAX_ROUNDS, None):
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

    def _settle(self, cov: Cover, lp: WorldLP, region: IntArray, check_mask: BoolArray,
                pool: WitnessPool, rounds: int, bound: float | None) -> bool:
        """Alternate greedy cover and audit (with reverse deletions) until the pattern
        passes the audit (True), or ``rounds`` or the LP work budget run out or its loss
        reaches ``bound``."""
        try:
            return self._settle_rounds(cov, lp, region, check_mask, pool, rounds, bound)
        except OutOfBudget:
            return False

    def _settle_rounds(self, cov: Cover, lp: WorldLP, region: IntArray, check_mask: BoolArray,
                       pool: WitnessPool, rounds: int, bound: float | None) -> bool:
        reverses = 0
        reversed_at: BoolArray | None = None
        for _ in range(rounds):
            cov.greedy()
            if bound is not None:
                cov.reverse()
            if bound is not None and cov.loss() >= bound - TOL:
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
            done = reverses >= MAX_REVERSE or (
                reversed_at is not None and np.array_equal(reversed_at, cov.cur)
            )
            if done or not cov.reverse():
                return True
            reverses += 1
            reversed_at = cov.cur.copy()
        return False

    def _improve(self, cov: Cover, lp: WorldLP, region: IntArray, check_mask: BoolArray,
                 pool: WitnessPool) -> None:
        """Local search: publish one secondary cell, forbid it, cover again from there;
        keep the result if it is cheaper and passes the audit."""
        best = cov.cur.copy()
        best_loss = cov.loss()
        tried = np.zeros(cov.m, dtype=bool)
        for _ in range(IMPROVE_TRIALS):
            cand = np.flatnonzero(best & ~cov.fixed & ~tried)
            if cand.size == 0 or self.meter.exhausted:
                break
            j = int(cand[np.argmax(cov.weight[cand])])
            tried[j] = True
            cov.cur = best.copy()
            cov.cur[j] = False
            cov.forbid[j] = True
            settled = self._settle(cov, lp, region, check_mask, pool, IMPROVE_ROUNDS,
                                   best_loss)
            if settled and cov.loss() < best_loss - TOL:
                best = cov.cur.copy()
                best_loss = cov.loss()
                tried[:] = False
            cov.forbid[j] = False
        # restarts: the cover again from the primary cells with every cut learnt so far,
        # once freely and once with each of the costliest secondary cells forbidden
        cand = np.flatnonzero(best & ~cov.fixed)
        forbidden = [-1, *cand[np.argsort(-cov.weight[cand], kind="stable")][:RESTARTS].tolist()]
        for j in forbidden:
            if self.meter.exhausted:
                break
            cov.cur = cov.fixed.copy()
            if j >= 0:
                cov.forbid[j] = True
            settled = self._settle(cov, lp, region, check_mask, pool, 2 * IMPROVE_ROUNDS,
                                   best_loss)
            if settled and cov.loss() < best_loss - TOL:
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
        strides = key_strides(grid.shape)
        found = []
        for subset in range(1 << grid.n_dims):
            away = np.array([subset >> j & 1 for j in range(grid.n_dims)], dtype=bool)
            found.append(self._lookup[(np.where(away, -1, codes) + 1) @ strides])
        closure = np.concatenate(found)
        return np.asarray(np.unique(closure[closure >= 0]), dtype=np.int64)

    # -- regions (large tables) ----------------------------------------------------------

    def region(self, cell: int, sup: BoolArray) -> IntArray:
        """Sub-cube around ``cell``: whole dimensions, smallest first, while the sub-cube
        stays within ``REGION_CELLS`` cells; in the others its code, the margin and a few
        cheap codes (already suppressed first, then counts of at least k)."""
        grid = self.grid
        if self._lookup is None:
            self._lookup = cell_lookup(grid)
        lookup = self._lookup
        radix = np.asarray(grid.shape, dtype=np.int64) + 1
        strides = key_strides(grid.shape)
        codes_per_dim = np.minimum(radix, REGION_ALTS + 2)
        for j in np.argsort(radix, kind="stable").tolist():
            wider = codes_per_dim.copy()
            wider[j] = radix[j]
            if int(np.prod(wider)) <= REGION_CELLS:
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
            best = alts[np.argsort(score, kind="stable")[:REGION_ALTS]]
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
            short = affected[hi - lo < k - TOL]
            ok = short.size == 0
            if not ok and lp is not None and not self.meter.exhausted:
                ok = True
                lp.sync(sup)
                for cell in short.tolist():
                    # the component of the cell before j was published: a union of components
                    comp = comps[int(label[cell])]
                    try:
                        u, w, width = lp.solve(cell, comp)
                    except OutOfBudget:
                        ok = False
                        break
                    pool.add(comp, u)
                    pool.add(comp, w)
                    if width < k - TOL:
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
        if self.n <= GLOBAL_LIMIT:
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
            new = self.cover(region, sup, ~safe, WitnessPool(self.n), False)
            safe[region] |= new[region]
            sup = new
        return sup
