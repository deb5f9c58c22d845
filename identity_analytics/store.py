"""The Parquet store: analytics table, profile store and quarantine, with a manifest.

A store is a directory: ``manifest.json`` plus one Parquet file per table, written
atomically (:mod:`identity_analytics.atomic`). The manifest records the library version,
the reference date, the policy settings (never the key; a key fingerprint tells whether
pseudonyms join), the vocabulary, the load report and the data's fingerprint (the epoch its
releases are counted at).

The store reads and writes files and returns parts (:class:`StoreParts`); the Dataset
assembles them. The release ledger a store keeps in ``ledger/`` is the release package's
(:mod:`identity_analytics.release.stored`): it is carried over when the store is replaced.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from identity_analytics.atomic import atomic_directory
from identity_analytics.errors import LoadError
from identity_analytics.load_report import LoadReport
from identity_analytics.loaders.projection import collect_minors
from identity_analytics.policy import PrivacyPolicy, PseudonymKeyWarning
from identity_analytics.schema import (
    ANALYTICS_COLUMNS,
    ANALYTICS_TABLE,
    MINORS_DDL,
    MINORS_TABLE,
    PROFILE_TABLE,
    create_enum_types,
    sql_literal,
)
from identity_analytics.version import __version__
from identity_analytics.vocabulary import Vocabulary

STORE_FORMAT = "identity-analytics-store"
STORE_VERSION = 1
MANIFEST = "manifest.json"
#: The directory of the store's release ledger.
LEDGER_DIR = "ledger"
_FILES = {
    "identities": "identities.parquet",
    "profiles": "profiles.parquet",
    "minors": "minors.parquet",
    "quarantine": "quarantine.parquet",
}


@dataclass(frozen=True)
class StoreParts:
    """What a store holds besides the tables themselves (which live in the connection)."""

    policy: PrivacyPolicy
    vocabulary: Vocabulary
    reference_date: datetime.date
    load_report: LoadReport
    quarantine: pa.Table
    #: the pseudonym key id the store's pseudonyms were made with
    key_id: str
    #: False for a store written before minors were kept, opened under another key
    minors_known: bool = True


@contextlib.contextmanager
def writing_store(
    con: duckdb.DuckDBPyConnection, path: Path, parts: StoreParts, *, overwrite: bool, fingerprint: str
) -> Iterator[Path]:
    """Write the tables of ``con`` and a manifest of ``parts`` into a new directory, yielded
    (more may be added to it), then swapped in at ``path`` atomically; a store is replaced
    only with ``overwrite``."""
    with atomic_directory(path, marker=MANIFEST, what="store", overwrite=overwrite) as work:
        for name, table in (("identities", ANALYTICS_TABLE), ("profiles", PROFILE_TABLE), ("minors", MINORS_TABLE)):
            con.execute(f"COPY {table} TO {sql_literal(str(work / _FILES[name]))} (FORMAT parquet)")
        pq.write_table(parts.quarantine, work / _FILES["quarantine"])
        (rows,) = con.execute(f"SELECT count(*) FROM {ANALYTICS_TABLE}").fetchall()[0]
        manifest: dict[str, Any] = {
            "format": STORE_FORMAT,
            "format_version": STORE_VERSION,
            "library_version": __version__,
            "created_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "reference_date": parts.reference_date.isoformat(),
            "policy": parts.policy.settings(),
            "vocabulary": parts.vocabulary.to_dict(),
            "load_report": parts.load_report.model_dump(mode="json"),
            "tables": {
                "identities": {"file": _FILES["identities"], "rows": int(rows)},
                "profiles": {"file": _FILES["profiles"]},
                "minors": {"file": _FILES["minors"]},
                "quarantine": {"file": _FILES["quarantine"], "rows": parts.quarantine.num_rows},
            },
            "fingerprint": fingerprint,
        }
        (work / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", "utf-8")
        yield work


def manifest_identity(path: Path) -> tuple[Any, Any]:
    """What tells one version of a store from the next (its data's fingerprint, its writing time)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text("utf-8"))
    except (OSError, ValueError):
        return (None, None)
    return (manifest.get("fingerprint"), manifest.get("created_at"))


def data_file(path: Path, name: str) -> Path:
    """The Parquet file of the table ``name`` (``identities``, ``minors``, ...) of the store at ``path``."""
    return path / _FILES[name]


def open_store(path: Path, policy: PrivacyPolicy | None, con: duckdb.DuckDBPyConnection) -> StoreParts:
    """Open the store at ``path`` in ``con`` (its tables as views over the Parquet files, which
    stay where they are) and return the rest of it; ``con`` is closed if the store cannot be read."""
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
    return StoreParts(
        policy=policy,
        vocabulary=vocabulary,
        reference_date=reference_date,
        load_report=LoadReport.model_validate(manifest["load_report"]),
        quarantine=quarantine,
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
