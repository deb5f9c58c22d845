"""Microdata risk: k-anonymity of a set of quasi-identifiers and distinct l-diversity.

The equivalence classes are the groups of identities sharing every quasi-identifier value;
a class smaller than k lets an attacker who knows those values single out its members, and
a class whose sensitive attribute takes fewer than l distinct values discloses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
from pydantic import BaseModel, ConfigDict

from identity_analytics.cohorts import filter_sql
from identity_analytics.loaders.projection import ANALYTICS_TABLE
from identity_analytics.vocabulary import DIMENSIONS


class RiskReport(BaseModel):
    """k-anonymity (and l-diversity) of the counted identities over some quasi-identifiers."""

    model_config = ConfigDict(frozen=True)

    quasi_identifiers: tuple[str, ...]
    sensitive: str | None
    k: int
    records: int
    classes: int
    smallest_class: int | None
    classes_below_k: int
    records_below_k: int
    class_sizes: dict[int, int]
    """Number of equivalence classes of each size."""
    l_diversity: int | None
    """Fewest distinct values of ``sensitive`` in any class (distinct l-diversity)."""
    l_histogram: dict[int, int]
    """Number of classes with each count of distinct sensitive values."""

    @property
    def k_anonymous(self) -> bool:
        """True when every equivalence class has at least k records."""
        return self.classes_below_k == 0

    def __str__(self) -> str:
        verdict = "k-anonymous" if self.k_anonymous else "NOT k-anonymous"
        lines = [
            f"quasi-identifiers {', '.join(self.quasi_identifiers)}: "
            f"{self.records:,} records, {self.classes:,} classes",
            f"smallest class {self.smallest_class}; {self.classes_below_k:,} classes "
            f"({self.records_below_k:,} records) below k={self.k} -> {verdict}",
        ]
        if self.sensitive is not None:
            lines.append(f"distinct l-diversity of {self.sensitive}: l = {self.l_diversity}")
        return "\n".join(lines)


def compute_risk(
    con: duckdb.DuckDBPyConnection,
    quasi_identifiers: Sequence[str],
    sensitive: str | None,
    k: int,
    include_inactive: bool,
) -> RiskReport:
    """Equivalence classes by one GROUP BY in DuckDB, summarised."""
    qis = tuple(quasi_identifiers) if not isinstance(quasi_identifiers, str) else (quasi_identifiers,)
    if isinstance(k, bool) or not isinstance(k, int | float) or int(k) != k:
        raise ValueError(f"k must be a whole number, got {k!r}")
    k = int(k)
    unknown = [d for d in (*qis, *([] if sensitive is None else [sensitive])) if d not in DIMENSIONS]
    if unknown or not qis:
        raise ValueError(
            f"give quasi-identifiers (and a sensitive attribute) among {list(DIMENSIONS)}; got {unknown or 'none'}"
        )
    if sensitive in qis:
        raise ValueError(f"the sensitive attribute {sensitive!r} cannot also be a quasi-identifier")
    if k < 2:
        raise ValueError(f"k must be at least 2, got {k}")
    distinct = f"count(DISTINCT {sensitive})" if sensitive else "NULL"
    classes = (
        f"SELECT count(*) AS size, {distinct} AS l FROM {ANALYTICS_TABLE} "
        f"{filter_sql({}, include_inactive)} GROUP BY {', '.join(qis)}"
    )
    sizes = dict(con.execute(f"SELECT size, count(*) FROM ({classes}) GROUP BY size ORDER BY size").fetchall())
    ls = dict(con.execute(f"SELECT l, count(*) FROM ({classes}) WHERE l IS NOT NULL GROUP BY l ORDER BY l").fetchall())
    below = {s: n for s, n in sizes.items() if s < k}
    return RiskReport(
        quasi_identifiers=qis,
        sensitive=sensitive,
        k=k,
        records=sum(s * n for s, n in sizes.items()),
        classes=sum(sizes.values()),
        smallest_class=min(sizes) if sizes else None,
        classes_below_k=sum(below.values()),
        records_below_k=sum(s * n for s, n in below.items()),
        class_sizes={int(s): int(n) for s, n in sizes.items()},
        l_diversity=min(ls) if ls else None,
        l_histogram={int(v): int(n) for v, n in ls.items()},
    )
