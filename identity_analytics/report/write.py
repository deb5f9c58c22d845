"""Batch reports: a config in; cohort tables (CSV, Parquet, JSON), report.html and audit.json out.

The output directory is written atomically: everything goes into a temporary sibling
directory that is renamed into place at the end, so a run killed mid-write leaves the
previous report (or nothing), never half a report. ``audit.json`` lets a second person verify
the release: inputs with their sha256, parameters, every table's cells and suppressions with
reasons, the attacker-interval audit, and the load report counts.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from identity_analytics.atomic import atomic_directory
from identity_analytics.cohort_table import CohortTable
from identity_analytics.dataset import Dataset
from identity_analytics.errors import PrivacyError
from identity_analytics.report.config import ReportConfig
from identity_analytics.report.html import report_html
from identity_analytics.store import LEDGER_DIR
from identity_analytics.version import __version__


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def input_files(paths: Sequence[str | Path]) -> list[dict[str, Any]]:
    """Each input file (a store: each of its data files, not its release ledger) with size and sha256."""
    files: list[Path] = []
    for item in paths:
        path = Path(item)
        if path.is_dir():
            data = (p for p in path.rglob("*") if p.is_file() and p.relative_to(path).parts[0] != LEDGER_DIR)
            files.extend(sorted(data))
        else:
            files.append(path)
    return [{"path": str(p), "bytes": p.stat().st_size, "sha256": sha256_of(p)} for p in files]


def _write_table(directory: Path, name: str, table: CohortTable) -> None:
    cells = table.to_arrow()
    pq.write_table(cells, directory / f"{name}.parquet")
    table.to_pandas().to_csv(directory / f"{name}.csv", index=False)
    (directory / f"{name}.json").write_text(json.dumps(cells.to_pylist(), indent=1) + "\n", "utf-8")


def write_report(
    dataset: Dataset, config: ReportConfig, out: str | Path, inputs: Sequence[str | Path], *, overwrite: bool = True
) -> Path:
    """Compute every table and segment of ``config`` and write the report into ``out``, atomically."""

    out = Path(out)
    # everything of the report is one release: audited together with each other and with
    # everything released before, recorded together once the whole report is computed
    with dataset.releasing():
        tables = dict(
            zip(
                [spec.name for spec in config.cohorts],
                dataset.cohort_tables([spec.cohort() for spec in config.cohorts]),
                strict=True,
            )
        )
        segments: list[dict[str, Any]] = []
        breakdowns: dict[str, CohortTable] = {}
        for spec in config.segments:
            try:
                result = dataset.segment(spec.segment())
            except PrivacyError as error:  # withheld: the reason is the operator's, in audit.json
                segments.append({"name": spec.name, "where": spec.where, "size": None, "suppressed": True,
                                 "withheld": str(error)})  # fmt: skip
                continue
            segments.append({"name": spec.name, "where": spec.where, "size": result.size,
                             "suppressed": result.suppressed})  # fmt: skip
            for dim in spec.breakdown:
                breakdowns[f"{spec.name}-by-{dim}"] = result.breakdown(dim)
    audit: dict[str, Any] = {
        "library_version": __version__,
        "generated_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "inputs": input_files(inputs),
        "k": config.k,
        "parameters": {
            "k": config.k,
            "reference_date": dataset.reference_date.isoformat(),
            "include_inactive": config.include_inactive,
            "policy": dataset.policy.settings(),
        },
        "load_report": dataset.load_report.model_dump(mode="json", exclude={"other_values"}),
        "tables": [table.audit_record(name) for name, table in {**tables, **breakdowns}.items()],
        "segments": segments,
        "release": {
            "ledger": dataset.ledger.description,
            "releases_recorded": dataset.ledger.state().releases,
            "joint_audit": dataset.audit_measures(),
        },
    }
    with atomic_directory(out, marker="audit.json", what="report", overwrite=overwrite) as work:
        (work / "cohorts").mkdir()
        for name, table in {**tables, **breakdowns}.items():
            _write_table(work / "cohorts", name, table)
        (work / "report.html").write_text(report_html(config, dataset, tables, segments, breakdowns, audit), "utf-8")
        (work / "audit.json").write_text(json.dumps(audit, indent=2) + "\n", "utf-8")
    return out
