"""Overlap tables: pairwise intersections protected, differences hidden, refusals that release nothing."""

from __future__ import annotations

import pytest

import identity_analytics as ia
from identity_analytics.vocabulary import DIMENSIONS
from tests.test_segments import dataset_of_rows

POLICY = ia.PrivacyPolicy(pseudonym_key=b"segment-tests")
BASE = {d: "undetermined" for d in DIMENSIONS} | {"state": "active"}



def test_overlap_hides_small_intersections_and_small_differences() -> None:
    rows = [{"income": "low", "gender": "female"}] * 25 + [{"income": "low", "gender": "male"}] * 3
    rows += [{"income": "high", "gender": "male"}] * 15 + [{"income": "high", "gender": "female"}] * 12
    ds = dataset_of_rows(rows)
    low = ia.Segment(name="low", where={"income": ["low"]})
    female = ia.Segment(name="female", where={"gender": ["female"]})
    men = ia.Segment(name="men", where={"gender": ["male"]})
    table = ds.overlap([low, female, men])
    frame = table.to_pandas()
    assert frame.loc["low", "low"] == 28 and frame.loc["men", "men"] == 18
    assert frame.isna().loc["low", "female"]  # 25 published would reveal low-and-not-female = 3
    assert frame.isna().loc["low", "men"]  # 3 < k
    assert frame.loc["female", "men"] == 0
    long = table.to_arrow()
    assert long.num_rows == 9 and long.column("suppressed").to_pylist().count(True) == 4
    # the object itself keeps nothing of what it hides: not in its attributes, not in its repr
    assert (table.counts[table.suppressed] == 0).all()
    assert "25" not in repr(table) and "3," not in repr(table)


def test_overlap_refuses_a_segment_nested_one_person_smaller() -> None:
    rows = [{"age": "_25_to_34", "citizenship": "FR"}] * 30 + [{"age": "_25_to_34", "citizenship": "IS"}]
    everyone = ia.Segment(name="all", where={"age": ["_25_to_34"]})
    all_but_one = ia.Segment(name="all-but-IS", where={"age": ["_25_to_34"], "citizenship": ["FR"]})
    with pytest.raises(ia.PrivacyError, match="fewer than k=10 people"):
        dataset_of_rows(rows).overlap([everyone, all_but_one])
    ds = dataset_of_rows(rows)
    assert ds.segment(everyone).size == 31
    other = ia.Segment(name="FR", where={"citizenship": ["FR"]})
    with pytest.raises(ia.PrivacyError, match="released before: the size of segment 'all'"):
        ds.overlap([other, ia.Segment(name="none", where={"citizenship": ["DE"]})])


def test_a_refused_overlap_table_releases_nothing() -> None:
    rows = [{"age": "_25_to_34", "citizenship": "FR"}] * 30 + [{"age": "_25_to_34", "citizenship": "IS"}] * 3
    ds = dataset_of_rows(rows)
    everyone = ia.Segment(name="all", where={"age": ["_25_to_34"]})
    french = ia.Segment(name="FR", where={"age": ["_25_to_34"], "citizenship": ["FR"]})
    with pytest.raises(ia.PrivacyError):
        ds.overlap([everyone, french])
    assert ds.segment(french).size == 30  # "all" was never published, so this is no difference attack
    with pytest.raises(ia.PrivacyError, match="released before: the size of segment 'FR'"):
        ds.segment(everyone)
