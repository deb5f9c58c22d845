"""Specs: cohorts, segments and populations are values, validated once, their SQL readable."""

from __future__ import annotations

import pytest

import identity_analytics as ia
from identity_analytics.specs import Cohort, Population, Segment, validate_filters


def test_a_population_prints_in_words_and_its_sql_lists_exactly_its_people(fixture_dataset: ia.Dataset) -> None:
    where = {"age": ["_25_to_34", "_35_to_44"], "gender": ["female"]}
    population = Population.of(where)
    assert str(population) == (
        "identities with age in ['_25_to_34', '_35_to_44'] and gender in ['female'] "
        "(states ['active', 'undetermined'])"
    )
    assert population.sql.startswith("SELECT pseudonym FROM identities WHERE ")
    con = fixture_dataset.connection
    listed = {r[0] for r in con.execute(population.sql).fetchall()}
    rows = fixture_dataset.identities.to_pylist()
    expected = {
        r["pseudonym"] for r in rows
        if r["age"] in where["age"] and r["gender"] == "female" and r["state"] in ("active", "undetermined")
    }  # fmt: skip
    assert listed == expected and listed
    adults = Population.of(where, adults_only=True)
    assert "minors left out" in str(adults) and "NOT IN (SELECT pseudonym FROM minors)" in adults.sql
    everyone = Population.of({}, include_inactive=True)
    assert str(everyone) == "identities (every state)"
    assert {r[0] for r in con.execute(everyone.sql).fetchall()} == {r["pseudonym"] for r in rows}


def test_a_population_is_recorded_with_the_states_it_counts() -> None:
    assert Population.of({"gender": ["male"]}).recorded() == {"gender": ("male",), "state": ("active", "undetermined")}
    assert Population.of({"gender": ["male"]}, include_inactive=True).recorded() == {"gender": ("male",)}


def test_specs_are_frozen_values_and_bad_input_names_the_field() -> None:
    cohort = Cohort(by="age", where={"gender": "female"})
    same = Cohort(by=["age"], where={"gender": ("female",)})
    assert cohort == same and hash(cohort) == hash(same)
    with pytest.raises(ValueError, match="unknown dimension"):
        Segment(name="x", where={"shoe_size": ["42"]})
    with pytest.raises(ValueError, match=r"where\['gender'\]: unknown categories \['robot'\]"):
        validate_filters({"gender": ["robot"]}, ia.Vocabulary.default())
    assert ia.Segment is Segment
