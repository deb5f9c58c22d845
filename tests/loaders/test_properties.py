"""Property tests: arbitrary input never crashes a load, and every record read is accounted for."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import identity_analytics as ia

KEY = b"property-key"

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=8,
)
ids = st.sampled_from(["a", "b", "c", "d", ""]) | json_values
identity_like = st.fixed_dictionaries(
    {"id": ids},
    optional={
        "state": st.sampled_from(["active", "inactive", "gone"]) | json_values,
        "updated_at": st.sampled_from(["2026-01-01T00:00:00Z", "2025-06-01T12:00:00Z", "yesterday"]) | json_values,
        "traits": st.fixed_dictionaries(
            {},
            optional={
                "birthdate": st.sampled_from(["1990-01-01", "2020-02-30", "x"]) | json_values,
                "gender": json_values,
                "locale": json_values,
            },
        )
        | json_values,
        "metadata_public": json_values,
        "credentials": json_values,
    },
)
demographics_like = st.fixed_dictionaries(
    {"identity_id": ids},
    optional={
        f: st.sampled_from(["low", "parent", "_25_to_34", "true"]) | json_values
        for f in ("age", "income", "household", "parental_status")
    },
)
garbage = st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s)


def _lines(records: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(st.one_of(records.map(json.dumps), json_values.map(json.dumps), garbage), max_size=12)


def _counts_add_up(ds: ia.Dataset) -> None:
    report = ds.load_report
    for counts in (report.identities, report.demographics, *report.sources):
        assert counts.read == counts.loaded + counts.quarantined + counts.duplicates
    assert ds.quarantine.num_rows == report.identities.quarantined + report.demographics.quarantined
    assert ds.identities.num_rows == report.identities.loaded


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(identity_lines=_lines(identity_like), demographics_lines=_lines(demographics_like))
def test_arbitrary_json_lines_never_crash_and_counts_add_up(
    identity_lines: list[str], demographics_lines: list[str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        ids = Path(tmp) / "ids.ndjson"
        demo = Path(tmp) / "demo.ndjson"
        ids.write_text("\n".join(identity_lines) + "\n", "utf-8")
        demo.write_text("\n".join(demographics_lines) + "\n", "utf-8")
        ds = ia.Dataset.from_files(ids, demo, policy=ia.PrivacyPolicy(pseudonym_key=KEY))
        _counts_add_up(ds)
        records = [line for line in identity_lines if line.strip(" \t\r\n\v\f")]  # blank lines are no records
        assert ds.load_report.identities.read == len(records)
        good_ids = set()
        for line in records:
            try:
                value = json.loads(line)
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("id"), str) and value["id"]:
                good_ids.add(value["id"])
        assert ds.load_report.identities.loaded == len(good_ids)


@settings(max_examples=40, deadline=None)
@given(data=st.binary(max_size=300))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ids.ndjson"
        path.write_bytes(data)
        try:
            ds = ia.Dataset.from_files(path, policy=ia.PrivacyPolicy(pseudonym_key=KEY))
        except ia.LoadError:
            return  # e.g. bytes that look like gzip or Parquet but are not: a clear error, not a crash
        _counts_add_up(ds)


@settings(max_examples=30, deadline=None)
@given(
    elements=st.lists(st.one_of(identity_like, json_values), max_size=8), cut=st.integers(min_value=0, max_value=400)
)
def test_json_arrays_whole_or_truncated_never_crash(elements: list[object], cut: int) -> None:
    text = json.dumps(elements)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "page.json"
        path.write_text(text[: max(1, len(text) - cut)], "utf-8")
        _counts_add_up(ia.Dataset.from_files(path, policy=ia.PrivacyPolicy(pseudonym_key=KEY)))
