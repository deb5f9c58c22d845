"""Pairwise overlaps of segments, protected against small counts and differences.

For segments A and B the table publishes |A| (diagonal) and |A ∩ B|. From those an attacker
also knows |A \\ B| = |A| - |A ∩ B|, so an intersection is published only when it and both
differences it reveals are 0 or at least k; a size is published only when it is 0 or at
least k. The table is then published through the release gate as a whole (every size and
intersection a count of its population), or refused.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from identity_analytics.release.blocks import Block
from identity_analytics.release.gate import Session
from identity_analytics.schema import ANALYTICS_TABLE
from identity_analytics.segments import Segment, segment_label
from identity_analytics.specs import counted_population, counted_states_sql, filters_condition, validate_filters
from identity_analytics.vocabulary import Vocabulary

if TYPE_CHECKING:
    import duckdb
    import pandas as pd


def _small(value: int, k: int) -> bool:
    return 0 < value < k


@dataclass(frozen=True)
class OverlapTable:
    """Protected pairwise intersections; ``counts[i, j]`` is 0 where ``suppressed`` (its true
    value is not kept)."""

    names: tuple[str, ...]
    k: int
    counts: np.ndarray
    suppressed: np.ndarray
    sql: str

    def to_arrow(self) -> pa.Table:
        """Long form: ``segment_a``, ``segment_b``, ``count`` (null when suppressed), ``suppressed``."""
        n = len(self.names)
        pairs = [(i, j) for i in range(n) for j in range(n)]
        return pa.table(
            {
                "segment_a": [self.names[i] for i, _ in pairs],
                "segment_b": [self.names[j] for _, j in pairs],
                "count": pa.array(
                    [int(self.counts[i, j]) for i, j in pairs],
                    pa.int64(),
                    mask=np.array([self.suppressed[i, j] for i, j in pairs], dtype=bool),
                ),
                "suppressed": [bool(self.suppressed[i, j]) for i, j in pairs],
            }
        )

    def to_pandas(self) -> pd.DataFrame:
        """Square form: rows and columns are the segments; suppressed cells are ``<NA>``."""
        import pandas as pd

        frame = pd.DataFrame(self.counts, index=list(self.names), columns=list(self.names)).astype("Int64")
        return frame.mask(self.suppressed)

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(n)}</th>" for n in self.names)
        rows = []
        for i, name in enumerate(self.names):
            cells = "".join(
                '<td title="suppressed">·</td>' if self.suppressed[i, j] else f"<td>{int(self.counts[i, j]):,}</td>"
                for j in range(len(self.names))
            )
            rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
        return f"<table><caption>segment overlaps, k={self.k}</caption><tr><th></th>{head}</tr>{''.join(rows)}</table>"


def _condition(segment: Segment) -> str:
    return filters_condition(segment.where)


def compute_overlap(
    con: duckdb.DuckDBPyConnection, segments: Sequence[Segment], vocabulary: Vocabulary, k: int, include_inactive: bool
) -> OverlapTable:
    """Every pairwise intersection in one aggregation query, then protection."""
    if len(segments) < 2:
        raise ValueError("give at least two segments to overlap")
    names = tuple(s.name for s in segments)
    if len(set(names)) != len(names):
        raise ValueError(f"segment names must be distinct, got {list(names)}")
    for segment in segments:
        validate_filters(segment.where, vocabulary)
    n = len(segments)
    flags = ", ".join(f"({_condition(s)}) AS m{i}" for i, s in enumerate(segments))
    pairs = [(i, j) for i in range(n) for j in range(i, n)]
    sums = ", ".join(f"count(*) FILTER (WHERE m{i} AND m{j})" for i, j in pairs)
    where = "" if include_inactive else f"WHERE {counted_states_sql()}"
    sql = f"SELECT {sums} FROM (SELECT {flags} FROM {ANALYTICS_TABLE} {where})"
    values = con.execute(sql).fetchall()[0]
    counts = np.zeros((n, n), dtype=np.int64)
    for (i, j), value in zip(pairs, values, strict=True):
        counts[i, j] = counts[j, i] = int(value)
    sizes = [int(v) for v in np.diag(counts)]
    size_hidden = [_small(v, k) for v in sizes]
    suppressed = np.zeros((n, n), dtype=bool)
    for i in range(n):
        for j in range(n):
            if i == j:
                suppressed[i, j] = bool(size_hidden[i])
                continue
            x = int(counts[i, j])
            reveals_small_difference = (not size_hidden[i] and _small(sizes[i] - x, k)) or (
                not size_hidden[j] and _small(sizes[j] - x, k)
            )
            suppressed[i, j] = bool(_small(x, k) or reveals_small_difference)
    return OverlapTable(names, k, np.where(suppressed, 0, counts), suppressed, sql)


def intersection(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]]) -> dict[str, tuple[str, ...]]:
    """The population in both ``a`` and ``b`` (a dimension both restrict keeps what both accept)."""
    both = {d: tuple(v) for d, v in a.items()}
    for dim, values in b.items():
        both[dim] = tuple(v for v in both[dim] if v in set(values)) if dim in both else tuple(values)
    return both


def release_overlap(
    session: Session, table: OverlapTable, segments: Sequence[Segment], include_inactive: bool
) -> None:
    """Publish an overlap table through the release gate: all its counts, or none (refused)."""
    blocks = []
    for i, j in zip(*np.nonzero(~table.suppressed), strict=True):
        if i > j:
            continue
        a, b = segments[int(i)], segments[int(j)]
        where: Mapping[str, Sequence[str]]
        if i == j:
            where, label = a.where, f"size of {segment_label(a)} in an overlap table"
        else:
            where, label = intersection(a.where, b.where), f"overlap of {segment_label(a)} and {segment_label(b)}"
        blocks.append(Block.count(label, counted_population(where, include_inactive), int(table.counts[i, j])))
    session.publish_counts(blocks, f"the overlap table of {', '.join(table.names)}")
