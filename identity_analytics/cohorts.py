"""Computing and releasing cohort tables: one DuckDB CUBE query, engine-independent protection,
then the release gate.

The cells come from the vocabulary, never from the data: every category of every requested
dimension appears, zero cells included, so interior cells add up to their margins and the
grand total is the number of identities counted. Protection runs on the aggregated cells
(:mod:`identity_analytics.protection`): primary suppression of every count in (0, k), then
secondary suppression until no suppressed cell can be narrowed below k by linear programming
on the published cells; optionally rounding to a base. Tables released together are summed
from one atom table (:mod:`identity_analytics.release.atoms`) and published through the gate
(:func:`release_tables`). The table and its views are :mod:`identity_analytics.cohort_table`.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from identity_analytics.cohort_table import CohortTable
from identity_analytics.protection import (
    CellGrid,
    primary_suppression,
    round_to_base,
    secondary_suppression,
)
from identity_analytics.release.atoms import AtomTable
from identity_analytics.release.gate import Session
from identity_analytics.schema import ANALYTICS_TABLE
from identity_analytics.specs import (
    PROTECT_MODES,
    counted_population,
    filter_sql,
    validate_dimensions,
    validate_filters,
)
from identity_analytics.vocabulary import Vocabulary

BoolArray = npt.NDArray[np.bool_]
#: Largest table (cells, margins included): beyond it a table is never a sensible release,
#: and building and protecting it takes minutes and gigabytes.
MAX_CELLS = 1_000_000

if TYPE_CHECKING:
    import duckdb



def cohort_sql(
    by: Sequence[str], filters: Mapping[str, Sequence[str]], include_inactive: bool, margins: bool,
    atoms: AtomTable | None = None,
) -> str:  # fmt: skip
    """The one aggregation query of a cohort table (over the analytics rows, or the same
    counts summed over an :class:`AtomTable` of them)."""
    columns = ", ".join(by)
    grouping = f"CUBE ({columns})" if margins else columns
    source, count = (atoms.name, "coalesce(sum(n), 0)::BIGINT") if atoms is not None else (ANALYTICS_TABLE, "count(*)")
    return (
        f"SELECT {columns}, GROUPING({columns}) AS grouping_id, {count} AS count\n"
        f"FROM {source}\n"
        f"{filter_sql(filters, include_inactive)}\n"
        f"GROUP BY {grouping}"
    ).replace("\n\n", "\n")


def compute_cohorts(
    con: duckdb.DuckDBPyConnection,
    vocabulary: Vocabulary,
    by: Sequence[str] | str,
    k: int,
    *,
    margins: bool = True,
    where: Mapping[str, Sequence[str]] | None = None,
    protect: str = "suppress",
    base: int | None = None,
    include_inactive: bool = False,
    along: Sequence[CohortTable] = (),
    atoms: AtomTable | None = None,
) -> CohortTable:
    """Aggregate with one CUBE query, then protect the cells (of this table alone: the joint
    audit with other releases is the release gate's). A cell that is a margin of a table of
    ``along`` (tables of more dimensions over the same population, released with this one)
    and suppressed there is suppressed here too. With ``atoms`` covering the table's
    dimensions, filters and ``state``, the query sums its rows instead of scanning the data
    (the same counts; the table's ``sql`` stays the query over the data)."""
    dims = validate_dimensions(by)
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    if protect not in PROTECT_MODES:
        raise ValueError(f"protect must be one of {list(PROTECT_MODES)}, got {protect!r}")
    base = _check_base(protect, base, k)
    filters = validate_filters(where, vocabulary)
    categories = tuple(filters.get(d, vocabulary.categories(d)) for d in dims)
    cells = int(np.prod([len(c) + 1 for c in categories]))
    if cells > MAX_CELLS:
        raise ValueError(
            f"a table of {' x '.join(dims)} has {cells:,} cells (margins included), more than "
            f"{MAX_CELLS:,}; restrict the large dimensions with where= (e.g. a few citizenships or locales)"
        )
    # Without margins in the output, suppression still protects the whole cube: the margins
    # are published by other calls (a table of fewer dimensions, any grand total), so the
    # interior cells shown are those of the table with margins, with the same pattern.
    cube = margins or "suppress" in protect
    sql = cohort_sql(dims, filters, include_inactive, cube)
    if atoms is not None and atoms.covers({*dims, *filters, "state"}):
        rows = con.execute(cohort_sql(dims, filters, include_inactive, cube, atoms)).fetchall()
    else:
        rows = con.execute(sql).fetchall()
    grid = _grid(rows, categories, cube)
    primary = primary_suppression(grid.counts, k) if "suppress" in protect else np.zeros(grid.n_cells, dtype=bool)
    hidden = primary | suppressed_in(grid, dims, categories, filters, along) if "suppress" in protect else primary
    suppressed = secondary_suppression(grid, hidden, k) if "suppress" in protect else primary
    if cube and not margins:
        interior = ~grid.is_margin
        grid = CellGrid(grid.shape, grid.codes[interior], grid.counts[interior])
        primary, suppressed = primary[interior], suppressed[interior]
    published = round_to_base(grid.counts, base) if base else grid.counts.copy()
    published[suppressed] = 0  # nothing of a suppressed cell in what the table publishes
    return CohortTable(
        by=dims,
        categories=categories,
        k=k,
        margins=margins,
        protect=protect,
        base=base,
        sql=sql,
        filters=filters,
        grid=grid,
        suppressed=np.asarray(suppressed, dtype=bool),
        primary=np.asarray(primary, dtype=bool),
        published=np.asarray(published, dtype=np.int64),
    )


def suppressed_in(
    grid: CellGrid, by: tuple[str, ...], categories: tuple[tuple[str, ...], ...],
    filters: Mapping[str, tuple[str, ...]], tables: Sequence[CohortTable],
) -> np.ndarray:  # fmt: skip
    """Cells of ``grid`` to hide up front, given ``tables`` of as many or more dimensions
    released with it over the same or a nested population (one filter inside the other): a
    cell that is a suppressed margin cell of one of them over the same population, and a cell
    that differs from a published margin cell of one of them by 1 to k-1 people (the people
    of one population and not the other). The joint audit would find both; found here, the
    table's own secondary suppression protects them at once. A filter on one category of a
    dimension another table is by counts as that category of it (a table filtered by
    ``gender = female`` has the ``female`` cells of a table by gender as its margins)."""
    mask = np.zeros(grid.n_cells, dtype=bool)
    labels = [tuple(None if c < 0 else categories[j][c] for j, c in enumerate(row)) for row in grid.codes.tolist()]
    for table in tables:
        fixed = {d: v[0] for d, v in filters.items() if d not in by and d in table.by and len(v) == 1}
        rest = {d: v for d, v in filters.items() if d not in fixed}
        if not set(by) <= set(table.by) or set(fixed) & set(table.filters):
            continue
        same = dict(table.filters) == rest
        inside, outside = _within(rest, table.filters), _within(table.filters, rest)
        if not (same or inside or outside):
            continue
        named = [*by, *fixed]
        columns = [table.by.index(d) for d in named]
        others = [j for j in range(len(table.by)) if table.by[j] not in named]
        codes = table.grid.codes
        margin = (codes[:, others] < 0).all(axis=1)
        theirs: dict[tuple[str | None, ...], int] = {}
        for n in np.flatnonzero(margin).tolist():
            row = codes[n]
            theirs[tuple(None if row[c] < 0 else table.categories[c][row[c]] for c in columns)] = n
        extra = tuple(fixed.values())
        for n, key in enumerate(labels):
            m = theirs.get(key + extra)
            if m is None:
                continue
            if same:
                mask[n] |= bool(table.suppressed[m])
            elif not table.suppressed[m]:
                difference = abs(int(table.grid.counts[m]) - int(grid.counts[n]))
                mask[n] |= 0 < difference < table.k
    return mask


def _within(inner: Mapping[str, Sequence[str]], outer: Mapping[str, Sequence[str]]) -> bool:
    """Whether the population filtered by ``inner`` lies inside the one filtered by ``outer``."""
    return all(d in inner and set(inner[d]) <= set(v) for d, v in outer.items())


def _check_base(protect: str, base: int | None, k: int) -> int | None:
    if "round" not in protect:
        if base is not None:
            raise ValueError("base is only used with protect='round' or 'suppress+round'")
        return None
    base = k if base is None else base
    if isinstance(base, bool) or int(base) != base or base < 1:
        raise ValueError(f"the rounding base must be a whole number of at least 1, got {base!r}")
    base = int(base)
    if protect == "round" and base < k:
        raise ValueError(f"rounding alone needs base >= k ({k}) so that no published count lies in (0, k); got {base}")
    if protect == "suppress+round" and base < k and k % base:
        raise ValueError(f"with suppression, the rounding base must divide k ({k}) or be at least k; got {base}")
    return base


def _grid(rows: list[tuple[Any, ...]], categories: tuple[tuple[str, ...], ...], margins: bool) -> CellGrid:
    """Every cell of the cube (zeros included) with its count from the query's rows."""
    shape = tuple(len(c) for c in categories)
    dense = np.zeros([s + 1 for s in shape], dtype=np.int64)
    d = len(shape)
    if rows:
        columns = list(zip(*rows, strict=True))
        grouping_id = np.asarray(columns[d], dtype=np.int64)
        index = []
        for j, cats in enumerate(categories):
            position = {c: i for i, c in enumerate(cats)}
            found = np.asarray([-1 if v is None else position[v] for v in columns[j]], dtype=np.int64)
            index.append(np.where(grouping_id >> (d - 1 - j) & 1, shape[j], found))
        dense[tuple(index)] = np.asarray(columns[d + 1], dtype=np.int64)
    ranges = [[*range(s), -1] if margins else list(range(s)) for s in shape]
    codes = np.array(list(itertools.product(*ranges)), dtype=np.int32).reshape(-1, d)
    lookup = np.where(codes < 0, np.array(shape)[None, :], codes)
    return CellGrid(shape, codes, dense[tuple(lookup.T)])


def table_label(table: CohortTable, name: str | None = None) -> str:
    """How releases name a table: ``cohort table by age, income`` (with its filter)."""
    if name:
        return name
    label = f"cohort table by {', '.join(table.by)}"
    if table.filters:
        label += " filtered by " + ", ".join(f"{d} in {list(v)}" for d, v in table.filters.items())
    return label


def release_tables(
    session: Session, tables: Sequence[CohortTable], names: Sequence[str | None], include_inactive: bool,
    atoms: AtomTable | None = None,
) -> list[CohortTable]:  # fmt: skip
    """Publish tables together through the release gate: each comes back with the cells the
    joint audit asked to suppress as well (the audit's atoms read from ``atoms`` if given)."""
    blocks, cells = [], []
    for table, name in zip(tables, names, strict=True):
        block, published = table.release_block(
            table_label(table, name), counted_population(table.filters, include_inactive)
        )
        blocks.append(block)
        cells.append(published)

    def protect(i: int, going: BoolArray) -> BoolArray:
        table, published = tables[i], cells[i]
        mask = np.zeros(table.grid.n_cells, dtype=bool)
        mask[published[going]] = True
        wider: BoolArray = table.protecting(mask)[published]
        return wider

    alone = len(tables) == 1 and tables[0].audited_alone
    hidden = session.publish_cells(blocks, protect, atoms, audited_alone=alone)
    return [t.with_suppressed(c[h]) for t, c, h in zip(tables, cells, hidden, strict=True)]
