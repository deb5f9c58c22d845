"""The specs of what is asked: cohort tables, segments and the populations they count.

A :class:`Cohort` and a :class:`Segment` are values (frozen, validated once): the Python API,
the report config and the CLI build the same ones. A :class:`Population` is who a count
counts (filters over the vocabulary's categories, the state rule of the policy, minors left
out or not), a small printable value whose SQL can be read (``Population.of(...).sql``);
:func:`filter_sql` is the one place filters become SQL.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from identity_analytics.errors import FieldError, describe
from identity_analytics.schema import ANALYTICS_TABLE, MINORS_TABLE, sql_literal
from identity_analytics.vocabulary import DIMENSIONS, IDENTITY_STATES, MINOR_BAND, OTHER, UNDETERMINED, Vocabulary

PROTECT_MODES: tuple[str, ...] = ("suppress", "round", "suppress+round")
MAX_DIMENSIONS = 4

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


def dimension_problems(dimensions: Sequence[str]) -> list[tuple[int, str]]:
    """(position, message) of every dimension of ``dimensions`` that is unknown or given twice."""
    problems = []
    for index, dimension in enumerate(dimensions):
        if dimension not in DIMENSIONS:
            problems.append((index, f"unknown dimension {dimension!r}; the dimensions are {list(DIMENSIONS)}"))
        elif list(dimensions).index(dimension) != index:
            problems.append((index, f"{dimension!r} is given twice"))
    return problems


def category_problem(dimension: str, values: Sequence[str], vocabulary: Vocabulary | None) -> str | None:
    """What is wrong with filtering the known ``dimension`` on ``values`` (None: nothing);
    categories are checked when the vocabulary is known."""
    if not values:
        return "lists no category; give at least one"
    if vocabulary is not None:
        categories = vocabulary.categories(dimension)
        unknown = [v for v in values if v not in categories]
        if unknown:
            return f"unknown categories {unknown}; the categories are {list(categories)}"
    return None


def validate_filters(where: Mapping[str, Sequence[str]] | None, vocabulary: Vocabulary) -> dict[str, tuple[str, ...]]:
    """``where`` checked against the vocabulary: known dimensions, known categories, not empty."""
    checked: dict[str, tuple[str, ...]] = {}
    for dim, values in (where or {}).items():
        if dim not in DIMENSIONS:
            raise ValueError(f"unknown dimension {dim!r} in where; the dimensions are {list(DIMENSIONS)}")
        values = [values] if isinstance(values, str) else list(values)  # any iterable, read once
        problem = category_problem(dim, values, vocabulary)
        if problem is not None:
            raise ValueError(f"where[{dim!r}]: {problem}")
        categories = vocabulary.categories(dim)
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
    problems = dimension_problems(dims)
    if problems:
        raise ValueError(f"by: {problems[0][1]}")
    return dims


@dataclass(frozen=True)
class Population:
    """Who a count counts: the identities whose dimensions take the listed categories, of the
    counted states unless ``include_inactive``, minors left out when ``adults_only``. Printed,
    it says so in words; :attr:`sql` lists its pseudonyms."""

    where: tuple[tuple[str, tuple[str, ...]], ...] = ()
    include_inactive: bool = False
    adults_only: bool = False

    @classmethod
    def of(
        cls, where: Mapping[str, Sequence[str]], include_inactive: bool = False, *, adults_only: bool = False
    ) -> Population:
        return cls(tuple((d, tuple(v)) for d, v in where.items()), include_inactive, adults_only)

    @property
    def filters(self) -> dict[str, tuple[str, ...]]:
        return dict(self.where)

    @property
    def sql(self) -> str:
        """The query listing the population's pseudonyms."""
        sql = f"SELECT pseudonym FROM {ANALYTICS_TABLE} {filter_sql(self.filters, self.include_inactive)}".rstrip()
        if not self.adults_only:
            return sql
        joiner = "AND" if "WHERE" in sql else "WHERE"
        return f"{sql} {joiner} age <> '{MINOR_BAND}' AND pseudonym NOT IN (SELECT pseudonym FROM {MINORS_TABLE})"

    def recorded(self) -> dict[str, tuple[str, ...]]:
        """The population as the release gate records it (see :func:`counted_population`)."""
        return counted_population(self.filters, self.include_inactive)

    def __str__(self) -> str:
        parts = [f"{d} in {list(v)}" for d, v in self.where]
        states = "every state" if self.include_inactive else f"states {list(COUNTED_STATES)}"
        adults = ", minors left out" if self.adults_only else ""
        return f"identities{' with ' + ' and '.join(parts) if parts else ''} ({states}{adults})"


class Segment(BaseModel):
    """A named audience: identities whose dimensions take one of the listed categories.

    ``where`` maps dimensions to accepted categories (``undetermined`` and ``other``
    included); an empty ``where`` is everyone counted. Saved as JSON or YAML.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    where: dict[str, list[str]] = Field(default_factory=dict)
    description: str | None = None

    @field_validator("where")
    @classmethod
    def _known_dimensions(cls, where: dict[str, list[str]]) -> dict[str, list[str]]:
        for dimension, values in where.items():
            problem = (
                dimension_problems([dimension])[0][1] if dimension not in DIMENSIONS
                else category_problem(dimension, values, None)
            )  # fmt: skip
            if problem is not None:
                raise FieldError((dimension,), problem)
        return where

    def to_json(self) -> str:
        return self.model_dump_json(indent=2, exclude_none=True)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.model_dump(exclude_none=True), sort_keys=False, allow_unicode=True)

    @classmethod
    def from_json(cls, text: str) -> Segment:
        return cls.model_validate_json(text)

    @classmethod
    def from_yaml(cls, text: str) -> Segment:
        return cls.model_validate(yaml.safe_load(text))

    def save(self, path: str | Path) -> Path:
        """Write the segment as YAML (``.yaml``/``.yml``) or JSON (any other suffix); folders are created."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml() if path.suffix in (".yaml", ".yml") else self.to_json() + "\n", "utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> Segment:
        """Read a segment saved as YAML or JSON."""
        path = Path(path)
        text = path.read_text("utf-8")
        try:
            return cls.from_yaml(text) if path.suffix in (".yaml", ".yml") else cls.from_json(text)
        except yaml.YAMLError as error:
            mark = getattr(error, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
            problem = getattr(error, "problem", None) or type(error).__name__
            raise ValueError(f"{where}: not valid YAML ({problem}); fix the segment file") from None
        except ValidationError as error:
            location, message = describe(error)
            where = f"{path}: {location}" if location else str(path)
            raise ValueError(f"{where}: {message}; fix the segment file") from None
