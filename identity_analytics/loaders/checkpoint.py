"""Checkpoints of remote pulls: a killed pull resumes where it stopped, nothing lost or twice.

A checkpoint is a JSON file plus a sibling directory of Parquet parts. Each committed step
(a page of Kratos, a batch of Klustr users) writes the rows it staged as a part file, then
atomically replaces the JSON file, which lists the committed parts, where to resume, the
counts so far and the quarantined records (already redacted). A part that is not listed (the
pull died between writing it and committing) is deleted on resume. Parts hold staged rows
only: no credential or ``metadata_admin`` ever reaches them. The checkpoint is removed once
the pull has completed.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import duckdb

from identity_analytics.errors import LoadError

FORMAT = "identity-analytics-checkpoint/1"


class Checkpoint:
    """Progress of one remote pull, identified by a fingerprint of its parameters."""

    def __init__(self, path: str | Path, fingerprint: dict[str, Any]):
        self.path = Path(path)
        self.parts = self.path.with_name(self.path.name + ".parts")
        self.fingerprint = fingerprint
        self.state: dict[str, Any] = {"format": FORMAT, "fingerprint": fingerprint, "parts": [], "position": None}
        if self.path.exists():
            try:
                state = json.loads(self.path.read_text("utf-8"))
            except (OSError, ValueError) as error:
                raise LoadError(
                    f"cannot read the checkpoint {self.path}: {type(error).__name__}", source=str(self.path)
                ) from None
            if state.get("format") != FORMAT or state.get("fingerprint") != fingerprint:
                raise LoadError(
                    f"the checkpoint {self.path} belongs to another pull (other source or parameters); "
                    "delete it or give another checkpoint path",
                    source=str(self.path),
                )
            self.state = state
        self.parts.mkdir(parents=True, exist_ok=True)
        listed = set(self.state["parts"])
        for stray in self.parts.iterdir():
            if stray.name not in listed:
                stray.unlink()

    @property
    def resumed(self) -> bool:
        """True when earlier progress was found."""
        return bool(self.state["parts"]) or self.state["position"] is not None

    @property
    def position(self) -> Any:
        """Where the pull resumes (None at the start)."""
        return self.state["position"]

    def get(self, key: str, default: Any = None) -> Any:
        return self.state.get(key, default)

    def restore(self, con: duckdb.DuckDBPyConnection, table: str) -> None:
        """Insert the committed parts' rows into the staging ``table``."""
        files = [str(self.parts / name) for name in self.state["parts"]]
        if files:
            con.execute(f"INSERT INTO {table} SELECT * FROM read_parquet(?)", [files])

    def commit(self, con: duckdb.DuckDBPyConnection, rows_query: str, position: Any, **values: Any) -> None:
        """Persist the rows of one step, then record the step (atomic rename)."""
        name = f"part-{len(self.state['parts']):06d}.parquet"
        part = self.parts / name
        con.execute(f"COPY ({rows_query}) TO '{str(part).replace(chr(39), chr(39) * 2)}' (FORMAT parquet)")
        state = dict(self.state, parts=[*self.state["parts"], name], position=position, **values)
        temporary = self.path.with_name(self.path.name + ".tmp")
        temporary.write_text(json.dumps(state), "utf-8")
        os.replace(temporary, self.path)
        self.state = state

    def remove(self) -> None:
        """Delete the checkpoint after a completed pull."""
        self.path.unlink(missing_ok=True)
        shutil.rmtree(self.parts, ignore_errors=True)
