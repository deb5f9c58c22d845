"""Dimensions and their declared categories, and the mapping of raw values onto them.

Cohort cells come from this vocabulary, never from the data, so that a category label can
never reveal that a rare value exists. Every dimension also has two reserved categories:
``undetermined`` (value missing) and ``other`` (value present but outside the vocabulary).
The defaults live in ``vocabulary.json`` beside this module; pass another file or mapping to
override them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path

UNDETERMINED = "undetermined"
OTHER = "other"

#: The analytics dimensions, in the column order of the analytics table.
DIMENSIONS: tuple[str, ...] = (
    "state",
    "age",
    "income",
    "gender",
    "household",
    "relationship_status",
    "parental_status",
    "citizenship",
    "locale",
)

#: Age bands in order, with the lowest completed age each starts at.
AGE_BAND_STARTS: tuple[tuple[str, int], ...] = (
    ("_0_to_14", 0),
    ("_15_to_24", 15),
    ("_25_to_34", 25),
    ("_35_to_44", 35),
    ("_45_to_54", 45),
    ("_55_to_64", 55),
    ("_65_plus", 65),
)
#: The youngest band: its members are minors, left out of member lists unless allowed.
MINOR_BAND = AGE_BAND_STARTS[0][0]

#: Identity states (Kratos' two): only active identities (and those without a state) are
#: counted unless the policy includes inactive ones, so the vocabulary of ``state`` is fixed.
IDENTITY_STATES: tuple[str, ...] = ("active", "inactive")

#: Oldest completed age accepted from a birthdate; older (or future) birthdates count as ``other``.
MAX_PLAUSIBLE_AGE = 130


class Vocabulary:
    """The public categories of each dimension (without ``undetermined``/``other``)."""

    def __init__(self, dimensions: Mapping[str, Sequence[str]]):
        missing = [d for d in DIMENSIONS if d not in dimensions]
        if missing:
            raise ValueError(f"vocabulary lacks the dimensions {missing}; every one of {list(DIMENSIONS)} is needed")
        self._declared: dict[str, tuple[str, ...]] = {}
        for dim in DIMENSIONS:
            values = tuple(str(v) for v in dimensions[dim])
            reserved = {UNDETERMINED, OTHER} & set(values)
            if reserved and not (dim == "gender" and reserved == {OTHER}):
                raise ValueError(f"vocabulary of {dim!r} must not declare the reserved {sorted(reserved)}")
            if len(set(values)) != len(values):
                raise ValueError(f"vocabulary of {dim!r} has repeated categories")
            self._declared[dim] = values
        if [b for b, _ in AGE_BAND_STARTS] != list(self._declared["age"]):
            raise ValueError(f"the age vocabulary must be the bands {[b for b, _ in AGE_BAND_STARTS]}")
        if self._declared["state"] != IDENTITY_STATES:
            raise ValueError(f"the state vocabulary must be the identity states {list(IDENTITY_STATES)}")

    @classmethod
    def default(cls) -> Vocabulary:
        """The vocabulary shipped with the package."""
        text = resources.files("identity_analytics").joinpath("vocabulary.json").read_text("utf-8")
        return cls(json.loads(text)["dimensions"])

    @classmethod
    def from_file(cls, path: str | Path) -> Vocabulary:
        """A vocabulary from a JSON file shaped like the packaged ``vocabulary.json``."""
        data = json.loads(Path(path).read_text("utf-8"))
        return cls(data.get("dimensions", data))

    def declared(self, dimension: str) -> tuple[str, ...]:
        """The declared categories of ``dimension``, without the reserved ones."""
        self._check(dimension)
        return self._declared[dimension]

    def categories(self, dimension: str) -> tuple[str, ...]:
        """Every category of ``dimension`` as published: declared, then ``undetermined``, ``other``."""
        declared = self.declared(dimension)
        tail = (UNDETERMINED,) if OTHER in declared else (UNDETERMINED, OTHER)
        return declared + tail

    def _check(self, dimension: str) -> None:
        if dimension not in self._declared:
            raise ValueError(f"unknown dimension {dimension!r}; the dimensions are {list(DIMENSIONS)}")

    def to_dict(self) -> dict[str, list[str]]:
        """The declared categories of every dimension, for manifests and audit records."""
        return {d: list(v) for d, v in self._declared.items()}

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocabulary) and self._declared == other._declared

    def __hash__(self) -> int:
        return hash(tuple(self._declared.items()))

    def __repr__(self) -> str:
        sizes = ", ".join(f"{d}={len(v)}" for d, v in self._declared.items())
        return f"Vocabulary({sizes})"


def age_band(completed_years: int) -> str:
    """The age band of an age in completed years (``other`` when implausible)."""
    if completed_years < 0 or completed_years > MAX_PLAUSIBLE_AGE:
        return OTHER
    band = AGE_BAND_STARTS[0][0]
    for name, start in AGE_BAND_STARTS:
        if completed_years >= start:
            band = name
    return band
