"""The report config read from TOML: paths relative to the file, every problem named by file and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from identity_analytics.report import ConfigError, ReportConfig
from identity_analytics.specs import Cohort, Segment


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "conf" / "report.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text, "utf-8")
    return path


def test_a_config_builds_the_same_specs_as_the_python_api(tmp_path: Path) -> None:
    path = _write(tmp_path, """
[input]
identities = "data/identities.ndjson"
[[cohorts]]
name = "aip"
by = ["age", "income"]
where = { gender = ["female"] }
[[segments]]
name = "parents"
where = { parental_status = ["parent"] }
breakdown = ["age"]
""")
    config = ReportConfig.from_toml(path)
    assert config.input.identities == [str(path.parent / "data" / "identities.ndjson")]
    assert config.cohorts[0].cohort() == Cohort(by=("age", "income"), where={"gender": ["female"]}, name="table aip")
    assert config.segments[0].segment() == Segment(name="parents", where={"parental_status": ["parent"]})


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('[[cohorts]]\nname = "t"\nby = ["age", "age"]\n', "cohorts[0].by[1]", "'age' is given twice"),
        ('[[cohorts]]\nname = "t"\nby = ["age"]\nwhere = { income = ["rich"] }\n', "cohorts[0].where.income",
         "unknown categories ['rich']"),
        ('[[segments]]\nname = "s"\nwhere = { age = [] }\n', "segments[0].where.age", "lists no category"),
        ('[[cohorts]]\nname = "../t"\nby = ["age"]\n', "cohorts[0].name", "pattern"),
        ("[[cohorts]\n", "", "not valid TOML"),
    ],
)  # fmt: skip
def test_a_bad_config_is_refused_naming_file_and_field(tmp_path: Path, text: str, field: str, words: str) -> None:
    path = _write(tmp_path, '[input]\nidentities = "i.ndjson"\n' + text)
    with pytest.raises(ConfigError) as error:
        ReportConfig.from_toml(path)
    message = str(error.value)
    assert message.startswith(f"{path}: {field}") and words in message, message
