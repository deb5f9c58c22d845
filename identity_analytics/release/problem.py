"""The attacker's view of everything released: published counts as constraints over atoms.

The atoms are the non-empty cells of the cross-classification of every dimension the
releases name (per epoch, see :mod:`identity_analytics.release.atoms`). Each published cell
sums the atoms of its population, so it is a row ``lower <= sum of atoms <= upper``. The
attacker is taken to know which atoms are empty (they are left out, i.e. fixed at 0), which
is the conservative assumption. Atoms that lie in exactly the same rows are alike to the
attacker: they are merged into one *class* (its total is what the rows see; any of its atoms
may hold all of it or none of it). Rows over the same classes are one row (their bounds
intersected). Engine-free: numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import scipy.sparse as sp

from identity_analytics.release.blocks import MINOR, PRESENT, Block

IntArray = npt.NDArray[np.int64]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

#: Fixed seeds: the same releases give the same classes and rows, run after run.
_SEED = 20261207


@dataclass(frozen=True)
class Atoms:
    """Atoms of the data: per atom its value in each column (``codes`` into ``values``, -1 for
    null) and its count of people. A column is ``(epoch, dimension)``."""

    columns: tuple[tuple[str, str], ...]
    values: tuple[tuple[str, ...], ...]
    codes: npt.NDArray[np.int32]
    counts: IntArray

    @property
    def n(self) -> int:
        return int(self.counts.size)

    def column(self, epoch: str, dimension: str) -> int | None:
        try:
            return self.columns.index((epoch, dimension))
        except ValueError:
            return None


@dataclass(frozen=True)
class JointProblem:
    """Rows (distinct published populations) over classes of atoms, with the true point."""

    matrix: sp.csr_matrix  # rows x classes, entries 1
    lower: FloatArray
    upper: FloatArray
    counts: FloatArray  # per class: people in it (the true point)
    multiplicity: IntArray  # per class: its non-empty atoms
    small: BoolArray  # per class: holds an atom of 1 to k-1 people
    k: int

    @property
    def n_rows(self) -> int:
        return int(self.matrix.shape[0])

    @property
    def n_classes(self) -> int:
        return int(self.matrix.shape[1])


@dataclass(frozen=True)
class ReleaseProblem:
    """A joint problem and where its rows come from: ``sources[r]`` lists (block, cell) pairs."""

    problem: JointProblem
    sources: list[list[tuple[int, int]]]


class InconsistentLedger(ValueError):
    """A published count does not match the data it was counted from (a damaged snapshot)."""


def build_problem(atoms: Atoms, blocks: Sequence[Block], k: int, new_from: int | None = None) -> ReleaseProblem:
    """The joint problem of ``blocks`` over ``atoms``: rows, classes, bounds and sources.

    Blocks from index ``new_from`` on are the release being audited (their cells may still be
    suppressed): their rows are merged with one another, never with a row of an earlier
    release, whose bounds would otherwise stay tied to a cell that is later suppressed.
    """
    matrix, lower, upper, sources = _published_rows(atoms, blocks)
    _check_truth(matrix @ atoms.counts.astype(np.float64), lower, upper, sources, blocks)
    # rows over no atom are published zeros: nothing to learn from them
    used_rows = np.flatnonzero(np.diff(matrix.indptr) > 0)
    matrix, lower, upper, sources = matrix[used_rows], lower[used_rows], upper[used_rows], sources[used_rows]

    rng = np.random.default_rng(_SEED)
    csc = matrix.tocsc()
    used_atoms = np.flatnonzero(np.diff(csc.indptr) > 0)
    weights = rng.random((matrix.shape[0], 2))
    signatures = np.asarray(csc[:, used_atoms].T @ weights)
    _, representative, class_of = np.unique(signatures, axis=0, return_index=True, return_inverse=True)
    class_of = class_of.reshape(-1)
    n_classes = representative.size
    counts = np.bincount(class_of, weights=atoms.counts[used_atoms], minlength=n_classes)
    multiplicity = np.bincount(class_of, minlength=n_classes).astype(np.int64)
    small_atoms = (atoms.counts[used_atoms] > 0) & (atoms.counts[used_atoms] < k)
    small = np.bincount(class_of, weights=small_atoms.astype(np.float64), minlength=n_classes) > 0
    by_class = sp.csr_matrix(csc[:, used_atoms[representative]])
    by_class.sort_indices()

    # rows over the same classes are one population: one row, the bounds intersected
    row_weights = rng.random((n_classes, 2))
    row_keys = np.asarray(by_class @ row_weights)
    if new_from is not None:
        row_keys = np.column_stack([row_keys, sources[:, 0] >= new_from])
    _, first, row_of = np.unique(row_keys, axis=0, return_index=True, return_inverse=True)
    row_of = row_of.reshape(-1)
    merged_lower = np.full(first.size, -np.inf)
    merged_upper = np.full(first.size, np.inf)
    np.maximum.at(merged_lower, row_of, lower)
    np.minimum.at(merged_upper, row_of, upper)
    merged_sources: list[list[tuple[int, int]]] = [[] for _ in range(first.size)]
    for row, (block, cell) in zip(row_of.tolist(), sources.tolist(), strict=True):
        merged_sources[row].append((block, cell))
    problem = JointProblem(
        matrix=sp.csr_matrix(by_class[first]),
        lower=merged_lower,
        upper=merged_upper,
        counts=np.asarray(counts, dtype=np.float64),
        multiplicity=multiplicity,
        small=np.asarray(small, dtype=bool),
        k=k,
    )
    return ReleaseProblem(problem, merged_sources)


def _published_rows(atoms: Atoms, blocks: Sequence[Block]) -> tuple[sp.csr_matrix, FloatArray, FloatArray, IntArray]:
    """One row per published cell (and per membership class of the released lists), over the
    atoms: the matrix, its bounds, and each row's (block, cell)."""
    row_parts, atom_parts, lower_parts, upper_parts, source_parts = [], [], [], [], []
    offset = 0
    for index, block in enumerate(blocks):
        rows, members = _block_pairs(atoms, block)
        row_parts.append(rows + offset)
        atom_parts.append(members)
        lower_parts.append(block.lower)
        upper_parts.append(block.upper)
        source_parts.append(np.stack([np.full(block.n_cells, index), np.arange(block.n_cells)], axis=1))
        offset += block.n_cells
    patterns = _membership_rows(atoms, blocks)
    if patterns is not None:
        rows, members, counts, named = patterns
        row_parts.append(rows + offset)
        atom_parts.append(members)
        lower_parts.append(counts)
        upper_parts.append(counts)
        source_parts.append(np.stack([named, np.zeros_like(named)], axis=1))
        offset += counts.size
    lower = np.concatenate(lower_parts).astype(np.float64) if lower_parts else np.zeros(0)
    upper = np.concatenate(upper_parts).astype(np.float64) if upper_parts else np.zeros(0)
    sources = np.concatenate(source_parts) if source_parts else np.zeros((0, 2), dtype=np.int64)
    rows = np.concatenate(row_parts) if row_parts else np.zeros(0, dtype=np.int64)
    members = np.concatenate(atom_parts) if atom_parts else np.zeros(0, dtype=np.int64)
    matrix = sp.csr_matrix((np.ones(rows.size), (rows, members)), shape=(offset, atoms.n))
    matrix.sort_indices()
    return matrix, lower, upper, sources


def _check_truth(
    truth: FloatArray, lower: FloatArray, upper: FloatArray, sources: IntArray, blocks: Sequence[Block]
) -> None:
    """Refuse a ledger whose published counts the data does not hold (a damaged snapshot)."""
    if ((truth < lower - 0.5) | (truth > upper + 0.5)).any():
        bad = int(np.flatnonzero((truth < lower - 0.5) | (truth > upper + 0.5))[0])
        block, cell = sources[bad]
        raise InconsistentLedger(
            f"{blocks[int(block)].cell_label(int(cell))} was published as {int(lower[bad])}..{int(upper[bad])} "
            f"but the data it was counted from holds {int(truth[bad])}"
        )


def _membership_rows(atoms: Atoms, blocks: Sequence[Block]) -> tuple[IntArray, IntArray, IntArray, IntArray] | None:
    """The membership-pattern classes of the released member lists, as exact counts.

    Whoever holds the lists knows, for every combination of lists, how many people are in
    exactly those lists (``A & B``, ``A - B``, ...). Each such class is the people of the atoms
    that every one of its lists counts and none of the others does, so it is one more
    published count over the atoms. Per class: its row, the atoms, its size, and the list
    block that names it in messages. None with fewer than two lists (a list's only class is
    its size, already a row).
    """
    listed = [i for i, block in enumerate(blocks) if block.listed]
    if len(listed) < 2:
        return None
    rng = np.random.default_rng(_SEED + 1)
    key = np.zeros(atoms.n)
    last = np.full(atoms.n, -1, dtype=np.int64)
    for i, weight in zip(listed, rng.random(len(listed)) + 0.5, strict=True):
        _, members = _block_pairs(atoms, blocks[i])
        key[members] += weight
        last[members] = i
    inside = np.flatnonzero(key > 0)
    _, first, pattern = np.unique(key[inside], return_index=True, return_inverse=True)
    pattern = pattern.reshape(-1)
    counts = np.bincount(pattern, weights=atoms.counts[inside], minlength=first.size).astype(np.int64)
    return pattern.astype(np.int64), inside.astype(np.int64), counts, last[inside[first]]


def _block_pairs(atoms: Atoms, block: Block) -> tuple[IntArray, IntArray]:
    """(cell, atom) pairs: which atoms each cell of ``block`` counts."""
    mask = np.ones(atoms.n, dtype=bool)
    for dim, wanted in _conditions(block):
        column = atoms.column(block.epoch, dim)
        if column is None:
            if dim == PRESENT:
                continue  # atoms of one epoch: everyone is in it
            raise ValueError(f"the atoms do not tell {dim!r} apart at epoch {block.epoch}")
        mask &= np.isin(atoms.codes[:, column], _codes(atoms.values[column], wanted))
    candidates = np.flatnonzero(mask)
    if block.by:
        positions = np.empty((candidates.size, len(block.by)), dtype=np.int64)
        for j, (dim, categories) in enumerate(zip(block.by, block.categories, strict=True)):
            column = atoms.column(block.epoch, dim)
            if column is None:
                raise ValueError(f"the atoms do not tell {dim!r} apart at epoch {block.epoch}")
            lookup = np.array([categories.index(v) if v in categories else -1 for v in atoms.values[column]] + [-1])
            positions[:, j] = lookup[atoms.codes[candidates, column]]  # code -1 (null) -> the last entry
    else:
        positions = np.zeros((candidates.size, 0), dtype=np.int64)
    rows, members = [], []
    kept_patterns = block.cells >= 0
    patterns, pattern_of = np.unique(kept_patterns, axis=0, return_inverse=True)
    pattern_of = pattern_of.reshape(-1)
    shape = [len(c) for c in block.categories]
    for p, pattern in enumerate(patterns):
        cells = np.flatnonzero(pattern_of == p)
        kept = np.flatnonzero(pattern)
        inside = (positions[:, kept] >= 0).all(axis=1)
        atom_keys = _ravel(positions[inside][:, kept], [shape[j] for j in kept])
        cell_keys = _ravel(block.cells[cells][:, kept].astype(np.int64), [shape[j] for j in kept])
        order = np.argsort(cell_keys)
        at = np.searchsorted(cell_keys[order], atom_keys)
        at = np.minimum(at, max(cells.size - 1, 0))
        hit = cell_keys[order][at] == atom_keys if cells.size else np.zeros(atom_keys.size, dtype=bool)
        rows.append(cells[order][at[hit]])
        members.append(candidates[inside][hit])
    return (
        np.concatenate(rows).astype(np.int64) if rows else np.zeros(0, dtype=np.int64),
        np.concatenate(members).astype(np.int64) if members else np.zeros(0, dtype=np.int64),
    )


def _conditions(block: Block) -> list[tuple[str, tuple[str, ...]]]:
    """The block's population as (column, accepted values): presence, filters, adults."""
    conditions = [(PRESENT, ("true",)), *sorted(block.where.items())]
    if block.adults_only:
        conditions.append((MINOR, ("false",)))
    return conditions


def _codes(values: tuple[str, ...], wanted: Sequence[str]) -> IntArray:
    index = {v: i for i, v in enumerate(values)}
    return np.array([index[v] for v in wanted if v in index], dtype=np.int64)


def _ravel(codes: npt.NDArray[np.int64], shape: list[int]) -> IntArray:
    if not shape:
        return np.zeros(codes.shape[0], dtype=np.int64)
    return np.asarray(np.ravel_multi_index(tuple(codes.T), shape), dtype=np.int64)
