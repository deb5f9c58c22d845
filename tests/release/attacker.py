"""An attacker who reads only what the library published and tries to count small groups.

Independent of the library's own audit: it writes each published count as a linear
constraint over the atoms (the non-empty cells of the cross-classification of every dimension
the published answers name; the attacker is granted which atoms are empty, which is what the
library's audit assumes too), adds non-negativity, and asks scipy's ``linprog`` for the least
and the most each atom can hold. An atom of 1 to k-1 people whose interval is narrower than
k is a group the releases let the attacker count. Member lists are attacked by set algebra:
the people who are in exactly the same released lists form a class; a class of 1 to k-1 is
singled out (every ``A \\ B``, ``A & B`` and the like is a union of such classes).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
from scipy.optimize import linprog

import identity_analytics as ia

COUNTED = ("active", "undetermined")


@dataclass
class _Constraint:
    where: dict[str, frozenset[str]]
    lo: float
    hi: float
    epoch: int = 0


@dataclass
class Narrow:
    atom: tuple[object, ...]
    true: int
    lo: float
    hi: float


@dataclass
class Attacker:
    """Published counts gathered as constraints over the population of each of ``epochs``
    (lists of identity rows, as ``Dataset.identities`` gives them: one per run of a series)."""

    epochs: Sequence[Sequence[Mapping[str, str]]]
    k: int
    constraints: list[_Constraint] = field(default_factory=list)

    @classmethod
    def of(cls, dataset: ia.Dataset) -> Attacker:
        return cls([dataset.identities.to_pylist()], dataset.policy.k)

    # what was published -------------------------------------------------------------------

    def count(self, where: Mapping[str, Iterable[str]], value: int | None, *, epoch: int = 0) -> None:
        """A published size of the population ``where`` (nothing if it was withheld)."""
        if value is not None:
            self.constraints.append(_Constraint(_where(where), value, value, epoch))

    def table(
        self, cells: pa.Table, by: Sequence[str], where: Mapping[str, Iterable[str]] | None = None, *,
        base: int | None = None, epoch: int = 0,
    ) -> None:  # fmt: skip
        """A published cohort table (its long form); a rounded count is an interval."""
        for row in cells.to_pylist():
            if row["count"] is None:
                continue
            cell = {d: [row[d]] for d in by if row[d] is not None}
            lo = hi = float(row["count"])
            if base is not None:
                lo, hi = max(lo - base // 2, 0), lo - base // 2 + base - 1
            self.constraints.append(_Constraint(_where({**(where or {}), **cell}), lo, hi, epoch))

    def cohort_table(self, table: ia.CohortTable, *, epoch: int = 0) -> None:
        self.table(table.to_arrow(), table.by, dict(table.filters), base=table.base, epoch=epoch)

    # the attack -----------------------------------------------------------------------------

    def narrow(self) -> list[Narrow]:
        """Every atom of 1 to k-1 people the published counts pin to an interval narrower than k."""
        dims = sorted({d for c in self.constraints for d in c.where})
        atoms: Counter[tuple[object, ...]] = Counter()
        for e, rows in enumerate(self.epochs):
            for row in rows:
                if row["state"] in COUNTED:
                    atoms[(e, *(row[d] for d in dims))] += 1
        # one atom per person's presence pattern over the epochs and dimensions; an identity of
        # several epochs is one person: the series is joined on pseudonyms
        people: dict[str, list[object]] = {}
        for e, rows in enumerate(self.epochs):
            for row in rows:
                entry = people.setdefault(row["pseudonym"], [None] * len(self.epochs))
                entry[e] = tuple(row[d] for d in dims) if row["state"] in COUNTED else None
        pattern_counts = Counter(tuple(v) for v in people.values() if any(x is not None for x in v))
        keys = list(pattern_counts)
        if not keys or not self.constraints:
            return []
        matrix = np.zeros((len(self.constraints), len(keys)))
        for i, c in enumerate(self.constraints):
            for j, key in enumerate(keys):
                values = key[c.epoch]
                if values is not None and all(values[dims.index(d)] in cats for d, cats in c.where.items()):
                    matrix[i, j] = 1.0
        lo = np.array([c.lo for c in self.constraints])
        hi = np.array([c.hi for c in self.constraints])
        a_ub, b_ub = np.vstack([matrix, -matrix]), np.concatenate([hi, -lo])
        found = []
        for j, key in enumerate(keys):
            true = pattern_counts[key]
            if not 0 < true < self.k:
                continue
            goal = np.zeros(len(keys))
            goal[j] = 1.0
            least = linprog(goal, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
            most = linprog(-goal, A_ub=a_ub, b_ub=b_ub, bounds=(0, None), method="highs")
            assert least.status == 0, "the published counts contradict each other"
            high = np.inf if most.status == 3 else -most.fun
            if high - least.fun < self.k - 1e-6:
                found.append(Narrow(key, true, round(least.fun, 6), round(high, 6)))
        return found


def membership_classes(lists: Sequence[pa.Table | Iterable[str]]) -> Counter[tuple[bool, ...]]:
    """How many people are in exactly each combination of the released lists."""
    sets = [set(t.column("pseudonym").to_pylist()) if isinstance(t, pa.Table) else set(t) for t in lists]
    everyone = set().union(*sets) if sets else set()
    return Counter(tuple(p in s for s in sets) for p in everyone)


def small_classes(lists: Sequence[pa.Table | Iterable[str]], k: int) -> dict[tuple[bool, ...], int]:
    return {pattern: n for pattern, n in membership_classes(lists).items() if n < k}


def _where(where: Mapping[str, Iterable[str]]) -> dict[str, frozenset[str]]:
    return {d: frozenset([v] if isinstance(v, str) else v) for d, v in where.items()}


def rows(cells: Mapping[tuple[str, ...], int], dims: Sequence[str]) -> list[dict[str, str]]:
    """Analytics rows: ``n`` people in each cell (other dimensions undetermined)."""
    return [dict(zip(dims, cell, strict=True)) for cell, n in cells.items() for _ in range(n)]


POLICY = ia.PrivacyPolicy(pseudonym_key=b"release-attack-tests")


def identity_rows(cells: Mapping[tuple[str, ...], int], dims: Sequence[str], *, start: int = 0) -> pa.Table:
    """An analytics table: ``n`` people in each cell of ``dims`` (the other dimensions
    undetermined, every identity active), pseudonyms numbered from ``start``."""
    from identity_analytics.vocabulary import DIMENSIONS

    base = {d: "undetermined" for d in DIMENSIONS} | {"state": "active"}
    people = [base | r for r in rows(cells, dims)]
    schema = pa.schema([(c, pa.string()) for c in ("pseudonym", *DIMENSIONS)])
    return pa.Table.from_pylist(
        [{"pseudonym": POLICY.pseudonym(str(start + i)), **p} for i, p in enumerate(people)], schema=schema
    )


def dataset(cells: Mapping[tuple[str, ...], int], dims: Sequence[str], k: int = 10) -> ia.Dataset:
    policy = POLICY if k == POLICY.k else POLICY.model_copy(update={"k": k})
    return ia.Dataset.from_arrow(identity_rows(cells, dims), policy=policy)


def segment(where: Mapping[str, Sequence[str]]) -> ia.Segment:
    """A segment named after its filter."""
    name = " and ".join(f"{d} in {'/'.join(v)}" for d, v in sorted(where.items())) or "everyone"
    return ia.Segment(name=name, where={d: list(v) for d, v in where.items()})


def publish_size(ds: ia.Dataset, attacker: Attacker, where: Mapping[str, Sequence[str]], *, epoch: int = 0) -> bool:
    """Ask for a segment's size; what comes back (if anything) goes to the attacker."""
    try:
        result = ds.segment(segment(where))
    except ia.PrivacyError:
        return False
    attacker.count(where, result.size, epoch=epoch)
    return result.size is not None


def publish_table(
    ds: ia.Dataset, attacker: Attacker, by: Sequence[str], *, epoch: int = 0, **options: object
) -> ia.CohortTable:
    table = ds.cohorts(list(by), **options)  # type: ignore[arg-type]
    attacker.cohort_table(table, epoch=epoch)
    return table
