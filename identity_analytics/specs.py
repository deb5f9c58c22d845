"""The specs of what is asked: cohort tables and the populations they count, validated once.

A :class:`Cohort` is a value (frozen, hashable): the Python API, the report config and the
CLI build the same one. Populations are filters over the vocabulary's categories plus the
state rule of the policy; :func:`filter_sql` is the one place they become SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, field_validator

from identity_analytics.schema import sql_literal
from identity_analytics.vocabulary import DIMENSIONS, IDENTITY_STATES, OTHER, UNDETERMINED, Vocabulary

BoolArray = npt.NDArray[np.bool_]

if TYPE_CHECKING:
    pass

Protect = Literal["suppress", "round", "suppress+round"]
PROTECT_MODES: tuple[str, ...] = ("suppress", "round", "suppress+round")
MAX_DIMENSIONS = 4
#: Largest table (cells, margins included): beyond it a table is never a sensible release,
#: and building and protecting it takes minutes and gigabytes.
MAX_CELLS = 1_000_000
SUPPRESSED_MARK = "·"

#: States counted by analytics unless the policy includes inactive identities: active, and
#: absent (Kratos' default). Inactive and unrecognised states are left out.
COUNTED_STATES: tuple[str, ...] = ("active", UNDETERMINED)
#: The other categories of ``state`` (its vocabulary is fixed, see ``IDENTITY_STATES``).
UNCOUNTED_STATES: tuple[str, ...] = (*[s for s in IDENTITY_STATES if s not in COUNTED_STATES], OTHER)



class Cohort(BaseModel):
    """A cohort table to compute: the arguments of :meth:`Dataset.cohorts`, as a value
    (frozen, hashable), so that several can be released together (:meth:`Dataset.cohort_tables`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    by: tuple[str, ...]
    k: int | None = None
    margins: bool = True
    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    protect: str = "suppress"
    base: int | None = None
    #: how releases name the table (default: its dimensions and filter)
    name: str | None = None

    @field_validator("by", mode="before")
    @classmethod
    def _one_or_many(cls, by: Any) -> Any:
        return (by,) if isinstance(by, str) else by

    @field_validator("where", mode="before")
    @classmethod
    def _mapping(cls, where: Any) -> Any:
        if where is None:
            return ()
        if isinstance(where, Mapping):
            return tuple(sorted((d, (v,) if isinstance(v, str) else tuple(v)) for d, v in where.items()))
        return where

    @property
    def filters(self) -> dict[str, tuple[str, ...]]:
        return dict(self.where)


def counted_states_sql() -> str:
    """SQL condition: the identity's state is counted. Written as inequalities, which DuckDB
    drops when the table's statistics show no uncounted state (an ``IN`` list is evaluated
    on every row: 15-45% of a cohort query over 10 M rows)."""
    return " AND ".join(f"state <> '{state}'" for state in UNCOUNTED_STATES)


def validate_filters(where: Mapping[str, Sequence[str]] | None, vocabulary: Vocabulary) -> dict[str, tuple[str, ...]]:
    """``where`` checked against the vocabulary: known dimensions, known categories, not empty."""
    checked: dict[str, tuple[str, ...]] = {}
    for dim, values in (where or {}).items():
        if dim not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dim!r} in where; the dimensions are {list(DIMENSIONS)}")
        values = [values] if isinstance(values, str) else list(values)  # any iterable, read once
        categories = vocabulary.categories(dim)
        unknown = [v for v in values if v not in categories]
        if unknown:
            raise ValueError(
                f"unknown {dim} value(s) {unknown} in where; the categories of {dim} are {list(categories)}"
            )
        if not values:
            raise ValueError(f"where[{dim!r}] is empty; give at least one of {list(categories)}")
        checked[dim] = tuple(c for c in categories if c in set(values))
    return checked


def counted_population(filters: Mapping[str, Sequence[str]], include_inactive: bool) -> dict[str, tuple[str, ...]]:
    """A population as the release gate records it: the filters, and the states counted."""
    population = {dim: tuple(values) for dim, values in filters.items()}
    if not include_inactive:
        asked = population.get("state")
        population["state"] = tuple(s for s in COUNTED_STATES if asked is None or s in asked)
    return population


def filter_sql(filters: Mapping[str, Sequence[str]], include_inactive: bool) -> str:
    """The WHERE clause for a population: the state rule of the policy, then the filters."""
    clauses = [] if include_inactive else [counted_states_sql()]
    clauses += _filter_clauses(filters)
    return f"WHERE {' AND '.join(clauses)}" if clauses else ""


def filters_condition(filters: Mapping[str, Sequence[str]]) -> str:
    """The filters alone as one SQL condition (``TRUE`` for none)."""
    return " AND ".join(_filter_clauses(filters)) or "TRUE"


def _filter_clauses(filters: Mapping[str, Sequence[str]]) -> list[str]:
    return [f"{dim} IN ({', '.join(sql_literal(v) for v in values)})" for dim, values in filters.items()]


def validate_dimensions(by: Sequence[str] | str) -> tuple[str, ...]:
    """``by`` as a tuple of 1 to 4 distinct known dimensions."""
    dims = (by,) if isinstance(by, str) else tuple(by)
    if not 1 <= len(dims) <= MAX_DIMENSIONS:
        raise ValueError(f"give 1 to {MAX_DIMENSIONS} dimensions to group by, got {len(dims)}: {list(dims)}")
    unknown = [d for d in dims if d not in DIMENSIONS]
    if unknown:
        raise ValueError(f"unknown dimension(s) {unknown}; the dimensions are {list(DIMENSIONS)}")
    if len(set(dims)) != len(dims):
        raise ValueError(f"each dimension may appear once in by, got {list(dims)}")
    return dims


