"""Dataset: the loaded analytics table, profile store and quarantine, with one DuckDB connection."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import duckdb
import pyarrow as pa

from identity_analytics.cohort_table import CohortTable
from identity_analytics.cohorts import compute_cohorts, release_tables
from identity_analytics.connection import connect
from identity_analytics.contracts import Profile, PublicProfile
from identity_analytics.errors import PrivacyError
from identity_analytics.load_report import LoadReport, SourceCounts
from identity_analytics.loaders.analytics import load_analytics_parquet, load_arrow
from identity_analytics.loaders.formats import PathSpec
from identity_analytics.loaders.http import RetryPolicy
from identity_analytics.loaders.pipeline import load_files
from identity_analytics.loaders.quarantine import QUARANTINE_SCHEMA
from identity_analytics.overlap import OverlapTable, compute_overlap, release_overlap
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.profiles import ProfileStore
from identity_analytics.release.atoms import atom_table, data_fingerprint
from identity_analytics.release.blocks import Block
from identity_analytics.release.gate import DataVersion, ReleaseGate, Session
from identity_analytics.release.ledger import FileLedger, Ledger, MemoryLedger
from identity_analytics.release.stored import replacing_store, store_data, store_ledger
from identity_analytics.risk import RiskReport, compute_risk
from identity_analytics.schema import (
    ANALYTICS_COLUMNS,
    ANALYTICS_TABLE,
    create_enum_types,
)
from identity_analytics.segments import (
    Segment,
    SegmentResult,
    release_members,
    release_size,
    segment_label,
    segment_size,
)
from identity_analytics.specs import Cohort, counted_population, validate_dimensions, validate_filters
from identity_analytics.store import StoreParts, open_store, writing_store
from identity_analytics.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")


def _serialised(method: Callable[P, R]) -> Callable[P, R]:
    """Run a Dataset method holding the Dataset's lock: a DuckDB connection answers one
    query at a time, and a result set read by another thread would mix two answers."""

    @functools.wraps(method)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return locked


class Dataset:
    """Identity data loaded under a privacy policy.

    ``identities`` is the analytics table (pseudonym + dimensions, no direct identifier);
    the profile store (raw id, traits, metadata_public) is kept apart for profile views;
    ``quarantine`` holds every bad record with a redacted excerpt; ``load_report`` counts.
    Build one with :meth:`from_files`, :meth:`from_arrow` or :meth:`open`.
    """

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        policy: PrivacyPolicy,
        vocabulary: Vocabulary,
        reference_date: datetime.date,
        load_report: LoadReport,
        quarantine: pa.Table,
        *,
        ledger: Ledger | None = None,
        data: DataVersion | None = None,
        key_id: str | None = None,
        minors_known: bool = True,
    ):
        self._con = con
        self._policy = policy
        self._vocabulary = vocabulary
        self._reference_date = reference_date
        self._load_report = load_report
        self._quarantine = quarantine
        #: every answer is published through the gate: audited with the ledger, then recorded
        self._gate = ReleaseGate(con, ledger or MemoryLedger(), policy.k, key_id or policy.key_id(), data)
        #: answers released so far, by what was asked: asked again, released as they were
        self._answers: dict[Any, Any] = {}
        #: one DuckDB connection serves every call: calls from several threads take turns
        self._lock = threading.RLock()
        #: False for a store written before minors were kept, opened under another key
        self._minors_known = minors_known

    # construction -------------------------------------------------------------------------

    @classmethod
    def from_files(
        cls,
        identities: PathSpec,
        demographics: PathSpec | None = None,
        policy: PrivacyPolicy | None = None,
        reference_date: datetime.date | None = None,
        strict: bool = False,
        *,
        vocabulary: Vocabulary | None = None,
        store: str | Path | None = None,
        ledger: str | Path | None = None,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
    ) -> Dataset:
        """Load identity and demographics files (NDJSON, JSON arrays, Parquet; gzip or not).

        ``identities`` and ``demographics`` take a path, a glob pattern or a list of them.
        Records of ``identities`` may also be combined ``{identity, demographics}`` objects.
        Bad records are quarantined; with ``strict=True`` the first one raises
        :class:`LoadError` naming file and line. ``reference_date`` (default: today) is the
        date at which birthdates become ages. With ``store`` the result is also saved there
        (and publishes through the store's release ledger); otherwise its ledger lives in memory,
        or in the directory ``ledger`` (kept across runs over the same files).
        """
        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        reference_date = reference_date or datetime.date.today()
        return cls._build(
            lambda con: load_files(con, identities, demographics, policy, vocabulary, reference_date, strict),
            policy,
            vocabulary,
            reference_date,
            store,
            memory_limit,
            temp_directory,
            ledger,
        )

    @classmethod
    def from_kratos(
        cls,
        base_url: str,
        api_key: str | None = None,
        policy: PrivacyPolicy | None = None,
        page_size: int = 250,
        organization_id: str | None = None,
        checkpoint: str | Path | None = None,
        *,
        reference_date: datetime.date | None = None,
        vocabulary: Vocabulary | None = None,
        store: str | Path | None = None,
        ledger: str | Path | None = None,
        allow_insecure: bool = False,
        retry: RetryPolicy | None = None,
        progress: bool | None = None,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
        ids: Sequence[str] | None = None,
    ) -> Dataset:
        """Pull every identity from the Kratos admin API (``GET /admin/identities``, Link pagination).

        ``api_key`` is sent as a bearer token (Ory Network); self-hosted admin ports need
        none. With ``checkpoint`` (a file path) a killed pull resumes where it stopped. With
        ``ids``, only those identities are asked for (``ids=`` filter, up to 500 per request;
        unknown ids are not returned by the API, so they are not counted).
        Plain ``http://`` is refused except to loopback unless ``allow_insecure``.
        """
        from identity_analytics.loaders.kratos import KratosClient, load_kratos

        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        reference_date = reference_date or datetime.date.today()
        with KratosClient(base_url, api_key, retry=retry, allow_insecure=allow_insecure) as client:
            return cls._build(
                lambda con: load_kratos(
                    con,
                    client,
                    policy,
                    vocabulary,
                    reference_date,
                    page_size=page_size,
                    organization_id=organization_id,
                    checkpoint=checkpoint,
                    progress=progress,
                    ids=ids,
                ),
                policy,
                vocabulary,
                reference_date,
                store,
                memory_limit,
                temp_directory,
                ledger,
            )

    @classmethod
    def from_klustr(
        cls,
        base_url: str,
        tokens: Sequence[str],
        policy: PrivacyPolicy | None = None,
        concurrency: int = 16,
        checkpoint: str | Path | None = None,
        *,
        reference_date: datetime.date | None = None,
        vocabulary: Vocabulary | None = None,
        store: str | Path | None = None,
        ledger: str | Path | None = None,
        allow_insecure: bool = False,
        retry: RetryPolicy | None = None,
        progress: bool | None = None,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
    ) -> Dataset:
        """Fetch each user's identity and demographics from the Klustr gateway, ``concurrency`` at a time.

        A token the gateway refuses is quarantined by its position (never its value) and the
        pull goes on. With ``checkpoint`` a killed pull resumes where it stopped (same token
        list, same pseudonym key).
        """
        from identity_analytics.loaders.klustr import KlustrClient, load_klustr

        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        reference_date = reference_date or datetime.date.today()
        with KlustrClient(
            base_url, retry=retry, allow_insecure=allow_insecure, max_connections=max(concurrency, 1) * 2
        ) as client:
            return cls._build(
                lambda con: load_klustr(
                    con,
                    client,
                    tokens,
                    policy,
                    vocabulary,
                    reference_date,
                    concurrency=concurrency,
                    checkpoint=checkpoint,
                    progress=progress,
                ),
                policy,
                vocabulary,
                reference_date,
                store,
                memory_limit,
                temp_directory,
                ledger,
            )

    @classmethod
    def _build(
        cls,
        load: Callable[[duckdb.DuckDBPyConnection], tuple[LoadReport, pa.Table]],
        policy: PrivacyPolicy,
        vocabulary: Vocabulary,
        reference_date: datetime.date,
        store: str | Path | None,
        memory_limit: str | None,
        temp_directory: str | Path | None,
        ledger: str | Path | None = None,
    ) -> Dataset:
        con = connect(memory_limit, temp_directory)
        try:
            create_enum_types(con, vocabulary)
            report, quarantine = load(con)
        except BaseException:
            con.close()
            raise
        dataset = cls(con, policy, vocabulary, reference_date, report, quarantine)._use_ledger(ledger)
        if store is not None:
            dataset.save(store)
        return dataset

    @classmethod
    def from_arrow(
        cls,
        table: pa.Table,
        policy: PrivacyPolicy | None = None,
        *,
        vocabulary: Vocabulary | None = None,
        reference_date: datetime.date | None = None,
        ledger: str | Path | None = None,
    ) -> Dataset:
        """A Dataset over a table already in the analytics layout (``pseudonym`` + dimensions).

        Any other column is refused (it could hold a direct identifier), as are null values
        and values outside each dimension's categories. There is no profile store.
        """
        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        con = connect()
        try:
            create_enum_types(con, vocabulary)
            load_arrow(con, table, vocabulary)
        except BaseException:
            con.close()
            raise
        rows = table.num_rows
        report = LoadReport(identities=SourceCounts(read=rows, loaded=rows))
        dataset = cls(
            con, policy, vocabulary, reference_date or datetime.date.today(), report, QUARANTINE_SCHEMA.empty_table()
        )
        return dataset._use_ledger(ledger)

    @classmethod
    def from_parquet(
        cls,
        path: str | Path,
        policy: PrivacyPolicy | None = None,
        *,
        vocabulary: Vocabulary | None = None,
        reference_date: datetime.date | None = None,
        memory_limit: str | None = None,
        ledger: str | Path | None = None,
    ) -> Dataset:
        """A Dataset over Parquet files already in the analytics layout, read in place.

        ``path`` may be a glob. The layout and every value are checked as by
        :meth:`from_arrow` (one streaming pass); the rows stay in the files, so tables far
        larger than memory work. There is no profile store.
        """
        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        con = connect(memory_limit)
        try:
            create_enum_types(con, vocabulary)
            rows = load_analytics_parquet(con, str(path), vocabulary)
        except BaseException:
            con.close()
            raise
        report = LoadReport(identities=SourceCounts(read=rows, loaded=rows))
        dataset = cls(
            con, policy, vocabulary, reference_date or datetime.date.today(), report, QUARANTINE_SCHEMA.empty_table()
        )
        return dataset._use_ledger(ledger)

    @classmethod
    def open(cls, path: str | Path, policy: PrivacyPolicy | None = None) -> Dataset:
        """Open a store written by :meth:`save` (its tables stay in its Parquet files)."""
        path = Path(path)
        con = connect()
        parts = open_store(path, policy, con)
        return cls(
            con, parts.policy, parts.vocabulary, parts.reference_date, parts.load_report, parts.quarantine,
            ledger=store_ledger(path), data=store_data(con, path), key_id=parts.key_id,
            minors_known=parts.minors_known,
        )  # fmt: skip

    @_serialised
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the Dataset to a Parquet store (a directory with a manifest), atomically.

        From then on the Dataset publishes through the store's release ledger (carried over
        when an existing store is replaced); what it published before is recorded there too.
        """
        path = Path(path)
        parts = StoreParts(
            self._policy, self._vocabulary, self._reference_date, self._load_report, self._quarantine,
            self._gate.key_id,
        )  # fmt: skip
        fingerprint = data_fingerprint(self._con)
        with (
            replacing_store(path) as carry_ledger,
            writing_store(self._con, path, parts, overwrite=overwrite, fingerprint=fingerprint) as work,
        ):
            carry_ledger(work)
        self._publish_through_store(path, store_data(self._con, path))
        return path

    def _publish_through_store(self, path: Path, data: DataVersion) -> None:
        """Publish through the ledger of the store just written at ``path``, adding to it the
        releases this Dataset's ledger holds (unless it is that very ledger)."""
        ledger = store_ledger(path)
        old = self._gate
        if not (isinstance(old.ledger, FileLedger) and old.ledger.root.resolve() == ledger.root.resolve()):
            state = old.ledger.state()
            ledger.adopt(
                state, epoch=data.epoch(), snapshot=data.snapshot, k=old.k, key_id=old.key_id,
                source=old.ledger.description,
            )  # fmt: skip
        self._gate = ReleaseGate(self._con, ledger, old.k, old.key_id, data)

    def _use_ledger(self, ledger: str | Path | None) -> Dataset:
        """Publish through the ledger directory ``ledger`` (None: keep the one in memory)."""
        if ledger is not None:
            gate = self._gate
            self._gate = ReleaseGate(
                self._con, FileLedger(Path(ledger)), gate.k, gate.key_id, DataVersion.of_connection(self._con)
            )
        return self

    # contents -----------------------------------------------------------------------------

    @property
    @_serialised
    def identities(self) -> pa.Table:
        """The analytics table: ``pseudonym`` and the dimension columns, one row per identity."""
        columns = ", ".join(c if c == "pseudonym" else f"{c}::VARCHAR AS {c}" for c in ANALYTICS_COLUMNS)
        return self._con.sql(f"SELECT {columns} FROM {ANALYTICS_TABLE}").to_arrow_table()

    @property
    def load_report(self) -> LoadReport:
        """Records read, loaded, quarantined and duplicated per source; out-of-vocabulary values."""
        return self._load_report

    @property
    def quarantine(self) -> pa.Table:
        """Bad records: ``source``, ``line``, ``reason``, ``excerpt`` (values redacted)."""
        return self._quarantine

    @property
    def policy(self) -> PrivacyPolicy:
        return self._policy

    @property
    def vocabulary(self) -> Vocabulary:
        return self._vocabulary

    @property
    def reference_date(self) -> datetime.date:
        """The date at which birthdates were turned into age bands."""
        return self._reference_date

    @property
    def connection(self) -> duckdb.DuckDBPyConnection:
        """The Dataset's DuckDB connection (tables ``identities`` and ``profiles``)."""
        return self._con

    # analytics -------------------------------------------------------------------------------

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

    @_serialised
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

    @_serialised
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

    @_serialised
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

    @_serialised
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

    @_serialised
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

    @_serialised
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

    @_serialised
    def __len__(self) -> int:
        return int(self._con.execute(f"SELECT count(*) FROM {ANALYTICS_TABLE}").fetchall()[0][0])

    def close(self) -> None:
        """Release the DuckDB connection."""
        self._con.close()

    def __enter__(self) -> Dataset:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        report = self._load_report
        return (
            f"Dataset(identities={report.identities.loaded:,}, quarantined="
            f"{report.identities.quarantined + report.demographics.quarantined:,}, k={self._policy.k}, "
            f"reference_date={self._reference_date.isoformat()})"
        )


def _where_key(where: Mapping[str, Sequence[str]]) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """A filter as a key (the same categories in any order, the same population)."""
    return tuple(sorted((d, tuple(sorted(v))) for d, v in where.items()))
