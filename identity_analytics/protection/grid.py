"""Aggregated cells of a cohort table and their additive structure.

The protection code works on the cells produced by a ``GROUP BY CUBE`` style aggregation:
every interior cell (zeros included) and, when margins are on, every cell of every grouping
set.  Nothing here depends on the engine that computed the counts.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

__all__ = ["CellGrid", "additivity_matrix", "cell_lookup"]

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class CellGrid:
    """Aggregated cells of a cohort table: interior cells and (optionally) all margins."""

    shape: tuple[int, ...]  # number of categories of each dimension (1 to 4 dims, each >= 1)
    codes: np.ndarray  # (n_cells, n_dims) int32; category index per dimension, -1 = margin
    counts: np.ndarray  # (n_cells,) int64, >= 0

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in self.shape)
        if not 1 <= len(shape) <= 4 or any(s < 1 for s in shape):
            raise ValueError(f"shape must have 1 to 4 dimensions of size >= 1, got {shape}")
        codes = np.asarray(self.codes)
        counts = np.asarray(self.counts)
        if codes.ndim != 2 or codes.shape[1] != len(shape):
            raise ValueError(f"codes must be (n_cells, {len(shape)}), got {codes.shape}")
        if counts.shape != (codes.shape[0],):
            raise ValueError(f"counts must be ({codes.shape[0]},), got {counts.shape}")
        if codes.size and (
            (codes < -1).any() or (codes >= np.asarray(shape, dtype=np.int64)[None, :]).any()
        ):
            raise ValueError("codes out of range")
        if counts.size and (counts < 0).any():
            raise ValueError("counts must be >= 0")
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "codes", codes.astype(np.int32, copy=False))
        object.__setattr__(self, "counts", counts.astype(np.int64, copy=False))

    @property
    def n_cells(self) -> int:
        """Number of cells (interior and margin)."""
        return int(self.codes.shape[0])

    @property
    def n_dims(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    @property
    def is_margin(self) -> npt.NDArray[np.bool_]:
        """True for cells aggregated over at least one dimension."""
        return np.asarray((self.codes < 0).any(axis=1))

    @classmethod
    def full_cube(cls, counts_nd: npt.ArrayLike, margins: bool = True) -> CellGrid:
        """Build a grid from a dense d-dimensional array of interior counts.

        With ``margins`` every grouping set of the CUBE is added (margins are sums of the
        interior counts), in the order of the grouping sets, interior cells first.
        """
        arr = np.asarray(counts_nd)
        if arr.ndim < 1 or arr.ndim > 4:
            raise ValueError("counts_nd must have 1 to 4 dimensions")
        if not np.issubdtype(arr.dtype, np.integer) and not np.all(np.mod(arr, 1) == 0):
            raise ValueError("counts must be integers")
        arr = arr.astype(np.int64)
        d = arr.ndim
        shape = tuple(int(s) for s in arr.shape)
        code_blocks: list[npt.NDArray[np.int32]] = []
        count_blocks: list[IntArray] = []
        subsets = [()] if not margins else [
            c for r in range(d + 1) for c in itertools.combinations(range(d), r)
        ]
        for agg in subsets:
            sub = arr.sum(axis=agg, keepdims=True) if agg else arr
            grids = np.indices(sub.shape).reshape(d, -1).T.astype(np.int32)
            for j in agg:
                grids[:, j] = -1
            code_blocks.append(grids)
            count_blocks.append(sub.reshape(-1))
        return cls(shape, np.concatenate(code_blocks), np.concatenate(count_blocks))


def cell_lookup(grid: CellGrid) -> IntArray:
    """Dense map from mixed-radix cell key to cell index (-1 where a cell is absent).

    The key of a cell is ``sum((code_j + 1) * stride_j)`` with radices ``shape_j + 1``.
    """
    radix = np.asarray(grid.shape, dtype=np.int64) + 1
    size = int(np.prod(radix))
    lookup = np.full(size, -1, dtype=np.int64)
    keys = cell_keys(grid)
    if keys.size and np.unique(keys).size != keys.size:
        raise ValueError("duplicate cells in grid")
    lookup[keys] = np.arange(grid.n_cells, dtype=np.int64)
    return lookup


def cell_keys(grid: CellGrid) -> IntArray:
    """Mixed-radix key of every cell (see :func:`cell_lookup`)."""
    radix = np.asarray(grid.shape, dtype=np.int64) + 1
    strides = np.ones(len(radix), dtype=np.int64)
    for j in range(len(radix) - 2, -1, -1):
        strides[j] = strides[j + 1] * radix[j + 1]
    return np.asarray((grid.codes.astype(np.int64) + 1) @ strides, dtype=np.int64)


def additivity_matrix(grid: CellGrid) -> sp.csr_matrix:
    """Sparse matrix ``A`` with ``A @ counts == 0`` encoding the additive structure.

    One row per (margin cell, dimension it aggregates): the margin cell minus the sum of its
    children along that dimension.  Together these rows encode every additive relation of
    the CUBE.  A grid without margins has no rows.  Raises if a needed child is missing.
    """
    n = grid.n_cells
    codes = grid.codes
    lookup = cell_lookup(grid)
    radix = np.asarray(grid.shape, dtype=np.int64) + 1
    strides = np.ones(len(radix), dtype=np.int64)
    for j in range(len(radix) - 2, -1, -1):
        strides[j] = strides[j + 1] * radix[j + 1]
    keys = cell_keys(grid)
    # built directly in CSR form: each row is [parent, children...] sorted by cell index
    idx_blocks: list[IntArray] = []
    val_blocks: list[npt.NDArray[np.float64]] = []
    len_blocks: list[IntArray] = []
    for j, size in enumerate(grid.shape):
        parents = np.flatnonzero(codes[:, j] < 0)
        if parents.size == 0:
            continue
        # children: same key with code_j = c, i.e. key + (c + 1) * stride_j
        child_keys = keys[parents][:, None] + (np.arange(size, dtype=np.int64) + 1)[None, :] * (
            strides[j]
        )
        children = lookup[child_keys]
        if (children < 0).any():
            raise ValueError("grid has margins but is missing cells of the cube")
        members = np.concatenate([parents.astype(np.int64)[:, None], children], axis=1)
        signs = np.concatenate(
            [np.ones((parents.size, 1)), -np.ones((parents.size, size))], axis=1
        )
        order = np.argsort(members, axis=1, kind="stable")
        idx_blocks.append(np.take_along_axis(members, order, axis=1).reshape(-1))
        val_blocks.append(np.take_along_axis(signs, order, axis=1).reshape(-1))
        len_blocks.append(np.full(parents.size, size + 1, dtype=np.int64))
    if not idx_blocks:
        return sp.csr_matrix((0, n), dtype=np.float64)
    lens = np.concatenate(len_blocks)
    indptr = np.zeros(lens.size + 1, dtype=np.int64)
    np.cumsum(lens, out=indptr[1:])
    return sp.csr_matrix(
        (np.concatenate(val_blocks), np.concatenate(idx_blocks), indptr),
        shape=(lens.size, n),
    )
