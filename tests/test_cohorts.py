"""Cohort tables: one CUBE query, every category, k-anonymity protection, views."""

from __future__ import annotations

import itertools
from collections import Counter

import matplotlib
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import identity_analytics as ia
from identity_analytics.vocabulary import DIMENSIONS

matplotlib.use("Agg")

VOCABULARY = ia.Vocabulary.default()
SMALL = {d: VOCABULARY.categories(d) for d in DIMENSIONS}
SMALL["citizenship"] = ("FR", "DE", "undetermined", "other")
SMALL["locale"] = ("fr", "de-DE", "undetermined", "other")
POLICY = ia.PrivacyPolicy(pseudonym_key=b"cohort-tests")


def _counted(rows: list[dict[str, str]], include_inactive: bool = False) -> list[dict[str, str]]:
    return [r for r in rows if include_inactive or r["state"] in ("active", "undetermined")]


def _brute_force(rows: list[dict[str, str]], by: tuple[str, ...]) -> Counter[tuple[str | None, ...]]:
    counts: Counter[tuple[str | None, ...]] = Counter()
    for row in rows:
        for mask in itertools.product([False, True], repeat=len(by)):
            counts[tuple(None if m else row[d] for d, m in zip(by, mask, strict=True))] += 1
    return counts


def test_fixture_report_covers_every_category_and_adds_up(fixture_dataset: ia.Dataset) -> None:
    table = fixture_dataset.cohorts(["age", "income", "parental_status"])
    cells = table.to_arrow()
    sizes = [len(VOCABULARY.categories(d)) for d in table.by]
    assert cells.num_rows == int(np.prod([s + 1 for s in sizes]))
    for dim in table.by:
        assert set(cells.column(dim).drop_null().to_pylist()) == set(VOCABULARY.categories(dim))
    counted = _counted(fixture_dataset.identities.to_pylist())
    assert table.grid.counts.max() == len(counted)
    assert table.total == len(counted)


def test_sql_is_one_cube_query_and_inspectable(fixture_dataset: ia.Dataset) -> None:
    sql = fixture_dataset.cohorts(["age", "gender"]).sql
    assert sql.count("SELECT") == 1 and "GROUP BY CUBE (age, gender)" in sql
    assert fixture_dataset.connection.execute(sql).fetchall()


def test_published_counts_equal_brute_force_and_none_is_below_k(fixture_dataset: ia.Dataset) -> None:
    rows = _counted(fixture_dataset.identities.to_pylist())
    table = fixture_dataset.cohorts(["age", "income", "parental_status"])
    truth = _brute_force(rows, table.by)
    for cell, reason in zip(table.to_arrow().to_pylist(), table.reasons(), strict=True):
        if cell["count"] is None:
            assert cell["suppressed"] and reason in ("primary", "secondary")
            continue
        assert cell["count"] == truth[tuple(cell[d] for d in table.by)]
        assert not 0 < cell["count"] < table.k


def test_audit_intervals_are_at_least_k_wide(fixture_dataset: ia.Dataset) -> None:
    audit = fixture_dataset.cohorts(["age", "income", "parental_status"]).audit()
    assert audit.num_rows > 0
    assert all(audit.column("protected").to_pylist())
    assert min(audit.column("width").to_pylist()) >= 10


def test_inactive_identities_are_excluded_unless_the_policy_includes_them(fixture_dataset: ia.Dataset) -> None:
    rows = fixture_dataset.identities.to_pylist()
    assert fixture_dataset.cohorts("age").total == len(_counted(rows))
    inclusive = ia.Dataset.from_arrow(
        fixture_dataset.identities, policy=POLICY.model_copy(update={"include_inactive": True})
    )
    assert inclusive.cohorts("age").total == len(rows)


def test_where_filters_the_population_and_the_filtered_dimension(fixture_dataset: ia.Dataset) -> None:
    table = fixture_dataset.cohorts(
        ["income", "gender"], where={"income": ["low", "high"], "parental_status": ["parent"]}
    )
    assert table.categories[0] == ("low", "high")
    rows = [
        r
        for r in _counted(fixture_dataset.identities.to_pylist())
        if r["income"] in ("low", "high") and r["parental_status"] == "parent"
    ]
    assert table.total == len(rows)
    assert "income IN ('low', 'high') AND parental_status IN ('parent')" in table.sql


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"by": ["shoe_size"]}, "unknown dimension.*'shoe_size'.*the dimensions are"),
        ({"by": []}, "give 1 to 4 dimensions"),
        ({"by": ["age", "income", "gender", "locale", "citizenship"]}, "give 1 to 4 dimensions"),
        ({"by": ["age", "age"]}, "by: 'age' is given twice"),
        ({"by": ["age"], "k": 1}, "k=1 is below the policy's k=10"),
        ({"by": ["age"], "k": 9}, "the policy's k is a floor"),
        ({"by": ["age"], "where": {"income": ["rich"]}}, r"where\['income'\]: unknown categories \['rich'\].*'low'"),
        ({"by": ["age"], "where": {"eyes": ["blue"]}}, "unknown dimension 'eyes' in where"),
        ({"by": ["age"], "protect": "hide"}, "protect must be one of"),
        ({"by": ["age"], "protect": "round", "base": 3}, "base >= k"),
    ],
)
def test_bad_requests_name_what_is_allowed(
    fixture_dataset: ia.Dataset, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fixture_dataset.cohorts(**kwargs)  # type: ignore[arg-type]


def test_rounding_publishes_multiples_of_the_base(fixture_dataset: ia.Dataset) -> None:
    rounded = fixture_dataset.cohorts(["age", "gender"], protect="round")
    cells = rounded.to_arrow()
    counts = cells.column("count").to_pylist()
    # a rounded count still says a cell holds r - 5 to r + 4 people: where that would narrow a
    # small group below k, the joint audit suppresses the cell as well
    assert all(c % 10 == 0 for c in counts if c is not None)
    assert sum(c is not None for c in counts) > len(counts) / 2
    assert [c is None for c in counts] == cells.column("suppressed").to_pylist()
    both = fixture_dataset.cohorts(["age", "gender"], protect="suppress+round", base=5)
    published = [c for c in both.to_arrow().column("count").to_pylist() if c is not None]
    assert published and all(c % 5 == 0 and not 0 < c < 10 for c in published)
    assert both.suppressed.any()






def test_margins_off_publishes_the_interior_of_the_protected_cube(fixture_dataset: ia.Dataset) -> None:
    # the margins are published elsewhere (any table of fewer dimensions), so the interior
    # keeps the secondary suppressions of the table with margins
    table = fixture_dataset.cohorts(["age", "gender"], margins=False)
    assert not table.grid.is_margin.any() and table.total is None
    full = fixture_dataset.cohorts(["age", "gender"])
    interior = ~full.grid.is_margin
    assert np.array_equal(table.grid.counts, full.grid.counts[interior])
    assert np.array_equal(table.suppressed, full.suppressed[interior])
    assert (table.suppressed & ~table.primary).any()


analytics_rows = st.fixed_dictionaries({d: st.sampled_from(SMALL[d]) for d in DIMENSIONS})


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(
    rows=st.lists(analytics_rows, min_size=1, max_size=150),
    by=st.lists(
        st.sampled_from(["age", "gender", "household", "parental_status", "citizenship"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    k=st.integers(min_value=2, max_value=12),
)
def test_protection_properties_on_random_data(rows: list[dict[str, str]], by: list[str], k: int) -> None:
    table = pa.Table.from_pylist([{"pseudonym": POLICY.pseudonym(str(i)), **r} for i, r in enumerate(rows)])
    ds = ia.Dataset.from_arrow(table.select(["pseudonym", *DIMENSIONS]), policy=POLICY.model_copy(update={"k": k}))
    cohort = ds.cohorts(by)
    truth = _brute_force(_counted(rows), tuple(by))
    for cell in cohort.to_arrow().to_pylist():
        if cell["count"] is not None:
            assert not 0 < cell["count"] < k
            assert cell["count"] == truth[tuple(cell[d] for d in by)]
    audit = cohort.audit()
    assert all(w >= k for w in audit.column("width").to_pylist())




def test_threads_sharing_a_dataset_get_their_own_answers(fixture_dataset: ia.Dataset) -> None:
    from concurrent.futures import ThreadPoolExecutor

    requests = [("age",), ("gender",), ("income", "household"), ("age", "parental_status")] * 6
    expected = {by: fixture_dataset.cohorts(list(by)).to_pandas() for by in set(requests)}
    with ThreadPoolExecutor(4) as pool:
        answers = list(pool.map(lambda by: (by, fixture_dataset.cohorts(list(by)).to_pandas()), requests))
    for by, table in answers:
        assert table.equals(expected[by]), by




def test_more_bad_requests_are_clear_errors(fixture_dataset: ia.Dataset) -> None:
    with pytest.raises(ValueError, match="rounding base must be a whole number of at least 1"):
        fixture_dataset.cohorts("age", protect="suppress+round", base=0)
    generator = fixture_dataset.cohorts("gender", where={"age": (a for a in ["_25_to_34", "_35_to_44"])})
    listed = fixture_dataset.cohorts("gender", where={"age": ["_25_to_34", "_35_to_44"]})
    assert generator.to_pandas().equals(listed.to_pandas())
    with pytest.raises(ValueError, match=r"citizenship x locale x gender has [\d,]+ cells .* restrict"):
        fixture_dataset.cohorts(["citizenship", "locale", "gender"])
    with pytest.raises(ValueError, match="among"):
        fixture_dataset.risk(["age"], sensitive="")
    with pytest.raises(ValueError, match="k must be a whole number"):
        fixture_dataset.risk(["age"], k=2.5)  # type: ignore[arg-type]
