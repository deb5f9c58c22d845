"""The atom table: tables and atoms summed from it are those counted from the data."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import identity_analytics as ia
from identity_analytics.cohorts import compute_cohorts
from identity_analytics.release.atoms import atom_table, count_atoms
from identity_analytics.release.blocks import MINOR
from identity_analytics.release.problem import Atoms
from identity_analytics.vocabulary import DIMENSIONS

VOCABULARY = ia.Vocabulary.default()
SMALL = {d: VOCABULARY.categories(d)[:4] for d in DIMENSIONS}
POLICY = ia.PrivacyPolicy(pseudonym_key=b"atom-table-tests")
rows_strategy = st.lists(st.fixed_dictionaries({d: st.sampled_from(SMALL[d]) for d in DIMENSIONS}), max_size=80)
grouped = st.lists(st.sampled_from(["age", "gender", "income", "parental_status"]), min_size=1, max_size=3, unique=True)


def _dataset(rows: list[dict[str, str]]) -> ia.Dataset:
    table = pa.Table.from_pylist(
        [{"pseudonym": POLICY.pseudonym(str(i)), **r} for i, r in enumerate(rows)],
        schema=pa.schema([("pseudonym", pa.string()), *((d, pa.string()) for d in DIMENSIONS)]),
    )
    return ia.Dataset.from_arrow(table, policy=POLICY)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=rows_strategy,
    by=grouped,
    filtered=st.sampled_from(["household", "citizenship", "state", "age"]),
    chosen=st.integers(min_value=1, max_value=3),
    include_inactive=st.booleans(),
)
def test_tables_from_the_atom_table_equal_tables_from_the_data(
    rows: list[dict[str, str]], by: list[str], filtered: str, chosen: int, include_inactive: bool
) -> None:
    ds = _dataset(rows)
    where = {filtered: list(SMALL[filtered][:chosen])}
    with atom_table(ds.connection, {"state", *by, filtered}) as atoms:
        for margins in (True, False):
            options = {"margins": margins, "where": where, "include_inactive": include_inactive}
            direct = compute_cohorts(ds.connection, ds.vocabulary, by, 3, **options)  # type: ignore[arg-type]
            summed = compute_cohorts(ds.connection, ds.vocabulary, by, 3, atoms=atoms, **options)  # type: ignore[arg-type]
            assert np.array_equal(direct.grid.counts, summed.grid.counts)
            assert np.array_equal(direct.suppressed, summed.suppressed) and direct.sql == summed.sql
    assert not ds.connection.sql("SELECT * FROM duckdb_tables() WHERE table_name LIKE '_ia_atoms_%'").fetchall()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, by=grouped)
def test_atoms_from_the_atom_table_equal_atoms_from_the_data(rows: list[dict[str, str]], by: list[str]) -> None:
    ds = _dataset(rows)
    needed = {"now": {*by, MINOR}}
    direct = count_atoms(ds.connection, "now", needed, {})
    with atom_table(ds.connection, {*by, MINOR, "state"}) as atoms:
        summed = count_atoms(ds.connection, "now", needed, {}, atoms)

    def as_counts(found: Atoms) -> dict[tuple[str, ...], int]:
        return {
            tuple(found.values[j][c] if c >= 0 else "" for j, c in enumerate(row)): int(n)
            for row, n in zip(found.codes.tolist(), found.counts.tolist(), strict=True)
        }

    assert direct.columns == summed.columns
    assert as_counts(direct) == as_counts(summed)
    assert sum(as_counts(summed).values()) == len(rows)
