"""Attacks on the release as a whole: many answers of one Dataset, combined by an LP.

Each test publishes through the public API (a refusal is fine: it publishes nothing), hands
what was published to :class:`tests.release.attacker.Attacker` and asserts that no group of 1
to k-1 people can be counted from it.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import identity_analytics as ia
from identity_analytics.cli import app
from tests.release.attacker import Attacker, dataset, identity_rows, publish_size, publish_table

AGES = ("_25_to_34", "_35_to_44", "_45_to_54")
GENDERS = ("male", "female", "non_binary")
INCOMES = ("low", "middle", "high")
HOUSEHOLDS = ("true", "false")
CUBE = ("age", "gender", "income")


def _cube(seed: int, dims: tuple[str, ...] = CUBE, cats: tuple[tuple[str, ...], ...] = (AGES, GENDERS, INCOMES)):
    """Counts per cell drawn from small and large ones (so that tables suppress cells)."""
    import itertools

    rnd = random.Random(seed)
    return {cell: rnd.choice([0, 1, 2, 3, 5, 12, 15, 20, 30]) for cell in itertools.product(*cats)}


def _no_small_group_is_counted(attacker: Attacker) -> None:
    narrow = attacker.narrow()
    assert narrow == [], f"{len(narrow)} small groups counted, e.g. {narrow[:3]}"


def test_a_size_minus_two_other_sizes_counts_nobody() -> None:
    ds = dataset({("_25_to_34", "FR"): 30, ("_25_to_34", "DE"): 20, ("_25_to_34", "IS"): 3}, ["age", "citizenship"])
    attacker = Attacker.of(ds)
    for where in ({"age": ["_25_to_34"]}, {"citizenship": ["FR"]}, {"citizenship": ["DE"]}):
        publish_size(ds, attacker, where)
    _no_small_group_is_counted(attacker)
    assert len(attacker.constraints) == 2  # the third size was refused


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_a_table_then_one_segment_per_suppressed_cell_counts_nobody(seed: int) -> None:
    ds = dataset(_cube(seed), CUBE)
    attacker = Attacker.of(ds)
    table = publish_table(ds, attacker, CUBE)
    for row in table.to_arrow().to_pylist():
        if row["suppressed"]:
            publish_size(ds, attacker, {d: [row[d]] for d in CUBE if row[d] is not None})
    _no_small_group_is_counted(attacker)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_an_unfiltered_table_then_tables_on_complementary_filters_count_nobody(seed: int) -> None:
    ds = dataset(_cube(seed), CUBE)
    attacker = Attacker.of(ds)
    publish_table(ds, attacker, ["age", "gender"])
    for income in INCOMES:
        publish_table(ds, attacker, ["age", "gender"], where={"income": [income]})
        publish_table(ds, attacker, ["age", "gender"], where={"income": [i for i in INCOMES if i != income]})
    # and breakdowns of segments on the same filters
    for age in AGES:
        try:
            result = ds.segment(ia.Segment(name=f"age {age}", where={"age": [age]}))
        except ia.PrivacyError:
            continue
        attacker.count({"age": [age]}, result.size)
        attacker.cohort_table(result.breakdown("income"))
    _no_small_group_is_counted(attacker)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_two_tables_sharing_a_margin_count_nobody(seed: int) -> None:
    import itertools

    rnd = random.Random(seed)
    cells = {
        cell: rnd.choice([0, 0, 1, 2, 3, 6, 12, 20])
        for cell in itertools.product(AGES[:2], GENDERS[:2], INCOMES, HOUSEHOLDS)
    }
    ds = dataset(cells, ("age", "gender", "income", "household"))
    attacker = Attacker.of(ds)
    publish_table(ds, attacker, ["age", "gender", "income"])
    publish_table(ds, attacker, ["age", "gender", "household"])
    _no_small_group_is_counted(attacker)


def test_an_exact_and_a_rounded_table_of_the_same_dimensions_count_nobody() -> None:
    ds = dataset(_cube(7), CUBE)
    attacker = Attacker.of(ds)
    publish_table(ds, attacker, ["age", "gender"])
    publish_table(ds, attacker, ["age", "gender"], protect="round")
    publish_table(ds, attacker, ["age", "gender"], protect="suppress+round", base=5, where={"income": ["low"]})
    publish_table(ds, attacker, ["age", "gender"], protect="round", where={"income": ["middle", "high"]})
    _no_small_group_is_counted(attacker)


@pytest.mark.parametrize("seed", [11, 12, 13])
def test_a_filter_on_every_category_republishes_nothing_suppressed(seed: int) -> None:
    ds = dataset(_cube(seed), CUBE)
    attacker = Attacker.of(ds)
    first = publish_table(ds, attacker, CUBE)
    assert first.suppressed.any()
    # the same people, asked for as filtered tables of fewer dimensions
    publish_table(ds, attacker, ["age", "gender"], where={"income": list(INCOMES)})
    publish_table(ds, attacker, ["age"], where={"gender": list(GENDERS), "income": list(INCOMES)})
    publish_table(ds, attacker, ["gender", "income"], where={"age": list(AGES)})
    everyone = ia.Vocabulary.default().categories("income")
    publish_table(ds, attacker, ["income"], where={"income": list(everyone)})
    _no_small_group_is_counted(attacker)


def test_a_per_call_k_may_only_raise_the_policys() -> None:
    ds = dataset(_cube(3), CUBE)
    attacker = Attacker.of(ds)
    for k in (2, 5, 9):
        try:
            publish_table(ds, attacker, ["age", "gender"], k=k)
        except ValueError as error:
            assert "policy's k=10" in str(error)
    for call in (lambda: ds.risk(["age"], k=3), lambda: ds.cohorts("age", k=9)):
        with pytest.raises(ValueError, match="floor"):
            call()
    published = [c.lo for c in attacker.constraints]
    assert not any(0 < n < 10 for n in published)
    _no_small_group_is_counted(attacker)


def test_the_reason_of_a_suppression_is_not_published(tmp_path: Path) -> None:
    """A published "primary" says the cell holds 1 to k-1 people: no output carries it."""
    ds = dataset(_cube(5), CUBE)
    table = ds.cohorts(list(CUBE))
    assert table.primary.any() and (table.suppressed & ~table.primary).any()
    assert "reason" not in table.to_arrow().column_names and "reason" not in table.to_pandas().columns
    html = table._repr_html_()
    assert "primary" not in html and "secondary" not in html
    assert set(table.reasons()) == {None, "primary", "secondary"}  # the operator's audit keeps them
    # a report's published files: tables as CSV, JSON, Parquet, and the HTML page
    source = tmp_path / "identities.parquet"
    pq.write_table(identity_rows(_cube(5), CUBE), source)
    store = tmp_path / "store"
    ia.Dataset.from_parquet(source, policy=ia.PrivacyPolicy(pseudonym_key=b"k")).save(store)
    args = ["report", "--store", str(store), "--by", ",".join(CUBE), "--out", str(tmp_path / "r")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    out = tmp_path / "r"
    published = [*sorted((out / "cohorts").iterdir()), out / "report.html"]
    for path in published:
        text = pq.read_table(path).to_pandas().to_csv() if path.suffix == ".parquet" else path.read_text()
        assert "primary" not in text and "secondary" not in text and "reason" not in text, path
    audit = json.loads((out / "audit.json").read_text())
    assert {c["reason"] for t in audit["tables"] for c in t["suppressed_cells"]} == {"primary", "secondary"}


def test_a_risk_report_sizes_no_small_class() -> None:
    cells = {("_25_to_34", "male"): 40, ("_25_to_34", "female"): 3, ("_35_to_44", "female"): 30}
    ds = dataset(cells, ["age", "gender"])
    attacker = Attacker.of(ds)
    publish_table(ds, attacker, ["age", "gender"])
    report = ds.risk(["age", "gender"])
    attacker.count({}, report.records)
    assert report.smallest_class is None and report.classes_below_k == 1
    assert report.records_below_k % 10 == 0 and report.records_below_k >= 3
    for band in report.class_sizes:
        low, high = (int(x) for x in band.split("-"))
        assert high < 10 or low >= 10, band  # a band is all below k or all at least k
        assert high - low + 1 >= 9, band  # never one size
    # with the class sizes as bands, the table's suppressed cells stay hidden
    _no_small_group_is_counted(attacker)


def test_a_report_of_complementary_filters_counts_nobody(tmp_path: Path) -> None:
    """One ``report --config`` run: its tables, read back from the published JSON files."""
    cells = _cube(21)
    source = tmp_path / "identities.parquet"
    pq.write_table(identity_rows(cells, CUBE), source)
    store = tmp_path / "store"
    ia.Dataset.from_parquet(source, policy=ia.PrivacyPolicy(pseudonym_key=b"k")).save(store)
    tables = [("all", {})] + [
        (f"{income}-{side}", {"income": [income] if side == "in" else [i for i in INCOMES if i != income]})
        for income in INCOMES
        for side in ("in", "out")
    ]
    config = tmp_path / "report.toml"
    config.write_text(
        f'[input]\nstore = "{store}"\n'
        + "".join(
            f'[[cohorts]]\nname = "{name}"\nby = ["age", "gender"]\n'
            + (f"where = {{ income = {json.dumps(where['income'])} }}\n" if where else "")
            for name, where in tables
        )
    )
    result = CliRunner().invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    attacker = Attacker([identity_rows(cells, CUBE).to_pylist()], 10)
    for name, where in tables:
        published = json.loads((tmp_path / "r" / "cohorts" / f"{name}.json").read_text())
        attacker.table(pa.Table.from_pylist(published), ["age", "gender"], where)
    _no_small_group_is_counted(attacker)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10_000))
def test_rounded_tables_then_an_exact_margin_are_published_and_count_nobody(seed: int) -> None:
    """A later exact table whose cells repeat a rounded cell's population is audited on its
    own cells (which it may suppress), not refused for what the rounded ones published."""
    import itertools

    rnd = random.Random(seed)
    cells = {c: rnd.choice([0, 0, 0, 1, 2, 3, 6, 12, 20]) for c in itertools.product(AGES, GENDERS, INCOMES)}
    ds = dataset(cells, CUBE)
    attacker = Attacker.of(ds)
    publish_table(ds, attacker, CUBE, protect="suppress+round", base=5)
    publish_table(ds, attacker, ["age", "gender"], protect="suppress+round", base=5)
    publish_table(ds, attacker, CUBE, protect="round", where={"income": ["low", "middle"]})
    publish_table(ds, attacker, ["gender"])  # refused before: its rows were merged with the rounded ones
    _no_small_group_is_counted(attacker)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    by=st.sampled_from([CUBE, ("age", "gender"), ("gender", "income"), ("income",)]),
    filtered=st.booleans(),
)
def test_a_table_released_first_and_alone_needs_no_joint_audit(seed: int, by: tuple[str, ...], filtered: bool) -> None:
    """The gate records a lone first table without auditing it again (its own secondary
    suppression is the joint audit then): the full joint audit of the same table asks for
    nothing more, and an attacker of what it published counts nobody."""
    from identity_analytics.cohorts import compute_cohorts, table_label
    from identity_analytics.specs import counted_population

    ds = dataset(_cube(seed), CUBE)
    where = {"age": list(AGES[:2])} if filtered else None
    table = compute_cohorts(ds.connection, ds.vocabulary, by, 10, where=where)
    assert table.audited_alone
    block, _ = table.release_block(table_label(table), counted_population(table.filters, False))
    with ds.releasing() as session:
        (hidden,) = session.publish_cells([block], None)  # the full joint audit, no shortcut
    assert not hidden.any()
    assert ds.audit_measures()["audits"] == 1

    fresh = dataset(_cube(seed), CUBE)
    attacker = Attacker.of(fresh)
    published = publish_table(fresh, attacker, by, where=where)
    assert fresh.audit_measures()["audits"] == 0  # recorded without a second audit
    assert published.suppressed.tolist() == table.suppressed.tolist()
    _no_small_group_is_counted(attacker)
