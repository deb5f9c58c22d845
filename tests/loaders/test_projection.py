"""The privacy projection: vocabulary mapping, age bands, precedence, duplicates, pseudonyms."""

from __future__ import annotations

import datetime
import json
from pathlib import Path
from typing import Any

import pytest

import identity_analytics as ia
from identity_analytics.schema import ANALYTICS_COLUMNS
from tests.conftest import FIXTURES, write_lines

REF = datetime.date(2026, 11, 1)


def load_one(
    tmp_path: Path, policy: ia.PrivacyPolicy, identity: dict[str, Any], demographics: dict[str, Any] | None = None
) -> dict[str, Any]:
    identity = {"id": "x", **identity}
    ids = write_lines(tmp_path / "ids.ndjson", [json.dumps(identity)])
    demo = (
        write_lines(tmp_path / "demo.ndjson", [json.dumps({"identity_id": "x", **demographics})])
        if demographics
        else None
    )
    ds = ia.Dataset.from_files(ids, demo, policy=policy, reference_date=REF)
    (row,) = ds.identities.to_pylist()
    return row


def test_analytics_table_has_exactly_pseudonym_and_dimensions(fixture_dataset: ia.Dataset) -> None:
    assert tuple(fixture_dataset.identities.column_names) == ANALYTICS_COLUMNS


def test_pseudonym_replaces_the_id(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    row = load_one(tmp_path, policy, {"id": "user-ü-1"})
    assert row["pseudonym"] == policy.pseudonym("user-ü-1")


@pytest.mark.parametrize(
    ("birthdate", "band"),
    [
        ("2011-11-02", "_0_to_14"),  # 14 the day before the 15th birthday
        ("2011-11-01", "_15_to_24"),  # 15 on the reference date
        ("2002-11-02", "_15_to_24"),
        ("2001-11-01", "_25_to_34"),
        ("1961-11-01", "_65_plus"),
        ("2030-01-01", "other"),  # born after the reference date
        ("2027-03-01", "other"),  # ... also less than a year after it
        ("1850-01-01", "other"),
        ("not a date", "other"),
        (None, "undetermined"),
    ],
)
def test_age_band_from_birthdate_in_completed_years(
    tmp_path: Path, policy: ia.PrivacyPolicy, birthdate: str | None, band: str
) -> None:
    traits = {} if birthdate is None else {"birthdate": birthdate}
    assert load_one(tmp_path, policy, {"traits": traits})["age"] == band


@pytest.mark.parametrize(
    ("reference_date", "band", "minor"),
    [
        (datetime.date(2027, 2, 28), "_0_to_14", True),  # 29 February: a year completes on 1 March
        (datetime.date(2027, 3, 1), "_15_to_24", True),
        (datetime.date(2028, 2, 28), "_15_to_24", True),  # 15, not yet 16
        (datetime.date(2028, 2, 29), "_15_to_24", False),
    ],
)
def test_leap_day_birthdays_complete_on_their_month_and_day(
    tmp_path: Path, policy: ia.PrivacyPolicy, reference_date: datetime.date, band: str, minor: bool
) -> None:
    ids = write_lines(tmp_path / "ids.ndjson", [json.dumps({"id": "x", "traits": {"birthdate": "2012-02-29"}})])
    ds = ia.Dataset.from_files(ids, policy=policy, reference_date=reference_date)
    assert ds.identities.column("age").to_pylist() == [band]
    (minors,) = ds.connection.execute("SELECT count(*) FROM minors").fetchall()[0]
    assert minors == int(minor)


def test_demographics_age_wins_over_birthdate(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    row = load_one(tmp_path, policy, {"traits": {"birthdate": "1990-01-01"}}, {"age": "_65_plus"})
    assert row["age"] == "_65_plus"


def test_numeric_demographics_age_is_banded(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    assert load_one(tmp_path, policy, {}, {"age": 37})["age"] == "_35_to_44"
    assert load_one(tmp_path, policy, {}, {"age": "200"})["age"] == "other"


def test_gender_from_demographics_else_traits(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    assert load_one(tmp_path, policy, {"traits": {"gender": "male"}}, {"gender": "female"})["gender"] == "female"
    assert load_one(tmp_path, policy, {"traits": {"gender": "male"}}, {"income": "low"})["gender"] == "male"
    assert load_one(tmp_path, policy, {"traits": {"gender": "other"}})["gender"] == "other"


def test_missing_values_are_undetermined(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    row = load_one(tmp_path, policy, {})
    assert {k: v for k, v in row.items() if k != "pseudonym"} == {k: "undetermined" for k in ANALYTICS_COLUMNS[1:]}


def test_empty_text_is_missing_not_other(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    traits = {"gender": "female", "birthdate": "1960-01-01", "citizenship": " ", "locale": ""}
    row = load_one(tmp_path, policy, {"state": "", "traits": traits}, {"gender": "", "age": " ", "income": ""})
    assert (row["gender"], row["age"]) == ("female", "_65_plus")  # the demographics give nothing: traits
    assert row["state"] == row["citizenship"] == row["locale"] == row["income"] == "undetermined"
    row = load_one(tmp_path, policy, {"traits": {"birthdate": ""}})
    assert row["age"] == "undetermined"


def test_demographics_values_map_onto_the_vocabulary(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    demographics = {
        "income": "upper_middle",
        "household": False,
        "relationship_status": "widowed",
        "parental_status": "parent",
    }
    row = load_one(tmp_path, policy, {"state": "active"}, demographics)
    assert (row["income"], row["household"], row["relationship_status"], row["parental_status"], row["state"]) == (
        "upper_middle",
        "false",
        "widowed",
        "parent",
        "active",
    )


def test_codes_are_normalised_by_their_standards(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    row = load_one(tmp_path, policy, {"traits": {"citizenship": " de", "locale": "PT_br"}})
    assert (row["citizenship"], row["locale"]) == ("DE", "pt-BR")


def test_out_of_vocabulary_values_become_other_and_are_counted(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    lines = [
        json.dumps(
            {
                "id": f"i{n}",
                "state": "suspended",
                "traits": {"gender": "Male", "citizenship": "ZZ", "locale": "en-US-x-y"},
            }
        )
        for n in range(3)
    ]
    ids = write_lines(tmp_path / "ids.ndjson", lines)
    demo = write_lines(
        tmp_path / "demo.ndjson", [json.dumps({"identity_id": "i0", "income": "rich", "household": "yes"})]
    )
    ds = ia.Dataset.from_files(ids, demo, policy=policy)
    rows = ds.identities.to_pylist()
    assert {r["gender"] for r in rows} == {"other"} and {r["state"] for r in rows} == {"other"}
    assert ds.load_report.other_values == {
        "citizenship": {"ZZ": 3},
        "gender": {"Male": 3},
        "household": {"yes": 1},
        "income": {"rich": 1},
        "locale": {"en-US-x-y": 3},
        "state": {"suspended": 3},
    }


def test_invalid_birthdates_are_reported_without_their_value(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    ids = write_lines(tmp_path / "ids.ndjson", [json.dumps({"id": "a", "traits": {"birthdate": "31/12/1990"}})])
    ds = ia.Dataset.from_files(ids, policy=policy)
    assert ds.load_report.other_values == {"age": {"birthdate: not a date (YYYY-MM-DD)": 1}}


def test_latest_updated_at_wins_and_others_are_duplicates(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    lines = [
        json.dumps({"id": "a", "updated_at": "2026-03-01T00:00:00Z", "traits": {"gender": "female"}}),
        json.dumps({"id": "a", "updated_at": "2026-05-01T10:00:00.123Z", "traits": {"gender": "male"}}),
        json.dumps({"id": "a", "updated_at": "2025-12-31T23:59:59Z", "traits": {"gender": "non_binary"}}),
        json.dumps({"id": "a", "traits": {"gender": "other"}}),
    ]
    ds = ia.Dataset.from_files(write_lines(tmp_path / "ids.ndjson", lines), policy=policy)
    assert ds.identities.column("gender").to_pylist() == ["male"]
    assert ds.load_report.identities == ia.SourceCounts(read=4, loaded=1, quarantined=0, duplicates=3)


def test_ties_on_updated_at_keep_the_record_read_last(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    lines = [
        json.dumps({"id": "a", "updated_at": "2026-01-01T00:00:00Z", "traits": {"gender": g}})
        for g in ("female", "male")
    ]
    first = write_lines(tmp_path / "one.ndjson", lines[:1])
    second = write_lines(tmp_path / "two.ndjson", lines[1:])
    assert ia.Dataset.from_files(write_lines(tmp_path / "both.ndjson", lines), policy=policy).identities.column(
        "gender"
    ).to_pylist() == ["male"]
    assert ia.Dataset.from_files([first, second], policy=policy).identities.column("gender").to_pylist() == ["male"]


def test_inactive_identities_stay_in_the_table_marked_inactive(fixture_dataset: ia.Dataset) -> None:
    latest: dict[str, dict[str, Any]] = {}
    for line in (FIXTURES / "identities.ndjson").read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not (isinstance(record, dict) and isinstance(record.get("id"), str) and record["id"]):
            continue
        if record["id"] not in latest or record.get("updated_at", "") >= latest[record["id"]].get("updated_at", ""):
            latest[record["id"]] = record
    expected = sum(1 for r in latest.values() if r.get("state") == "inactive")
    states = fixture_dataset.identities.column("state").to_pylist()
    assert expected > 40 and states.count("inactive") == expected and states.count("other") == 1


def test_profile_store_keeps_traits_of_other_schemas(fixture_dataset: ia.Dataset) -> None:
    ((traits,),) = fixture_dataset.connection.execute(
        "SELECT traits FROM profiles WHERE id = 'fixture-00003'"
    ).fetchall()
    assert json.loads(traits) == {"emails": ["multi-0@example.org", "multi-1@example.org"], "username": "multi"}


@pytest.mark.parametrize(
    ("raw", "locale"),
    [
        ("zh-Hant-TW", "zh-TW"),
        ("zh_Hans_cn", "zh-CN"),
        ("sr-Cyrl-RS", "sr-RS"),
        ("es-419", "es-419"),
        ("yue-HK", "yue-HK"),
    ],
)
def test_language_region_locales_with_scripts_or_numeric_regions(
    tmp_path: Path, policy: ia.PrivacyPolicy, raw: str, locale: str
) -> None:
    assert load_one(tmp_path, policy, {"traits": {"locale": raw}})["locale"] == locale


@pytest.mark.parametrize(("age", "band"), [(30.0, "_25_to_34"), ("30.0", "_25_to_34"), (" 64 ", "_55_to_64")])
def test_whole_years_written_as_floats_are_ages(
    tmp_path: Path, policy: ia.PrivacyPolicy, age: object, band: str
) -> None:
    assert load_one(tmp_path, policy, {}, {"age": age})["age"] == band


def test_fractional_years_are_other(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    assert load_one(tmp_path, policy, {}, {"age": 30.5})["age"] == "other"
