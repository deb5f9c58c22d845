"""One load from start to end: stage every source, then project, then count.

Identity sources are staged first and deduplicated, then demographics (embedded in combined
records, then demographics files, a later source winning for the same identity), then the
projection builds the analytics and profile tables. Every record read ends up loaded,
quarantined or counted as a duplicate, per source. Files and remote APIs share this path.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Callable
from typing import Literal

import duckdb
import pyarrow as pa

from identity_analytics.load_report import FileCounts, LoadReport
from identity_analytics.loaders import projection
from identity_analytics.loaders.files import stage_file
from identity_analytics.loaders.formats import PathSpec, inspect_file, resolve_paths
from identity_analytics.loaders.quarantine import QuarantineLog
from identity_analytics.loaders.staging import IDENTITY_STAGE, StagedSource, Staging
from identity_analytics.policy import PrivacyPolicy
from identity_analytics.vocabulary import Vocabulary

logger = logging.getLogger(__name__)


def load_files(
    con: duckdb.DuckDBPyConnection,
    identities: PathSpec,
    demographics: PathSpec | None,
    policy: PrivacyPolicy,
    vocabulary: Vocabulary,
    reference_date: datetime.date,
    strict: bool,
) -> tuple[LoadReport, pa.Table]:
    """Load identity (and demographics) files into the connection's analytics and profile tables."""
    log = QuarantineLog(strict=strict)
    staging = Staging(con)
    identity_sources = [
        StagedSource(i, inspect_file(p, "identities")) for i, p in enumerate(resolve_paths(identities, "identities"))
    ]
    demo_paths = [] if demographics is None else resolve_paths(demographics, "demographics")
    demo_sources = [
        StagedSource(len(identity_sources) + i, inspect_file(p, "demographics")) for i, p in enumerate(demo_paths)
    ]
    for staged in identity_sources:
        stage_file(staging, staged, log)

    def stage_demographics() -> None:
        for staged in demo_sources:
            stage_file(staging, staged, log)

    def reread(sources: set[int]) -> None:
        for staged in identity_sources + demo_sources:
            if staged.src in sources:
                logger.info("%s: re-reading line by line to rank or report records by line", staged.source.label)
                staging.discard(staged.src)
                stage_file(staging, staged, log, exact=True)

    return finish_load(
        con, log, identity_sources, demo_sources, policy, vocabulary, reference_date, stage_demographics, reread
    )


def finish_load(
    con: duckdb.DuckDBPyConnection,
    log: QuarantineLog,
    identity_sources: list[StagedSource],
    demo_sources: list[StagedSource],
    policy: PrivacyPolicy,
    vocabulary: Vocabulary,
    reference_date: datetime.date,
    stage_demographics: Callable[[], None] | None = None,
    reread: Callable[[set[int]], None] | None = None,
) -> tuple[LoadReport, pa.Table]:
    """After the identities are staged: select, join demographics, project, count.

    ``reread`` re-stages sources (by index) that were read on the fast path, without line
    numbers, when their duplicates can only be ranked by line or their records of unknown
    identities must be quarantined with their line.
    """
    counts = projection.ProjectionCounts()
    # demographics are staged after this point, so without duplicate ids no source needs re-reading yet
    duplicates: int | None = projection.count_duplicates(con, IDENTITY_STAGE, "id")
    if duplicates and reread is not None and (tied := projection.sources_needing_line_order(con)):
        reread(tied)
        duplicates = None  # counted again over what was re-read
    projection.select_winners(con, counts, duplicates)
    projection.stage_embedded_demographics(con, counts)
    if stage_demographics is not None:
        stage_demographics()
    unknown = projection.find_unknown_identities(con)
    to_reread = {src for src, line, _ in unknown if line is None}
    if reread is not None:
        to_reread |= projection.sources_needing_line_order(con, identities=False)
    if to_reread and reread is not None:
        reread(to_reread)
        unknown = projection.find_unknown_identities(con)
    labels = {s.src: s.source.label for s in identity_sources + demo_sources}
    for src, line in counts.embedded_not_object:
        log.add(labels[src], line, "`demographics` is not an object", text=None)
    for src, line, fields in unknown:
        log.add(labels[src], line, "unknown identity: no loaded identity has this `identity_id`", value=fields)
    counts.unknown_identity = unknown
    projection.select_demographics(con, counts)
    projection.project(con, policy, vocabulary, reference_date, counts)
    report = LoadReport.from_sources(_file_counts(identity_sources, demo_sources, counts), counts.other_values)
    logger.info("loaded identities: %s", report.identities)
    return report, log.to_arrow()


def _file_counts(
    identity_sources: list[StagedSource], demo_sources: list[StagedSource], counts: projection.ProjectionCounts
) -> list[FileCounts]:
    unknown: dict[int, int] = {}
    for src, _, _ in counts.unknown_identity:
        unknown[src] = unknown.get(src, 0) + 1
    not_object: dict[int, int] = {}
    for src, _ in counts.embedded_not_object:
        not_object[src] = not_object.get(src, 0) + 1
    result: list[FileCounts] = []
    for s in identity_sources:
        staged, loaded = counts.identity_staged.get(s.src, 0), counts.identity_loaded.get(s.src, 0)
        result.append(_counts(s, "identities", s.read, loaded, s.quarantined, staged - loaded))
        if s.source.layout == "combined":
            embedded = counts.demographics_staged.get(s.src, 0)
            kept = counts.demographics_loaded.get(s.src, 0)
            duplicates = counts.embedded_duplicates.get(s.src, 0)
            bad = not_object.get(s.src, 0)
            result.append(
                _counts(s, "demographics", embedded + duplicates + bad, kept, bad, duplicates + embedded - kept)
            )
    for s in demo_sources:
        staged, loaded = counts.demographics_staged.get(s.src, 0), counts.demographics_loaded.get(s.src, 0)
        bad = unknown.get(s.src, 0)
        result.append(_counts(s, "demographics", s.read, loaded, s.quarantined + bad, staged - bad - loaded))
    return result


def _counts(
    staged: StagedSource,
    kind: Literal["identities", "demographics"],
    read: int,
    loaded: int,
    quarantined: int,
    duplicates: int,
) -> FileCounts:
    counts = FileCounts(
        source=staged.source.label, kind=kind, read=read, loaded=loaded, quarantined=quarantined, duplicates=duplicates
    )
    if not counts.balanced:
        raise RuntimeError(f"record counts of {counts.source} do not add up: {counts}")
    return counts
