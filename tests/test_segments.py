"""Segments: definitions, protected sizes, member lists, minors, the release audit of sizes, overlaps."""

from __future__ import annotations

import json
import random
from collections.abc import Iterable
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import identity_analytics as ia
from identity_analytics.protection import attacker_intervals
from identity_analytics.vocabulary import DIMENSIONS
from tests.conftest import REFERENCE_DATE, write_lines

POLICY = ia.PrivacyPolicy(pseudonym_key=b"segment-tests")
BASE = {d: "undetermined" for d in DIMENSIONS} | {"state": "active"}


def dataset_of_rows(rows: Iterable[dict[str, str]], policy: ia.PrivacyPolicy = POLICY) -> ia.Dataset:
    schema = pa.schema([(c, pa.string()) for c in ("pseudonym", *DIMENSIONS)])
    records = [{"pseudonym": POLICY.pseudonym(str(i)), **BASE, **r} for i, r in enumerate(rows)]
    return ia.Dataset.from_arrow(pa.Table.from_pylist(records, schema=schema), policy=policy)


def test_segments_round_trip_through_json_and_yaml(tmp_path: Path) -> None:
    segment = ia.Segment(
        name="young-parents", where={"age": ["_25_to_34"], "parental_status": ["parent"]}, description="d"
    )
    for name in ("s.json", "s.yaml"):
        assert ia.Segment.load(segment.save(tmp_path / name)) == segment
    assert "parental_status:" in segment.to_yaml()


def test_unknown_dimension_or_category_is_a_clear_error(fixture_dataset: ia.Dataset) -> None:
    with pytest.raises(ValueError, match="unknown dimension.*'eyes'"):
        ia.Segment(name="x", where={"eyes": ["blue"]})
    with pytest.raises(ValueError, match=r"where\['age'\]: unknown categories \['old'\].*'_65_plus'"):
        fixture_dataset.segment(ia.Segment(name="x", where={"age": ["old"]}))


def test_size_is_exact_or_suppressed_below_k() -> None:
    ds = dataset_of_rows([{"gender": "female"}] * 12 + [{"gender": "male"}] * 3)
    big = ds.segment(ia.Segment(name="f", where={"gender": ["female"]}))
    small = ds.segment(ia.Segment(name="m", where={"gender": ["male"]}))
    none = ds.segment(ia.Segment(name="nb", where={"gender": ["non_binary"]}))
    assert (big.size, big.suppressed) == (12, False)
    assert (small.size, small.suppressed) == (None, True)
    assert (none.size, none.suppressed) == (0, False)


def test_inactive_identities_are_not_counted() -> None:
    ds = dataset_of_rows([{"gender": "female"}] * 12 + [{"gender": "female", "state": "inactive"}] * 5)
    assert ds.segment(ia.Segment(name="f", where={"gender": ["female"]})).size == 12


def test_members_are_pseudonyms_and_refused_below_k() -> None:
    ds = dataset_of_rows([{"gender": "female", "age": "_35_to_44"}] * 12 + [{"gender": "male", "age": "_35_to_44"}] * 3)
    members = ds.segment(ia.Segment(name="f", where={"gender": ["female"]})).members()
    assert members.column_names == ["pseudonym"] and members.num_rows == 12
    assert set(members.column("pseudonym").to_pylist()) == {POLICY.pseudonym(str(i)) for i in range(12)}
    with pytest.raises(ia.PrivacyError, match="fewer than k=10 members"):
        ds.segment(ia.Segment(name="m", where={"gender": ["male"]})).members()


def test_members_leave_out_minors_unless_asked(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    lines = [f'{{"id": "adult-{i}", "traits": {{"birthdate": "1990-01-01", "locale": "fr"}}}}' for i in range(12)]
    lines += [f'{{"id": "teen-{i}", "traits": {{"birthdate": "2011-06-01", "locale": "fr"}}}}' for i in range(10)]
    lines += [f'{{"id": "kid-{i}", "traits": {{"birthdate": "2019-06-01", "locale": "fr"}}}}' for i in range(10)]
    ds = ia.Dataset.from_files(
        write_lines(tmp_path / "ids.ndjson", lines), policy=policy, reference_date=REFERENCE_DATE
    )
    segment = ia.Segment(name="fr", where={"locale": ["fr"]})
    adults = set(ds.segment(segment).members().column("pseudonym").to_pylist())
    assert adults == {policy.pseudonym(f"adult-{i}") for i in range(12)}  # 15-year-olds are in _15_to_24 but under 16
    everyone = ia.Dataset.from_files(
        write_lines(tmp_path / "ids2.ndjson", lines), policy=policy, reference_date=REFERENCE_DATE
    )
    assert everyone.segment(segment).members(allow_minors=True).num_rows == 32


def test_differencing_by_fewer_than_k_people_is_refused() -> None:
    rows = [{"age": "_25_to_34", "citizenship": "FR"}] * 30 + [{"age": "_25_to_34", "citizenship": "IS"}]
    ds = dataset_of_rows(rows)
    everyone = ia.Segment(name="all", where={"age": ["_25_to_34"]})
    all_but_one = ia.Segment(name="all-but-IS", where={"age": ["_25_to_34"], "citizenship": ["FR"]})
    assert ds.segment(everyone).size == 31
    with pytest.raises(ia.PrivacyError, match="fewer than k=10 people .* released before: the size of segment 'all'"):
        ds.segment(all_but_one)
    assert ds.segment(everyone).size == 31  # the same population again reveals nothing new
    assert ds.segment(everyone).members().num_rows == 31
    with pytest.raises(ia.PrivacyError, match="the member list of segment 'all-but-IS'"):
        ia.SegmentResult(all_but_one, ds, None, True).members()


def test_differences_of_at_least_k_are_allowed() -> None:
    ds = dataset_of_rows([{"income": "low"}] * 20 + [{"income": "high"}] * 10)
    assert ds.segment(ia.Segment(name="all", where={})).size == 30
    assert ds.segment(ia.Segment(name="low", where={"income": ["low"]})).size == 20
    assert ds.segment(ia.Segment(name="low", where={"income": ["low"]})).members().num_rows == 20


def test_breakdown_is_a_protected_cohort_table(fixture_dataset: ia.Dataset) -> None:
    result = fixture_dataset.segment(ia.Segment(name="parents", where={"parental_status": ["parent"]}))
    table = result.breakdown(["age", "gender"])
    assert isinstance(table, ia.CohortTable) and table.total == result.size
    counts = [c for c in table.to_arrow().column("count").to_pylist() if c is not None]
    assert all(c == 0 or c >= 10 for c in counts)




rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            "age": st.sampled_from(["_25_to_34", "_35_to_44", "undetermined"]),
            "gender": st.sampled_from(["male", "female"]),
            "income": st.sampled_from(["low", "high", "other"]),
        }
    ),
    max_size=60,
)
where_strategy = st.dictionaries(
    st.sampled_from(["age", "gender", "income"]),
    st.lists(
        st.sampled_from(["_25_to_34", "_35_to_44", "undetermined", "male", "female", "low", "high", "other"]),
        min_size=1,
        max_size=3,
        unique=True,
    ),
    max_size=2,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=rows_strategy, wheres=st.lists(where_strategy, min_size=1, max_size=5))
def test_no_released_size_in_open_zero_k(rows: list[dict[str, str]], wheres: list[dict[str, list[str]]]) -> None:
    ds = dataset_of_rows(rows)
    vocabulary = ds.vocabulary
    for n, where in enumerate(wheres):
        where = {d: [v for v in values if v in vocabulary.categories(d)] for d, values in where.items()}
        where = {d: v for d, v in where.items() if v}
        try:
            result = ds.segment(ia.Segment(name=f"s{n}", where=where))
        except ia.PrivacyError:
            continue
        truth = sum(all(r[d] in v for d, v in where.items()) for r in rows)
        if result.suppressed:
            assert result.size is None and 0 < truth < 10
        else:
            assert result.size == truth and not 0 < truth < 10


def _minors_file(tmp_path: Path) -> Path:
    lines = [f'{{"id": "adult-{i}", "traits": {{"birthdate": "1990-01-01", "locale": "fr"}}}}' for i in range(12)]
    lines += [f'{{"id": "teen-{i}", "traits": {{"birthdate": "2011-06-01", "locale": "fr"}}}}' for i in range(10)]
    return write_lines(tmp_path / "ids.ndjson", lines)


@pytest.mark.parametrize("open_key", [b"another-key", None])
def test_minors_stay_out_of_member_lists_of_a_store_opened_with_another_key(
    tmp_path: Path, policy: ia.PrivacyPolicy, open_key: bytes | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ia.Dataset.from_files(_minors_file(tmp_path), policy=policy, reference_date=REFERENCE_DATE).save(tmp_path / "s")
    monkeypatch.delenv("IDENTITY_ANALYTICS_PSEUDONYM_KEY", raising=False)
    with pytest.warns(ia.PseudonymKeyWarning):
        reopened = ia.Dataset.open(tmp_path / "s", policy=ia.PrivacyPolicy(pseudonym_key=open_key))
    members = reopened.segment(ia.Segment(name="fr", where={"locale": ["fr"]})).members()
    assert set(members.column("pseudonym").to_pylist()) == {policy.pseudonym(f"adult-{i}") for i in range(12)}


def test_the_youngest_band_is_left_out_without_any_birthdate() -> None:
    young, older = {"age": "_0_to_14", "gender": "female"}, {"age": "_35_to_44", "gender": "female"}
    ds = dataset_of_rows([young] * 10 + [older] * 12)
    segment = ia.Segment(name="f", where={"gender": ["female"]})
    members = ds.segment(segment).members()
    assert set(members.column("pseudonym").to_pylist()) == {POLICY.pseudonym(str(i)) for i in range(10, 22)}
    children = dataset_of_rows([{"age": "_0_to_14"}] * 12).segment(ia.Segment(name="all"))
    assert children.members(allow_minors=True).num_rows == 12




def test_breakdown_totals_pass_the_joint_audit() -> None:
    rows = [{"age": "_25_to_34", "citizenship": "FR", "gender": "male"}] * 30
    rows += [{"age": "_25_to_34", "citizenship": "IS", "gender": "male"}]
    ds = dataset_of_rows(rows)
    assert ds.segment(ia.Segment(name="all", where={"age": ["_25_to_34"]})).size == 31
    all_but_one = ia.Segment(name="all-but-IS", where={"age": ["_25_to_34"], "citizenship": ["FR"]})
    # 31 - 30 would give away the one of IS: the breakdown's total and its men-cell are suppressed
    table = ia.SegmentResult(all_but_one, ds, None, True).breakdown(["gender"]).to_pandas()
    assert table["count"].dropna().eq(0).all() and table["suppressed"].sum() == 2


def test_repeated_releases_of_one_population_are_remembered_once() -> None:
    ds = dataset_of_rows([{"income": "low"}] * 20)
    segment = ia.Segment(name="low", where={"income": ["low"]})
    for _ in range(5):
        ds.segment(segment)
        ds.segment(segment).members()
    state = ds.ledger.state()
    assert state.releases == 2 and len(state.blocks) == 2 and len(state.lists) == 1  # the size, the list


def test_segments_save_into_new_folders(tmp_path: Path) -> None:
    segment = ia.Segment(name="s", where={"income": ["low"]})
    assert ia.Segment.load(segment.save(tmp_path / "segments" / "s.yaml")) == segment


def test_breakdown_without_margins_passes_the_joint_audit_too() -> None:
    rows = [{"age": "_25_to_34", "income": "low", "gender": "male"}] * 97
    rows += [{"age": "_25_to_34", "income": "high", "gender": "male"}] * 3
    ds = dataset_of_rows(rows)
    assert ds.segment(ia.Segment(name="all", where={"age": ["_25_to_34"]})).size == 100
    most = ia.SegmentResult(ia.Segment(name="low", where={"age": ["_25_to_34"], "income": ["low"]}), ds, None, True)
    # the one man-cell (97 of the 100) would give away the 3 with high income: it is hidden
    table = most.breakdown(["gender"], margins=False).to_pandas().set_index("gender")
    assert table.loc["male", "suppressed"] and table["count"].dropna().eq(0).all()
    total = most.breakdown(["gender"], k=50).to_pandas()  # its total (97) would give away the 3 too
    assert total["count"].dropna().eq(0).all()




def _store_without_minors(tmp_path: Path, policy: ia.PrivacyPolicy) -> Path:
    """A store as written before minors were kept: no minors file, no manifest entry."""
    store = ia.Dataset.from_files(_minors_file(tmp_path), policy=policy, reference_date=REFERENCE_DATE).save(
        tmp_path / "old"
    )
    manifest = json.loads((store / "manifest.json").read_text())
    (store / manifest["tables"].pop("minors")["file"]).unlink()
    (store / "manifest.json").write_text(json.dumps(manifest))
    return store


def test_an_older_store_rebuilds_its_minors_under_its_own_key(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    reopened = ia.Dataset.open(_store_without_minors(tmp_path, policy), policy=policy)
    members = reopened.segment(ia.Segment(name="fr", where={"locale": ["fr"]})).members()
    assert set(members.column("pseudonym").to_pylist()) == {policy.pseudonym(f"adult-{i}") for i in range(12)}


def test_an_older_store_under_another_key_refuses_member_lists(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    store = _store_without_minors(tmp_path, policy)
    with pytest.warns(ia.PseudonymKeyWarning):
        reopened = ia.Dataset.open(store, policy=ia.PrivacyPolicy(pseudonym_key=b"another-key"))
    segment = ia.Segment(name="fr", where={"locale": ["fr"]})
    with pytest.raises(ia.PrivacyError, match="minors cannot be left out"):
        reopened.segment(segment).members()
    assert reopened.segment(segment).members(allow_minors=True).num_rows == 22


def test_breakdown_cells_pass_the_joint_audit() -> None:
    # 30 young men: 25 single, 5 with no known relationship status
    rows = [{"age": "_25_to_34", "gender": "male", "relationship_status": "single"}] * 25
    rows += [{"age": "_25_to_34", "gender": "male"}] * 5 + [{"age": "_25_to_34", "gender": "female"}] * 40
    young = ia.Segment(name="young", where={"age": ["_25_to_34"]})
    single_men = ia.Segment(
        name="single men", where={"age": ["_25_to_34"], "gender": ["male"], "relationship_status": ["single"]}
    )
    ds = dataset_of_rows(rows)
    table = ds.segment(young).breakdown(["gender"]).to_pandas()
    assert int(table.loc[table.gender == "male", "count"].iloc[0]) == 30
    with pytest.raises(ia.PrivacyError, match="released before: cell gender=male of the breakdown of segment 'young'"):
        ds.segment(single_men)  # 30 - 25 would give away the 5 others
    ds = dataset_of_rows(rows)
    assert ds.segment(single_men).size == 25
    breakdown = ds.segment(young).breakdown(["gender"])  # the men-cell would give away the 5: hidden
    cells = breakdown.to_pandas().set_index("gender")
    assert cells.loc["male", "suppressed"] and "reason" not in cells.columns
    assert breakdown.reasons()[list(cells.index).index("male")] == "secondary"
    assert all(w >= 10 for w in breakdown.audit().column("width").to_pylist())
    men = ds.cohorts("gender", where={"age": ["_25_to_34"], "gender": ["male"]})  # its total (30) too
    assert men.to_pandas()["count"].dropna().eq(0).all()
    rounded = dataset_of_rows(rows).segment(young).breakdown(["gender"], protect="suppress+round", base=5)
    assert rounded.to_pandas()["count"].dropna().mod(5).eq(0).all()


def test_filtered_cohort_tables_pass_the_joint_audit() -> None:
    rows = [{"age": "_25_to_34", "income": "low", "gender": "female"}] * 30
    rows += [{"age": "_25_to_34", "income": "high", "gender": "female"}] * 2
    rows += [{"age": "_25_to_34", "income": "low", "gender": "male"}] * 25
    ds = dataset_of_rows(rows)
    young = ds.cohorts("gender", where={"age": ["_25_to_34"]})
    assert young.total == 57
    low = ds.cohorts("gender", where={"age": ["_25_to_34"], "income": ["low"]})  # 57 - 55: the 2 with high income
    assert low.total is None and low.suppressed.sum() >= 2
    assert ds.cohorts("gender").total == 57  # everyone counted: the same 57 as the filtered total
    assert ds.cohorts("gender", where={"age": ["_25_to_34"]}).total == 57  # the same population again


def test_a_filtered_table_asked_again_is_remembered_once() -> None:
    women, men = {"age": "_25_to_34", "gender": "female"}, {"age": "_25_to_34", "gender": "male"}
    ds = dataset_of_rows([women] * 20 + [men] * 15)
    first = ds.cohorts("gender", where={"age": ["_25_to_34"]}).to_pandas()

    def kept() -> int:
        return ds.ledger.state().releases

    rows = kept()
    assert rows == 1 and len(ds.ledger.state().blocks[0].lower) == 3  # the total and the two gender cells
    for _ in range(3):
        assert ds.cohorts("gender", where={"age": ["_25_to_34"]}).to_pandas().equals(first)
    assert kept() == rows


MEN_AND_WOMEN = (
    [{"gender": "male", "age": "_25_to_34"}] * 47
    + [{"gender": "male", "age": "_65_plus"}] * 3
    + [{"gender": "female", "age": "_35_to_44"}] * 40
)
NOT_65 = ["_0_to_14", "_15_to_24", "_25_to_34", "_35_to_44", "_45_to_54", "_55_to_64", "undetermined", "other"]


def test_cells_of_unfiltered_tables_pass_the_joint_audit() -> None:
    """men = 50 from a table, men under 65 = 47 from a segment: the 3 men of 65+ would be known."""
    men_under_65 = ia.Segment(name="men-under-65", where={"gender": ["male"], "age": NOT_65})
    ds = dataset_of_rows(MEN_AND_WOMEN)
    assert ds.cohorts("gender").to_pandas().set_index("gender").loc["male", "count"] == 50
    with pytest.raises(ia.PrivacyError, match="released before: cell gender=male of the cohort table by gender"):
        ds.segment(men_under_65)
    under_65 = ds.cohorts("age", where={"age": NOT_65})  # 90 - 87: the three of 65+
    assert under_65.total is None
    # the other way round, the table hides what the segment would give away
    ds = dataset_of_rows(MEN_AND_WOMEN)
    assert ds.segment(men_under_65).size == 47
    table = ds.cohorts("gender")
    cells = table.to_pandas().set_index("gender")
    assert cells.loc["male", "suppressed"] and table.reasons()[list(cells.index).index("male")] == "secondary"
    assert all(w >= 10 for w in table.audit().column("width").to_pylist())


def test_an_unfiltered_table_hides_what_an_earlier_one_would_give_away() -> None:
    ds = dataset_of_rows(MEN_AND_WOMEN)
    assert ds.cohorts("gender").to_pandas().set_index("gender").loc["male", "count"] == 50
    # by age alone, 35-44 (all 40 women) would be the cell to hide next to 65+; but 25-34
    # published (the 47 men of that age) would leave 50 - 47 = 3 men of another age
    ages = ds.cohorts("age").to_pandas().set_index("age")
    assert ages.loc["_25_to_34", "suppressed"] and ages.loc["_65_plus", "suppressed"]
    fresh = dataset_of_rows(MEN_AND_WOMEN).cohorts("age").to_pandas().set_index("age")
    assert fresh.loc["_25_to_34", "count"] == 47 and fresh.loc["_35_to_44", "suppressed"]


def test_a_table_asked_again_is_the_same_release() -> None:
    ds = dataset_of_rows(MEN_AND_WOMEN)
    first = ds.cohorts(["gender", "age"]).to_pandas()
    for _ in range(3):
        assert ds.cohorts(["gender", "age"]).to_pandas().equals(first)
        assert ds.cohorts("gender").total == 90  # its cells are margins of the table above
    assert ds.ledger.state().releases == 2


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("a.yaml", "name: x\nwhere:\n  shoe: [a]\n", r"a\.yaml: where\.shoe: unknown dimension 'shoe'"),
        ("b.yaml", "name: x\nwher: {}\n", r"b\.yaml: wher: Extra inputs are not permitted"),
        ("c.json", '{"name": "x", ', r"c\.json: Invalid JSON"),
    ],
)
def test_segment_file_errors_name_the_file(tmp_path: Path, name: str, text: str, expected: str) -> None:
    (tmp_path / name).write_text(text)
    with pytest.raises(ValueError, match=expected):
        ia.Segment.load(tmp_path / name)


def _random_cube_rows(seed: int) -> list[dict[str, str]]:
    """Rows over age x gender x income, each cell holding a count drawn from small and large ones."""
    rnd = random.Random(seed)
    return [
        {"age": a, "gender": g, "income": i}
        for a in ("_25_to_34", "_35_to_44", "_45_to_54")
        for g in ("male", "female", "non_binary")
        for i in ("low", "middle", "high")
        for _ in range(rnd.choice([0, 2, 3, 5, 12, 15, 20, 30]))
    ]


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000))
def test_a_table_of_fewer_dimensions_keeps_what_an_earlier_one_suppressed(seed: int) -> None:
    """Read together, a 3-D table and then its 2-D margin table still protect every small cell
    (a hidden cell of 1 to k-1 people keeps an interval at least k wide)."""
    ds = dataset_of_rows(_random_cube_rows(seed))
    big, small = ds.cohorts(["age", "gender", "income"]), ds.cohorts(["age", "gender"])
    at = {tuple(codes): n for n, codes in enumerate(big.grid.codes.tolist())}
    published = ~big.suppressed
    for n, codes in enumerate(small.grid.codes.tolist()):
        if not small.suppressed[n]:
            published[at[(codes[0], codes[1], -1)]] = True
    lo, hi = attacker_intervals(big.grid, ~published)
    small = ~published & (big.grid.counts > 0) & (big.grid.counts < 10)
    assert (~published).any() and (hi[small] - lo[small] >= 10).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), smaller=st.sampled_from([("gender",), ("age",), ("age", "gender")]))
def test_a_table_of_more_dimensions_counts_the_margins_published_before(seed: int, smaller: tuple[str, ...]) -> None:
    """Read together with an earlier table of fewer dimensions, the 3-D table protects every
    small cell."""
    ds = dataset_of_rows(_random_cube_rows(seed))
    small = ds.cohorts(list(smaller))
    big = ds.cohorts(["age", "gender", "income"])
    at = {tuple(codes): n for n, codes in enumerate(big.grid.codes.tolist())}
    published = ~big.suppressed
    for n, codes in enumerate(small.grid.codes.tolist()):
        if not small.suppressed[n]:
            named = dict(zip(small.by, codes, strict=True))
            published[at[tuple(named.get(d, -1) for d in big.by)]] = True
    lo, hi = attacker_intervals(big.grid, ~published)
    hidden = ~published & (big.grid.counts > 0) & (big.grid.counts < 10)
    assert (hi[hidden] - lo[hidden] >= 10).all()
