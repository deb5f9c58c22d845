"""Writing a report: the audit record, no secret and no small count, atomic output (also under SIGKILL)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import identity_analytics as ia
import identity_analytics.report.write as report_write
from identity_analytics.report import write_report
from tests.conftest import SECRET_MARKER, TEST_KEY
from tests.report.conftest import CONFIG, INPUTS


def test_audit_records_inputs_parameters_tables_and_counts(written: Path, fixture_dataset: ia.Dataset) -> None:
    audit = json.loads((written / "audit.json").read_text())
    assert audit["library_version"] == ia.__version__
    assert [i["sha256"] for i in audit["inputs"]] == [hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in INPUTS]
    assert audit["k"] == audit["parameters"]["k"] == 10 and audit["parameters"]["reference_date"] == "2026-11-01"
    assert audit["load_report"]["identities"] == fixture_dataset.load_report.identities.model_dump()
    demographics = fixture_dataset.load_report.demographics
    assert audit["load_report"]["demographics"] == demographics.model_dump() and demographics.loaded > 0
    per_file = {(f["kind"], Path(f["source"]).name): f for f in audit["load_report"]["sources"]}
    assert per_file["demographics", "demographics.ndjson"]["loaded"] == demographics.loaded
    tables = {t["name"]: t for t in audit["tables"]}
    assert set(tables) == {"aip", "g", "parents-by-age"}
    aip = fixture_dataset.cohorts(["age", "income", "parental_status"])
    assert tables["aip"]["cells"] == aip.grid.n_cells
    assert tables["aip"]["primary_suppressions"] == int(aip.primary.sum())
    assert tables["aip"]["primary_suppressions"] + tables["aip"]["secondary_suppressions"] == len(
        tables["aip"]["suppressed_cells"]
    )
    assert tables["aip"]["all_suppressed_cells_protected"] and tables["aip"]["attacker_interval_min_width"] >= 10
    assert "GROUP BY CUBE" in tables["aip"]["sql"]
    assert (
        audit["segments"][0]["size"]
        == fixture_dataset.segment(ia.Segment(name="parents", where={"parental_status": ["parent"]})).size
    )


def test_outputs_hold_no_secret_and_no_small_count(written: Path) -> None:
    for path in written.rglob("*"):
        if path.is_file() and path.suffix != ".parquet":
            text = path.read_text()
            assert SECRET_MARKER not in text and TEST_KEY.decode() not in text
    cells = json.loads((written / "cohorts" / "aip.json").read_text())
    assert all(c["count"] is None or c["count"] == 0 or c["count"] >= 10 for c in cells)


def test_a_failure_mid_write_leaves_no_report(
    fixture_dataset: ia.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(report_write, "report_html", broken)
    with pytest.raises(RuntimeError):
        write_report(fixture_dataset, CONFIG, tmp_path / "report", INPUTS)
    assert list(tmp_path.iterdir()) == []


KILLED = """
import sys, time, identity_analytics.report.write as r
original = r._write_table
def slow(*args):
    original(*args)
    time.sleep(30)  # stays mid-write until killed
r._write_table = slow
from identity_analytics.cli import main
sys.argv = ["identity-analytics", "report", "--identities", sys.argv[1], "--by", "age", "--out", sys.argv[2]]
main()
"""


def _half_written_work_directory(parent: Path) -> Path | None:
    """A hidden work directory of ``report`` that already holds a cohort file, if there is one."""
    for candidate in parent.glob(".report.*"):
        with contextlib.suppress(OSError):
            if any((candidate / "cohorts").iterdir()):
                return candidate
    return None


def test_a_run_killed_mid_write_leaves_the_previous_report_intact(tmp_path: Path) -> None:
    out = tmp_path / "report"
    env = dict(os.environ, IDENTITY_ANALYTICS_PSEUDONYM_KEY="k")
    command = [sys.executable, "-m", "identity_analytics.cli", "report", "--identities", INPUTS[0], "--by", "gender",
               "--out", str(out)]  # fmt: skip
    subprocess.run(command, check=True, env=env, capture_output=True)
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    child = subprocess.Popen(
        [sys.executable, "-c", KILLED, INPUTS[0], str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    half_written = None
    deadline = time.time() + 120
    while half_written is None and child.poll() is None and time.time() < deadline:
        half_written = _half_written_work_directory(tmp_path)
        time.sleep(0.05)
    still_running = child.poll() is None
    os.kill(child.pid, signal.SIGKILL)
    _, stderr = child.communicate()
    assert still_running, f"the run ended before it could be killed: {stderr!r}"
    assert half_written is not None, "the half-written work directory was never seen"
    assert child.returncode == -signal.SIGKILL
    assert half_written.exists() and not (half_written / "audit.json").exists()  # killed mid-write
    after = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert after == before  # the old report, whole; the half-written one never took its place

    subprocess.run(command, check=True, env=env, capture_output=True)
    assert [p.name for p in tmp_path.iterdir()] == ["report"]  # the next run removed the killed run's leftovers
