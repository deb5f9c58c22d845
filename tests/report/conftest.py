"""The report written once for the report tests (the fixtures, two tables and a segment)."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_analytics.report import CohortSpec, InputSpec, ReportConfig, SegmentSpec, write_report
from tests.conftest import FIXTURES, load_fixtures

INPUTS = [str(FIXTURES / "identities.ndjson"), str(FIXTURES / "demographics.ndjson")]
CONFIG = ReportConfig(
    input=InputSpec(identities=INPUTS[:1], demographics=INPUTS[1:]),
    cohorts=[
        CohortSpec(name="aip", by=["age", "income", "parental_status"]),
        CohortSpec(name="g", by=["gender"], protect="round"),
    ],
    segments=[SegmentSpec(name="parents", where={"parental_status": ["parent"]}, breakdown=["age"])],
)


@pytest.fixture(scope="package")
def written(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_report(load_fixtures(), CONFIG, tmp_path_factory.mktemp("r") / "report", INPUTS)
