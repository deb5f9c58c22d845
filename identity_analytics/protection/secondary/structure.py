"""The additive relations of a table as compressed arrays, and their cache per cell layout."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from identity_analytics.protection.grid import CellGrid, additivity_matrix

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


STRUCTURES: OrderedDict[bytes, tuple[sp.csr_matrix, Structure]] = OrderedDict()
STRUCTURES_KEPT = 16
_structures_lock = threading.Lock()


def relations(grid: CellGrid) -> tuple[sp.csr_matrix, Structure]:
    """The additivity matrix of ``grid`` and its compressed arrays, kept for the last
    ``STRUCTURES_KEPT`` cell layouts (they depend on the cells' codes, not on their counts;
    about 1.5 ms for a 450-cell cube)."""
    key = repr(grid.shape).encode() + grid.codes.tobytes()
    with _structures_lock:
        kept = STRUCTURES.get(key)
        if kept is not None:
            STRUCTURES.move_to_end(key)
            return kept
    amat = additivity_matrix(grid)
    kept = (amat, Structure(amat))
    with _structures_lock:
        STRUCTURES[key] = kept
        while len(STRUCTURES) > STRUCTURES_KEPT:
            STRUCTURES.popitem(last=False)
    return kept


def loops() -> Any:
    """The compiled loops of the cover (imported on first use: see ``_cover_loops``)."""
    from identity_analytics.protection import _cover_loops

    return _cover_loops


def segment_positions(ptr: IntArray, which: IntArray) -> tuple[IntArray, IntArray]:
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


def key_strides(shape: tuple[int, ...]) -> IntArray:
    """Mixed-radix strides of cell keys (radices ``shape_j + 1``; see ``cell_lookup``)."""
    radix = np.asarray(shape, dtype=np.int64) + 1
    strides = np.ones(len(shape), dtype=np.int64)
    for j in range(len(shape) - 2, -1, -1):
        strides[j] = strides[j + 1] * radix[j + 1]
    return strides


class Structure:
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
        lab = loops().component_roots(cells, self.c_ptr, self.c_idx, self.n_rows)
        order = np.argsort(lab, kind="stable")
        splits = np.flatnonzero(np.diff(lab[order])) + 1
        return [cells[part] for part in np.split(order, splits)]


def paired_entries(
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

