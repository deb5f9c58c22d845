"""Batch reports: a config in (:mod:`.config`); cohort tables (CSV, Parquet, JSON), ``report.html``
(:mod:`.html`) and ``audit.json`` out, written atomically (:mod:`.write`)."""

from identity_analytics.report.config import CohortSpec, ConfigError, InputSpec, ReportConfig, SegmentSpec
from identity_analytics.report.write import input_files, sha256_of, write_report

__all__ = [
    "CohortSpec",
    "ConfigError",
    "InputSpec",
    "ReportConfig",
    "SegmentSpec",
    "input_files",
    "sha256_of",
    "write_report",
]
