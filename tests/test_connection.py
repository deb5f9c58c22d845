"""The Dataset's DuckDB connection: private, in memory, spilling to a private directory it removes."""

from __future__ import annotations

import gc
from pathlib import Path

from identity_analytics.connection import connect


def test_a_memory_limit_spills_to_a_private_directory_removed_with_the_connection() -> None:
    con = connect(memory_limit="1GB")
    (spill,) = con.execute("SELECT current_setting('temp_directory')").fetchall()[0]
    assert Path(spill).is_dir() and "identity-analytics-spill-" in spill
    assert con.execute("SELECT current_setting('memory_limit')").fetchall()[0][0] in ("1.0 GB", "953.6 MiB")
    con.close()
    del con
    gc.collect()
    assert not Path(spill).exists()


def test_a_given_spill_directory_is_kept_and_aggregation_keys_use_perfect_hashing(tmp_path: Path) -> None:
    con = connect(memory_limit="1GB", temp_directory=tmp_path)
    assert con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0] == str(tmp_path)
    assert con.execute("SELECT current_setting('perfect_ht_threshold')").fetchall()[0][0] == 20
    assert con.execute("SELECT current_setting('preserve_insertion_order')").fetchall()[0][0] is False
    con.close()
    assert tmp_path.is_dir()
