"""Witnesses: LP solutions kept as consistent tables; two k apart prove a cell safe for as
long as every cell they move stays suppressed."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from identity_analytics.protection.secondary.structure import segment_positions
from identity_analytics.protection.secondary.tuning import TOL

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


class WitnessPool:
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
        keep = np.abs(val) > TOL
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
        pos, lens = segment_positions(self._cell_ptr, cells)
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
        pos, _ = segment_positions(self._w_ptr, wids)
        return np.asarray(np.unique(self._e_cell[pos]), dtype=np.int64)

