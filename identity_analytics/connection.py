"""The DuckDB connection every Dataset holds: private, in memory, spilling to disk past a limit."""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import duckdb


def connect(memory_limit: str | None = None, temp_directory: str | Path | None = None) -> duckdb.DuckDBPyConnection:
    """A private in-memory DuckDB connection; past ``memory_limit`` it spills to ``temp_directory``.

    Without ``memory_limit`` DuckDB's default applies (80% of RAM). With one and no
    ``temp_directory``, spill files go to a private temporary directory removed with the
    connection (DuckDB's own default would be ``.tmp`` in the working directory).
    """
    # Row order is never meaning: ties are ranked by source and line, not by insertion order,
    # so DuckDB may run every statement fully in parallel.
    # Perfect hash aggregation for keys of up to 20 bits (DuckDB's default: 12): the atom
    # table of a release groups by its dimensions and ``state`` (about 14 bits for age x
    # income x parental status), which then costs what the tables' CUBE costs, not 1.6x it.
    config: dict[str, Any] = {"preserve_insertion_order": False, "perfect_ht_threshold": 20}
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
