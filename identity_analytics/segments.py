"""Audience segments: named predicates over dimensions, sized and exported under the privacy rules.

A segment's size below k is reported as suppressed; its member list (pseudonyms only) is
released only for at least k members, without minors unless the caller opts in. Every size
and member list passes the release gate (:mod:`identity_analytics.release`): audited jointly
with everything released from the same store before, and refused with :class:`PrivacyError`
when, combined with it, it would let a group of 1 to k-1 people be counted.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from identity_analytics.cohort_table import CohortTable
from identity_analytics.errors import PrivacyError, describe
from identity_analytics.release.blocks import Block
from identity_analytics.release.gate import Session
from identity_analytics.schema import ANALYTICS_TABLE, MINIMUM_MEMBER_AGE, MINORS_TABLE
from identity_analytics.specs import counted_population, filter_sql
from identity_analytics.vocabulary import DIMENSIONS, MINOR_BAND

if TYPE_CHECKING:
    import duckdb



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
        unknown = [d for d in where if d not in DIMENSIONS]
        if unknown:
            raise ValueError(f"unknown dimension(s) {unknown}; the dimensions are {list(DIMENSIONS)}")
        empty = [d for d, values in where.items() if not values]
        if empty:
            raise ValueError(f"where{empty} lists no category; give at least one")
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


class SegmentAnswers(Protocol):
    """What a segment result asks for its breakdowns and members (a :class:`Dataset` answers)."""

    def breakdown(self, segment: Segment, by: Sequence[str] | str, **options: Any) -> CohortTable: ...

    def members(self, segment: Segment, allow_minors: bool = False) -> pa.Table: ...


@dataclass
class SegmentResult:
    """A segment evaluated on a Dataset: its protected size, breakdowns and member list."""

    segment: Segment
    dataset: SegmentAnswers = field(repr=False)
    size: int | None
    suppressed: bool

    def breakdown(self, by: Sequence[str] | str, **kwargs: Any) -> CohortTable:
        """A protected cohort table of the segment's members by other dimensions (a table
        filtered by the segment: audited with every release like any table)."""
        return self.dataset.breakdown(self.segment, by, **kwargs)

    def members(self, allow_minors: bool = False) -> pa.Table:
        """The members' pseudonyms (one column, ``pseudonym``), sorted.

        Raises :class:`PrivacyError` below k members. The ``_0_to_14`` age band and anyone
        under 16 by birthdate (at the Dataset's reference date) are left out unless
        ``allow_minors=True``.
        """
        return self.dataset.members(self.segment, allow_minors)


def population_sql(where: Mapping[str, Sequence[str]], include_inactive: bool, *, adults_only: bool = False) -> str:
    """SQL listing the pseudonyms of a segment's population (``adults_only``: minors left out)."""
    sql = f"SELECT pseudonym FROM {ANALYTICS_TABLE} {filter_sql(where, include_inactive)}"
    if not adults_only:
        return sql
    joiner = "AND" if "WHERE" in sql else "WHERE"
    return f"{sql} {joiner} age <> '{MINOR_BAND}' AND pseudonym NOT IN (SELECT pseudonym FROM {MINORS_TABLE})"


def segment_label(segment: Segment) -> str:
    return f"segment {segment.name!r} ({json.dumps(segment.where, sort_keys=True)})"


def segment_size(con: duckdb.DuckDBPyConnection, segment: Segment, include_inactive: bool) -> int:
    """The exact size of a segment (not for publishing: see :func:`release_size`)."""
    (size,) = con.execute(f"SELECT count(*) FROM ({population_sql(segment.where, include_inactive)})").fetchall()[0]
    return int(size)


def release_size(session: Session, segment: Segment, size: int, include_inactive: bool) -> None:
    """Publish a segment's size through the release gate (refused if unsafe with earlier releases)."""
    label = segment_label(segment)
    block = Block.count(f"size of {label}", counted_population(segment.where, include_inactive), size)
    session.publish_counts([block], f"the size of {label}")


def release_members(
    con: duckdb.DuckDBPyConnection, session: Session, segment: Segment, k: int, include_inactive: bool,
    allow_minors: bool,
) -> pa.Table:  # fmt: skip
    """Publish a segment's member list: refused below k members, or when it (its size, or its
    membership classes with the lists released before) would single anyone out."""
    population = population_sql(segment.where, include_inactive, adults_only=not allow_minors)
    (size,) = con.execute(f"SELECT count(*) FROM ({population})").fetchall()[0]
    label = segment_label(segment)
    if size < k:
        raise PrivacyError(
            f"refused: {label} has fewer than k={k} members"
            + ("" if allow_minors else " once minors are left out")
            + "; member lists are released only for at least k members"
        )
    where = counted_population(segment.where, include_inactive)
    block = Block.count(f"member list of {label}", where, int(size), adults_only=not allow_minors, listed=True)
    session.publish_members(population, block, f"the member list of {label}")
    return con.sql(f"SELECT pseudonym FROM ({population}) ORDER BY pseudonym").to_arrow_table()


__all__ = [
    "MINIMUM_MEMBER_AGE",
    "Segment",
    "SegmentResult",
    "population_sql",
    "release_members",
    "release_size",
    "segment_size",
]
