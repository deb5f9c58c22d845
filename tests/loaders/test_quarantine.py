"""Bad records: quarantined with source, line, reason and a redacted excerpt; strict mode raises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import identity_analytics as ia
from tests.conftest import FIXTURES, SECRET_MARKER, write_lines

BAD_LINES = {
    '{"id": "a", "traits": {"email": "x@y.org"}': "malformed JSON",
    "[1, 2]": "record is not a JSON object (got an array)",
    '"just a string"': "record is not a JSON object (got a string)",
    "42": "record is not a JSON object (got a number)",
    "null": "record is not a JSON object (got null)",
    '{"traits": {}}': "missing `id`",
    '{"id": 7}': "`id` is not a string (got a number)",
    '{"id": null}': "`id` is not a string (got null)",
    '{"id": ["a"]}': "`id` is not a string (got an array)",
    '{"id": ""}': "`id` is empty",
    '{"id": "a"} {"id": "b"}': "malformed JSON",
}


@pytest.mark.parametrize(("line", "reason"), BAD_LINES.items())
def test_each_kind_of_bad_record_is_quarantined_with_its_reason(
    tmp_path: Path, policy: ia.PrivacyPolicy, line: str, reason: str
) -> None:
    path = write_lines(tmp_path / "ids.ndjson", ['{"id": "good-1"}', line, '{"id": "good-2"}'])
    ds = ia.Dataset.from_files(path, policy=policy)
    (row,) = ds.quarantine.to_pylist()
    assert row["source"] == str(path) and row["line"] == 2
    assert row["reason"].startswith(reason)
    assert ds.load_report.identities == ia.SourceCounts(read=3, loaded=2, quarantined=1, duplicates=0)


def test_invalid_utf8_is_quarantined(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "ids.ndjson"
    path.write_bytes(b'{"id": "good"}\n{"id": "\xff\xfe"}\n')
    ds = ia.Dataset.from_files(path, policy=policy)
    assert ds.quarantine.select(["line", "reason"]).to_pylist() == [{"line": 2, "reason": "not valid UTF-8 text"}]
    assert len(ds) == 1


def test_quarantine_schema_and_excerpts_are_redacted(fixture_dataset: ia.Dataset) -> None:
    quarantine = fixture_dataset.quarantine
    assert quarantine.column_names == ["source", "line", "reason", "excerpt"]
    for excerpt in quarantine.column("excerpt").to_pylist():
        assert excerpt is None or (SECRET_MARKER not in excerpt and "@" not in excerpt and "fixture-" not in excerpt)
    malformed = [r for r in quarantine.to_pylist() if r["reason"].startswith("malformed")]
    assert malformed and all('"credentials"' in r["excerpt"] or '"identity_id"' in r["excerpt"] for r in malformed)


def test_demographics_for_an_identity_not_loaded_are_quarantined(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    ids = write_lines(tmp_path / "ids.ndjson", ['{"id": "a"}', '{"id": 5}'])
    demo = write_lines(
        tmp_path / "demo.ndjson", [json.dumps({"identity_id": i, "income": "low"}) for i in ("a", "ghost", "5")]
    )
    ds = ia.Dataset.from_files(ids, demo, policy=policy)
    rows = [r for r in ds.quarantine.to_pylist() if r["source"] == str(demo)]
    assert [(r["line"], r["reason"].split(":")[0]) for r in rows] == [(2, "unknown identity"), (3, "unknown identity")]
    assert ds.load_report.demographics == ia.SourceCounts(read=3, loaded=1, quarantined=2, duplicates=0)


def test_duplicate_demographics_keep_the_last_record(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    ids = write_lines(tmp_path / "ids.ndjson", ['{"id": "a"}'])
    demo = write_lines(
        tmp_path / "demo.ndjson", ['{"identity_id": "a", "income": "low"}', '{"identity_id": "a", "income": "high"}']
    )
    ds = ia.Dataset.from_files(ids, demo, policy=policy)
    assert ds.identities.column("income").to_pylist() == ["high"]
    assert ds.load_report.demographics == ia.SourceCounts(read=2, loaded=1, quarantined=0, duplicates=1)


def test_strict_raises_on_the_first_bad_record_naming_file_and_line(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = write_lines(tmp_path / "ids.ndjson", ['{"id": "a"}', '{"id": "b"}', "{oops", '{"id": 3}'])
    with pytest.raises(ia.LoadError, match=r"ids\.ndjson:3: malformed JSON") as raised:
        ia.Dataset.from_files(path, policy=policy, strict=True)
    assert raised.value.line == 3 and raised.value.source == str(path)


def test_strict_raises_on_unknown_identity_demographics(policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ia.LoadError, match=r"identities\.ndjson:31"):
        ia.Dataset.from_files(
            FIXTURES / "identities.ndjson", FIXTURES / "demographics.ndjson", policy=policy, strict=True
        )


def test_strict_accepts_clean_files_and_duplicates(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = write_lines(tmp_path / "ids.ndjson", ['{"id": "a"}', '{"id": "a"}'])
    demo = write_lines(tmp_path / "demo.ndjson", ['{"identity_id": "ghost"}'])
    assert len(ia.Dataset.from_files(path, policy=policy, strict=True)) == 1
    with pytest.raises(ia.LoadError, match=r"demo\.ndjson:1: unknown identity"):
        ia.Dataset.from_files(path, demo, policy=policy, strict=True)


def test_strict_error_message_holds_no_record_content(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = write_lines(
        tmp_path / "ids.ndjson",
        ['{"id": 1, "credentials": {"password": {"config": {"hashed_password": "' + SECRET_MARKER + '"}}}}'],
    )
    with pytest.raises(ia.LoadError) as raised:
        ia.Dataset.from_files(path, policy=policy, strict=True)
    assert SECRET_MARKER not in str(raised.value) and SECRET_MARKER not in repr(raised.value)


def test_strict_names_the_first_bad_line_whatever_its_fault(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    good = json.dumps({"id": "a"}).encode()
    path = tmp_path / "ids.ndjson"
    path.write_bytes(b"\n".join([good, b'{"id": "x", "traits": {', b'{"id": "bad\xff"}', b'{"id": 12}']) + b"\n")
    with pytest.raises(ia.LoadError, match=r"ids\.ndjson:2: malformed JSON"):
        ia.Dataset.from_files(path, policy=policy, strict=True)
    lines = ia.Dataset.from_files(path, policy=policy).quarantine.column("line").to_pylist()
    assert lines == [2, 3, 4]
