"""Microdata risk: k-anonymity of a set of quasi-identifiers and distinct l-diversity.

The equivalence classes are the groups of identities sharing every quasi-identifier value;
a class smaller than k lets an attacker who knows those values single out its members, and
a class whose sensitive attribute takes fewer than l distinct values discloses it.

The report is published like any answer: it must not give away the size of a small class.
So classes below k are counted, never sized (``smallest_class`` is ``None`` below k), the
sizes of the others are given in bands of at least k (so that the records in small classes
cannot be recovered as the total minus the others), and ``records_below_k`` is rounded up to
a multiple of k. Its total of records passes the release gate as a count.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb
from pydantic import BaseModel, ConfigDict

from identity_analytics.schema import ANALYTICS_TABLE
from identity_analytics.specs import filter_sql
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
    """The size of the smallest class; None when it is below k (a small class is never sized)."""
    classes_below_k: int
    records_below_k: int
    """Records in classes below k, rounded up to a multiple of k (0 when there are none)."""
    class_sizes: dict[str, int]
    """Number of equivalence classes per band of sizes: ``"1-9"`` (below k = 10), then bands
    of at least k (``"10-19"``, ``"20-49"``, ``"50-99"``, ``"100-199"``, ...)."""
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
            f"smallest class {self.smallest_class if self.smallest_class is not None else f'below k={self.k}'}; "
            f"{self.classes_below_k:,} classes (at most {self.records_below_k:,} records) below k={self.k} "
            f"-> {verdict}",
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
    in_small = sum(s * n for s, n in below.items())
    smallest = min(sizes) if sizes else None
    return RiskReport(
        quasi_identifiers=qis,
        sensitive=sensitive,
        k=k,
        records=sum(s * n for s, n in sizes.items()),
        classes=sum(sizes.values()),
        smallest_class=smallest if smallest is None or smallest >= k else None,
        classes_below_k=sum(below.values()),
        records_below_k=-(-in_small // k) * k,
        class_sizes=size_bands(sizes, k),
        l_diversity=min(ls) if ls else None,
        l_histogram={int(v): int(n) for v, n in ls.items()},
    )


def size_bands(sizes: dict[int, int], k: int) -> dict[str, int]:
    """Classes counted per band of sizes: below k, then [k, 2k), [2k, 5k), [5k, 10k), [10k, 20k), ..."""
    bands: dict[str, int] = {}
    for size, classes in sorted(sizes.items()):
        if size < k:
            lo, hi = 1, k - 1
        else:
            lo, step = k, 0
            while True:
                hi = k * (2, 5, 10)[step % 3] * 10 ** (step // 3) - 1
                if size <= hi:
                    break
                lo, step = hi + 1, step + 1
        key = f"{lo}-{hi}"
        bands[key] = bands.get(key, 0) + int(classes)
    return bands
