"""File formats: NDJSON, JSON arrays/documents, Parquet, gzip, combined records, globs."""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import identity_analytics as ia
from identity_analytics.loaders import files
from tests.conftest import FIXTURES, REFERENCE_DATE, write_lines


def _identity(identity_id: str, **traits: object) -> dict[str, object]:
    return {"id": identity_id, "state": "active", "updated_at": "2026-01-01T00:00:00Z", "traits": dict(traits)}


def _ids(ds: ia.Dataset, policy: ia.PrivacyPolicy, *ids: str) -> None:
    assert sorted(ds.identities.column("pseudonym").to_pylist()) == sorted(policy.pseudonym(i) for i in ids)


def test_fixture_ndjson_loads_with_counts_that_add_up(fixture_dataset: ia.Dataset) -> None:
    report = fixture_dataset.load_report
    for counts in (report.identities, report.demographics, *report.sources):
        assert counts.read == counts.loaded + counts.quarantined + counts.duplicates
    assert report.identities.loaded == 2000 == fixture_dataset.identities.num_rows
    assert report.identities.duplicates == 2
    assert report.identities.quarantined == 5
    assert fixture_dataset.quarantine.num_rows == report.identities.quarantined + report.demographics.quarantined


def test_gzip_is_read_transparently_whatever_the_name(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    plain = ia.Dataset.from_files(FIXTURES / "identities.ndjson", policy=policy, reference_date=REFERENCE_DATE)
    target = tmp_path / "identities.data"  # no .gz suffix: detected from the magic bytes
    with (FIXTURES / "identities.ndjson").open("rb") as src, gzip.open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    zipped = ia.Dataset.from_files(target, policy=policy, reference_date=REFERENCE_DATE)
    assert zipped.load_report.identities == plain.load_report.identities
    assert zipped.identities.sort_by("pseudonym").equals(plain.identities.sort_by("pseudonym"))
    assert zipped.quarantine.column("line").to_pylist() == plain.quarantine.column("line").to_pylist()


def test_exact_path_gives_the_same_table_as_the_fast_path(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    clean = [json.dumps(_identity(f"id-{i}", gender="female", birthdate="1990-01-01")) for i in range(50)]
    fast = ia.Dataset.from_files(
        write_lines(tmp_path / "clean.ndjson", clean), policy=policy, reference_date=REFERENCE_DATE
    )
    dirty = ia.Dataset.from_files(
        write_lines(tmp_path / "dirty.ndjson", [*clean, "{broken"]), policy=policy, reference_date=REFERENCE_DATE
    )
    assert dirty.identities.sort_by("pseudonym").equals(fast.identities.sort_by("pseudonym"))
    assert dirty.load_report.identities.quarantined == 1 and dirty.quarantine.column("line").to_pylist() == [51]


def test_a_record_over_the_readers_object_size_loads_with_its_profile(
    tmp_path: Path, policy: ia.PrivacyPolicy
) -> None:
    # DuckDB's NDJSON reader refuses objects over 16 MB; the file is then read on the exact path
    big = _identity("id-big", gender="female", note="x" * (17 << 20))
    lines = [json.dumps(_identity("id-0", gender="male")), json.dumps(big), json.dumps(_identity("id-2"))]
    ds = ia.Dataset.from_files(write_lines(tmp_path / "big.ndjson", lines), policy=policy)
    assert ds.load_report.identities.loaded == 3 and ds.quarantine.num_rows == 0
    _ids(ds, policy, "id-0", "id-big", "id-2")
    assert len(ds.profiles.get("id-big").model_dump()["traits"]["note"]) == 17 << 20


def test_small_chunks_keep_line_numbers_exact(
    tmp_path: Path, policy: ia.PrivacyPolicy, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(files, "CHUNK_BYTES", 64)
    lines = [json.dumps(_identity(f"id-{i}")) if i % 5 else "not json" for i in range(40)]
    ds = ia.Dataset.from_files(write_lines(tmp_path / "ids.ndjson", lines), policy=policy)
    assert ds.quarantine.column("line").to_pylist() == [i + 1 for i in range(40) if i % 5 == 0]
    assert ds.load_report.identities.loaded == 32


def test_json_array_kratos_list_page(policy: ia.PrivacyPolicy) -> None:
    ds = ia.Dataset.from_files(FIXTURES / "kratos_list_page.json", policy=policy)
    page = json.loads((FIXTURES / "kratos_list_page.json").read_text())
    _ids(ds, policy, *(r["id"] for r in page))
    assert ds.load_report.identities.read == len(page)


def test_json_array_bad_elements_are_quarantined_with_their_position(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "page.json"
    path.write_text(json.dumps([_identity("a"), 42, {"no": "id"}, _identity("b")], indent=2))
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    assert ds.quarantine.select(["line", "reason"]).to_pylist() == [
        {"line": 2, "reason": "record is not a JSON object (got a number)"},
        {"line": 3, "reason": "missing `id`"},
    ]


def test_truncated_json_array_keeps_the_records_before_the_fault(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "page.json"
    text = json.dumps([_identity("a"), _identity("b"), _identity("c")])
    path.write_text(text[: text.index('"c"') + 2])
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    (row,) = ds.quarantine.to_pylist()
    assert row["line"] == 3 and "malformed JSON" in row["reason"] and "rest of the file" in row["reason"]
    assert ds.load_report.identities.read == 3


def test_single_pretty_printed_identity_document(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "identity.json"
    path.write_text(json.dumps(_identity("solo", gender="male"), indent=2))
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "solo")
    assert ds.identities.column("gender").to_pylist() == ["male"]


def test_parquet_identities_and_demographics(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    con = duckdb.connect()
    ids_path, demo_path = tmp_path / "ids.parquet", tmp_path / "demo.parquet"
    for name, target, key, rows in (
        ("identities", ids_path, "id", 300),
        ("demographics", demo_path, "identity_id", 200),
    ):
        good = []
        for line in (FIXTURES / f"{name}.ndjson").read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict) and isinstance(record.get(key), str) and record[key]:
                good.append(line)
        clean = write_lines(tmp_path / f"{name}.ndjson", good[:rows])
        con.execute(f"COPY (SELECT * FROM read_ndjson('{clean}')) TO '{target}'")
    from_parquet = ia.Dataset.from_files(ids_path, demo_path, policy=policy, reference_date=REFERENCE_DATE)
    assert from_parquet.load_report.identities.read == 300
    assert from_parquet.load_report.identities.loaded + from_parquet.load_report.identities.duplicates == 300
    counts = from_parquet.load_report.demographics
    assert counts.read == 200 and counts.balanced
    assert from_parquet.identities.column("income").to_pylist().count("undetermined") < 300


def test_parquet_rows_without_string_id_are_quarantined_with_row_numbers(
    tmp_path: Path, policy: ia.PrivacyPolicy
) -> None:
    path = tmp_path / "bad.parquet"
    duckdb.connect().execute(
        f"COPY (SELECT * FROM (VALUES ('a', 'active'), (NULL, 'active'), ('b', 'inactive')) t(id, state)) TO '{path}'"
    )
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    assert ds.quarantine.select(["line", "reason"]).to_pylist() == [
        {"line": 2, "reason": "`id` is not a string (got null)"}
    ]


def test_parquet_with_non_string_id_column(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "ints.parquet"
    duckdb.connect().execute(f"COPY (SELECT range AS id FROM range(3)) TO '{path}'")
    ds = ia.Dataset.from_files(path, policy=policy)
    assert ds.load_report.identities.quarantined == 3 and len(ds) == 0


def test_combined_records(policy: ia.PrivacyPolicy) -> None:
    ds = ia.Dataset.from_files(FIXTURES / "combined.ndjson", policy=policy, reference_date=REFERENCE_DATE)
    lines = (FIXTURES / "combined.ndjson").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert ds.load_report.identities.loaded == len(records)
    assert ds.load_report.demographics.loaded == sum(1 for r in records if r["demographics"])
    first = records[0]
    row = next(r for r in ds.identities.to_pylist() if r["pseudonym"] == policy.pseudonym(first["identity"]["id"]))
    assert row["income"] == first["demographics"]["income"]
    assert row["parental_status"] == first["demographics"]["parental_status"]


def test_demographics_file_overrides_embedded_demographics(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    combined = write_lines(
        tmp_path / "c.ndjson", [json.dumps({"identity": _identity("a"), "demographics": {"income": "low"}})]
    )
    demo = write_lines(tmp_path / "d.ndjson", [json.dumps({"identity_id": "a", "income": "high"})])
    ds = ia.Dataset.from_files(combined, demo, policy=policy)
    assert ds.identities.column("income").to_pylist() == ["high"]
    assert ds.load_report.demographics == ia.SourceCounts(read=2, loaded=1, quarantined=0, duplicates=1)


def test_several_files_and_glob_patterns(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    for n in range(3):
        write_lines(tmp_path / f"part-{n}.ndjson", [json.dumps(_identity(f"p{n}-{i}")) for i in range(4)])
    ds = ia.Dataset.from_files(str(tmp_path / "part-*.ndjson"), policy=policy)
    assert len(ds) == 12 and len(ds.load_report.sources) == 3
    listed = ia.Dataset.from_files([tmp_path / "part-0.ndjson", tmp_path / "part-1.ndjson"], policy=policy)
    assert len(listed) == 8


def test_blank_lines_and_crlf_are_not_records(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "crlf.ndjson"
    path.write_bytes(b'\xef\xbb\xbf{"id": "a"}\r\n\r\n   \r\n{"id": "b"}\r\n')
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    assert ds.load_report.identities.read == 2


@pytest.mark.parametrize("name", ["missing.ndjson", "dir"])
def test_unreadable_input_raises_load_error_naming_the_path(
    tmp_path: Path, policy: ia.PrivacyPolicy, name: str
) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(ia.LoadError, match=str(tmp_path / name)) as raised:
        ia.Dataset.from_files(tmp_path / name, policy=policy)
    assert raised.value.source == str(tmp_path / name)


def test_corrupt_gzip_raises_load_error(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "broken.ndjson.gz"
    data = gzip.compress((FIXTURES / "identities.ndjson").read_bytes())
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ia.LoadError, match="broken.ndjson.gz"):
        ia.Dataset.from_files(path, policy=policy)


def test_glob_without_match_raises(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ia.LoadError, match="no identities file matches"):
        ia.Dataset.from_files(str(tmp_path / "*.ndjson"), policy=policy)


def test_fast_and_exact_paths_agree_on_blank_lines(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    blank = b"\n \t\x0b\x0c\r\n"
    clean = tmp_path / "clean.ndjson"
    clean.write_bytes(b'{"id": "a"}\n' + blank + b'{"id": "b"}\n')
    dirty = tmp_path / "dirty.ndjson"
    dirty.write_bytes(clean.read_bytes() + b"\x1c\n")
    assert ia.Dataset.from_files(clean, policy=policy).load_report.identities.read == 2
    report = ia.Dataset.from_files(dirty, policy=policy).load_report.identities
    assert (report.read, report.quarantined) == (3, 1)


def _combined(identity_id: str, age: str | None) -> dict[str, object]:
    return {"identity": _identity(identity_id, citizenship="DE"), "demographics": {"age": age} if age else None}


def _balanced(ds: ia.Dataset) -> None:
    for counts in (ds.load_report.identities, ds.load_report.demographics, *ds.load_report.sources):
        assert counts.read == counts.loaded + counts.quarantined + counts.duplicates


def test_parquet_json_text_columns_are_parsed_and_bad_text_is_quarantined(
    tmp_path: Path, policy: ia.PrivacyPolicy
) -> None:
    path = tmp_path / "text.parquet"
    pq.write_table(
        pa.table(
            {
                "id": ["a", "b", "c", "d"],
                "traits": [json.dumps({"citizenship": "DE", "birthdate": "1990-01-01"}), "not json", None, "{}"],
                "metadata_public": [json.dumps({"picture": "p.png"}), None, None, "{broken"],
            }
        ),
        path,
    )
    ds = ia.Dataset.from_files(path, policy=policy, reference_date=REFERENCE_DATE)
    _ids(ds, policy, "a", "c")
    row = next(r for r in ds.identities.to_pylist() if r["pseudonym"] == policy.pseudonym("a"))
    assert (row["citizenship"], row["age"]) == ("DE", "_35_to_44")
    profile = ds.profiles.get("a")
    assert profile.traits.citizenship == "DE" and profile.metadata_public.picture == "p.png"
    assert ds.quarantine.select(["line", "reason"]).to_pylist() == [
        {"line": 2, "reason": "`traits`: text that is not valid JSON"},
        {"line": 4, "reason": "`metadata_public`: text that is not valid JSON"},
    ]
    assert ds.load_report.identities == ia.SourceCounts(read=4, loaded=2, quarantined=2, duplicates=0)


def test_combined_parquet_with_json_text_traits_and_demographics(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "combined.parquet"
    identities = [
        {"id": "a", "traits": json.dumps({"citizenship": "FR"}), "credentials": "secret-a"},
        {"id": "b", "traits": "{", "credentials": "secret-b"},
    ]
    demographics = [json.dumps({"age": "_25_to_34"}), None]
    pq.write_table(pa.table({"identity": identities, "demographics": demographics}), path)
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a")
    assert [(r["citizenship"], r["age"]) for r in ds.identities.to_pylist()] == [("FR", "_25_to_34")]
    (row,) = ds.quarantine.to_pylist()
    assert (row["line"], row["reason"]) == (2, "`identity.traits`: text that is not valid JSON")
    assert "credentials" not in row["excerpt"] and "secret" not in row["excerpt"]


@pytest.mark.parametrize(
    "content",
    [
        b'[{"id": "a"}, {"id": "b\xff"}, {"id": "c"}]',
        b'{\n  "id": "a"\n}\n{\n  "id": "b\xff"\n}\n{\n  "id": "c"\n}\n',
    ],
    ids=["array", "documents"],
)
def test_invalid_utf8_in_a_json_element_quarantines_that_element(
    tmp_path: Path, policy: ia.PrivacyPolicy, content: bytes
) -> None:
    path = tmp_path / "ids.json"
    path.write_bytes(content)
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "c")
    assert ds.quarantine.select(["line", "reason"]).to_pylist() == [{"line": 2, "reason": "not valid UTF-8 text"}]
    _balanced(ds)


@pytest.mark.parametrize("indent", [None, 2], ids=["compact", "pretty"])
def test_bom_before_a_json_array(tmp_path: Path, policy: ia.PrivacyPolicy, indent: int | None) -> None:
    path = tmp_path / "page.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps([_identity("a"), _identity("b"), {"id": 3}], indent=indent).encode())
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    assert ds.quarantine.select(["line", "reason"]).to_pylist() == [
        {"line": 3, "reason": "`id` is not a string (got a number)"}
    ]


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_pretty_printed_array_of_combined_records(tmp_path: Path, policy: ia.PrivacyPolicy, compress: bool) -> None:
    data = json.dumps([_combined("a", "_25_to_34"), _combined("b", None)], indent=2).encode()
    path = tmp_path / ("combined.json.gz" if compress else "combined.json")
    path.write_bytes(gzip.compress(data) if compress else data)
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    assert sorted(r["age"] for r in ds.identities.to_pylist()) == ["_25_to_34", "undetermined"]
    assert ds.quarantine.num_rows == 0 and ds.load_report.demographics.loaded == 1


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_ndjson_in_a_json_file_with_a_bad_first_line(tmp_path: Path, policy: ia.PrivacyPolicy, compress: bool) -> None:
    data = ('{"id": "cut\n' + "".join(json.dumps(_identity(f"u{i}")) + "\n" for i in range(20))).encode()
    path = tmp_path / ("ids.json.gz" if compress else "ids.json")
    path.write_bytes(gzip.compress(data) if compress else data)
    ds = ia.Dataset.from_files(path, policy=policy)
    assert ds.load_report.identities == ia.SourceCounts(read=21, loaded=20, quarantined=1, duplicates=0)
    assert ds.quarantine.column("line").to_pylist() == [1]


@pytest.mark.parametrize("layout", ["array", "documents"])
def test_a_bad_json_element_does_not_swallow_the_rest(tmp_path: Path, policy: ia.PrivacyPolicy, layout: str) -> None:
    first = [json.dumps(_identity(f"u{i}"), indent=1) for i in range(5)]
    rest = [json.dumps(_identity(f"v{i}"), indent=1) for i in range(5)]
    bad = ['{\n "id": "w0",\n "traits": {bad}\n}', '{"id": "w1"\n', '{\n "id": 5,\n}']
    elements = [*first, bad[0], *rest[:2], bad[1], *rest[2:], bad[2], '{"id": "z"}']
    text = "[" + ",\n".join(elements) + "]" if layout == "array" else "\n".join(elements)
    path = tmp_path / "ids.json"
    path.write_text(text)
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, *(f"u{i}" for i in range(5)), *(f"v{i}" for i in range(5)), "z")
    assert ds.quarantine.column("line").to_pylist() == [6, 9, 13]
    assert all(reason.startswith("malformed JSON") for reason in ds.quarantine.column("reason").to_pylist())
    assert ds.load_report.identities == ia.SourceCounts(read=14, loaded=11, quarantined=3, duplicates=0)


@pytest.mark.parametrize("first_line", ['{"identity": {"id": "x"', "[]", "42"])
def test_combined_ndjson_whose_first_line_is_bad(tmp_path: Path, policy: ia.PrivacyPolicy, first_line: str) -> None:
    lines = [first_line, *(json.dumps(_combined(f"u{i}", "_45_to_54")) for i in range(4))]
    ds = ia.Dataset.from_files(write_lines(tmp_path / "combined.ndjson", lines), policy=policy)
    _ids(ds, policy, *(f"u{i}" for i in range(4)))
    assert ds.identities.column("age").to_pylist() == ["_45_to_54"] * 4
    assert ds.quarantine.column("line").to_pylist() == [1]


def test_recursive_glob_matches_at_every_depth(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    for folder, name in (("", "top"), ("a", "mid"), ("a/b", "deep")):
        (tmp_path / folder).mkdir(parents=True, exist_ok=True)
        write_lines(tmp_path / folder / f"{name}.ndjson", [json.dumps(_identity(name))])
    ds = ia.Dataset.from_files(str(tmp_path / "**" / "*.ndjson"), policy=policy)
    _ids(ds, policy, "top", "mid", "deep")
    assert [s.source for s in ds.load_report.sources] == [
        str(tmp_path / "a" / "b" / "deep.ndjson"),
        str(tmp_path / "a" / "mid.ndjson"),
        str(tmp_path / "top.ndjson"),
    ]


def test_gzipped_parquet_is_read(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    plain = tmp_path / "ids.parquet"
    pq.write_table(pa.table({"id": ["a", "b"], "traits": [{"citizenship": "DE"}, {"citizenship": "FR"}]}), plain)
    zipped = tmp_path / "ids.parquet.gz"
    zipped.write_bytes(gzip.compress(plain.read_bytes()))
    ds = ia.Dataset.from_files(zipped, policy=policy)
    _ids(ds, policy, "a", "b")
    assert sorted(ds.identities.column("citizenship").to_pylist()) == ["DE", "FR"]


def test_a_directory_gets_an_error_suggesting_a_glob(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    with pytest.raises(ia.LoadError, match=r"is a directory.*\*\.parquet"):
        ia.Dataset.from_files(tmp_path, policy=policy)


@pytest.mark.parametrize("bom", [b"", b"\xef\xbb\xbf"])
@pytest.mark.parametrize("lead", ["long first record", "many bad lines"])
def test_combined_layout_is_found_past_the_quick_sniff(
    tmp_path: Path, policy: ia.PrivacyPolicy, bom: bytes, lead: str
) -> None:
    """An .ndjson file is sniffed from its first 64 KiB, then from more when no line there is an object."""
    from identity_analytics.loaders.formats import _QUICK_SNIFF

    first = _combined("u0", "_45_to_54")
    if lead == "long first record":  # cut by the quick sniff: its prefix must not pass for a record
        first["identity"]["traits"]["bio"] = "x" * _QUICK_SNIFF  # type: ignore[index]
        head = [json.dumps(first)]
    else:
        head = ["not json"] * (_QUICK_SNIFF // 9 + 10) + [json.dumps(first)]
    lines = [*head, *(json.dumps(_combined(f"u{i}", "_45_to_54")) for i in range(1, 4))]
    path = tmp_path / "combined.ndjson"
    path.write_bytes(bom + ("\n".join(lines) + "\n").encode())
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, *(f"u{i}" for i in range(4)))
    assert ds.identities.column("age").to_pylist() == ["_45_to_54"] * 4
    assert ds.load_report.identities.quarantined == len(head) - 1


@pytest.mark.parametrize("indent", [None, 2])
def test_several_list_pages_saved_in_one_file_are_all_read(
    tmp_path: Path, policy: ia.PrivacyPolicy, indent: int | None
) -> None:
    pages = [[_identity("a"), _identity("b")], [_identity("c")], [_identity("d")]]
    path = tmp_path / "pages.json"
    path.write_text("\n".join(json.dumps(page, indent=indent) for page in pages) + "\n" + json.dumps(_identity("e")))
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b", "c", "d", "e")
    assert ds.load_report.identities == ia.SourceCounts(read=5, loaded=5)


def test_content_after_a_json_array_is_quarantined_not_dropped(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    path = tmp_path / "page.json"
    path.write_text(json.dumps([_identity("a"), _identity("b")]) + "\n{broken\n")
    ds = ia.Dataset.from_files(path, policy=policy)
    _ids(ds, policy, "a", "b")
    assert ds.load_report.identities == ia.SourceCounts(read=3, loaded=2, quarantined=1)
    assert ds.quarantine.column("line").to_pylist() == [3]
    with pytest.raises(ia.LoadError, match=r"page\.json:3: malformed JSON"):
        ia.Dataset.from_files(path, policy=policy, strict=True)


def test_load_report_totals_cover_every_record_read(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    identities = write_lines(tmp_path / "i.ndjson", [json.dumps(_identity("a")), json.dumps(_identity("a")), "{"])
    demographics = write_lines(
        tmp_path / "d.ndjson", [json.dumps({"identity_id": "a", "age": "_25_to_34"}), '{"identity_id": "zz"}']
    )
    report = ia.Dataset.from_files(identities, demographics, policy=policy).load_report
    assert (report.read, report.loaded, report.quarantined, report.duplicates) == (5, 2, 2, 1)
    assert report["read"] == report.read == report.loaded + report.quarantined + report.duplicates
    assert report.identities.loaded == 1 and report.balanced


@pytest.mark.parametrize("layout", ["ndjson", "array"])
def test_a_first_record_nested_thousands_deep_does_not_crash_the_load(
    tmp_path: Path, policy: ia.PrivacyPolicy, layout: str
) -> None:
    deep = {**_identity("deep"), "traits": {}}
    text = json.dumps(deep).replace('"traits": {}', '"traits": ' + "[" * 5000 + "]" * 5000)
    other = json.dumps(_identity("b"))
    path = tmp_path / ("deep.ndjson" if layout == "ndjson" else "deep.json")
    path.write_text(f"{text}\n{other}\n" if layout == "ndjson" else f"[{text}, {other}]")
    ds = ia.Dataset.from_files(path, policy=policy)
    assert ds.load_report.identities.read == 2 and ds.load_report.identities.balanced
