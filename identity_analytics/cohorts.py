"""Cohort tables: one DuckDB CUBE query, then engine-independent k-anonymity protection.

The cells come from the vocabulary, never from the data: every category of every requested
dimension appears, zero cells included, so interior cells add up to their margins and the
grand total is the number of identities counted. Protection runs on the aggregated cells
(:mod:`identity_analytics.protection`): primary suppression of every count in (0, k), then
secondary suppression until no suppressed cell can be narrowed below k by linear programming
on the published cells; optionally rounding to a base.
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
import pyarrow as pa
from pydantic import BaseModel, ConfigDict, field_validator

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    primary_suppression,
    round_to_base,
    rounding_interval,
    secondary_suppression,
)
from identity_analytics.release.atoms import AtomTable
from identity_analytics.release.blocks import Block
from identity_analytics.release.gate import Session
from identity_analytics.schema import ANALYTICS_TABLE
from identity_analytics.vocabulary import DIMENSIONS, IDENTITY_STATES, OTHER, UNDETERMINED, Vocabulary

BoolArray = npt.NDArray[np.bool_]

if TYPE_CHECKING:
    import duckdb
    import pandas as pd
    from matplotlib.axes import Axes

Protect = Literal["suppress", "round", "suppress+round"]
PROTECT_MODES: tuple[str, ...] = ("suppress", "round", "suppress+round")
MAX_DIMENSIONS = 4
#: Largest table (cells, margins included): beyond it a table is never a sensible release,
#: and building and protecting it takes minutes and gigabytes.
MAX_CELLS = 1_000_000
SUPPRESSED_MARK = "·"

#: States counted by analytics unless the policy includes inactive identities: active, and
#: absent (Kratos' default). Inactive and unrecognised states are left out.
COUNTED_STATES: tuple[str, ...] = ("active", UNDETERMINED)
#: The other categories of ``state`` (its vocabulary is fixed, see ``IDENTITY_STATES``).
UNCOUNTED_STATES: tuple[str, ...] = (*[s for s in IDENTITY_STATES if s not in COUNTED_STATES], OTHER)


class Cohort(BaseModel):
    """A cohort table to compute: the arguments of :meth:`Dataset.cohorts`, as a value
    (frozen, hashable), so that several can be released together (:meth:`Dataset.cohort_tables`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: tuple[str, ...]
    k: int | None = None
    margins: bool = True
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    protect: str = "suppress"
    base: int | None = None
    #: how releases name the table (default: its dimensions and filter)
    name: str | None = None

    @field_validator("by", mode="before")
    @classmethod
    def _one_or_many(cls, by: Any) -> Any:
        return (by,) if isinstance(by, str) else by

    @field_validator("where", mode="before")
    @classmethod
    def _mapping(cls, where: Any) -> Any:
        if where is None:
            return ()
        if isinstance(where, Mapping):
            return tuple(sorted((d, (v,) if isinstance(v, str) else tuple(v)) for d, v in where.items()))
        return where

    @property
    def filters(self) -> dict[str, tuple[str, ...]]:
        return dict(self.where)


def counted_states_sql() -> str:
    """SQL condition: the identity's state is counted. Written as inequalities, which DuckDB
    drops when the table's statistics show no uncounted state (an ``IN`` list is evaluated
    on every row: 15-45% of a cohort query over 10 M rows)."""
    return " AND ".join(f"state <> '{state}'" for state in UNCOUNTED_STATES)


def validate_filters(where: Mapping[str, Sequence[str]] | None, vocabulary: Vocabulary) -> dict[str, tuple[str, ...]]:
    """``where`` checked against the vocabulary: known dimensions, known categories, not empty."""
    checked: dict[str, tuple[str, ...]] = {}
    for dim, values in (where or {}).items():
        if dim not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dim!r} in where; the dimensions are {list(DIMENSIONS)}")
        values = [values] if isinstance(values, str) else list(values)  # any iterable, read once
        categories = vocabulary.categories(dim)
        unknown = [v for v in values if v not in categories]
        if unknown:
            raise ValueError(
                f"unknown {dim} value(s) {unknown} in where; the categories of {dim} are {list(categories)}"
            )
        if not values:
            raise ValueError(f"where[{dim!r}] is empty; give at least one of {list(categories)}")
        checked[dim] = tuple(c for c in categories if c in set(values))
    return checked


def counted_population(filters: Mapping[str, Sequence[str]], include_inactive: bool) -> dict[str, tuple[str, ...]]:
    """A population as the release gate records it: the filters, and the states counted."""
    population = {dim: tuple(values) for dim, values in filters.items()}
    if not include_inactive:
        asked = population.get("state")
        population["state"] = tuple(s for s in COUNTED_STATES if asked is None or s in asked)
    return population


def filter_sql(filters: Mapping[str, Sequence[str]], include_inactive: bool) -> str:
    """The WHERE clause for a population: the state rule of the policy, then the filters."""
    clauses = [] if include_inactive else [counted_states_sql()]
    clauses += [f"{dim} IN ({_in_list(values)})" for dim, values in filters.items()]
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def _in_list(values: Sequence[str]) -> str:
    return ", ".join("'" + v.replace("'", "''") + "'" for v in values)


def validate_dimensions(by: Sequence[str] | str) -> tuple[str, ...]:
    """``by`` as a tuple of 1 to 4 distinct known dimensions."""
    dims = (by,) if isinstance(by, str) else tuple(by)
    if not 1 <= len(dims) <= MAX_DIMENSIONS:
        raise ValueError(f"give 1 to {MAX_DIMENSIONS} dimensions to group by, got {len(dims)}: {list(dims)}")
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; the dimensions are {list(DIMENSIONS)}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"each dimension may appear once in by, got {list(dims)}")
    return dims


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


@dataclass(frozen=True)
class CohortTable:
    """A protected cohort table. Published counts are safe; suppressed ones are null.

    The long form (:meth:`to_arrow`, :meth:`to_pandas`) has one row per cell: the dimension
    columns (null where a margin aggregates the dimension away), ``count``, ``share`` (of the
    parent total: the cell with its last grouped dimension aggregated away) and
    ``suppressed``. Why a cell is suppressed is in :meth:`audit` only, for the operator.
    """

    by: tuple[str, ...]
    categories: tuple[tuple[str, ...], ...]
    k: int
    margins: bool
    protect: str
    base: int | None
    sql: str
    filters: dict[str, tuple[str, ...]]
    grid: CellGrid = field(repr=False)  # the cells with their true counts, for audit(); not for publishing
    suppressed: np.ndarray = field(repr=False)
    primary: np.ndarray = field(repr=False)
    published: np.ndarray = field(repr=False)  # published counts (rounded if asked); 0 where suppressed

    # ---- views ------------------------------------------------------------------------------

    def to_arrow(self) -> pa.Table:
        """The long form as an Arrow table."""
        columns: dict[str, pa.Array] = {}
        for j, dim in enumerate(self.by):
            labels = np.array([*self.categories[j], None], dtype=object)
            columns[dim] = pa.array(labels[self.grid.codes[:, j]], pa.string())
        counts = np.where(self.suppressed, 0, self.published)
        columns["count"] = pa.array(counts, pa.int64(), mask=self.suppressed)
        columns["share"] = pa.array(self._shares(), pa.float64())
        columns["suppressed"] = pa.array(self.suppressed, pa.bool_())
        return pa.table(columns)

    def reasons(self) -> list[str | None]:
        """Per cell, why it is suppressed (``primary``: below k; ``secondary``: to protect
        others). For the operator's audit only: a published "primary" says the cell holds 1
        to k-1 people, which would narrow it (and its neighbours) for an attacker."""
        pairs = zip(self.primary, self.suppressed, strict=True)
        return ["primary" if p else "secondary" if s else None for p, s in pairs]

    def to_pandas(self) -> pd.DataFrame:
        """The long form as pandas: ``count`` is a nullable Int64 (``<NA>`` when suppressed)."""
        frame: pd.DataFrame = self.to_arrow().to_pandas()
        frame["count"] = frame["count"].astype("Int64")
        return frame

    def pivot(self, rows: Sequence[str] | None = None, column: str | None = None) -> pd.DataFrame:
        """Wide form: ``column`` (default: the last dimension) across, ``rows`` (default: the
        others) down. A dimension in neither is taken at its margin (its total).

        Margins appear as ``total`` (``(total)`` should a category be named ``total``);
        suppressed cells are ``<NA>``.
        """
        column = column or self.by[-1]
        rows = list(rows) if rows is not None else [d for d in self.by if d != column]
        unknown = [d for d in [column, *rows] if d not in self.by]
        if unknown or column in rows or len(set(rows)) != len(rows):
            raise ValueError(
                f"pivot needs distinct dimensions of this table ({list(self.by)}) as rows and column; "
                f"got rows={rows}, column={column!r}"
            )
        left_out = [d for d in self.by if d != column and d not in rows]
        if left_out and not self.margins:
            raise ValueError(f"{left_out} can only be left out of pivot rows in a table with margins")
        label = self._total_label()
        frame = self.to_pandas()
        for dim in left_out:
            frame = frame[frame[dim].isna()]
        for dim in self.by:
            order = [*self.categories[self.by.index(dim)], label]
            frame[dim] = frame[dim].fillna(label).astype("category").cat.set_categories(order)
        if not rows:
            return frame.set_index(column)[["count"]].T.rename(index={"count": "count"})
        wide = frame.pivot_table(
            index=rows, columns=column, values="count", aggfunc="first", dropna=False, observed=False
        )
        return wide.astype("Int64")

    def _total_label(self) -> str:
        """How margins are labelled in wide forms: a name no category of the table has."""
        label = "total"
        while any(label in cats for cats in self.categories):
            label = f"({label})"
        return label

    def _shares(self) -> np.ndarray:
        """count / parent count, where both are published and the parent is not zero."""
        shares = np.full(self.grid.n_cells, np.nan)
        if not self.margins:
            return shares
        index = {tuple(row): i for i, row in enumerate(self.grid.codes.tolist())}
        for i, row in enumerate(self.grid.codes.tolist()):
            grouped = [j for j, code in enumerate(row) if code >= 0]
            if not grouped:
                parent = i
            else:
                parent_key = list(row)
                parent_key[grouped[-1]] = -1
                parent = index[tuple(parent_key)]
            if self.suppressed[i] or self.suppressed[parent] or self.published[parent] == 0:
                continue
            shares[i] = self.published[i] / self.published[parent]
        return shares

    def audit(self) -> pa.Table:
        """The attacker's interval of every suppressed cell, by linear programming (HiGHS).

        Bounds come from this table's published cells only (additivity and non-negativity);
        ``width`` is ``hi - lo`` and ``protected`` tells whether it is at least k. ``reason``
        says why the cell is suppressed (``primary``: below k; ``secondary``: to protect
        others): the operator's record, never published. (The joint audit of the table with
        everything released before it is the release gate's; see the README.)
        """
        lo, hi = attacker_intervals(self.grid, self.suppressed)
        cells = self.to_arrow().filter(pa.array(self.suppressed)).select(list(self.by))
        width = hi[self.suppressed] - lo[self.suppressed]
        reasons = [r for r in self.reasons() if r is not None]
        return (
            cells.append_column("reason", pa.array(reasons, pa.string()))
            .append_column("lo", pa.array(lo[self.suppressed]))
            .append_column("hi", pa.array(hi[self.suppressed]))
            .append_column("width", pa.array(width))
            .append_column("protected", pa.array(width >= self.k))
        )

    @property
    def total(self) -> int | None:
        """The published grand total (None when suppressed or without margins)."""
        if not self.margins:
            return None
        (grand,) = np.flatnonzero((self.grid.codes < 0).all(axis=1))
        return None if self.suppressed[grand] else int(self.published[grand])

    # ---- release -------------------------------------------------------------------------

    def release_block(self, label: str, population: Mapping[str, Sequence[str]]) -> tuple[Block, np.ndarray]:
        """What the table publishes, for the release gate: its published cells (exact zeros
        left out: an empty cell tells nothing the audit does not assume known) with the bounds
        each gives, and the index of each of them among the table's cells."""
        published = ~self.suppressed
        if self.base is not None:
            lower, upper = rounding_interval(self.published, self.base)
        else:
            lower = upper = self.published
        cells = np.flatnonzero(published & (upper > 0))
        block = Block(
            label=label,
            where={d: tuple(v) for d, v in population.items()},
            by=self.by,
            categories=self.categories,
            cells=self.grid.codes[cells],
            lower=lower[cells],
            upper=upper[cells],
        )
        return block, cells

    def protecting(self, cells: BoolArray) -> BoolArray:
        """The cells to suppress so that this table, with ``cells`` (a mask) suppressed as well,
        protects every suppressed cell on its own: its secondary suppression, run again with
        everything suppressed so far kept (a table with margins and suppression; else ``cells``)."""
        hidden: BoolArray = self.suppressed | cells
        if "suppress" not in self.protect or not self.grid.is_margin.any():
            return hidden
        return np.asarray(secondary_suppression(self.grid, hidden, self.k) | hidden, dtype=bool)

    def with_suppressed(self, cells: np.ndarray) -> CohortTable:
        """The table with more cells suppressed (indices), as the joint audit asked."""
        if not len(cells):
            return self
        suppressed = self.suppressed.copy()
        suppressed[cells] = True
        published = self.published.copy()
        published[cells] = 0
        return replace(self, suppressed=suppressed, published=published)

    # ---- presentation ---------------------------------------------------------------------

    def _text_grid(self) -> tuple[list[str], list[list[str]], list[list[bool]]]:
        wide = self.pivot()
        header = [" / ".join(str(n) for n in wide.index.names if n) or "", *[str(c) for c in wide.columns]]
        body, marks = [], []
        for label, row in wide.iterrows():
            label_text = " / ".join(label) if isinstance(label, tuple) else str(label)
            values = [SUPPRESSED_MARK if v is pd_na() else f"{int(v):,}" for v in row]
            body.append([label_text, *values])
            marks.append([False, *[v is pd_na() for v in row]])
        return header, body, marks

    def __str__(self) -> str:
        header, body, _ = self._text_grid()
        widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
        lines = [
            "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
            for r in [header, *body]
        ]
        suppressed = int(self.suppressed.sum())
        lines.append(
            # how many cells are below k (primary) is the operator's (audit()): published, it
            # would say how many of the suppressed cells hold 1 to k-1 people
            f"{self.grid.n_cells} cells, k={self.k}, {suppressed} suppressed ({SUPPRESSED_MARK})"
            + (f", counts rounded to base {self.base}" if self.base else "")
        )
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        header, body, marks = self._text_grid()
        style = (
            "<style>.ia-cohort td.s{background:#eee;color:#888;text-align:center}"
            ".ia-cohort td,.ia-cohort th{padding:2px 8px;text-align:right}</style>"
        )
        head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
        rows = []
        for row, mark in zip(body, marks, strict=True):
            cells = "".join(
                f'<td class="s" title="suppressed">{SUPPRESSED_MARK}</td>' if m else f"<td>{html.escape(v)}</td>"
                for v, m in zip(row, mark, strict=True)
            )
            rows.append(f"<tr>{cells}</tr>")
        caption = html.escape(str(self).splitlines()[-1])
        return f'{style}<table class="ia-cohort"><caption>{caption}</caption><tr>{head}</tr>{"".join(rows)}</table>'

    def plot(self, ax: Axes | None = None) -> Axes:
        """A bar chart of the interior cells (last dimension across groups); suppressed cells hatched."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=(max(6, 0.5 * self.grid.n_cells**0.5 * 4), 4))
        interior = ~self.grid.is_margin
        frame = self.to_pandas()[interior]
        last = self.by[-1]
        groups = [
            " / ".join(map(str, key)) if isinstance(key, tuple) else str(key)
            for key in _group_keys(frame, self.by[:-1])
        ]
        categories = list(self.categories[-1])
        width = 0.8 / max(1, len(categories))
        top = (
            float(np.nanmax(np.where(self.suppressed | self.grid.is_margin, np.nan, self.published), initial=0.0))
            or 1.0
        )
        for c, category in enumerate(categories):
            sub = frame[frame[last] == category]
            x = np.arange(len(sub)) + c * width
            values = sub["count"].fillna(0).astype(float).to_numpy()
            hidden = sub["suppressed"].to_numpy()
            ax.bar(x[~hidden], values[~hidden], width, label=category)
            ax.bar(x[hidden], np.full(hidden.sum(), top * 0.05), width, color="none", edgecolor="grey", hatch="///")
        ax.set_xticks(np.arange(len(groups)) + 0.4 - width / 2)
        ax.set_xticklabels(groups, rotation=45, ha="right")
        ax.set_ylabel("identities")
        ax.set_title(f"{' × '.join(self.by)} (k={self.k}; hatched = suppressed)")
        ax.legend(title=last, fontsize="small")
        return ax


def _group_keys(frame: pd.DataFrame, dims: Sequence[str]) -> list[Any]:
    if not dims:
        return ["all"]
    return [
        tuple(k) if len(dims) > 1 else k for k in frame[list(dims)].drop_duplicates().itertuples(index=False, name=None)
    ]


def pd_na() -> Any:
    import pandas as pd

    return pd.NA


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

    hidden = session.publish_cells(blocks, protect, atoms)
    return [t.with_suppressed(c[h]) for t, c, h in zip(tables, cells, hidden, strict=True)]
