"""A protected cohort table and its views: long form (Arrow, pandas), pivot, text, HTML, chart,
the operator's audit, and what it publishes through the release gate.

Suppressed cells are published as null; why a cell is suppressed is in :meth:`CohortTable.audit`
and :meth:`CohortTable.reasons` only, for the operator.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt
import pyarrow as pa

from identity_analytics.protection import (
    CellGrid,
    attacker_intervals,
    rounding_interval,
    secondary_suppression,
)
from identity_analytics.release.blocks import Block

BoolArray = npt.NDArray[np.bool_]
#: How a suppressed cell is shown in text and HTML.
SUPPRESSED_MARK = "·"

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.axes import Axes



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

    def audit_record(self, name: str) -> dict[str, Any]:
        """What the operator's ``audit.json`` holds for this table (named ``name``): its
        parameters and SQL, every suppressed cell with its reason, and the attacker-interval
        audit, so that a second person can verify the release."""
        cells = self.to_arrow()
        suppressed = [
            {**{d: row[d] for d in self.by}, "reason": reason}
            for row, reason in zip(cells.to_pylist(), self.reasons(), strict=True)
            if row["suppressed"]
        ]
        audit = self.audit()
        widths = audit.column("width").to_pylist()
        return {
            "name": name,
            "by": list(self.by),
            "where": {d: list(v) for d, v in self.filters.items()},
            "k": self.k,
            "margins": self.margins,
            "protect": self.protect,
            "base": self.base,
            "sql": self.sql,
            "cells": self.grid.n_cells,
            "primary_suppressions": int(self.primary.sum()),
            "secondary_suppressions": int(self.suppressed.sum() - self.primary.sum()),
            "suppressed_cells": suppressed,
            "attacker_interval_min_width": min(widths) if widths else None,
            "all_suppressed_cells_protected": all(audit.column("protected").to_pylist()),
        }

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

    @property
    def audited_alone(self) -> bool:
        """Whether the table's own secondary suppression proved every suppressed cell (exact
        counts over the whole cube: suppression, no rounding, margins kept)."""
        return self.protect == "suppress" and self.margins and bool(self.grid.is_margin.any())

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


