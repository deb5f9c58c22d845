"""Audience segments: named predicates over dimensions, sized and exported under the privacy rules.

A segment's size below k is reported as suppressed; its member list (pseudonyms only) is
released only for at least k members, without minors unless the caller opts in. Within a
Dataset, every released size, member list and published table cell is remembered (the
``ReleaseLedger``), and a request whose population differs from an earlier released one by
fewer than k people (but not zero) is refused: the difference of the two answers would single
those people out. Tables are not refused for a cell: the Dataset suppresses such cells
instead (see ``Dataset._release_table``).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from identity_analytics.cohorts import CohortTable, filter_sql, population_key
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
        from identity_analytics.report import describe

        path = Path(path)
        text = path.read_text("utf-8")
        try:
            return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ValueError(f"{where}: not valid YAML ({problem}); fix the segment file") from None
        except ValidationError as error:
            location, message = describe(error)
            where = f"{path}: {location}" if location else str(path)
            raise ValueError(f"{where}: {message}; fix the segment file") from None


@dataclass
class ReleaseLedger:
    """Populations released so far from one Dataset (segment sizes, member lists, overlap and
    breakdown cells, cells of cohort tables).

    Populations defined by a filter keep their members in DuckDB. The cells of unfiltered
    cohort tables are kept by their categories only (``cubes``): keeping members for every
    cell of a table over millions of rows would cost more than the table, and their overlap
    with any other population is a count of the data by those categories, computed when
    that population is released.
    """

    con: duckdb.DuckDBPyConnection
    sizes: dict[int, int] = field(default_factory=dict)
    labels: dict[int, str] = field(default_factory=dict)
    #: releases of a population released before (its members are not kept twice)
    repeats: set[int] = field(default_factory=set)
    #: cells of unfiltered tables: one entry per table, by release of its first cell
    cubes: list[_Cube] = field(default_factory=list)
    #: populations (by the categories they name) an unfiltered table suppressed: later tables
    #: keep them suppressed, or publishing one could undo the earlier table's protection
    withheld: set[tuple[tuple[str, str], ...]] = field(default_factory=set)

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
        for cube in self.cubes:
            counts = _box_counts(
                self.con,
                cube.by,
                f"(SELECT * FROM {ANALYTICS_TABLE} WHERE pseudonym IN (SELECT pseudonym FROM ({population})))",
            )
            for release, box in zip(cube.releases, cube.boxes, strict=True):
                overlaps[release] = counts.get(box, 0)
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
            self.cubes = [cube for cube in self.cubes if cube.releases[0] < first]
            raise

    def release(self, population: str, size: int, k: int, what: str, label: str) -> None:
        """Check a release against every earlier one, then remember it (once per population)."""
        if not self.check(population, size, k, what):
            self.record(population, size, label)

    def release_cells(self, grouped: str, by: Sequence[str], cells: list[Cell], k: int, rows: str) -> None:
        """Release the cells of one table at once (all or nothing), each checked against every
        earlier release: one insert per grouping set and one join, however many cells.

        A table whose total (the population of its filter) would differ from an earlier
        release by 1 to k-1 people is refused (:class:`PrivacyError`), as a segment would be;
        if other cells would, :class:`NarrowCells` names them so that the caller can hide them.

        ``grouped`` lists ``pseudonym`` and the ``by`` columns of the table's population, and
        ``rows`` is that population with every column (for its overlaps with the cells of
        unfiltered tables, counted from the data); a cell gives per dimension its category,
        or None where it is aggregated away. Cells of
        the same table are not compared with each other: its protection already keeps every
        difference between its published cells at 0 or at least k.
        """
        if not cells:
            return
        first = len(self.sizes)
        sizes = np.array([cell.size for cell in cells], dtype=np.int64)
        labels = [cell.label for cell in cells]
        boxes = [tuple(cell.categories) for cell in cells]
        for cube in self.cubes:  # first against cells kept by their categories: no members needed
            overlap = _cube_overlaps(self.con, tuple(by), boxes, cube, rows)
            earlier_sizes = np.array([self.sizes[r] for r in cube.releases], dtype=np.int64)
            earlier_labels = [self.labels[r] for r in cube.releases]
            _refuse_or_name_narrow(cells, sizes, labels, earlier_sizes, earlier_labels, overlap, k)
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
            in_cubes = {r for cube in self.cubes for r in cube.releases}
            earlier = np.array([r for r in range(first) if r not in self.repeats | in_cubes], dtype=np.int64)
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
            all_sizes = np.array([self.sizes[r] for r in range(len(self.sizes))], dtype=np.int64)
            difference = all_sizes[new][:, None] + all_sizes[earlier][None, :] - 2 * overlap
            earlier_labels = [self.labels[int(r)] for r in earlier]
            _refuse_or_name_narrow(cells, sizes, labels, all_sizes[earlier], earlier_labels, overlap, k)
            again = new[(difference == 0).any(axis=1)].tolist()
            if again:  # the same populations again (a table asked twice): keep their members once
                self.con.execute(f"DELETE FROM _released WHERE release IN ({', '.join(map(str, again))})")
                self.repeats.update(again)

    def _member_box_counts(self, by: tuple[str, ...]) -> dict[tuple[Any, ...], int]:
        """Per release kept by its members: those members counted in every box over ``by``
        (keys: release, then per dimension its category or None where aggregated)."""
        columns = ", ".join(f"i.{d}::VARCHAR AS {d}" for d in by)
        rows = self.con.execute(
            f"""SELECT r.release, {columns}, count(*) FROM {ANALYTICS_TABLE} i
            JOIN _released r ON hash(i.pseudonym) = r.member
            GROUP BY r.release, CUBE ({", ".join(f"i.{d}" for d in by)})"""
        ).fetchall()
        return {tuple(row[:-1]): int(row[-1]) for row in rows}

    def narrow_cells(self, by: Sequence[str], cells: list[Cell], counted: str, k: int) -> set[int]:
        """The cells of an unfiltered table (by index) that would differ from an earlier
        release by 1 to k-1 people, or that an earlier unfiltered table suppressed; none of
        them is recorded.

        A cell released before (the same categories, from any unfiltered table) is not
        checked again. The others are checked against populations kept by their members
        through one grouped count of those members, and against the cells of earlier
        unfiltered tables through one count of the data over the dimensions of both
        (``counted``: the WHERE clause of the rows tables count).
        """
        by = tuple(by)
        fresh = self._fresh(by, cells)
        withheld = {i for i in fresh if population_key(by, cells[i].categories) in self.withheld}
        fresh = [i for i in fresh if i not in withheld]
        if not fresh or not self.sizes:
            return withheld
        boxes = [tuple(cells[i].categories) for i in fresh]
        sizes = np.array([cells[i].size for i in fresh], dtype=np.int64)
        narrow = np.zeros(len(fresh), dtype=bool)
        in_cubes = {r for c in self.cubes for r in c.releases}
        kept = [r for r in self.sizes if r not in self.repeats and r not in in_cubes]
        if kept:
            counts = self._member_box_counts(by)
            overlap = np.array([[counts.get((r, *box), 0) for r in kept] for box in boxes], dtype=np.int64)
            narrow |= _narrow(sizes, np.array([self.sizes[r] for r in kept], dtype=np.int64), overlap, k)
        for earlier in self.cubes:
            overlap = _cube_overlaps(self.con, by, boxes, earlier, f"(SELECT * FROM {ANALYTICS_TABLE} {counted})")
            narrow |= _narrow(sizes, np.array([self.sizes[r] for r in earlier.releases], dtype=np.int64), overlap, k)
        return withheld | {fresh[i] for i in np.flatnonzero(narrow).tolist()}

    def record_cube(
        self, by: Sequence[str], cells: list[Cell], withheld: Iterable[tuple[tuple[str, str], ...]] = ()
    ) -> None:
        """Remember the published cells of an unfiltered table (after :meth:`narrow_cells`)
        and the populations it ``withheld`` (its suppressed cells that are not empty)."""
        by = tuple(by)
        released = self.published_keys()
        self.withheld |= set(withheld) - released - {population_key(by, cell.categories) for cell in cells}
        fresh = self._fresh(by, cells)
        if not fresh:
            return
        first = len(self.sizes)
        releases = list(range(first, first + len(fresh)))
        for release, i in zip(releases, fresh, strict=True):
            self.sizes[release], self.labels[release] = cells[i].size, cells[i].label
        self.cubes.append(_Cube(by, releases, [tuple(cells[i].categories) for i in fresh]))

    def published_keys(self) -> set[tuple[tuple[str, str], ...]]:
        """The populations unfiltered tables published (by the categories they name)."""
        return {population_key(c.by, box) for c in self.cubes for box in c.boxes}

    def _fresh(self, by: tuple[str, ...], cells: list[Cell]) -> list[int]:
        """Indices of the cells whose population no unfiltered table released before."""
        released = self.published_keys()
        return [i for i, cell in enumerate(cells) if population_key(by, cell.categories) not in released]


def _narrow(sizes: np.ndarray, earlier: np.ndarray, overlap: np.ndarray, k: int) -> np.ndarray:
    """Per new population: whether it differs from one of the ``earlier`` by 1 to k-1 people."""
    difference = sizes[:, None] + earlier[None, :] - 2 * overlap
    return np.asarray(((difference > 0) & (difference < k)).any(axis=1), dtype=bool)


@dataclass
class _Cube:
    """Cells of an unfiltered table kept by their categories: per cell its release and box
    (per dimension of ``by`` its category, or None where aggregated away)."""

    by: tuple[str, ...]
    releases: list[int]
    boxes: list[tuple[str | None, ...]]


def _box_counts(con: duckdb.DuckDBPyConnection, by: tuple[str, ...], source: str) -> dict[tuple[Any, ...], int]:
    """Rows of ``source`` in every box over ``by`` (per dimension a category, or None)."""
    rows = con.execute(
        f"SELECT {', '.join(f'{d}::VARCHAR' for d in by)}, count(*) FROM {source} GROUP BY CUBE ({', '.join(by)})"
    ).fetchall()
    return {tuple(row[:-1]): int(row[-1]) for row in rows}


def _cube_overlaps(
    con: duckdb.DuckDBPyConnection, by: tuple[str, ...], boxes: list[tuple[str | None, ...]], old: _Cube, rows: str
) -> np.ndarray:
    """People in both cells, for every cell ``boxes`` over ``by`` of the population ``rows``
    (a relation of analytics rows; rows of the result) and of ``old`` (columns).

    Two cells intersect in the cell over the dimensions of both that takes each one's
    categories (none where they name different categories of a dimension): its count comes
    from one CUBE of ``rows`` over those dimensions.
    """
    dims = tuple(d for d in DIMENSIONS if d in by or d in old.by)
    counts = _box_counts(con, dims, rows)
    # categories as codes per dimension (the last code of each: aggregated away)
    seen: list[dict[str | None, int]] = [{} for _ in dims]
    for key in counts:
        for d, value in enumerate(key):
            if value is not None:
                seen[d].setdefault(value, len(seen[d]))
    for table_by, table_boxes in ((by, boxes), (old.by, old.boxes)):
        for box in table_boxes:
            for dim, value in zip(table_by, box, strict=True):
                if value is not None:
                    seen[dims.index(dim)].setdefault(value, len(seen[dims.index(dim)]))
    shape = tuple(len(codes) + 1 for codes in seen)
    for d, codes in enumerate(seen):
        codes[None] = shape[d] - 1
    # the counted cells by flat index, sorted (a dense array over many dimensions could be huge)
    if counts:
        where = np.array([[seen[d][value] for d, value in enumerate(key)] for key in counts], dtype=np.int64)
        flat_keys = np.ravel_multi_index(tuple(where.T), shape)
    else:
        flat_keys = np.zeros(0, dtype=np.int64)
    order = np.argsort(flat_keys)
    flat_keys = flat_keys[order]
    values = np.fromiter(counts.values(), dtype=np.int64, count=len(counts))[order]

    def count_of(cell: np.ndarray) -> np.ndarray:
        flat = np.ravel_multi_index(tuple(np.moveaxis(cell, -1, 0)), shape)
        if flat_keys.size == 0:
            return np.zeros(flat.shape, dtype=np.int64)
        at = np.minimum(np.searchsorted(flat_keys, flat), flat_keys.size - 1)
        return np.asarray(np.where(flat_keys[at] == flat, values[at], 0), dtype=np.int64)

    def coded(table_by: tuple[str, ...], table_boxes: list[tuple[str | None, ...]]) -> np.ndarray:
        named = [dict(zip(table_by, box, strict=True)) for box in table_boxes]
        return np.array([[seen[d][n.get(dim)] for d, dim in enumerate(dims)] for n in named], dtype=np.int64)

    a = coded(by, boxes).reshape(len(boxes), len(dims))
    b = coded(old.by, old.boxes).reshape(len(old.boxes), len(dims))
    margin = np.array(shape, dtype=np.int64) - 1
    overlap = np.zeros((len(boxes), len(old.boxes)), dtype=np.int64)
    step = max(1, 2_000_000 // max(1, len(old.boxes) * len(dims)))
    for start in range(0, len(boxes), step):  # the pairs a slice of rows at a time
        left = a[start : start + step, None, :]
        right = b[None, :, :]
        clash = ((left != margin) & (right != margin) & (left != right)).any(axis=2)
        cell = np.where(left == margin, right, left)
        overlap[start : start + step] = np.where(clash, 0, count_of(cell))
    return overlap


def _refuse_or_name_narrow(
    cells: list[Cell],
    sizes: np.ndarray,
    labels: list[str],
    earlier_sizes: np.ndarray,
    earlier_labels: list[str],
    overlap: np.ndarray,
    k: int,
) -> None:
    """Refuse a table whose total differs from an earlier release by 1 to k-1 people, or
    name its other cells that do (:class:`NarrowCells`)."""
    narrow = np.flatnonzero(_narrow(sizes, earlier_sizes, overlap, k)).tolist()
    for i in narrow:
        if all(v is None for v in cells[i].categories):  # the table's whole population: refused
            difference = sizes[i] + earlier_sizes - 2 * overlap[i]
            j = int(np.flatnonzero((difference > 0) & (difference < k))[0])
            raise _differencing(f"the {labels[i]}", earlier_labels[j], k)
    if narrow:
        raise NarrowCells(set(narrow))


class NarrowCells(Exception):
    """Cells of a table (by index) that would differ from an earlier release by 1 to k-1
    people; nothing of the table was released, and the caller hides them."""

    def __init__(self, cells: set[int]):
        super().__init__(f"cells {sorted(cells)} would differ from earlier releases by fewer than k people")
        self.cells = cells


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


__all__ = [
    "MINIMUM_MEMBER_AGE",
    "Cell",
    "NarrowCells",
    "ReleaseLedger",
    "Segment",
    "SegmentResult",
    "population_key",
    "population_sql",
]
