"""CohortTable views: pivot, HTML, plot, the long form with suppressed cells published as null, the audit."""

from __future__ import annotations

import matplotlib
import pyarrow as pa
import pytest

import identity_analytics as ia
from identity_analytics.vocabulary import DIMENSIONS
from tests.test_cohorts import POLICY, SMALL, VOCABULARY

matplotlib.use("Agg")




def test_pandas_pivot_html_and_plot(fixture_dataset: ia.Dataset) -> None:
    table = fixture_dataset.cohorts(["age", "parental_status"])
    frame = table.to_pandas()
    # no reason column: a published "primary" would say the cell holds 1 to k-1 people
    assert str(frame["count"].dtype) == "Int64" and list(frame.columns) == [
        "age",
        "parental_status",
        "count",
        "share",
        "suppressed",
    ]
    grand = frame[frame["age"].isna() & frame["parental_status"].isna()]
    assert grand["share"].tolist() == [1.0]
    wide = table.pivot()
    assert list(wide.columns) == [*VOCABULARY.categories("parental_status"), "total"]
    assert wide.loc["total", "total"] == table.total
    html = table._repr_html_()
    assert html.count('class="s"') == int(table.suppressed.sum()) and "<table" in html
    ax = table.plot()
    assert ax.get_title().startswith("age × parental_status")


def test_published_counts_keep_nothing_of_suppressed_cells(fixture_dataset: ia.Dataset) -> None:
    for protect, base in (("suppress", None), ("suppress+round", 5)):
        table = fixture_dataset.cohorts(["age", "income"], protect=protect, base=base)
        assert table.suppressed.any() and (table.published[table.suppressed] == 0).all()
        assert (table.grid.counts[table.suppressed] > 0).any()  # the true counts stay for audit() only


def test_audit_widths_are_free_of_solver_noise() -> None:
    """A table whose LP bounds come back as 2.9999999999999947 for 3 (found by hypothesis)."""
    groups = {
        ("_0_to_14", "true", "parent"): 7, ("_0_to_14", "false", "parent"): 3, ("_0_to_14", "true", "other"): 2,
        ("_15_to_24", "true", "parent"): 2, ("_0_to_14", "true", "not_parent"): 1, ("_0_to_14", "false", "other"): 1,
        ("_0_to_14", "undetermined", "parent"): 1, ("_15_to_24", "true", "not_parent"): 1,
        ("_25_to_34", "true", "parent"): 1, ("_25_to_34", "true", "other"): 1, ("_25_to_34", "false", "parent"): 1,
        ("_25_to_34", "false", "not_parent"): 1,
    }  # fmt: skip
    base = {d: SMALL[d][0] for d in DIMENSIONS} | {"state": "active"}
    rows = [
        base | {"age": age, "household": household, "parental_status": parental}
        for (age, household, parental), n in groups.items()
        for _ in range(n)
    ]
    table = pa.Table.from_pylist([{"pseudonym": POLICY.pseudonym(str(i)), **r} for i, r in enumerate(rows)])
    policy = POLICY.model_copy(update={"k": 3})
    cohort = ia.Dataset.from_arrow(table.select(["pseudonym", *DIMENSIONS]), policy=policy).cohorts(
        ["age", "household", "parental_status"]
    )
    audit = cohort.audit()
    assert audit.num_rows > 0 and all(audit.column("protected").to_pylist())
    assert min(audit.column("width").to_pylist()) == 3.0


def test_pivot_takes_dimensions_left_out_of_rows_at_their_margin(fixture_dataset: ia.Dataset) -> None:
    import dataclasses

    ds = ia.Dataset.from_arrow(fixture_dataset.identities, policy=POLICY.model_copy(update={"k": 2}))
    table = ds.cohorts(["age", "income", "gender"])
    wide = table.pivot(rows=["age"], column="gender")
    two = ds.cohorts(["age", "gender"]).pivot()
    assert wide.equals(two)  # the income margin of the 3-D table is the 2-D table
    with pytest.raises(ValueError, match="distinct dimensions of this table"):
        table.pivot(rows=["locale"], column="gender")
    with pytest.raises(ValueError, match="only be left out of pivot rows in a table with margins"):
        ds.cohorts(["age", "gender"], margins=False).pivot(rows=[], column="gender")
    renamed = dataclasses.replace(table, categories=(("total", *table.categories[0][1:]), *table.categories[1:]))
    assert "(total)" in renamed.pivot().index.get_level_values(0)
