"""One remote pull into the identity stage, as Kratos and Klustr pulls both run it.

A pull stages records batch by batch (a page of identities, a batch of user tokens); with a
checkpoint each batch is committed with where to resume, so a killed pull resumes where it
stopped; at the end the staged records are projected into the analytics tables and the
checkpoint removed. The loaders say what a batch is; this module keeps the counts, the
quarantine and the checkpoint consistent.
"""

from __future__ import annotations

import datetime
import logging
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from identity_analytics.load_report import LoadReport
from identity_analytics.loaders.checkpoint import Checkpoint
from identity_analytics.loaders.pipeline import finish_load
from identity_analytics.loaders.quarantine import QuarantineLog
from identity_analytics.loaders.staging import IDENTITY_STAGE, StagedSource, Staging
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.vocabulary import Vocabulary

logger = logging.getLogger(__name__)


class Pull:
    """The state of one pull: its staged source (``staged``, source 0 of the identity stage),
    an optional source of refused demographics, the quarantine log and the checkpoint."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        staged: StagedSource,
        checkpoint: str | Path | None,
        fingerprint: dict[str, Any],
        refused: StagedSource | None = None,
    ) -> None:
        self.con = con
        self.staged = staged
        self.refused = refused
        self.log = QuarantineLog()
        self.staging = Staging(con)
        self.saved = Checkpoint(checkpoint, fingerprint) if checkpoint is not None else None
        #: where the checkpoint says to resume (None: from the start)
        self.position: Any = None
        self.resumed = self.saved is not None and self.saved.resumed
        if self.saved is not None and self.resumed:
            self.saved.restore(con, IDENTITY_STAGE)
            staged.read, staged.quarantined = self.saved.get("read", 0), self.saved.get("quarantined", 0)
            if refused is not None:
                refused.read = refused.quarantined = self.saved.get("demographics_refused", 0)
            self.log.rows.extend(tuple(r) for r in self.saved.get("quarantine", []))
            self.position = self.saved.position
            logger.info("resuming %s after %d records", staged.source.label, staged.read)
        self._logged = len(self.log.rows)  # quarantine rows already in the checkpoint

    def commit(self, first: int, last: int, position: Any, **extra: Any) -> None:
        """Record the staged lines ``first + 1 .. last`` in the checkpoint (if any), with the
        counts so far, the new quarantine rows and where to resume (``position``)."""
        if self.saved is None:
            return
        counts: dict[str, Any] = {"read": self.staged.read, "quarantined": self.staged.quarantined}
        if self.refused is not None:
            counts["demographics_refused"] = self.refused.read
        quarantine = self.saved.get("quarantine", []) + [list(r) for r in self.log.rows[self._logged :]]
        self.saved.commit(
            self.con,
            f"SELECT * FROM {IDENTITY_STAGE} WHERE src = 0 AND line > {first} AND line <= {last}",
            position,
            **counts,
            quarantine=quarantine,
            **extra,
        )
        self._logged = len(self.log.rows)

    def finish(
        self, policy: PrivacyPolicy, vocabulary: Vocabulary, reference_date: datetime.date
    ) -> tuple[LoadReport, pa.Table]:
        """Project the staged records into the analytics tables; the checkpoint is then removed."""
        refused = [self.refused] if self.refused is not None else []
        result = finish_load(self.con, self.log, [self.staged], refused, policy, vocabulary, reference_date)
        if self.saved is not None:
            self.saved.remove()
        return result
