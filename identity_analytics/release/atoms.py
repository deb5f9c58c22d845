"""Atoms of the data, counted by DuckDB: the non-empty cells of the cross-classification of
every dimension the releases name, at every epoch they were counted at.

At one epoch an atom is a combination of categories (``GROUP BY`` the dimensions used, the
``_minor`` flag where member lists were released). Over several epochs (a store reloaded
between releases) an identity is followed by its pseudonym: an atom is its categories at
each epoch and whether it was there at all (``_present``), so that people who joined, left
or changed between two releases are atoms of their own and a difference of two releases is
audited like any other population. Earlier epochs are read from the ledger's snapshots.

The atoms of the current data can also be kept as a DuckDB table (:class:`AtomTable`, one
scan of the data): the tables released together are then aggregated from it rather than
from the data each, and the audit reads its atoms from it.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
from collections.abc import Collection, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from identity_analytics.release.blocks import MINOR, PRESENT
from identity_analytics.release.problem import Atoms
from identity_analytics.schema import ANALYTICS_TABLE, MINORS_TABLE, sql_literal
from identity_analytics.vocabulary import DIMENSIONS, MINOR_BAND


def _minor_sql(minors: str) -> str:
    """SQL of the ``_minor`` flag of a row (its age band, or its pseudonym among ``minors``)."""
    return f"(age::VARCHAR = '{MINOR_BAND}' OR pseudonym IN (SELECT pseudonym FROM {minors}))::VARCHAR"


def _relation(dims: set[str], identities: str, minors: str) -> str:
    """One epoch's rows: the pseudonym and every dimension the releases name there, as text."""
    columns = [f"{d}::VARCHAR AS {d}" for d in sorted(dims - {MINOR})]
    if MINOR in dims:
        columns.append(f"{_minor_sql(minors)} AS {MINOR}")
    return f"SELECT pseudonym, {', '.join(['true AS _here', *columns])} FROM {identities}"


_names = itertools.count()


@dataclass(frozen=True)
class AtomTable:
    """The current data's analytics rows counted by every combination of ``dimensions`` (the
    columns keep their types; ``_minor`` as text when named), count column ``n``, in the
    DuckDB table ``name``. Every population over these dimensions is a sum over its rows."""

    name: str
    dimensions: frozenset[str]

    def covers(self, dimensions: Collection[str]) -> bool:
        return set(dimensions) <= self.dimensions


@contextlib.contextmanager
def atom_table(con: duckdb.DuckDBPyConnection, dimensions: Collection[str]) -> Iterator[AtomTable]:
    """An :class:`AtomTable` over ``dimensions`` for the time of the block (one scan of the data)."""
    dims = set(dimensions)
    plain = sorted(dims - {MINOR})
    columns = [*plain, *([f"{_minor_sql(MINORS_TABLE)} AS {MINOR}"] if MINOR in dims else [])]
    name = f"_ia_atoms_{next(_names)}"
    selected = ", ".join([*columns, "count(*) AS n"])
    con.execute(f"CREATE TEMP TABLE {name} AS SELECT {selected} FROM {ANALYTICS_TABLE} GROUP BY ALL")
    try:
        yield AtomTable(name, frozenset(dims))
    finally:
        con.execute(f"DROP TABLE IF EXISTS {name}")


def count_atoms(
    con: duckdb.DuckDBPyConnection,
    current: str,
    needed: Mapping[str, set[str]],
    snapshots: Mapping[str, Path],
    table: AtomTable | None = None,
) -> Atoms:
    """Atoms over the dimensions ``needed`` per epoch; ``current`` is the epoch of the
    Dataset's own tables, the others are read from ``snapshots`` (one directory each). At the
    current epoch alone, they are read from ``table`` when it covers the dimensions."""
    epochs = sorted(needed, key=lambda e: (e != current, e))
    if epochs == [current]:
        if table is not None and table.covers(needed[current]):
            return _from_table(con, current, needed[current], table)
        return _one_epoch(con, current, needed[current])
    sources = []
    for i, epoch in enumerate(epochs):
        if epoch == current:
            identities, minors = ANALYTICS_TABLE, MINORS_TABLE
        else:
            folder = snapshots[epoch]
            identities = f"read_parquet({sql_literal(str(folder / 'identities.parquet'))})"
            minors = f"read_parquet({sql_literal(str(folder / 'minors.parquet'))})"
        sources.append((epoch, f"e{i}", _relation(needed[epoch], identities, minors)))
    _, first_alias, first_sql = sources[0]
    joined = f"({first_sql}) {first_alias}"
    for _, alias, sql in sources[1:]:
        joined += f" FULL OUTER JOIN ({sql}) {alias} USING (pseudonym)"
    selected, columns = [], []
    for epoch, alias, _ in sources:
        selected.append(f"coalesce({alias}._here, false)::VARCHAR")
        columns.append((epoch, PRESENT))
        for dim in sorted(needed[epoch] - {MINOR}) + ([MINOR] if MINOR in needed[epoch] else []):
            selected.append(f"{alias}.{dim}")
            columns.append((epoch, dim))
    names = [f"c{i}" for i in range(len(selected))]
    sql = (
        f"SELECT {', '.join(f'{s} AS {n}' for s, n in zip(selected, names, strict=True))}, count(*) AS n "
        f"FROM {joined} GROUP BY ALL"
    )
    return _encode(con.sql(sql).to_arrow_table(), tuple(columns), names)


def _one_epoch(con: duckdb.DuckDBPyConnection, epoch: str, dims: set[str]) -> Atoms:
    plain = sorted(dims - {MINOR})
    grouped = [*plain, *([f"{_minor_sql(MINORS_TABLE)} AS {MINOR}"] if MINOR in dims else [])]
    names = [*plain, *([MINOR] if MINOR in dims else [])]
    if grouped:
        inner = f"SELECT {', '.join(grouped)}, count(*) AS n FROM {ANALYTICS_TABLE} GROUP BY ALL"
        outer = ", ".join(f"{name}::VARCHAR AS {name}" for name in names)
        sql = f"SELECT {outer}, n FROM ({inner})"
    else:
        sql = f"SELECT count(*) AS n FROM {ANALYTICS_TABLE}"
    return _encode(con.sql(sql).to_arrow_table(), tuple((epoch, name) for name in names), names)


def _from_table(con: duckdb.DuckDBPyConnection, epoch: str, dims: set[str], table: AtomTable) -> Atoms:
    names = [*sorted(dims - {MINOR}), *([MINOR] if MINOR in dims else [])]
    if names:
        outer = ", ".join(f"{name}::VARCHAR AS {name}" for name in names)
        sql = f"SELECT {outer}, sum(n)::BIGINT AS n FROM {table.name} GROUP BY ALL"
    else:
        sql = f"SELECT coalesce(sum(n), 0)::BIGINT AS n FROM {table.name}"
    return _encode(con.sql(sql).to_arrow_table(), tuple((epoch, name) for name in names), names)


def _encode(table: pa.Table, columns: tuple[tuple[str, str], ...], names: list[str]) -> Atoms:
    counts = np.asarray(table.column("n").to_numpy(), dtype=np.int64)
    keep = counts > 0
    codes = np.zeros((int(keep.sum()), len(names)), dtype=np.int32)
    values = []
    for j, name in enumerate(names):
        encoded = pc.dictionary_encode(table.column(name).cast(pa.string())).combine_chunks()
        indices = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
        codes[:, j] = np.asarray(indices, dtype=np.int32)[keep]
        values.append(tuple(str(v) for v in encoded.dictionary.to_pylist()))
    return Atoms(columns=columns, values=tuple(values), codes=codes, counts=counts[keep])


def data_fingerprint(con: duckdb.DuckDBPyConnection) -> str:
    """An id of the data's content (analytics rows and minors, in any order): the epoch of
    releases counted from it. Equal data, equal id, whichever process computes it."""
    columns = ", ".join(["pseudonym", *(f"{d}::VARCHAR" for d in DIMENSIONS)])
    rows = con.execute(
        f"SELECT count(*), bit_xor(h), sum(h % 4294967291) FROM (SELECT hash({columns}) AS h FROM {ANALYTICS_TABLE})"
    ).fetchall()[0]
    minors = con.execute(f"SELECT count(*), bit_xor(hash(pseudonym)) FROM {MINORS_TABLE}").fetchall()[0]
    return hashlib.sha256(repr((rows, minors)).encode()).hexdigest()[:24]


def snapshot_data(con: duckdb.DuckDBPyConnection, folder: Path) -> None:
    """Write the data of the Dataset's tables (what :func:`count_atoms` reads of an epoch) to ``folder``."""
    for table, name in ((ANALYTICS_TABLE, "identities"), (MINORS_TABLE, "minors")):
        target = sql_literal(str(folder / f"{name}.parquet"))
        con.execute(f"COPY (SELECT * FROM {table}) TO {target} (FORMAT parquet)")
