"""The releases of a store: its ledger (``<store>/ledger/``) and its data as the gate records it.

A store's ledger lives in the store directory. Replacing the store (``overwrite=True``, a
nightly load) holds the ledger's lock while the new store is swapped in and carries the
ledger into it, so releases of the new data are audited against the old ones; a Dataset
still open over the replaced data is refused further releases (:func:`store_data`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb

from identity_analytics.errors import PrivacyError
from identity_analytics.release.atoms import data_fingerprint
from identity_analytics.release.gate import DataVersion
from identity_analytics.release.ledger import FileLedger, in_use
from identity_analytics.release.ledger_files import carry, hold
from identity_analytics.schema import ANALYTICS_TABLE, MINORS_TABLE, sql_literal
from identity_analytics.store import LEDGER_DIR, MANIFEST, data_file, manifest_identity


def store_ledger(path: Path) -> FileLedger:
    """The release ledger of the store at ``path``."""
    return FileLedger(path / LEDGER_DIR, what=f"the release ledger of the store {path}")


@contextlib.contextmanager
def replacing_store(path: Path) -> Iterator[Callable[[Path], None]]:
    """Hold the ledger of the store at ``path`` (if it has one) while the store is replaced;
    yields the function that carries the ledger into the new store's directory. Refused
    while a release over the store is open in this process."""
    ledger = path / LEDGER_DIR
    if ledger.is_dir() and in_use(ledger):
        raise PrivacyError(
            f"refused: the store {path} has a release open in this process (a `releasing()` block or a report "
            "over it); finish it before replacing the store"
        )
    replacing = (path / MANIFEST).is_file() and ledger.is_dir()

    def carry_into(work: Path) -> None:
        if replacing:
            carry(ledger, work / LEDGER_DIR)

    with hold(ledger) if replacing else contextlib.nullcontext():
        yield carry_into


def store_data(con: duckdb.DuckDBPyConnection, path: Path) -> DataVersion:
    """The data of the store at ``path`` as the release gate sees it: its fingerprint, a
    snapshot by hard links to its files, and a check that the store was not replaced since."""
    identity = manifest_identity(path)
    fingerprint = identity[0]

    def epoch() -> str:
        return str(fingerprint) if fingerprint else data_fingerprint(con)

    def snapshot(folder: Path) -> None:
        for name, table in (("identities", ANALYTICS_TABLE), ("minors", MINORS_TABLE)):
            source = data_file(path, name)
            if source.is_file():
                try:
                    os.link(source, folder / source.name)
                    continue
                except OSError:
                    pass
            con.execute(f"COPY (SELECT * FROM {table}) TO {sql_literal(str(folder / source.name))} (FORMAT parquet)")

    def still_current() -> None:
        if manifest_identity(path) != identity:
            raise PrivacyError(
                f"refused: the store {path} was replaced since this Dataset read it; its answers would be "
                "recorded against data the store no longer holds. Open the store again"
            )

    return DataVersion(epoch=epoch, snapshot=snapshot, still_current=still_current)
