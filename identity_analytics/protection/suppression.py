"""k-anonymity cell suppression on aggregated cells (primary and secondary).

Primary suppression hides every cell with ``0 < count < k``.  Secondary suppression then hides
further cells ("complements") until, for every suppressed cell, the interval an attacker can
derive by linear programming from the published cells is at least ``k`` wide.

Method: an LP-based rounding ("diving") heuristic for the Fischetti-Salazar model, exact with
respect to the guarantee and close to the minimum loss.

* Master LP over suppression indicators ``x`` (already suppressed cells fixed at 1), cost =
  information loss ``1 + count / (total + 1)``.  It starts with *structural* inequalities: a
  suppressed cell that is the only suppressed cell of one of its relations is determined by
  that relation, so ``x_i <= sum of x_j over the other cells of every relation of i``.
* Diving: solve the LP, fix the largest fractional ``x`` to 1, repeat until integral.
* Audit of the integral pattern: for every suppressed cell not yet proven safe, a small LP
  over its connected component of suppressed cells maximises its attacker interval (for 2-d
  tables, fully suppressed rectangles are tried first as cheap proofs).  The LP's optimal
  tables are kept as *witnesses*: two consistent tables ``k`` apart prove a cell safe for as
  long as every cell they move stays suppressed.  If the interval is too narrow, the LP
  duals give a Benders cut ``sum_j c_j x_j >= k`` (coefficients strengthened to
  ``min(c_j, k)``; for a secondary cell the cut only binds when it is suppressed), added to
  the master.  The dive restarts from scratch a few times with the cuts found so far, then
  continues until a pattern passes the audit (``_POLISH_PASSES`` optional extra dives keep
  the cheapest feasible pattern; off by default, they did not pay off on the benchmark).
* Pruning: secondary cells are tentatively published again, largest loss first, and stay
  published when every suppressed cell whose witnesses used them is proven safe again.

The result is exact with respect to the guarantee: every suppressed cell ends with valid
witnesses ``k`` apart (checked independently by :func:`attacker_intervals` in the tests).

Large tables (more than ``_GLOBAL_LIMIT`` cells) are processed region by region: the dive
runs on a small sub-cube around each unprotected cell (its codes, the margin and a few cheap
alternative codes per dimension); cells outside the region count as published for the audit,
which only narrows intervals, so the witnesses stay valid.  Suppressing more cells never
narrows an interval, so earlier regions stay safe.  Pruning there accepts a cell only when
the existing witnesses still prove every affected cell (no new LPs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from identity_analytics.protection._lp import INF, new_highs, pass_csc, pass_lp
from identity_analytics.protection.grid import CellGrid, additivity_matrix, cell_lookup

__all__ = ["primary_suppression", "secondary_suppression"]

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_TOL = 1e-6
#: tables with at most this many cells are solved by one dive over the whole table
_GLOBAL_LIMIT = 1500
#: dive restarts after new cuts (more restarts: better patterns, more LPs)
_MAX_RESTARTS = 6
#: cheap cube proofs are tried for tables with at most this many dimensions
_CUBE_PROOF_MAX_DIMS = 2
#: extra dives from scratch (with all cuts) after a feasible pattern; the best is kept
_POLISH_PASSES = 0
#: fractional values at least this large are fixed to 1 together in one dive step
_FIX_AT = 0.9
#: recent witnesses consulted per cell (older proofs are re-derived: slower, never wrong)
_WITNESSES_PER_CELL = 12
#: alternative codes per dimension in a local region (large tables)
_REGION_ALTS = 2


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
    amat = additivity_matrix(grid)
    if amat.shape[0] == 0:
        return primary.copy()
    if np.abs(amat @ grid.counts.astype(np.float64)).max() > 0:
        raise ValueError("grid counts are not additive (margins differ from sums)")
    return _Engine(grid, amat, k).run(primary)


class _Engine:
    """State of one secondary-suppression run: relations, witness pool, LP solvers."""

    def __init__(self, grid: CellGrid, amat: sp.csr_matrix, k: int) -> None:
        self.grid = grid
        self.k = k
        self.n = grid.n_cells
        self.csr = sp.csr_matrix(amat)
        self.csc = sp.csc_matrix(amat)
        self.abs_csr = sp.csr_matrix(abs(self.csr))
        self.abs_csc = sp.csc_matrix(self.abs_csr)
        self.counts = grid.counts.astype(np.float64)
        total_cells = np.flatnonzero((grid.codes < 0).all(axis=1))
        total = (
            float(self.counts[total_cells[0]])
            if total_cells.size
            else float(self.counts[~grid.is_margin].sum())
        )
        self.weight = 1.0 + self.counts / (total + 1.0)
        self.pool = _Pool(self.n)
        self.comp_cache: dict[int, _ComponentLP] = {}
        self.lookup = cell_lookup(grid)
        radix = np.asarray(grid.shape, dtype=np.int64) + 1
        strides = np.ones(grid.n_dims, dtype=np.int64)
        for j in range(grid.n_dims - 2, -1, -1):
            strides[j] = strides[j + 1] * radix[j + 1]
        self.strides = strides
        self.keys = (grid.codes.astype(np.int64) + 1) @ strides
        d = grid.n_dims
        self.bits = ((np.arange(2**d)[:, None] >> np.arange(d)[None, :]) & 1).astype(bool)

    def prove_by_cubes(self, cells: IntArray, sup: BoolArray, hi: FloatArray,
                       lo: FloatArray) -> None:
        """Record cube witnesses lying entirely in ``sup`` for ``cells`` (cheap proofs).

        A cube picks a second code per dimension; its ``2**d`` cells move together (one side
        up, the other down; along a dimension whose second code is the margin, both cells
        move the same way), keeping every relation.  If all are suppressed it is a witness.
        """
        codes = self.grid.codes
        shape = self.grid.shape
        d = self.grid.n_dims
        if d > _CUBE_PROOF_MAX_DIMS:
            return
        for cell in cells.tolist():
            if hi[cell] - lo[cell] >= self.k - _TOL:
                continue
            base = codes[cell].astype(np.int64)
            key = int(self.keys[cell])
            alts: list[IntArray] = []
            for j in range(d):
                options = np.arange(-1, shape[j], dtype=np.int64)
                options = options[options != base[j]]
                if base[j] < 0:
                    options = options[options >= 0]
                nb = self.lookup[key + (options - base[j]) * self.strides[j]]
                alts.append(options[(nb >= 0) & sup[np.maximum(nb, 0)]])
                if alts[-1].size == 0:
                    break
            if len(alts) < d or any(x.size == 0 for x in alts):
                continue
            size = int(np.prod([x.size for x in alts]))
            if size > 4096:
                continue
            grids = np.meshgrid(*alts, indexing="ij")
            alt = np.stack([g.reshape(-1) for g in grids], axis=1)
            corner = np.where(self.bits[None, :, :], alt[:, None, :], base[None, None, :])
            members = self.lookup[(corner + 1) @ self.strides]
            ok = np.asarray((members >= 0).all(axis=1), dtype=bool)
            ok[ok] = sup[members[ok]].all(axis=1)
            if not ok.any():
                continue
            members, alt = members[ok], alt[ok]
            flip = (base[None, :] >= 0) & (alt >= 0)
            parity = (self.bits[None, :, :] & flip[:, None, :]).sum(axis=2) % 2
            sign = 1.0 - 2.0 * parity
            a = self.counts[members]
            up = np.minimum(np.where(sign < 0, a, np.inf).min(axis=1), float(self.k))
            down = np.where(sign > 0, a, np.inf).min(axis=1)
            for best in {int(np.argmax(up)), int(np.argmax(down))}:
                if up[best] + down[best] <= _TOL:
                    continue
                n_before = len(self.pool.idx)
                order = np.argsort(members[best])
                idx = members[best][order]
                self.pool.add(idx, up[best] * sign[best][order])
                self.pool.add(idx, -down[best] * sign[best][order])
                self.pool.update(hi, lo, n_before)

    def safe_mask(self, sup: BoolArray) -> BoolArray:
        """Cells proven at least k wide by witnesses valid for ``sup``."""
        hi, lo = self.pool.bounds(sup)
        return np.asarray(hi - lo >= self.k - _TOL)

    # -- audit LP ------------------------------------------------------------------------

    def labels(self, sup: BoolArray) -> IntArray:
        """Connected components of suppressed cells (linked by shared relations); -1 if not
        suppressed."""
        cells = np.flatnonzero(sup)
        lab = np.full(self.n, -1, dtype=np.int64)
        if cells.size == 0:
            return lab
        inc = sp.csr_matrix(self.abs_csc[:, cells])
        adj = sp.csr_matrix(inc.T @ inc)
        _, comp = connected_components(adj, directed=False)
        lab[cells] = comp
        return lab

    def audit(
        self, cell: int, sup: BoolArray, labels: IntArray, want_cut: bool
    ) -> FloatArray | None:
        """Maximise the attacker interval of ``cell`` (capped at k) and record witnesses.

        The LP runs on the component of ``cell`` (published cells are constants) and is kept
        for warm re-solves on other cells of the same component while ``sup`` is unchanged.
        A tiny cost on movement makes the witness tables sparse (few cells moved), so they
        stay valid when other cells are published again.  Returns None if the cell is safe,
        else (``want_cut``) the coefficients ``c`` of a valid inequality ``c @ x >= k`` over
        all cells, violated by ``sup`` (or an empty array).
        """
        lab = int(labels[cell])
        clp = self.comp_cache.get(lab)
        if clp is None:
            clp = _ComponentLP(self, np.flatnonzero(labels == lab))
            self.comp_cache[lab] = clp
        return clp.solve(cell, want_cut)

    @staticmethod
    def _expect_optimal(h: Any) -> None:
        status = h.modelStatusToString(h.getModelStatus())
        if status != "Optimal":
            raise RuntimeError(f"secondary_suppression: audit LP status {status}")

    # -- dive ----------------------------------------------------------------------------

    def dive(self, region: IntArray, sup: BoolArray, restarts: int) -> BoolArray:
        """Extend ``sup`` inside ``region`` until every suppressed region cell is safe."""
        n_reg = region.size
        pos = np.full(self.n, -1, dtype=np.int64)
        pos[region] = np.arange(n_reg)
        fixed = sup[region]
        inside = np.zeros(self.n, dtype=bool)
        inside[region] = True
        # structural rows, one per (relation, region cell): sum of the others - x_i >= 0
        sub = sp.coo_matrix(self.abs_csr[:, region])
        pair_row, pair_col = sub.row, sub.col
        reg_abs = sp.csr_matrix(self.abs_csr[:, region])
        own = sp.csr_matrix(
            (np.full(pair_row.size, 2.0), (np.arange(pair_row.size), pair_col)),
            shape=(pair_row.size, n_reg),
        )
        struct = sp.csr_matrix(reg_abs[pair_row] - own)
        cost = np.where(fixed, 0.0, self.weight[region])
        lower = fixed.astype(np.float64)
        h = _solver()
        pass_lp(
            h, cost, lower, np.ones(n_reg), struct, np.zeros(pair_row.size),
            np.full(pair_row.size, INF),
        )
        dive_fixed: list[int] = []
        best: BoolArray | None = None
        polish = _POLISH_PASSES
        for _ in range(10 * n_reg + 100):
            h.run()
            if h.modelStatusToString(h.getModelStatus()) != "Optimal":
                # cannot happen for valid cuts; suppressing the whole region is always safe
                out = sup.copy()
                out[region] = True
                return out if best is None else best
            x = np.asarray(h.getSolution().col_value)
            frac = np.flatnonzero((x > 1e-6) & (x < 1.0 - 1e-6) & (lower < 0.5))
            if frac.size:
                pick = frac[x[frac] >= _FIX_AT]
                if pick.size == 0:
                    pick = frac[[int(np.argmax(x[frac]))]]
                lower[pick] = 1.0
                h.changeColsBounds(
                    pick.size, pick.astype(np.int32), np.ones(pick.size), np.ones(pick.size)
                )
                dive_fixed.extend(pick.tolist())
                continue
            cand = sup.copy()
            cand[region[x > 0.5]] = True
            n_cuts = 0
            chosen = region[x > 0.5]
            hi, lo = self.pool.bounds_for(chosen, cand)
            self.prove_by_cubes(chosen, cand, hi, lo)
            # the audit world is the region: cells outside it count as published, which
            # only narrows intervals (witnesses stay valid) and keeps the cuts consistent
            labels = self.labels(cand & inside)
            self.comp_cache = {}
            for cell in chosen.tolist():
                if hi[cell] - lo[cell] >= self.k - _TOL:
                    continue
                n_before = len(self.pool.idx)
                coef = self.audit(cell, cand, labels, want_cut=True)
                self.pool.update(hi, lo, n_before)
                if coef is None:
                    continue
                n_cuts += 1
                row = coef[region]
                rhs = float(self.k) - _TOL
                if not sup[cell]:
                    row[pos[cell]] -= float(self.k)
                    rhs = -_TOL
                nz = np.flatnonzero(row)
                h.addRow(rhs, INF, nz.size, nz.astype(np.int32), row[nz])
            if n_cuts == 0:
                if best is None or self.weight[cand].sum() < self.weight[best].sum() - _TOL:
                    best = cand
                if polish <= 0 or not dive_fixed:
                    return best
                # dive once more from scratch with every cut found so far; keep the better
                polish -= 1
                restarts = 0
            if (restarts > 0 or n_cuts == 0) and dive_fixed:
                restarts = max(restarts - 1, 0) if n_cuts else restarts
                back = np.asarray(dive_fixed, dtype=np.int32)
                lower[back] = 0.0
                h.changeColsBounds(back.size, back, np.zeros(back.size), np.ones(back.size))
                dive_fixed = []
        raise RuntimeError("secondary_suppression: dive did not converge")

    # -- regions (large tables) ----------------------------------------------------------

    def region(self, cell: int, sup: BoolArray) -> IntArray:
        """Sub-cube around ``cell``: its code, the margin and a few cheap codes per dim."""
        codes = self.grid.codes
        base = codes[cell].astype(np.int64)
        strides = self.strides
        key = int((base + 1) @ strides)
        lookup = self.lookup
        per_dim: list[IntArray] = []
        for j, size in enumerate(self.grid.shape):
            alts = np.arange(-1, size, dtype=np.int64)
            if size + 1 <= _REGION_ALTS + 2:
                per_dim.append(alts)
                continue
            alts = alts[(alts != base[j]) & (alts >= 0)]
            nb = lookup[key + (alts - base[j]) * strides[j]]
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
        cand = np.flatnonzero(sup & ~primary)
        cand = cand[np.argsort(-self.weight[cand], kind="stable")]
        per_row = self.abs_csr @ sup.astype(np.float64)
        ip, rows_of = self.abs_csc.indptr, self.abs_csc.indices
        for j in cand.tolist():
            # publishing j would leave another cell alone (determined) in one of j's relations
            if (per_row[rows_of[ip[j] : ip[j + 1]]] < 2.5).any():
                continue
            affected = self.pool.cells_with(j)
            sup[j] = False
            affected = affected[sup[affected]]
            hi, lo = self.pool.bounds_for(affected, sup)
            short = affected[hi[affected] - lo[affected] < self.k - _TOL]
            self.prove_by_cubes(short, sup, hi, lo)
            short = short[hi[short] - lo[short] < self.k - _TOL]
            # large tables: j stays published only if the witnesses still prove every cell
            ok = short.size == 0 or self.n <= _GLOBAL_LIMIT
            if ok and short.size:
                labels = self.labels(sup)
                self.comp_cache = {}
                for cell in short.tolist():
                    if hi[cell] - lo[cell] >= self.k - _TOL:
                        continue
                    n_before = len(self.pool.idx)
                    res = self.audit(cell, sup, labels, want_cut=False)
                    self.pool.update(hi, lo, n_before)
                    if res is not None:
                        ok = False
                        break
            if not ok:
                sup[j] = True
            else:
                per_row[rows_of[ip[j] : ip[j + 1]]] -= 1.0

    # -- driver --------------------------------------------------------------------------

    def run(self, primary: BoolArray) -> BoolArray:
        if self.n <= _GLOBAL_LIMIT:
            sup = self.dive(np.arange(self.n, dtype=np.int64), primary.copy(), _MAX_RESTARTS)
        else:
            sup = primary.copy()
            order = np.flatnonzero(primary)
            order = order[np.argsort(self.counts[order], kind="stable")]
            for cell in order.tolist():
                hi, lo = self.pool.bounds_for(np.array([cell]), sup)
                if hi[cell] - lo[cell] >= self.k - _TOL:
                    continue
                sup = self.dive(self.region(cell, sup), sup, 1)
        self.prune(sup, primary)
        return sup


class _ComponentLP:
    """Attacker LP on one component of suppressed cells, re-solved for several target cells.

    Columns ``u+ u- w+ w-`` per cell: ``u = u+ - u-`` is a table moved up, ``w`` one moved
    down (deviations from the true counts, ``>= -count``); rows: the relations touching the
    component, for both tables.  Target ``l``: maximise ``u_l - w_l`` with ``u_l <= k``.
    """

    def __init__(self, eng: _Engine, comp: IntArray) -> None:
        self.eng = eng
        self.comp = comp
        m = comp.size
        self.m = m
        ip, ind, dat = eng.csc.indptr, eng.csc.indices, eng.csc.data
        starts, ends = ip[comp], ip[comp + 1]
        lens = ends - starts
        take = (
            np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
            if m
            else np.zeros(0, dtype=np.int64)
        )
        rows, row_local = np.unique(ind[take], return_inverse=True)
        self.rows = rows
        r = rows.size
        self.r = r
        self.target: int | None = None
        if r == 0:
            return
        all_lens = np.concatenate([lens, lens, lens, lens])
        indptr = np.concatenate([[0], np.cumsum(all_lens)])
        indices = np.concatenate([row_local, row_local, row_local + r, row_local + r])
        vals = dat[take]
        values = np.concatenate([vals, -vals, vals, -vals])
        a = eng.counts[comp]
        inf_m = np.full(m, INF)
        self.upper = np.concatenate([inf_m, a, inf_m, a])
        self.eps = np.full(4 * m, 1e-4 / m)
        zeros = np.zeros(2 * r)
        self.h: Any = _solver()
        pass_csc(
            self.h, self.eps, np.zeros(4 * m), self.upper, (indptr, indices, values, 2 * r),
            zeros, zeros,
        )

    def _cost(self, local: int, movement: bool) -> FloatArray:
        m = self.m
        cost = self.eps.copy() if movement else np.zeros(4 * m)
        cost[[local, m + local, 2 * m + local, 3 * m + local]] = (-1.0, 1.0, 1.0, -1.0)
        return cost

    def solve(self, cell: int, want_cut: bool) -> FloatArray | None:
        eng = self.eng
        k = float(eng.k)
        m = self.m
        local = int(np.searchsorted(self.comp, cell))
        if self.r == 0:
            val = np.zeros(m)
            val[local] = k
            eng.pool.add(self.comp, val)
            return None
        h = self.h
        if self.target is not None and self.target != local:
            h.changeColBounds(self.target, 0.0, float(self.upper[self.target]))
        h.changeColBounds(local, 0.0, k)
        self.target = local
        every = np.arange(4 * m, dtype=np.int32)
        h.changeColsCost(4 * m, every, self._cost(local, True))
        h.run()
        _Engine._expect_optimal(h)
        sol = np.asarray(h.getSolution().col_value)
        u = sol[:m] - sol[m : 2 * m]
        w = sol[2 * m : 3 * m] - sol[3 * m :]
        eng.pool.add(self.comp, u)
        eng.pool.add(self.comp, w)
        if u[local] - w[local] >= k - _TOL:
            return None
        if not want_cut:
            return np.zeros(0)
        # exact duals: drop the movement cost and re-solve (warm start)
        h.changeColsCost(4 * m, every, self._cost(local, False))
        h.run()
        _Engine._expect_optimal(h)
        duals = np.asarray(h.getSolution().row_dual)
        # reduced costs of every cell (published ones included) from the row duals
        coef = np.zeros(eng.n)
        full = np.zeros(eng.csr.shape[0])
        r = self.r
        for blk, sign in ((0, -1.0), (1, 1.0)):
            full[self.rows] = duals[blk * r : (blk + 1) * r]
            red = -(eng.csc.T @ full)
            red[cell] += sign
            coef += np.where(red > 1e-9, red * eng.counts, 0.0)
            coef = np.where(red < -1e-9, np.inf, coef)
        return np.asarray(np.minimum(coef, k), dtype=np.float64)


class _Pool:
    """Witness tables: sparse deviations from the true table, each consistent with the
    published cells whenever every cell it moves is suppressed."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.idx: list[IntArray] = []
        self.val: list[FloatArray] = []
        self.inv: dict[int, list[int]] = {}
        self._mat: sp.csr_matrix | None = None

    def add(self, idx: IntArray, val: FloatArray) -> None:
        keep = np.abs(val) > _TOL
        if not keep.any():
            return
        tid = len(self.idx)
        self.idx.append(idx[keep])
        self.val.append(val[keep])
        self._mat = None
        for cell in idx[keep].tolist():
            self.inv.setdefault(cell, []).append(tid)

    def matrix(self) -> sp.csr_matrix:
        if self._mat is None:
            if not self.idx:
                self._mat = sp.csr_matrix((0, self.n))
            else:
                lens = np.fromiter((i.size for i in self.idx), dtype=np.int64)
                indptr = np.concatenate([[0], np.cumsum(lens)])
                self._mat = sp.csr_matrix(
                    (np.concatenate(self.val), np.concatenate(self.idx), indptr),
                    shape=(len(self.idx), self.n),
                )
        return self._mat

    def bounds(self, sup: BoolArray) -> tuple[FloatArray, FloatArray]:
        """Max and min deviation of every cell over the witnesses valid for ``sup``."""
        mat = self.matrix()
        if mat.shape[0] == 0:
            return np.zeros(self.n), np.zeros(self.n)
        pattern = sp.csr_matrix((np.ones(mat.nnz), mat.indices, mat.indptr), shape=mat.shape)
        valid = (pattern @ (~sup).astype(np.float64)) < 0.5
        sub = sp.csr_matrix(mat[valid])
        hi = np.asarray(sub.max(axis=0).toarray()).ravel() if sub.shape[0] else np.zeros(self.n)
        lo = np.asarray(sub.min(axis=0).toarray()).ravel() if sub.shape[0] else np.zeros(self.n)
        return np.maximum(hi, 0.0), np.minimum(lo, 0.0)

    def bounds_for(self, cells: IntArray, sup: BoolArray) -> tuple[FloatArray, FloatArray]:
        """Like :meth:`bounds`, from the recent witnesses of ``cells`` (zero elsewhere)."""
        hi = np.zeros(self.n)
        lo = np.zeros(self.n)
        seen: set[int] = set()
        for cell in cells.tolist():
            for t in self.inv.get(cell, [])[-_WITNESSES_PER_CELL:]:
                if t in seen:
                    continue
                seen.add(t)
                idx = self.idx[t]
                if sup[idx].all():
                    val = self.val[t]
                    hi[idx] = np.maximum(hi[idx], val)
                    lo[idx] = np.minimum(lo[idx], val)
        return hi, lo

    def update(self, hi: FloatArray, lo: FloatArray, start: int) -> None:
        """Fold witnesses added since ``start`` (valid by construction) into hi/lo."""
        for t in range(start, len(self.idx)):
            idx, val = self.idx[t], self.val[t]
            hi[idx] = np.maximum(hi[idx], val)
            lo[idx] = np.minimum(lo[idx], val)

    def cells_with(self, cell: int) -> IntArray:
        """Cells moved by some witness that also moves ``cell`` (all of them: a cell whose
        proof used ``cell`` must be re-proven when ``cell`` is published)."""
        tids = self.inv.get(cell, [])
        if not tids:
            return np.zeros(0, dtype=np.int64)
        cells = np.concatenate([self.idx[t] for t in tids])
        return np.asarray(np.unique(cells), dtype=np.int64)


def _solver() -> Any:
    h = new_highs()
    h.setOptionValue("presolve", "off")
    h.setOptionValue("threads", 1)
    return h
