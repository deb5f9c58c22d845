"""What a Dataset holds and how it is built: one DuckDB connection, the policy, the vocabulary,
the load report, the quarantine and the release gate; constructors from files, the Kratos and
Klustr APIs, Arrow tables, Parquet files and stores (:class:`~identity_analytics.dataset.Dataset`
adds the answers)."""

from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, Self, TypeVar

import duckdb
import pyarrow as pa

from identity_analytics.connection import connect
from identity_analytics.load_report import LoadReport, SourceCounts
from identity_analytics.loaders.analytics import load_analytics_parquet, load_arrow
from identity_analytics.loaders.formats import PathSpec
from identity_analytics.loaders.http import RetryPolicy
from identity_analytics.loaders.pipeline import load_files
from identity_analytics.loaders.progress import ProgressCallback
from identity_analytics.loaders.quarantine import QUARANTINE_SCHEMA
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.release.atoms import data_fingerprint
from identity_analytics.release.gate import DataVersion, ReleaseGate
from identity_analytics.release.ledger import FileLedger, Ledger, MemoryLedger
from identity_analytics.release.stored import replacing_store, store_data, store_ledger
from identity_analytics.schema import (
    ANALYTICS_COLUMNS,
    ANALYTICS_TABLE,
    create_enum_types,
)
from identity_analytics.store import StoreParts, open_store, writing_store
from identity_analytics.vocabulary import Vocabulary

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from identity_analytics.loaders.klustr import KlustrClient
    from identity_analytics.loaders.kratos import KratosClient

P = ParamSpec("P")
R = TypeVar("R")


def serialised(method: Callable[P, R]) -> Callable[P, R]:
    """Run a Dataset method holding the Dataset's lock: a DuckDB connection answers one
    query at a time, and a result set read by another thread would mix two answers."""

    @functools.wraps(method)
    def locked(*args: P.args, **kwargs: P.kwargs) -> R:
        with args[0]._lock:  # type: ignore[attr-defined]
            return method(*args, **kwargs)

    return locked



class DatasetBase:
    """The data of a Dataset and its constructors (see :class:`~identity_analytics.dataset.Dataset`)."""

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
    ) -> Self:
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
        base_url: str | KratosClient,
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
        progress: ProgressCallback | None = None,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
        ids: Sequence[str] | None = None,
    ) -> Self:
        """Pull every identity from the Kratos admin API (``GET /admin/identities``, Link pagination).

        ``api_key`` is sent as a bearer token (Ory Network); self-hosted admin ports need
        none. With ``checkpoint`` (a file path) a killed pull resumes where it stopped. With
        ``ids``, only those identities are asked for (``ids=`` filter, up to 500 per request;
        unknown ids are not returned by the API, so they are not counted).
        Plain ``http://`` is refused except to loopback unless ``allow_insecure``.
        ``base_url`` may be a ready :class:`~identity_analytics.loaders.kratos.KratosClient`
        (its own transport, retries and key; used as it is and left open). ``progress`` is told
        ``(what, done, total)`` after every page (see :mod:`identity_analytics.loaders.progress`).
        """
        from identity_analytics.loaders.kratos import KratosClient, load_kratos

        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        reference_date = reference_date or datetime.date.today()
        if isinstance(base_url, str):
            opened: Any = KratosClient(base_url, api_key, retry=retry, allow_insecure=allow_insecure)
        elif api_key is not None or retry is not None or allow_insecure:
            raise ValueError("give api_key, retry and allow_insecure to the KratosClient, not to from_kratos")
        else:
            opened = contextlib.nullcontext(base_url)
        with opened as client:
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
        base_url: str | KlustrClient,
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
        progress: ProgressCallback | None = None,
        memory_limit: str | None = None,
        temp_directory: str | Path | None = None,
    ) -> Self:
        """Fetch each user's identity and demographics from the Klustr gateway, ``concurrency`` at a time.

        A token the gateway refuses is quarantined by its position (never its value) and the
        pull goes on. With ``checkpoint`` a killed pull resumes where it stopped (same token
        list, same pseudonym key). ``base_url`` may be a ready
        :class:`~identity_analytics.loaders.klustr.KlustrClient` (used as it is, left open);
        ``progress`` is told ``(what, done, total)`` after every batch of users.
        """
        from identity_analytics.loaders.klustr import KlustrClient, load_klustr

        policy = policy if policy is not None else PrivacyPolicy()
        vocabulary = vocabulary or Vocabulary.default()
        reference_date = reference_date or datetime.date.today()
        if isinstance(base_url, str):
            opened: Any = KlustrClient(
                base_url, retry=retry, allow_insecure=allow_insecure, max_connections=max(concurrency, 1) * 2
            )
        elif retry is not None or allow_insecure:
            raise ValueError("give retry and allow_insecure to the KlustrClient, not to from_klustr")
        else:
            opened = contextlib.nullcontext(base_url)
        with opened as client:
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
    ) -> Self:
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
    ) -> Self:
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
    ) -> Self:
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
    def open(cls, path: str | Path, policy: PrivacyPolicy | None = None) -> Self:
        """Open a store written by :meth:`save` (its tables stay in its Parquet files)."""
        path = Path(path)
        con = connect()
        parts = open_store(path, policy, con)
        return cls(
            con, parts.policy, parts.vocabulary, parts.reference_date, parts.load_report, parts.quarantine,
            ledger=store_ledger(path), data=store_data(con, path), key_id=parts.key_id,
            minors_known=parts.minors_known,
        )  # fmt: skip

    @serialised
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

    def _use_ledger(self, ledger: str | Path | None) -> Self:
        """Publish through the ledger directory ``ledger`` (None: keep the one in memory)."""
        if ledger is not None:
            gate = self._gate
            self._gate = ReleaseGate(
                self._con, FileLedger(Path(ledger)), gate.k, gate.key_id, DataVersion.of_connection(self._con)
            )
        return self

    # contents -----------------------------------------------------------------------------

    @property
    @serialised
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

    @serialised
    def __len__(self) -> int:
        return int(self._con.execute(f"SELECT count(*) FROM {ANALYTICS_TABLE}").fetchall()[0][0])

    def close(self) -> None:
        """Release the DuckDB connection."""
        self._con.close()

    def __enter__(self) -> Self:
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
