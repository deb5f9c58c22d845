"""The identity-analytics command line: end to end on the fixtures, every exit code, one-line errors."""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from identity_analytics.cli import NO_LEDGER_NOTE, app
from tests.conftest import FIXTURES, SECRET_MARKER, TEST_KEY
from tests.servers import (
    Faults,
    KlustrServer,
    KratosServer,
    kratos_identities_from_fixtures,
    token_for,
    users_from_fixtures,
)

IDS = ["--identities", str(FIXTURES / "identities.ndjson"), "--demographics", str(FIXTURES / "demographics.ndjson")]


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("IDENTITY_ANALYTICS_PSEUDONYM_KEY", TEST_KEY.decode())
    return CliRunner()


def test_report_from_flags(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(
        app,
        [
            "report",
            *IDS,
            "--by",
            "age,income,parental_status",
            "--by",
            "gender",
            "--out",
            str(tmp_path / "r"),
            "--reference-date",
            "2026-11-01",
        ],
    )
    assert result.exit_code == 0, result.output
    files = sorted(p.name for p in (tmp_path / "r" / "cohorts").iterdir())
    assert files == [
        f"{n}.{e}" for n in ("age_x_income_x_parental_status", "gender") for e in ("csv", "json", "parquet")
    ]


def test_report_from_config(cli: CliRunner, tmp_path: Path) -> None:
    config = tmp_path / "report.toml"
    config.write_text(
        f"""
reference_date = 2026-11-01
k = 12
[input]
identities = "{FIXTURES / "identities.ndjson"}"
demographics = "{FIXTURES / "demographics.ndjson"}"
[[cohorts]]
name = "parents"
by = ["age", "parental_status"]
[[cohorts]]
name = "kenya-income"
by = ["income"]
where = {{ citizenship = ["KE"] }}
[[segments]]
name = "young-parents"
where = {{ age = ["_25_to_34"], parental_status = ["parent"] }}
breakdown = ["gender"]
"""
    )
    result = cli.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "r" / "audit.json").read_text())
    assert audit["parameters"]["k"] == 12 and [t["name"] for t in audit["tables"]] == [
        "parents",
        "kenya-income",
        "young-parents-by-gender",
    ]
    assert audit["segments"][0]["name"] == "young-parents"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["report", "--identities", "nope.ndjson", "--by", "age", "--out", "x"], "cannot read nope.ndjson"),
        (["report", *IDS, "--by", "age,shoe_size", "--out", "x"], "unknown dimension"),
        (
            ["report", *IDS, "--by", "age", "--out", "x", "--reference-date", "yesterday"],
            "--reference-date 'yesterday'",
        ),
        (["report", *IDS, "--store", "s", "--by", "age", "--out", "x"], "either --identities"),
        (["profile", "nobody", *IDS], "no identity 'nobody'"),
        (["load", "--store", "s"], "--identities"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], message: str
) -> None:
    monkeypatch.chdir(tmp_path)
    result = cli.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1


def test_bad_by_names_the_option(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["report", *IDS, "--by", "age,shoe_size", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --by 'age,shoe_size': unknown dimension 'shoe_size'"), result.stderr
    result = cli.invoke(app, ["report", *IDS, "--by", "age", "--by", " age", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--by ' age' is given twice" in result.stderr


INPUT = '[input]\nidentities = "missing.ndjson"\n'


@pytest.mark.parametrize(
    ("tables", "location", "message"),
    [
        ('[[cohorts]]\nname = "t"\nby = ["age", "eyes"]\n', "cohorts[0].by[1]", "unknown dimension 'eyes'"),
        (
            '[[cohorts]]\nname = "a"\nby = ["age"]\n'
            '[[cohorts]]\nname = "b"\nby = ["income"]\nwhere = { citizenship = ["KE", "Atlantis"] }\n',
            "cohorts[1].where.citizenship",
            "unknown categories ['Atlantis']",
        ),
        ('[[cohorts]]\nname = "a"\nby = ["age"]\nwhere = { eyes = ["blue"] }\n', "cohorts[0].where.eyes", "unknown"),
        ('[[segments]]\nname = "s"\nwhere = { shoe_size = ["44"] }\n', "segments[0].where.shoe_size", "unknown"),
        ('[[segments]]\nname = "s"\nwhere = { age = ["_26_to_34"] }\n', "segments[0].where.age", "'_26_to_34'"),
        ('[[segments]]\nname = "s"\nwhere = { age = [] }\n', "segments[0].where.age", "no category"),
        ('[[segments]]\nname = "s"\nbreakdown = ["eyes"]\n', "segments[0].breakdown[0]", "unknown dimension"),
        (
            '[[cohorts]]\nname = "t"\nby = ["age"]\n[[cohorts]]\nname = "t"\nby = ["income"]\n',
            "cohorts[1].name",
            "'t' is already taken by cohorts[0].name",
        ),
        (
            '[[cohorts]]\nname = "parents-by-age"\nby = ["age"]\n'
            '[[segments]]\nname = "parents"\nwhere = { parental_status = ["parent"] }\nbreakdown = ["age"]\n',
            "segments[0].breakdown[0]",
            "'parents-by-age' is already taken by cohorts[0].name",
        ),
        (
            '[[cohorts]]\nname = "Parents"\nby = ["age"]\n[[segments]]\nname = "parents"\n',
            "segments[0].name",
            "already taken by cohorts[0].name",
        ),
    ],
)
def test_bad_config_is_refused_when_read_naming_the_file_and_field(
    cli: CliRunner, tmp_path: Path, tables: str, location: str, message: str
) -> None:
    config = tmp_path / "report.toml"
    config.write_text(INPUT + tables)
    result = cli.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {config}: {location}: "), result.stderr  # before missing.ndjson is read
    assert message in result.stderr and len(result.stderr.splitlines()) == 1


def test_where_categories_of_a_store_input_come_from_the_store(cli: CliRunner, tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert cli.invoke(app, ["load", *IDS, "--store", str(store)]).exit_code == 0
    config = tmp_path / "report.toml"
    config.write_text('[input]\nstore = "s"\n[[cohorts]]\nname = "k"\nby = ["age"]\nwhere = { citizenship = ["KE"] }\n')
    result = cli.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output


def test_messages_with_brackets_print_verbatim(cli: CliRunner, tmp_path: Path) -> None:
    folder = tmp_path / "reports[a-z]"
    folder.mkdir()
    config = folder / "report.toml"
    config.write_text(INPUT + '[[cohorts]]\nname = "t"\nby = ["[bold]age"]\n')
    result = cli.invoke(app, ["report", "--config", str(config), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert f"{folder}/report.toml: cohorts[0].by[0]: unknown dimension '[bold]age'" in result.stderr, result.stderr
    missing = str(folder / "identities[0-9].ndjson")
    result = cli.invoke(app, ["report", "--identities", missing, "--by", "age", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and missing in result.stderr, result.stderr


def test_a_report_from_a_store_hashes_every_file_of_the_store(cli: CliRunner, tmp_path: Path) -> None:
    store = tmp_path / "s"
    assert cli.invoke(app, ["load", *IDS, "--store", str(store), "--reference-date", "2026-11-01"]).exit_code == 0
    result = cli.invoke(app, ["report", "--store", str(store), "--by", "age", "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    audit = json.loads((tmp_path / "r" / "audit.json").read_text())
    # the store's data files, not its release ledger (which each run adds to)
    files = sorted(p for p in store.rglob("*") if p.is_file() and p.relative_to(store).parts[0] != "ledger")
    assert len(files) >= 5 and store / "manifest.json" in files
    assert (store / "ledger" / "log.jsonl").is_file()
    assert audit["inputs"] == [
        {"path": str(p), "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()} for p in files
    ]
    demographics = audit["load_report"]["demographics"]
    assert demographics["loaded"] > 0 and demographics["read"] == sum(
        demographics[k] for k in ("loaded", "quarantined", "duplicates")
    )


def test_file_loads_print_only_the_result_when_stderr_is_not_a_terminal(cli: CliRunner, tmp_path: Path) -> None:
    result = cli.invoke(app, ["load", *IDS, "--store", str(tmp_path / "s")])
    assert result.exit_code == 0 and result.stderr == "", result.stderr
    assert result.stdout.splitlines()[-1] == f"store written to {tmp_path / 's'}" and "loading" not in result.stdout
    result = cli.invoke(app, ["report", *IDS, "--by", "age", "--out", str(tmp_path / "r")])
    # over files without a ledger, the one line on stderr says the run is audited on its own
    assert result.exit_code == 0 and result.stderr == NO_LEDGER_NOTE + "\n", result.stderr
    assert result.stdout == f"report written to {tmp_path / 'r'}\n"
    ledger = ["--ledger", str(tmp_path / "ledger")]
    result = cli.invoke(app, ["report", *IDS, "--by", "age", "--out", str(tmp_path / "r2"), *ledger])
    assert result.exit_code == 0 and result.stderr == "", result.stderr


def test_file_loads_show_a_spinner_on_a_terminal(tmp_path: Path) -> None:
    terminal, secondary = pty.openpty()
    env = dict(os.environ, IDENTITY_ANALYTICS_PSEUDONYM_KEY="k", TERM="xterm", COLUMNS="200")
    command = [
        sys.executable,
        "-m",
        "identity_analytics.cli",
        "report",
        *IDS,
        "--by",
        "age",
        "--out",
        str(tmp_path / "r"),
    ]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=secondary, env=env)
    os.close(secondary)
    shown = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # EIO: the child closed its end of the terminal
            break
        if not chunk:
            break
        shown += chunk
    stdout, _ = child.communicate(timeout=120)
    os.close(terminal)
    assert child.returncode == 0, shown
    assert stdout.decode() == f"report written to {tmp_path / 'r'}\n"
    assert (
        b"loading identities.ndjson, demographics.ndjson" in shown and b"computing 1 cohort table, 0 segments" in shown
    )


def test_privacy_refusal_exits_3(cli: CliRunner, tmp_path: Path) -> None:
    segment = tmp_path / "tiny.yaml"
    segment.write_text("name: tiny\nwhere:\n  income: [other]\n")
    result = cli.invoke(app, ["segment", str(segment), *IDS, "--members", str(tmp_path / "m.csv")])
    assert result.exit_code == 3, result.output
    assert "fewer than k=10 members" in result.output and not (tmp_path / "m.csv").exists()


def test_source_failure_exits_4_without_credentials(
    cli: CliRunner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KRATOS_API_KEY", "PLANTED-SECRET-cli-key")
    with KratosServer([], faults=Faults(server_error_every=1)) as server:
        result = cli.invoke(app, ["pull", "kratos", server.url, "--store", str(tmp_path / "s"), "--attempts", "2"])
    assert result.exit_code == 4, result.output
    assert "failed after 2 attempts" in result.output and SECRET_MARKER not in result.output


def test_pull_kratos_and_klustr_then_query_the_stores(cli: CliRunner, tmp_path: Path) -> None:
    identities = kratos_identities_from_fixtures(FIXTURES / "identities.ndjson", limit=300)
    with KratosServer(identities) as server:
        result = cli.invoke(app, ["pull", "kratos", server.url, "--store", str(tmp_path / "k"), "--page-size", "100"])
    assert result.exit_code == 0, result.output
    users = users_from_fixtures(FIXTURES / "identities.ndjson", FIXTURES / "demographics.ndjson", limit=50)
    tokens = tmp_path / "tokens.txt"
    tokens.write_text("\n".join(token_for(n) for n in range(50)))
    with KlustrServer(users) as server:
        result = cli.invoke(
            app, ["pull", "klustr", server.url, "--tokens", str(tokens), "--store", str(tmp_path / "g")]
        )
    assert result.exit_code == 0, result.output
    assert "SECRET-TOKEN" not in result.output
    result = cli.invoke(app, ["profile", "fixture-00001", "--store", str(tmp_path / "k"), "--public"])
    assert result.exit_code == 0 and json.loads(result.stdout)["traits"]["email"] is None
    result = cli.invoke(app, ["risk", "--qi", "age,gender", "--sensitive", "income", "--store", str(tmp_path / "g")])
    assert result.exit_code == 0 and "classes" in result.output


def test_load_then_segment_with_members_export(cli: CliRunner, tmp_path: Path) -> None:
    assert (
        cli.invoke(app, ["load", *IDS, "--store", str(tmp_path / "s"), "--reference-date", "2026-11-01"]).exit_code == 0
    )
    segment = tmp_path / "parents.json"
    segment.write_text(json.dumps({"name": "parents", "where": {"parental_status": ["parent"]}}))
    result = cli.invoke(
        app,
        [
            "segment",
            str(segment),
            "--store",
            str(tmp_path / "s"),
            "--breakdown",
            "age",
            "--members",
            str(tmp_path / "m.csv"),
        ],
    )
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "m.csv").read_text().splitlines()
    assert lines[0] == "pseudonym" and len(lines) > 100 and all(len(line) == 64 for line in lines[1:])


def test_debug_shows_the_traceback_and_keeps_the_exit_code(cli: CliRunner) -> None:
    result = cli.invoke(app, ["--debug", "profile", "x", "--identities", "nope.ndjson"])
    assert result.exit_code == 2 and "Traceback" in result.stderr and "LoadError" in result.stderr


def test_a_segment_file_that_is_not_yaml_exits_2_naming_file_and_line(cli: CliRunner, tmp_path: Path) -> None:
    segment = tmp_path / "bad.yaml"
    segment.write_text("name: bad\nwhere: {income: [low\n")
    result = cli.invoke(app, ["segment", str(segment), *IDS])
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {segment}:3: not valid YAML"), result.stderr


def test_a_reference_date_other_than_the_stores_is_refused(cli: CliRunner, tmp_path: Path) -> None:
    store = str(tmp_path / "s")
    assert cli.invoke(app, ["load", *IDS, "--store", store, "--reference-date", "2026-11-01"]).exit_code == 0
    same = cli.invoke(app, ["report", "--store", store, "--by", "age", "--out", str(tmp_path / "r1"),
                            "--reference-date", "2026-11-01"])  # fmt: skip
    assert same.exit_code == 0, same.output
    other = cli.invoke(app, ["report", "--store", store, "--by", "age", "--out", str(tmp_path / "r2"),
                             "--reference-date", "1990-01-01"])  # fmt: skip
    assert other.exit_code == 2 and "computed at 2026-11-01" in other.stderr
    assert not (tmp_path / "r2").exists()


def test_gzip_loads_leave_no_file_open(cli: CliRunner, tmp_path: Path) -> None:
    compressed = tmp_path / "identities.ndjson.gz"
    compressed.write_bytes(gzip.compress((FIXTURES / "identities.ndjson").read_bytes()))
    result = cli.invoke(app, ["load", "--identities", str(compressed), "--store", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    assert "unclosed" not in result.stderr and "warning" not in result.stderr.replace("pseudonym key", "")
