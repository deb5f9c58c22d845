"""Dataset: the loaded analytics table, profile store and quarantine, with one DuckDB connection."""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from identity_analytics.errors import LoadError
from identity_analytics.load_report import LoadReport, SourceCounts
from identity_analytics.loaders.formats import PathSpec
from identity_analytics.loaders.pipeline import load_files
from identity_analytics.loaders.projection import ANALYTICS_TABLE, PROFILE_TABLE, create_enum_types, enum_type
from identity_analytics.loaders.quarantine import QUARANTINE_SCHEMA
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.vocabulary import DIMENSIONS, Vocabulary

logger = logging.getLogger(__name__)

#: Columns of the analytics table, in order.
ANALYTICS_COLUMNS: tuple[str, ...] = ("pseudonym", *DIMENSIONS)

_PROFILE_DDL = f"""CREATE TABLE IF NOT EXISTS {PROFILE_TABLE} (
    id VARCHAR, state VARCHAR, traits JSON, metadata_public JSON)"""


def connect(memory_limit: str | None = None, temp_directory: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection; past ``memory_limit`` it spills to ``temp_directory``."""
    config: dict[str, Any] = {}
    if memory_limit is not None:
        config["memory_limit"] = memory_limit
    if temp_directory is not None:
        config["temp_directory"] = str(temp_directory)
    return duckdb.connect(":memory:", config=config)


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
        con = connect(memory_limit, temp_directory)
        try:
            create_enum_types(con, vocabulary)
            report, quarantine = load_files(con, identities, demographics, policy, vocabulary, reference_date, strict)
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
            _check_analytics_layout(con, table, vocabulary)
            casts = ", ".join(
                "pseudonym" if c == "pseudonym" else f"{c}::{enum_type(c)} AS {c}" for c in ANALYTICS_COLUMNS
            )
            con.register("_input", table)
            con.execute(f"CREATE TABLE {ANALYTICS_TABLE} AS SELECT {casts} FROM _input")
            con.unregister("_input")
            con.execute(_PROFILE_DDL)
        except BaseException:
            con.close()
            raise
        rows = table.num_rows
        report = LoadReport(identities=SourceCounts(read=rows, loaded=rows))
        return cls(
            con, policy, vocabulary, reference_date or datetime.date.today(), report, QUARANTINE_SCHEMA.empty_table()
        )

    @classmethod
    def open(cls, path: str | Path, policy: PrivacyPolicy | None = None) -> Dataset:
        """Open a store written by :meth:`save`."""
        from identity_analytics.store import open_store

        return open_store(cls, Path(path), policy)

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the Dataset to a Parquet store (a directory with a manifest), atomically."""
        from identity_analytics.store import save_store

        return save_store(self, Path(path), overwrite=overwrite)

    # contents -----------------------------------------------------------------------------

    @property
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


def _check_analytics_layout(con: duckdb.DuckDBPyConnection, table: pa.Table, vocabulary: Vocabulary) -> None:
    names = table.column_names
    missing = [c for c in ANALYTICS_COLUMNS if c not in names]
    extra = [c for c in names if c not in ANALYTICS_COLUMNS]
    if missing or extra:
        raise LoadError(
            f"the table is not in the analytics layout: missing columns {missing}, unexpected columns {extra}; "
            f"it must have exactly {list(ANALYTICS_COLUMNS)} (load raw records with Dataset.from_files)"
        )
    con.register("_input", table)
    try:
        checks = ", ".join(
            f"count(*) FILTER (WHERE {c} IS NULL OR TRY_CAST({c}::VARCHAR AS {enum_type(c)}) IS NULL), "
            f"any_value({c}::VARCHAR) FILTER (WHERE TRY_CAST({c}::VARCHAR AS {enum_type(c)}) IS NULL)"
            for c in DIMENSIONS
        )
        pseudonym_check = (
            "count(*) FILTER (WHERE NOT regexp_full_match(coalesce(pseudonym::VARCHAR, ''), '[0-9a-f]{64}'))"
        )
        row = con.execute(f"SELECT {pseudonym_check}, {checks} FROM _input").fetchall()[0]
    finally:
        con.unregister("_input")
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


def _shorten(values: tuple[str, ...], limit: int = 12) -> str:
    shown = ", ".join(values[:limit])
    return f"{shown}, … ({len(values)} in all)" if len(values) > limit else shown
