"""Attacks on member lists: set algebra over every list released, never a class of 1 to k-1."""

from __future__ import annotations

import itertools

import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import identity_analytics as ia
from tests.release.attacker import Attacker, dataset, segment, small_classes

INCOMES = ("low", "middle", "high")
AGES = ("_25_to_34", "_35_to_44")


def _lists(ds: ia.Dataset, wheres: list[dict[str, list[str]]], attacker: Attacker | None = None) -> list[pa.Table]:
    """Ask for each member list; the ones released (with their sizes) go to the attacker."""
    released = []
    for where in wheres:
        try:
            members = ds.segment(segment(where)).members()
        except ia.PrivacyError:
            continue
        released.append(members)
        if attacker is not None:
            attacker.count(where, members.num_rows)
    return released


def test_lists_of_complementary_segments_set_apart_nobody() -> None:
    """``income != c`` for each c: a person's income would be the one list they are not in."""
    ds = dataset({("low",): 30, ("middle",): 25, ("high",): 4}, ["income"])
    wheres = [{"income": [i for i in INCOMES if i != c]} for c in INCOMES]
    released = _lists(ds, wheres)
    assert 0 < len(released) < 3
    assert small_classes(released, 10) == {}


def test_a_list_minus_another_sets_apart_nobody() -> None:
    """A \\ B of 1 to k-1 people, though A, B and their symmetric difference hold k or more."""
    ds = dataset({("_25_to_34", "low"): 30, ("_25_to_34", "middle"): 3, ("_35_to_44", "low"): 20}, ["age", "income"])
    released = _lists(ds, [{"age": ["_25_to_34"]}, {"income": ["low"]}])
    assert len(released) == 1
    assert small_classes(released, 10) == {}


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    counts=st.lists(st.sampled_from([0, 1, 3, 8, 12, 25]), min_size=6, max_size=6),
    wheres=st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "age": st.lists(st.sampled_from(AGES), min_size=1, max_size=2, unique=True),
                "income": st.lists(st.sampled_from(INCOMES), min_size=1, max_size=3, unique=True),
            },
        ),
        min_size=2,
        max_size=7,
    ),
)
def test_any_sequence_of_lists_and_sizes_sets_apart_nobody(
    counts: list[int], wheres: list[dict[str, list[str]]]
) -> None:
    cells = dict(zip(itertools.product(AGES, INCOMES), counts, strict=True))
    ds = dataset(cells, ["age", "income"])
    attacker = Attacker.of(ds)
    released = _lists(ds, wheres, attacker)
    assert small_classes(released, 10) == {}
    assert attacker.narrow() == []


def test_a_list_asked_again_is_the_same_list() -> None:
    ds = dataset({("_25_to_34", "low"): 30, ("_25_to_34", "middle"): 5}, ["age", "income"])
    low = segment({"income": ["low"]})
    first = ds.segment(low).members()
    assert first.num_rows == 30 and ds.segment(low).members().equals(first)
    assert len(ds.ledger.state().lists) == 1


def test_a_list_without_its_minors_does_not_count_them() -> None:
    """The segment's size counts its 5 children; the list of its adults would give them away."""
    ds = dataset({("_0_to_14", "low"): 5, ("_25_to_34", "low"): 30}, ["age", "income"])
    low = ds.segment(segment({"income": ["low"]}))
    assert low.size == 35
    with pytest.raises(ia.PrivacyError, match="member list of segment 'income in low'.* size of segment"):
        low.members()
    assert low.members(allow_minors=True).num_rows == 35


def test_lists_intersected_and_a_size_count_nobody() -> None:
    """Two lists whose classes all hold k or more give ``|A & B|`` exactly: a size that
    subtracts from it is audited with it (the lists' classes are counts of the joint audit)."""
    young, old = "_25_to_34", "_35_to_44"
    cells = {("female", "low", young): 3, ("female", "low", old): 17, ("female", "high", young): 12,
             ("female", "high", old): 15, ("male", "low", old): 20, ("male", "high", old): 20}  # fmt: skip
    ds = dataset(cells, ["gender", "income", "age"])
    attacker = Attacker.of(ds)
    released = _lists(ds, [{"gender": ["female"]}, {"income": ["low"]}], attacker)
    assert len(released) == 2 and small_classes(released, 10) == {}
    both = set(released[0].column("pseudonym").to_pylist()) & set(released[1].column("pseudonym").to_pylist())
    attacker.count({"gender": ["female"], "income": ["low"]}, len(both))  # what the lists give by set algebra
    try:
        size = ds.segment(segment({"gender": ["female"], "income": ["low"], "age": [old]})).size
    except ia.PrivacyError as error:
        assert "member list of segment" in str(error)
    else:
        attacker.count({"gender": ["female"], "income": ["low"], "age": [old]}, size)
    assert attacker.narrow() == []
