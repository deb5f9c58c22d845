"""Dataset: the loaded analytics table, profile store and quarantine, with one DuckDB connection."""

from __future__ import annotations

import datetime
import functools
import json
import logging
import shutil
import tempfile
import threading
import weakref
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import duckdb
import numpy as np
import pyarrow as pa

from identity_analytics.cohorts import CohortTable, compute_cohorts, filter_sql, population_key, validate_filters
from identity_analytics.contracts import Profile, PublicProfile
from identity_analytics.errors import LoadError, PrivacyError
from identity_analytics.load_report import LoadReport, SourceCounts
from identity_analytics.loaders.formats import PathSpec
from identity_analytics.loaders.http import RetryPolicy
from identity_analytics.loaders.pipeline import load_files
from identity_analytics.loaders.projection import (
    ANALYTICS_TABLE,
    MINORS_DDL,
    PROFILE_TABLE,
    create_enum_types,
    enum_type,
)
from identity_analytics.loaders.quarantine import QUARANTINE_SCHEMA
from identity_analytics.overlap import OverlapTable, compute_overlap
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.profiles import ProfileStore
from identity_analytics.protection import attacker_intervals
from identity_analytics.risk import RiskReport, compute_risk
from identity_analytics.segments import (
    Cell,
    NarrowCells,
    ReleaseLedger,
    Segment,
    SegmentResult,
    population_sql,
    segment_label,
)
from identity_analytics.vocabulary import DIMENSIONS, Vocabulary

logger = logging.getLogger(__name__)

#: Columns of the analytics table, in order.
ANALYTICS_COLUMNS: tuple[str, ...] = ("pseudonym", *DIMENSIONS)
_TRY_ENUM_COLUMNS = ", ".join(
    "pseudonym::VARCHAR AS pseudonym" if c == "pseudonym" else f"TRY_CAST({c}::VARCHAR AS {enum_type(c)}) AS {c}"
    for c in ANALYTICS_COLUMNS
)
#: Rows whose pseudonym is not 64 lowercase hex digits (HMAC-SHA256).
#: Rounds of extra suppression an unfiltered table may take to settle against earlier releases.
_MAX_LINKED_ROUNDS = 20

_PSEUDONYM_CHECK = "count(*) FILTER (WHERE NOT regexp_full_match(coalesce(pseudonym::VARCHAR, ''), '[0-9a-f]{64}'))"


def _sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


_PROFILE_DDL = f"""CREATE TABLE IF NOT EXISTS {PROFILE_TABLE} (
    id VARCHAR, state VARCHAR, traits JSON, metadata_public JSON)"""


def connect(memory_limit: str | None = None, temp_directory: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection; past ``memory_limit`` it spills to ``temp_directory``.

    Without ``memory_limit`` DuckDB's default applies (80% of RAM). With one and no
    ``temp_directory``, spill files go to a private temporary directory removed with the
    connection (DuckDB's own default would be ``.tmp`` in the working directory).
    """
    # Row order is never meaning: ties are ranked by source and line, not by insertion order,
    # so DuckDB may run every statement fully in parallel.
    config: dict[str, Any] = {"preserve_insertion_order": False}
    spill: str | None = None
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
        if temp_directory is None:
            spill = tempfile.mkdtemp(prefix="identity-analytics-spill-")
            temp_directory = spill
    if temp_directory is not None:
        config["temp_directory"] = str(temp_directory)
    con = duckdb.connect(":memory:", config=config)
    if spill is not None:
        weakref.finalize(con, shutil.rmtree, spill, True)
    return con


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
    ):
        self._con = con
        self._policy = policy
        self._vocabulary = vocabulary
        self._reference_date = reference_date
        self._load_report = load_report
        self._quarantine = quarantine
        self._ledger = ReleaseLedger(con)
        #: tables released so far, by what was asked (and by what was released)
        self._settled: dict[tuple[Any, ...], CohortTable] = {}
        #: one DuckDB connection serves every call: calls from several threads take turns
        self._lock = threading.RLock()
        #: False for a store written before minors were kept, opened under another key
        self._minors_known = True

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
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
    ) -> Dataset:
        """Load identity and demographics files (NDJSON, JSON arrays, Parquet; gzip or not).

        ``identities`` and ``demographics`` take a path, a glob pattern or a list of them.
        Records of ``identities`` may also be combined ``{identity, demographics}`` objects.
        Bad records are quarantined; with ``strict=True`` the first one raises
        :class:`LoadError` naming file and line. ``reference_date`` (default: today) is the
        date at which birthdates become ages. With ``store`` the result is also saved there.
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
    ) -> Dataset:
        con = connect(memory_limit, temp_directory)
        try:
            create_enum_types(con, vocabulary)
            report, quarantine = load(con)
        except BaseException:
            con.close()
            raise
        dataset = cls(con, policy, vocabulary, reference_date, report, quarantine)
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
            con.register("_input", table)
            _check_analytics_columns(table.column_names)
            # one typed copy; values outside the categories become NULL there, which is cheap to
            # count on ENUM columns (the input is only read again to name a bad value)
            con.execute(f"CREATE TABLE {ANALYTICS_TABLE} AS SELECT {_TRY_ENUM_COLUMNS} FROM _input")
            nulls = ", ".join(f"count(*) FILTER (WHERE {c} IS NULL)" for c in DIMENSIONS)
            if any(con.execute(f"SELECT {_PSEUDONYM_CHECK}, {nulls} FROM {ANALYTICS_TABLE}").fetchall()[0]):
                _check_analytics_layout(con, "_input", table.column_names, vocabulary)
            con.unregister("_input")
            con.execute(_PROFILE_DDL)
            con.execute(MINORS_DDL)
        except BaseException:
            con.close()
            raise
        rows = table.num_rows
        report = LoadReport(identities=SourceCounts(read=rows, loaded=rows))
        return cls(
            con, policy, vocabulary, reference_date or datetime.date.today(), report, QUARANTINE_SCHEMA.empty_table()
        )

    @classmethod
    def from_parquet(
        cls,
        path: str | Path,
        policy: PrivacyPolicy | None = None,
        *,
        vocabulary: Vocabulary | None = None,
        reference_date: datetime.date | None = None,
        memory_limit: str | None = None,
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
            relation = f"read_parquet({_sql_literal(str(path))})"
            names = [c[0] for c in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()]
            _check_analytics_layout(con, relation, names, vocabulary)
            con.execute(f"CREATE VIEW {ANALYTICS_TABLE} AS SELECT {', '.join(ANALYTICS_COLUMNS)} FROM {relation}")
            (rows,) = con.execute(f"SELECT count(*) FROM {ANALYTICS_TABLE}").fetchall()[0]
            con.execute(_PROFILE_DDL)
            con.execute(MINORS_DDL)
        except duckdb.Error as error:
            con.close()
            raise LoadError(
                f"cannot read {path}: {type(error).__name__} while reading Parquet", source=str(path)
            ) from None
        except BaseException:
            con.close()
            raise
        report = LoadReport(identities=SourceCounts(read=rows, loaded=rows))
        return cls(
            con, policy, vocabulary, reference_date or datetime.date.today(), report, QUARANTINE_SCHEMA.empty_table()
        )

    @classmethod
    def open(cls, path: str | Path, policy: PrivacyPolicy | None = None) -> Dataset:
        """Open a store written by :meth:`save`."""
        from identity_analytics.store import open_store

        return open_store(cls, Path(path), policy)

    @_serialised
    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the Dataset to a Parquet store (a directory with a manifest), atomically."""
        from identity_analytics.store import save_store

        return save_store(self, Path(path), overwrite=overwrite)

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

        ``k`` defaults to the policy's; ``where`` restricts the population (``{dimension:
        [categories]}``; a filtered dimension in ``by`` shows only its selected categories);
        inactive identities are left out unless the policy includes them. ``protect`` is
        ``"suppress"`` (primary and secondary cell suppression), ``"round"`` (counts rounded
        to ``base``, default k) or ``"suppress+round"``.

        A filtered table is a population like a segment: its published cells pass the
        differencing guard (see :meth:`segment`), so two filters that differ by fewer than k
        people cannot be subtracted.
        """
        table = self._cohorts(by, k, margins=margins, where=where, protect=protect, base=base)
        if table.filters:
            label = f"cohort table filtered by {json.dumps(table.filters, sort_keys=True)}"
        else:
            label = f"cohort table by {', '.join(table.by)}"
        return self._release_table(table, table.filters, label)

    def _cohorts(self, by: Sequence[str] | str, k: int | None = None, **options: Any) -> CohortTable:
        """A protected table (options of :func:`compute_cohorts`), without the guard."""
        k = self._policy.k if k is None else k
        return compute_cohorts(
            self._con, self._vocabulary, by, k, include_inactive=self._policy.include_inactive, **options
        )

    # segments and profiles ------------------------------------------------------------------

    @_serialised
    def segment(self, segment: Segment) -> SegmentResult:
        """Size a segment under the privacy rules (size below k -> suppressed, differencing refused)."""
        validate_filters(segment.where, self._vocabulary)
        population = population_sql(segment.where, self._policy.include_inactive)
        (size,) = self._con.execute(f"SELECT count(*) FROM ({population})").fetchall()[0]
        k = self._policy.k
        if 0 < size < k:
            return SegmentResult(segment, self, None, True)
        label = segment_label(segment)
        self._ledger.release(population, size, k, f"the size of {label}", f"size of {label}")
        return SegmentResult(segment, self, int(size), False)

    @_serialised
    def _segment_breakdown(self, segment: Segment, by: Sequence[str] | str, **kwargs: Any) -> CohortTable:
        """The breakdown table, its releases checked by the differencing guard (all or nothing)."""
        table = self._cohorts(by, where=segment.where, **kwargs)
        return self._release_table(table, table.filters, f"breakdown of {segment_label(segment)}")

    def _release_table(self, table: CohortTable, where: Mapping[str, Sequence[str]], label: str) -> CohortTable:
        """Pass a table's releases through the differencing guard (all or nothing); returns
        the table as released.

        With exact counts (``protect="suppress"``) every published non-zero cell is a released
        population (the filter plus the cell's categories). A cell that would differ from an
        earlier release by 1 to k-1 people is suppressed too, and protected like a small one,
        until none is left; a filtered table whose total would is refused, as a segment would
        be. With rounding, the published cells still add up to a bound on the population's
        size: a filtered table releases that size, and an unfiltered one (everyone counted)
        nothing new.
        """
        inactive = self._policy.include_inactive
        k = max(self._policy.k, table.k)
        if table.base is not None:
            if where:
                population = population_sql(where, inactive)
                (size,) = self._con.execute(f"SELECT count(*) FROM ({population})").fetchall()[0]
                self._ledger.release(population, size, k, f"the {label}", f"size of the {label}")
            return table
        asked = _signature(table)
        if asked in self._settled:  # asked before: released as it was then
            return self._settled[asked]
        counted = filter_sql(where, inactive)
        rows = f"(SELECT * FROM {ANALYTICS_TABLE} {counted})"
        grouped = f"SELECT pseudonym, {', '.join(table.by)} FROM {ANALYTICS_TABLE} {counted}"
        hidden: set[tuple[tuple[str, str], ...]] = set()
        for _ in range(_MAX_LINKED_ROUNDS):
            if table.suppressed.all():
                return table
            cells = self._published_cells(table, label)
            try:
                if where:
                    self._ledger.release_cells(grouped, table.by, cells, k, rows)
                else:
                    narrow = self._ledger.narrow_cells(table.by, cells, counted, k)
                    if narrow:
                        raise NarrowCells(narrow)
                    self._check_known_margins(table, label, k)
                    self._ledger.record_cube(table.by, cells, self._withheld(table))
                self._settled[asked] = self._settled[_signature(table)] = table
                return table
            except NarrowCells as narrow:
                hidden |= {population_key(table.by, cells[i].categories) for i in narrow.cells}
                options = {"margins": table.margins, "protect": table.protect, "hidden": hidden}
                table = self._cohorts(table.by, table.k, where=dict(where) or None, **options)
        raise PrivacyError(
            f"refused: the {label} could not be protected against the tables and segments released before "
            f"in {_MAX_LINKED_ROUNDS} rounds of suppression; ask it on a fresh Dataset"
        )

    def _check_known_margins(self, table: CohortTable, label: str, k: int) -> None:
        """Refuse a table whose suppressed cells earlier tables would help recover.

        A cell this table suppresses may have been published by an earlier unfiltered table
        (a margin of this cube): the attacker knows it. The table's own protection did not
        count on that, so its suppressed cells are audited again with those cells known.
        """
        if not table.margins or not table.suppressed.any():
            return
        known = self._ledger.published_keys()
        keys = [population_key(table.by, self._categories(table, cell)) for cell in range(table.grid.n_cells)]
        published_before = table.suppressed & np.array([key in known for key in keys], dtype=bool)
        if not published_before.any():
            return
        hidden = table.suppressed & ~published_before
        lo, hi = attacker_intervals(table.grid, hidden)
        if (hi[hidden] - lo[hidden] < k).any():
            raise PrivacyError(
                f"refused: the {label} suppresses cells that earlier tables published; with those known, "
                f"its other suppressed cells could be narrowed below k={k}. Ask the table of more dimensions "
                "first, or on a fresh Dataset"
            )

    @staticmethod
    def _categories(table: CohortTable, cell: int) -> tuple[str | None, ...]:
        """Per dimension of the table, the category of one cell (None where aggregated away)."""
        codes = table.grid.codes[cell].tolist()
        return tuple(cats[c] if c >= 0 else None for cats, c in zip(table.categories, codes, strict=True))

    @classmethod
    def _withheld(cls, table: CohortTable) -> list[tuple[tuple[str, str], ...]]:
        """The populations a table suppressed that are not empty (by the categories they name)."""
        hidden = np.flatnonzero(table.suppressed & (table.grid.counts > 0)).tolist()
        return [population_key(table.by, cls._categories(table, cell)) for cell in hidden]

    @classmethod
    def _published_cells(cls, table: CohortTable, label: str) -> list[Cell]:
        """The populations a table releases: its published non-zero cells."""
        cells = []
        for cell in np.flatnonzero(~table.suppressed & (table.published > 0)).tolist():
            categories = cls._categories(table, cell)
            named = ", ".join(f"{d}={v}" for d, v in zip(table.by, categories, strict=True) if v is not None)
            cell_label = f"cell {named} of the {label}" if named else label
            cells.append(Cell(categories, int(table.published[cell]), cell_label))
        return cells

    @_serialised
    def _segment_members(self, segment: Segment, allow_minors: bool) -> pa.Table:
        validate_filters(segment.where, self._vocabulary)
        if not allow_minors and not self._minors_known:
            raise PrivacyError(
                "refused: this store predates the record of minors and was opened with another pseudonym "
                "key, so minors cannot be left out of member lists; open it with the key it was written with"
            )
        population = population_sql(segment.where, self._policy.include_inactive, adults_only=not allow_minors)
        (size,) = self._con.execute(f"SELECT count(*) FROM ({population})").fetchall()[0]
        k = self._policy.k
        if size < k:
            raise PrivacyError(
                f"refused: {segment_label(segment)} has fewer than k={k} members"
                + ("" if allow_minors else " once minors are left out")
                + "; member lists are released only for at least k members"
            )
        label = segment_label(segment)
        self._ledger.release(population, size, k, f"the member list of {label}", f"member list of {label}")
        return self._con.sql(f"SELECT pseudonym FROM ({population}) ORDER BY pseudonym").to_arrow_table()

    @_serialised
    def overlap(self, segments: Sequence[Segment]) -> OverlapTable:
        """A protected table of the pairwise intersections of segments (sizes on the diagonal).

        Every published size and intersection passes the differencing guard, against earlier
        releases and against each other (a segment nested in another, one person smaller, is
        refused just as two ``segment()`` calls would be).
        """
        k, inactive = self._policy.k, self._policy.include_inactive
        table = compute_overlap(self._con, segments, self._vocabulary, k, inactive)
        populations = [population_sql(s.where, inactive) for s in segments]
        cells = sorted(zip(*np.nonzero(~table.suppressed), strict=True), key=lambda ij: (ij[0] != ij[1], ij))
        with self._ledger.all_or_nothing():
            for i, j in cells:
                if i > j:
                    continue
                a, b = segments[i], segments[j]
                if i == j:
                    population, label = populations[i], f"size of {segment_label(a)}"
                else:
                    population = f"{populations[i]} INTERSECT {populations[j]}"
                    label = f"overlap of {segment_label(a)} and {segment_label(b)}"
                self._ledger.release(population, int(table.counts[i, j]), k, f"the {label} in an overlap table", label)
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
        """k-anonymity of the counted identities over ``quasi_identifiers``; l-diversity of ``sensitive``."""
        return compute_risk(
            self._con,
            quasi_identifiers,
            sensitive,
            self._policy.k if k is None else k,
            self._policy.include_inactive,
        )

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


def _signature(table: CohortTable) -> tuple[Any, ...]:
    """What a protected table publishes, as a key: the same key, the same release."""
    options = (table.by, table.categories, tuple(sorted(table.filters.items())), table.k, table.margins)
    return (*options, table.protect, table.base, table.published.tobytes(), table.suppressed.tobytes())


def _check_analytics_layout(
    con: duckdb.DuckDBPyConnection, relation: str, names: list[str], vocabulary: Vocabulary
) -> None:
    """Refuse a relation that is not exactly the analytics layout with in-vocabulary values."""
    _check_analytics_columns(names)
    checks = ", ".join(
        f"count(*) FILTER (WHERE {c} IS NULL OR TRY_CAST({c}::VARCHAR AS {enum_type(c)}) IS NULL), "
        f"any_value({c}::VARCHAR) FILTER (WHERE TRY_CAST({c}::VARCHAR AS {enum_type(c)}) IS NULL)"
        for c in DIMENSIONS
    )
    row = con.execute(f"SELECT {_PSEUDONYM_CHECK}, {checks} FROM {relation}").fetchall()[0]
    if row[0]:
        raise LoadError(f"{row[0]} rows have a pseudonym that is not 64 lowercase hex digits (HMAC-SHA256)")
    for i, dim in enumerate(DIMENSIONS):
        bad, example = row[1 + 2 * i], row[2 + 2 * i]
        if bad:
            shown = "null" if example is None else repr(example)
            raise LoadError(
                f"column {dim!r} has {bad} values outside its categories (e.g. {shown}); "
                f"allowed: {_shorten(vocabulary.categories(dim))}"
            )


def _check_analytics_columns(names: list[str]) -> None:
    """Refuse columns other than exactly the analytics layout (another could hold a direct identifier)."""
    missing = [c for c in ANALYTICS_COLUMNS if c not in names]
    extra = [c for c in names if c not in ANALYTICS_COLUMNS]
    if missing or extra:
        raise LoadError(
            f"the table is not in the analytics layout: missing columns {missing}, unexpected columns {extra}; "
            f"it must have exactly {list(ANALYTICS_COLUMNS)} (load raw records with Dataset.from_files)"
        )


def _shorten(values: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return f"{shown}, … ({len(values)} in all)" if len(values) > limit else shown
