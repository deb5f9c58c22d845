from __future__ import annotations

import json

import pytest

import identity_analytics as ia
from identity_analytics.vocabulary import DIMENSIONS, age_band


def test_default_vocabulary_matches_the_spec() -> None:
    vocabulary = ia.Vocabulary.default()
    assert vocabulary.declared("age") == (
        "_0_to_14",
        "_15_to_24",
        "_25_to_34",
        "_35_to_44",
        "_45_to_54",
        "_55_to_64",
        "_65_plus",
    )
    assert vocabulary.declared("income") == ("none", "low", "lower_middle", "middle", "upper_middle", "high")
    assert vocabulary.declared("gender") == ("male", "female", "non_binary", "other")
    assert vocabulary.declared("household") == ("true", "false")
    assert vocabulary.declared("parental_status") == ("parent", "not_parent")
    assert len(vocabulary.declared("citizenship")) == 249 and "US" in vocabulary.declared("citizenship")
    assert {"en", "en-US", "pt-BR"} <= set(vocabulary.declared("locale"))
    assert vocabulary.declared("state") == ("active", "inactive")


def test_every_dimension_publishes_undetermined_and_other_once() -> None:
    vocabulary = ia.Vocabulary.default()
    for dim in DIMENSIONS:
        categories = vocabulary.categories(dim)
        assert categories.count("undetermined") == 1 and categories.count("other") == 1
        assert len(set(categories)) == len(categories)


def test_unknown_dimension_names_the_allowed_ones() -> None:
    with pytest.raises(ValueError, match="unknown dimension 'shoe_size'.*'age'"):
        ia.Vocabulary.default().categories("shoe_size")


def test_vocabulary_can_be_overridden_from_a_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    data = ia.Vocabulary.default().to_dict()
    data["locale"] = ["en", "fr"]
    path = tmp_path / "vocabulary.json"
    path.write_text(json.dumps({"dimensions": data}))
    assert ia.Vocabulary.from_file(path).declared("locale") == ("en", "fr")


def test_vocabulary_refuses_reserved_categories() -> None:
    data = ia.Vocabulary.default().to_dict()
    data["income"] = [*data["income"], "undetermined"]
    with pytest.raises(ValueError, match="reserved"):
        ia.Vocabulary(data)


@pytest.mark.parametrize(
    ("years", "band"),
    [
        (0, "_0_to_14"),
        (14, "_0_to_14"),
        (15, "_15_to_24"),
        (24, "_15_to_24"),
        (25, "_25_to_34"),
        (64, "_55_to_64"),
        (65, "_65_plus"),
        (130, "_65_plus"),
        (131, "other"),
        (-1, "other"),
    ],
)
def test_age_band_boundaries(years: int, band: str) -> None:
    assert age_band(years) == band


def test_vocabulary_keeps_the_identity_states() -> None:
    data = ia.Vocabulary.default().to_dict()
    data["state"] = ["active", "inactive", "blocked"]
    with pytest.raises(ValueError, match="state vocabulary must be the identity states"):
        ia.Vocabulary(data)
