"""Audience segments: named predicates over dimensions, sized and exported under the privacy rules.

A segment's size below k is reported as suppressed; its member list (pseudonyms only) is
released only for at least k members, without minors unless the caller opts in. Within a
Dataset, every released size or member list is remembered, and a request whose population
differs from an earlier released one by fewer than k people (but not zero) is refused: the
difference of the two answers would single those people out.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, field_validator

from identity_analytics.cohorts import CohortTable, filter_sql
from identity_analytics.errors import PrivacyError
from identity_analytics.loaders.projection import ANALYTICS_TABLE, MINIMUM_MEMBER_AGE, MINORS_TABLE
from identity_analytics.vocabulary import DIMENSIONS

if TYPE_CHECKING:
    import duckdb

    from identity_analytics.dataset import Dataset

#: Members in this band, or younger than MINIMUM_MEMBER_AGE by birthdate, are left out of
#: member lists unless allowed.
MINOR_BAND = "_0_to_14"


class Segment(BaseModel):
    """A named audience: identities whose dimensions take one of the listed categories.

    ``where`` maps dimensions to accepted categories (``undetermined`` and ``other``
    included); an empty ``where`` is everyone counted. Saved as JSON or YAML.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    where: dict[str, list[str]] = Field(default_factory=dict)
    description: str | None = None

    @field_validator("where")
    @classmethod
    def _known_dimensions(cls, where: dict[str, list[str]]) -> dict[str, list[str]]:
        unknown = [d for d in where if d not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; the dimensions are {list(DIMENSIONS)}")
        empty = [d for d, values in where.items() if not values]
        if empty:
            raise ValueError(f"where{empty} lists no category; give at least one")
        return where

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_json(cls, text: str) -> Segment:
        return cls.model_validate_json(text)

    @classmethod
    def from_yaml(cls, text: str) -> Segment:
        return cls.model_validate(yaml.safe_load(text))

    def save(self, path: str | Path) -> Path:
        """Write the segment as YAML (``.yaml``/``.yml``) or JSON (any other suffix); folders are created."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json() + "\n", "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Segment:
        """Read a segment saved as YAML or JSON."""
        path = Path(path)
        text = path.read_text("utf-8")
        if path.suffix not in (".yaml", ".yml"):
            return cls.from_json(text)
        try:
            return cls.from_yaml(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ValueError(f"{where}: not valid YAML ({problem}); fix the segment file") from None


@dataclass
class ReleaseLedger:
    """Populations released so far from one Dataset (segment sizes, member lists, overlap and
    breakdown cells, cells of filtered cohort tables), their members kept in DuckDB."""

    con: duckdb.DuckDBPyConnection
    sizes: dict[int, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    #: releases of a population released before (its members are not kept twice)
    repeats: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        # Members are kept as 64-bit hashes of their pseudonyms (a quarter of the bytes, a fast
        # join). A collision can only add to an overlap, which makes a difference look smaller:
        # the guard errs on the strict side.
        self.con.execute("CREATE TEMP TABLE IF NOT EXISTS _released (release INTEGER, member UBIGINT)")

    def check(self, population: str, size: int, k: int, what: str) -> bool:
        """Refuse a release whose population differs from an earlier one by 1 to k-1 people.

        Returns True when the very same population was released before (nothing new).
        """
        if not self.sizes:
            return False
        overlaps = dict(
            self.con.execute(
                f"SELECT release, count(*) FROM _released "
                f"JOIN (SELECT hash(pseudonym) AS member FROM ({population})) USING (member) GROUP BY release"
            ).fetchall()
        )
        seen = False
        for release, released_size in self.sizes.items():
            if release in self.repeats:
                continue
            difference = released_size + size - 2 * overlaps.get(release, 0)
            if 0 < difference < k:
                raise _differencing(what, self.labels[release], k)
            seen = seen or difference == 0
        return seen

    def record(self, population: str, size: int, label: str) -> None:
        release = len(self.sizes)
        self.con.execute(f"INSERT INTO _released SELECT {release}, hash(pseudonym) FROM ({population})")
        self.sizes[release] = size
        self.labels[release] = label

    @contextlib.contextmanager
    def all_or_nothing(self) -> Iterator[None]:
        """Releases made inside the block are forgotten again if the block raises (nothing was published)."""
        first = len(self.sizes)
        try:
            yield
        except BaseException:
            self.con.execute("DELETE FROM _released WHERE release >= ?", [first])
            for release in range(first, len(self.sizes)):
                del self.sizes[release], self.labels[release]
                self.repeats.discard(release)
            raise

    def release(self, population: str, size: int, k: int, what: str, label: str) -> None:
        """Check a release against every earlier one, then remember it (once per population)."""
        if not self.check(population, size, k, what):
            self.record(population, size, label)

    def release_cells(self, grouped: str, by: Sequence[str], cells: list[Cell], k: int) -> None:
        """Release the cells of one table at once (all or nothing), each checked against every
        earlier release: one insert per grouping set and one join, however many cells.

        ``grouped`` lists ``pseudonym`` and the ``by`` columns of the table's population; a
        cell gives per dimension its category, or None where it is aggregated away. Cells of
        the same table are not compared with each other: its protection already keeps every
        difference between its published cells at 0 or at least k.
        """
        if not cells:
            return
        first = len(self.sizes)
        with self.all_or_nothing():
            for release, cell in enumerate(cells, first):
                self.sizes[release], self.labels[release] = cell.size, cell.label
            grouping_sets: dict[tuple[bool, ...], list[tuple[int, Cell]]] = {}
            for release, cell in enumerate(cells, first):
                grouping_sets.setdefault(tuple(v is not None for v in cell.categories), []).append((release, cell))
            for kept, members in grouping_sets.items():
                dims = [d for d, keep in zip(by, kept, strict=True) if keep]
                mapping = pa.table(
                    {"release": pa.array([r for r, _ in members], pa.int32())}
                    | {d: pa.array([c.categories[by.index(d)] for _, c in members], pa.string()) for d in dims}
                )
                self.con.register("_cells", mapping)
                try:
                    on = " AND ".join(f"p.{d}::VARCHAR = m.{d}" for d in dims) or "TRUE"
                    self.con.execute(
                        f"INSERT INTO _released SELECT m.release, hash(p.pseudonym) FROM ({grouped}) p "
                        f"JOIN _cells m ON {on}"
                    )
                finally:
                    self.con.unregister("_cells")
            if first == 0:
                return
            earlier = np.array([r for r in range(first) if r not in self.repeats], dtype=np.int64)
            new = np.arange(first, len(self.sizes))
            overlap = np.zeros((new.size, earlier.size), dtype=np.int64)
            column = np.full(first, -1, dtype=np.int64)
            column[earlier] = np.arange(earlier.size)
            pairs = self.con.execute(
                """SELECT a.release AS new, b.release AS old, count(*) AS n
                FROM _released a JOIN _released b USING (member)
                WHERE a.release >= ? AND b.release < ? GROUP BY ALL""",
                [first, first],
            ).fetchnumpy()
            row = np.asarray(pairs["new"], dtype=np.int64) - first
            col = column[np.asarray(pairs["old"], dtype=np.int64)]
            counted = col >= 0  # repeats kept no members
            overlap[row[counted], col[counted]] = pairs["n"][counted]
            sizes = np.array([self.sizes[r] for r in range(len(self.sizes))], dtype=np.int64)
            difference = sizes[new][:, None] + sizes[earlier][None, :] - 2 * overlap
            narrow = np.argwhere((difference > 0) & (difference < k))
            if narrow.size:
                i, j = (int(x) for x in narrow[0])
                raise _differencing(f"the {self.labels[int(new[i])]}", self.labels[int(earlier[j])], k)
            again = new[(difference == 0).any(axis=1)].tolist()
            if again:  # the same populations again (a table asked twice): keep their members once
                self.con.execute(f"DELETE FROM _released WHERE release IN ({', '.join(map(str, again))})")
                self.repeats.update(again)


def _differencing(what: str, earlier: str, k: int) -> PrivacyError:
    return PrivacyError(
        f"refused: {what} would differ from the earlier released {earlier} by fewer than k={k} people, "
        "so the two answers together would single them out"
    )


@dataclass(frozen=True)
class Cell:
    """A published cell to remember: its categories (None: aggregated away), size and label."""

    categories: tuple[str | None, ...]
    size: int
    label: str


@dataclass
class SegmentResult:
    """A segment evaluated on a Dataset: its protected size, breakdowns and member list."""

    segment: Segment
    dataset: Dataset = field(repr=False)
    size: int | None
    suppressed: bool

    def breakdown(self, by: Sequence[str] | str, **kwargs: Any) -> CohortTable:
        """A protected cohort table of the segment's members by other dimensions.

        Its grand total is the segment's size, so it passes the same differencing guard.
        """
        return self.dataset._segment_breakdown(self.segment, by, **kwargs)

    def members(self, allow_minors: bool = False) -> pa.Table:
        """The members' pseudonyms (one column, ``pseudonym``), sorted.

        Raises :class:`PrivacyError` below k members. The ``_0_to_14`` age band and anyone
        under 16 by birthdate (at the Dataset's reference date) are left out unless
        ``allow_minors=True``.
        """
        return self.dataset._segment_members(self.segment, allow_minors)


def population_sql(where: Mapping[str, Sequence[str]], include_inactive: bool, *, adults_only: bool = False) -> str:
    """SQL listing the pseudonyms of a segment's population (``adults_only``: minors left out)."""
    sql = f"SELECT pseudonym FROM {ANALYTICS_TABLE} {filter_sql(where, include_inactive)}"
    if not adults_only:
        return sql
    joiner = "AND" if "WHERE" in sql else "WHERE"
    return f"{sql} {joiner} age <> '{MINOR_BAND}' AND pseudonym NOT IN (SELECT pseudonym FROM {MINORS_TABLE})"


def segment_label(segment: Segment) -> str:
    return f"segment {segment.name!r} ({json.dumps(segment.where, sort_keys=True)})"


__all__ = ["MINIMUM_MEMBER_AGE", "Cell", "ReleaseLedger", "Segment", "SegmentResult", "population_sql"]
