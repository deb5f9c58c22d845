"""What a release publishes, as constraints an attacker can combine: blocks of counted cells.

Every published count (a cell of a cohort table, a segment size, an overlap, a member
list's length, a risk total) is a count of the people of one *population*: a conjunction of
category sets over dimensions (``where``, which carries the rule of which identity states
are counted), optionally adults only, at one *epoch* (one version of the data). A block is
the cells of one release over one population: its ``by`` dimensions, and per cell the
category of each (or -1 where the cell aggregates it away) with the bounds the published
value gives (equal for an exact count, the rounding interval for a rounded one).
A segment size is a block without ``by`` and with one cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

#: Epoch of a Dataset whose ledger lives in memory: its data never changes.
CURRENT_EPOCH = "current"
#: Pseudo-dimension of atoms: "true" for identities member lists leave out as minors.
MINOR = "_minor"
#: Pseudo-dimension of atoms over several epochs: "true" when the identity is in that epoch's data.
PRESENT = "_present"


@dataclass(frozen=True)
class Block:
    """Published cells over one population (see the module docstring)."""

    label: str
    where: Mapping[str, tuple[str, ...]]
    by: tuple[str, ...] = ()
    categories: tuple[tuple[str, ...], ...] = ()
    cells: npt.NDArray[np.int32] = field(default_factory=lambda: np.zeros((1, 0), dtype=np.int32))
    lower: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    upper: npt.NDArray[np.int64] = field(default_factory=lambda: np.zeros(1, dtype=np.int64))
    adults_only: bool = False
    #: a released member list: its people are known by pseudonym, so every intersection and
    #: difference with the other lists is known too (see ``build_problem``)
    listed: bool = False
    epoch: str = CURRENT_EPOCH
    #: the release this block belongs to (its place in the ledger), -1 while not recorded
    release: int = -1

    def __post_init__(self) -> None:
        lower = np.asarray(self.lower, dtype=np.int64).reshape(-1)
        cells = np.asarray(self.cells, dtype=np.int32)
        if cells.size != lower.size * len(self.by):
            raise ValueError("a block needs one category per dimension for each cell")
        object.__setattr__(self, "cells", cells.reshape(lower.size, len(self.by)))
        object.__setattr__(self, "lower", lower)
        object.__setattr__(self, "upper", np.asarray(self.upper, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "where", {d: tuple(v) for d, v in self.where.items()})
        if not (cells.shape[0] == self.lower.size == self.upper.size):
            raise ValueError("a block needs one lower and one upper bound per cell")
        if len(self.categories) != len(self.by):
            raise ValueError("a block needs the categories of each of its dimensions")

    @classmethod
    def count(
        cls, label: str, where: Mapping[str, Sequence[str]], value: int, *, adults_only: bool = False,
        listed: bool = False,
    ) -> Block:
        """One exact count of the population ``where``."""
        return cls(
            label,
            {d: tuple(v) for d, v in where.items()},
            lower=np.array([value]),
            upper=np.array([value]),
            adults_only=adults_only,
            listed=listed,
        )

    @property
    def n_cells(self) -> int:
        return int(self.lower.size)

    def dimensions(self) -> set[str]:
        """Every dimension the block names (atoms must tell its categories apart)."""
        dims = set(self.where) | set(self.by)
        if self.adults_only:
            dims.add(MINOR)
        return dims

    def cell_label(self, cell: int) -> str:
        """``cell age=_25_to_34 of <label>``, or the label for a cell that names nothing."""
        named = [
            f"{d}={cats[c]}" for d, cats, c in zip(self.by, self.categories, self.cells[cell].tolist(), strict=True)
            if c >= 0
        ]
        return f"cell {', '.join(named)} of the {self.label}" if named else f"the {self.label}"

    def stamped(self, epoch: str, release: int) -> Block:
        return replace(self, epoch=epoch, release=release)

    def without(self, cells: npt.NDArray[np.bool_]) -> Block:
        """The block less some cells (suppressed after all)."""
        keep = ~np.asarray(cells, dtype=bool)
        return replace(self, cells=self.cells[keep], lower=self.lower[keep], upper=self.upper[keep])

    # JSON, as the ledger keeps it --------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "epoch": self.epoch,
            "where": {d: list(v) for d, v in sorted(self.where.items())},
            "adults_only": self.adults_only,
            "listed": self.listed,
            "by": list(self.by),
            "categories": [list(c) for c in self.categories],
            "cells": self.cells.tolist(),
            "lower": self.lower.tolist(),
            "upper": self.upper.tolist(),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any], release: int) -> Block:
        by = tuple(data["by"])
        return cls(
            label=str(data["label"]),
            where={d: tuple(v) for d, v in data["where"].items()},
            by=by,
            categories=tuple(tuple(c) for c in data["categories"]),
            cells=np.array(data["cells"], dtype=np.int32),
            lower=np.array(data["lower"], dtype=np.int64),
            upper=np.array(data["upper"], dtype=np.int64),
            adults_only=bool(data["adults_only"]),
            listed=bool(data.get("listed", False)),
            epoch=str(data["epoch"]),
            release=release,
        )
