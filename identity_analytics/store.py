"""The Parquet store: analytics table, profile store and quarantine, with a manifest.

A store is a directory: ``manifest.json`` plus one Parquet file per table, written
atomically (:mod:`identity_analytics.atomic`). The manifest records the library version,
the reference date, the policy settings (never the key; a key fingerprint tells whether
pseudonyms join), the vocabulary, the load report and the data's fingerprint (the epoch its
releases are counted at).

A store also keeps the release ledger of everything published from it (``ledger/``, see
:mod:`identity_analytics.release.ledger`). Replacing a store (``overwrite=True``, a nightly
load) holds the ledger's lock and carries the ledger into the new store, so releases of the
new data are audited against the old ones; a Dataset still open over the replaced data is
refused further releases.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow.parquet as pq

from identity_analytics.atomic import atomic_directory
from identity_analytics.errors import LoadError, PrivacyError
from identity_analytics.load_report import LoadReport
from identity_analytics.loaders.projection import (
    ANALYTICS_TABLE,
    MINORS_DDL,
    MINORS_TABLE,
    PROFILE_TABLE,
    collect_minors,
    create_enum_types,
    sql_literal,
)
from identity_analytics.policy import PrivacyPolicy, PseudonymKeyWarning
from identity_analytics.release.atoms import data_fingerprint
from identity_analytics.release.gate import DataVersion
from identity_analytics.release.ledger import FileLedger, carry, hold, in_use
from identity_analytics.vocabulary import Vocabulary

if TYPE_CHECKING:
    import duckdb

    from identity_analytics.dataset import Dataset

STORE_FORMAT = "identity-analytics-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
LEDGER_DIR = "ledger"
_FILES = {
    "identities": "identities.parquet",
    "profiles": "profiles.parquet",
    "minors": "minors.parquet",
    "quarantine": "quarantine.parquet",
}


def _version() -> str:
    from identity_analytics import __version__

    return __version__


def save_store(dataset: Dataset, path: Path, *, overwrite: bool) -> Path:
    """Write ``dataset`` to ``path`` atomically; refuse to replace a store unless ``overwrite``.

    The store's ledger (if it has one) is held while the new store is swapped in and carried
    into it; afterwards ``dataset`` publishes through it, with its own earlier releases added.
    """
    ledger = path / LEDGER_DIR
    if ledger.is_dir() and in_use(ledger):
        raise PrivacyError(
            f"refused: the store {path} has a release open in this process (a `releasing()` block or a report "
            "over it); finish it before replacing the store"
        )
    replacing = (path / MANIFEST).is_file() and ledger.is_dir()
    with hold(ledger) if replacing else contextlib.nullcontext(), _saving(dataset, path, overwrite) as work:
        if replacing:
            carry(ledger, work / LEDGER_DIR)
    dataset._publish_through_store(path, _store_data(dataset.connection, path))
    return path


@contextlib.contextmanager
def _saving(dataset: Dataset, path: Path, overwrite: bool) -> Iterator[Path]:
    with atomic_directory(path, marker=MANIFEST, what="store", overwrite=overwrite) as work:
        con = dataset.connection
        con.execute(f"COPY {ANALYTICS_TABLE} TO {sql_literal(str(work / _FILES['identities']))} (FORMAT parquet)")
        con.execute(f"COPY {PROFILE_TABLE} TO {sql_literal(str(work / _FILES['profiles']))} (FORMAT parquet)")
        con.execute(f"COPY {MINORS_TABLE} TO {sql_literal(str(work / _FILES['minors']))} (FORMAT parquet)")
        pq.write_table(dataset.quarantine, work / _FILES["quarantine"])
        manifest: dict[str, Any] = {
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "library_version": _version(),
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "reference_date": dataset.reference_date.isoformat(),
            "policy": dataset.policy.settings(),
            "vocabulary": dataset.vocabulary.to_dict(),
            "load_report": dataset.load_report.model_dump(mode="json"),
            "tables": {
                "identities": {"file": _FILES["identities"], "rows": len(dataset)},
                "profiles": {"file": _FILES["profiles"]},
                "minors": {"file": _FILES["minors"]},
                "quarantine": {"file": _FILES["quarantine"], "rows": dataset.quarantine.num_rows},
            },
            "fingerprint": data_fingerprint(con),
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        yield work


def _manifest_identity(path: Path) -> tuple[Any, Any]:
    """What tells one version of a store from the next (its data's fingerprint, its writing time)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return (None, None)
    return (manifest.get("fingerprint"), manifest.get("created_at"))


def _store_data(con: duckdb.DuckDBPyConnection, path: Path) -> DataVersion:
    """The data of the store at ``path`` as the release gate sees it: its fingerprint, a
    snapshot by hard links to its files, and a check that the store was not replaced since."""
    identity = _manifest_identity(path)
    fingerprint = identity[0]

    def epoch() -> str:
        return str(fingerprint) if fingerprint else data_fingerprint(con)

    def snapshot(folder: Path) -> None:
        for name in ("identities", "minors"):
            source = path / _FILES[name]
            if source.is_file():
                try:
                    os.link(source, folder / source.name)
                    continue
                except OSError:
                    pass
            table = ANALYTICS_TABLE if name == "identities" else MINORS_TABLE
            con.execute(f"COPY (SELECT * FROM {table}) TO {sql_literal(str(folder / source.name))} (FORMAT parquet)")

    def still_current() -> None:
        if _manifest_identity(path) != identity:
            raise PrivacyError(
                f"refused: the store {path} was replaced since this Dataset read it; its answers would be "
                "recorded against data the store no longer holds. Open the store again"
            )

    return DataVersion(epoch=epoch, snapshot=snapshot, still_current=still_current)


def store_ledger(path: Path) -> FileLedger:
    """The release ledger of the store at ``path``."""
    return FileLedger(path / LEDGER_DIR, what=f"the release ledger of the store {path}")


def open_store(cls: type[Dataset], path: Path, policy: PrivacyPolicy | None) -> Dataset:
    """Open the store at ``path`` as a Dataset (tables stay in the Parquet files)."""
    from identity_analytics.dataset import ANALYTICS_COLUMNS, connect

    manifest_path = path / MANIFEST
    try:
        manifest = json.loads(manifest_path.read_text("utf-8"))
    except (OSError, ValueError) as error:
        raise LoadError(
            f"cannot open the store {path}: {manifest_path.name} is missing or unreadable ({type(error).__name__}); "
            "a store is a directory written by Dataset.save",
            source=str(path),
        ) from None
    if manifest.get("format") != STORE_FORMAT or manifest.get("format_version") != STORE_VERSION:
        raise LoadError(f"{path} is not a store of format {STORE_FORMAT} v{STORE_VERSION}", source=str(path))
    settings = manifest.get("policy", {})
    if policy is None:
        policy = PrivacyPolicy(k=settings.get("k", 10), include_inactive=settings.get("include_inactive", False))
    key_matches = settings.get("pseudonym_key_id") in (None, policy.key_id())
    if not key_matches:
        warnings.warn(
            f"the store {path} was written with another pseudonym key: its pseudonyms will not "
            "join with pseudonyms computed now",
            PseudonymKeyWarning,
            stacklevel=3,
        )
    vocabulary = Vocabulary(manifest["vocabulary"])
    con = connect()
    try:
        create_enum_types(con, vocabulary)
        files = {name: path / spec["file"] for name, spec in manifest["tables"].items()}
        columns = ", ".join(ANALYTICS_COLUMNS)
        con.execute(
            f"CREATE VIEW {ANALYTICS_TABLE} AS SELECT {columns} "
            f"FROM read_parquet({sql_literal(str(files['identities']))})"
        )
        con.execute(
            f"""CREATE VIEW {PROFILE_TABLE} AS SELECT id, state, traits::JSON AS traits,
            metadata_public::JSON AS metadata_public
            FROM read_parquet({sql_literal(str(files["profiles"]))})"""
        )
        reference_date = datetime.date.fromisoformat(manifest["reference_date"])
        minors_known = _open_minors(con, files, policy, reference_date, key_matches)
        quarantine = pq.read_table(files["quarantine"])
        con.execute(f"SELECT count(*) FROM {ANALYTICS_TABLE}").fetchall()
    except Exception as error:
        con.close()
        if isinstance(error, LoadError):
            raise
        raise LoadError(
            f"cannot open the store {path}: {type(error).__name__}: a table file is missing or damaged",
            source=str(path),
        ) from None
    report = LoadReport.model_validate(manifest["load_report"])
    return cls(
        con,
        policy,
        vocabulary,
        reference_date,
        report,
        quarantine,
        ledger=store_ledger(path),
        data=_store_data(con, path),
        key_id=settings.get("pseudonym_key_id") or policy.key_id(),
        minors_known=minors_known,
    )


def _open_minors(
    con: duckdb.DuckDBPyConnection,
    files: dict[str, Path],
    policy: PrivacyPolicy,
    reference_date: datetime.date,
    key_matches: bool,
) -> bool:
    """The ``minors`` table of a store; False when it cannot be known.

    Stores written before minors were kept have none: it is rebuilt from the profiles when
    the pseudonym key is the store's own, otherwise member lists must be refused.
    """
    if "minors" in files:
        source = sql_literal(str(files["minors"]))
        con.execute(f"CREATE VIEW {MINORS_TABLE} AS SELECT pseudonym FROM read_parquet({source})")
        return True
    con.execute(MINORS_DDL)
    if not key_matches:
        return False
    collect_minors(con, policy, reference_date, PROFILE_TABLE, "json_extract_string(traits, '$.birthdate')")
    return True
