"""Audience segments: named predicates over dimensions, sized and exported under the privacy rules.

A segment's size below k is reported as suppressed; its member list (pseudonyms only) is
released only for at least k members, without minors unless the caller opts in. Every size
and member list passes the release gate (:mod:`identity_analytics.release`): audited jointly
with everything released from the same store before, and refused with :class:`PrivacyError`
when, combined with it, it would let a group of 1 to k-1 people be counted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import pyarrow as pa

from identity_analytics.cohort_table import CohortTable
from identity_analytics.errors import PrivacyError
from identity_analytics.release.blocks import Block
from identity_analytics.release.gate import Session
from identity_analytics.schema import MINIMUM_MEMBER_AGE
from identity_analytics.specs import Population, Segment

if TYPE_CHECKING:
    import duckdb



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


def segment_label(segment: Segment) -> str:
    return f"segment {segment.name!r} ({json.dumps(segment.where, sort_keys=True)})"


def segment_size(con: duckdb.DuckDBPyConnection, segment: Segment, include_inactive: bool) -> int:
    """The exact size of a segment (not for publishing: see :func:`release_size`)."""
    (size,) = con.execute(f"SELECT count(*) FROM ({Population.of(segment.where, include_inactive).sql})").fetchall()[0]
    return int(size)


def release_size(session: Session, segment: Segment, size: int, include_inactive: bool) -> None:
    """Publish a segment's size through the release gate (refused if unsafe with earlier releases)."""
    label = segment_label(segment)
    block = Block.count(f"size of {label}", Population.of(segment.where, include_inactive).recorded(), size)
    session.publish_counts([block], f"the size of {label}")


def release_members(
    con: duckdb.DuckDBPyConnection, session: Session, segment: Segment, k: int, include_inactive: bool,
    allow_minors: bool,
) -> pa.Table:  # fmt: skip
    """Publish a segment's member list: refused below k members, or when it (its size, or its
    membership classes with the lists released before) would single anyone out."""
    population = Population.of(segment.where, include_inactive, adults_only=not allow_minors).sql
    (size,) = con.execute(f"SELECT count(*) FROM ({population})").fetchall()[0]
    label = segment_label(segment)
    if size < k:
        raise PrivacyError(
            f"refused: {label} has fewer than k={k} members"
            + ("" if allow_minors else " once minors are left out")
            + "; member lists are released only for at least k members"
        )
    where = Population.of(segment.where, include_inactive).recorded()
    block = Block.count(f"member list of {label}", where, int(size), adults_only=not allow_minors, listed=True)
    session.publish_members(population, block, f"the member list of {label}")
    return con.sql(f"SELECT pseudonym FROM ({population}) ORDER BY pseudonym").to_arrow_table()


__all__ = [
    "MINIMUM_MEMBER_AGE",
    "Segment",
    "SegmentResult",
    "release_members",
    "release_size",
    "segment_size",
]
