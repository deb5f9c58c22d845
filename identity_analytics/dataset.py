"""Dataset: the loaded analytics table, profile store and quarantine, with one DuckDB connection."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pyarrow as pa

from identity_analytics.cohort_table import CohortTable
from identity_analytics.cohorts import compute_cohorts, release_tables
from identity_analytics.contracts import Profile, PublicProfile
from identity_analytics.dataset_base import DatasetBase, serialised
from identity_analytics.errors import PrivacyError
from identity_analytics.overlap import OverlapTable, compute_overlap, release_overlap
from identity_analytics.profiles import ProfileStore
from identity_analytics.release.atoms import atom_table
from identity_analytics.release.blocks import Block
from identity_analytics.release.gate import Session
from identity_analytics.release.ledger import Ledger
from identity_analytics.risk import RiskReport, compute_risk
from identity_analytics.segments import (
    Segment,
    SegmentResult,
    release_members,
    release_size,
    segment_label,
    segment_size,
)
from identity_analytics.specs import Cohort, counted_population, validate_dimensions, validate_filters


class Dataset(DatasetBase):
    """Identity data loaded under a privacy policy.

    ``identities`` is the analytics table (pseudonym + dimensions, no direct identifier);
    the profile store (raw id, traits, metadata_public) is kept apart for profile views;
    ``quarantine`` holds every bad record with a redacted excerpt; ``load_report`` counts.
    Build one with :meth:`from_files`, :meth:`from_arrow` or :meth:`open`.
    """

    def _k(self, k: int | None) -> int:
        """The k of one call: the policy's, or higher (the policy's k is a floor)."""
        if k is None:
            return self._policy.k
        if isinstance(k, bool) or not isinstance(k, int):
            raise ValueError(f"k must be a whole number, got {k!r}")
        if k < self._policy.k:
            raise ValueError(
                f"k={k} is below the policy's k={self._policy.k}: the policy's k is a floor, a call may only "
                "raise it (change the policy to publish at a lower k)"
            )
        return k

    @contextlib.contextmanager
    def releasing(self) -> Iterator[Session]:
        """Publish several answers as one release: everything asked inside the block is audited
        with everything released before and with each other, and recorded together when the
        block ends (nothing of it if it raises). A report uses one."""
        with self._lock, self._gate.session() as session:
            yield session

    @serialised
    def cohorts(
        self,
        by: Sequence[str] | str,
        k: int | None = None,
        margins: bool = True,
        where: Mapping[str, Sequence[str]] | None = None,
        protect: str = "suppress",
        *,
        base: int | None = None,
    ) -> CohortTable:
        """A protected cohort table over 1 to 4 dimensions.

        ``k`` defaults to the policy's and may only raise it; ``where`` restricts the
        population (``{dimension: [categories]}``; a filtered dimension in ``by`` shows only its
        selected categories); inactive identities are left out unless the policy includes
        them. ``protect`` is ``"suppress"`` (primary and secondary cell suppression),
        ``"round"`` (counts rounded to ``base``, default k) or ``"suppress+round"``.

        The table is then published through the release gate: audited jointly with every
        table, segment, member list and count released before (this Dataset's ledger, or the
        store's), it suppresses more cells until no group of 1 to k-1 people can be narrowed
        below k. Asked again, the same table comes back as it was released.
        """
        spec = Cohort(by=by, k=k, margins=margins, where=where, protect=protect, base=base)
        return self.cohort_tables([spec])[0]

    @serialised
    def cohort_tables(self, cohorts: Sequence[Cohort]) -> list[CohortTable]:
        """Several protected tables, published together (one joint audit, one release)."""
        specs = list(cohorts)
        fresh = list(dict.fromkeys(s for s in specs if s not in self._answers))
        if fresh:
            inactive = self._policy.include_inactive
            # tables of more dimensions first, unfiltered before filtered: a later one keeps the
            # suppressions of the margins it shares with them (see compute_cohorts' along)
            fresh.sort(key=lambda spec: (-len(spec.by), len(spec.where)))
            for spec in fresh:  # bad input is told before anything is counted
                validate_dimensions(spec.by)
                validate_filters(spec.filters, self._vocabulary)
            named = {"state"}.union(*(set(s.by) | set(s.filters) for s in fresh))
            with self._gate.session() as session, atom_table(self._con, named | session.dimensions()) as atoms:
                # one scan of the data: the tables and the audit's atoms are sums over its atoms
                tables: list[CohortTable] = []
                for spec in fresh:
                    table = compute_cohorts(
                        self._con, self._vocabulary, spec.by, self._k(spec.k), margins=spec.margins,
                        where=spec.filters or None, protect=spec.protect, base=spec.base, include_inactive=inactive,
                        along=tables, atoms=atoms,
                    )  # fmt: skip
                    tables.append(table)
                released = release_tables(session, tables, [s.name for s in fresh], inactive, atoms)
                session.committed.append(lambda: self._answers.update(zip(fresh, released, strict=True)))
        else:
            released = []
        answers = dict(zip(fresh, released, strict=True))
        return [answers[s] if s in answers else self._answers[s] for s in specs]

    # segments and profiles ------------------------------------------------------------------

    @serialised
    def segment(self, segment: Segment) -> SegmentResult:
        """Size a segment under the privacy rules: a size of 1 to k-1 is suppressed; a size that
        would let a small group be narrowed with earlier releases is refused (PrivacyError)."""
        validate_filters(segment.where, self._vocabulary)
        key = ("size", _where_key(segment.where))
        if key in self._answers:  # released before: the same answer (the data may have changed since)
            return SegmentResult(segment, self, self._answers[key], False)
        inactive = self._policy.include_inactive
        size = segment_size(self._con, segment, inactive)
        if 0 < size < self._policy.k:
            return SegmentResult(segment, self, None, True)
        with self._gate.session() as session:
            release_size(session, segment, size, inactive)
            session.committed.append(lambda: self._answers.__setitem__(key, size))
        return SegmentResult(segment, self, size, False)

    def breakdown(self, segment: Segment, by: Sequence[str] | str, **options: Any) -> CohortTable:
        """A cohort table of the segment's members by ``by`` (a filtered table, released like
        any; ``options`` as for :meth:`cohorts`). The same as ``ds.segment(s).breakdown(by)``."""
        validate_filters(segment.where, self._vocabulary)
        name = f"breakdown of {segment_label(segment)} by {', '.join(validate_dimensions(by))}"
        spec = Cohort(by=by, where=segment.where, name=name, **options)
        return self.cohort_tables([spec])[0]

    @serialised
    def members(self, segment: Segment, allow_minors: bool = False) -> pa.Table:
        """The segment's member list, released through the gate (see :meth:`SegmentResult.members`)."""
        validate_filters(segment.where, self._vocabulary)
        if not allow_minors and not self._minors_known:
            raise PrivacyError(
                "refused: this store predates the record of minors and was opened with another pseudonym "
                "key, so minors cannot be left out of member lists; open it with the key it was written with"
            )
        key = ("members", _where_key(segment.where), allow_minors)
        if key not in self._answers:
            inactive = self._policy.include_inactive
            with self._gate.session() as session:
                members = release_members(self._con, session, segment, self._policy.k, inactive, allow_minors)
                session.committed.append(lambda: self._answers.__setitem__(key, members))
            return members
        cached: pa.Table = self._answers[key]
        return cached

    @serialised
    def overlap(self, segments: Sequence[Segment]) -> OverlapTable:
        """A protected table of the pairwise intersections of segments (sizes on the diagonal).

        The table is published through the release gate as a whole: if any of its sizes or
        intersections, with everything released before, would let a group of 1 to k-1 people
        be narrowed below k, it is refused (PrivacyError naming the earlier release).
        """
        inactive = self._policy.include_inactive
        table = compute_overlap(self._con, segments, self._vocabulary, self._policy.k, inactive)
        with self._gate.session() as session:
            release_overlap(session, table, segments, inactive)
        return table

    @property
    def profiles(self) -> ProfileStore:
        """Profile views (``get``, ``public``, ``table``) from the same loaded data."""
        return ProfileStore(self._con, self._policy)

    def profile(self, identity_id: str) -> Profile:
        """The profile of one identity (``ds.profiles.get``); :class:`NotFound` if not loaded."""
        return self.profiles.get(identity_id)

    def public_profile(self, identity_id: str) -> PublicProfile:
        """The public profile of one identity (``ds.profiles.public``): non-public fields null."""
        return self.profiles.public(identity_id)

    @serialised
    def risk(self, quasi_identifiers: Sequence[str], sensitive: str | None = None, k: int | None = None) -> RiskReport:
        """k-anonymity of the counted identities over ``quasi_identifiers``; l-diversity of ``sensitive``.

        Classes below k are counted, never sized; the number of records is published through
        the release gate like a segment's size.
        """
        inactive = self._policy.include_inactive
        report = compute_risk(self._con, quasi_identifiers, sensitive, self._k(k), inactive)
        with self._gate.session() as session:
            total = Block.count("records of a risk report", counted_population({}, inactive), report.records)
            session.publish_counts([total], f"the risk report over {', '.join(report.quasi_identifiers)}")
        return report

    def audit_measures(self) -> dict[str, float]:
        """The joint audits run so far by this Dataset: audits, LP solves, simplex iterations,
        their wall time in seconds, and the atoms, classes and rows of the last one (for the
        audit record and benchmarks)."""
        return dataclasses.asdict(self._gate.measures)

    @property
    def ledger(self) -> Ledger:
        """The release ledger this Dataset publishes through (its store's, a directory, or memory)."""
        return self._gate.ledger



def _where_key(where: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A filter as a key (the same categories in any order, the same population)."""
    return tuple(sorted((d, tuple(sorted(v))) for d, v in where.items()))
