from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest

import identity_analytics as ia
from tests.conftest import FIXTURES, REFERENCE_DATE, TEST_KEY


def test_save_and_open_round_trip(fixture_dataset: ia.Dataset, tmp_path: Path) -> None:
    store = fixture_dataset.save(tmp_path / "store")
    assert sorted(p.name for p in store.iterdir()) == [
        "identities.parquet",
        "manifest.json",
        "minors.parquet",
        "profiles.parquet",
        "quarantine.parquet",
    ]
    reopened = ia.Dataset.open(store, policy=ia.PrivacyPolicy(pseudonym_key=TEST_KEY))
    assert reopened.identities.sort_by("pseudonym").equals(fixture_dataset.identities.sort_by("pseudonym"))
    assert reopened.quarantine.equals(fixture_dataset.quarantine)
    assert reopened.load_report == fixture_dataset.load_report
    assert reopened.reference_date == REFERENCE_DATE
    assert reopened.connection.sql("SELECT count(*) FROM profiles").fetchall() == [(2000,)]


def test_manifest_records_parameters_but_not_the_key(fixture_dataset: ia.Dataset, tmp_path: Path) -> None:
    store = fixture_dataset.save(tmp_path / "store")
    manifest = json.loads((store / "manifest.json").read_text())
    assert manifest["format"] == "identity-analytics-store" and manifest["library_version"] == ia.__version__
    assert manifest["reference_date"] == "2026-11-01"
    assert manifest["policy"]["k"] == 10 and len(manifest["policy"]["pseudonym_key_id"]) == 16
    assert manifest["tables"]["identities"]["rows"] == 2000
    assert manifest["load_report"]["identities"]["loaded"] == 2000
    assert TEST_KEY.decode() not in (store / "manifest.json").read_text()


def test_save_refuses_to_overwrite_unless_asked(fixture_dataset: ia.Dataset, tmp_path: Path) -> None:
    store = fixture_dataset.save(tmp_path / "store")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        fixture_dataset.save(store)
    fixture_dataset.save(store, overwrite=True)
    assert [p.name for p in tmp_path.iterdir()] == ["store"]


def test_save_never_replaces_a_directory_that_is_not_a_store(fixture_dataset: ia.Dataset, tmp_path: Path) -> None:
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "thesis.txt").write_text("...")
    with pytest.raises(FileExistsError, match="not a store"):
        fixture_dataset.save(tmp_path / "precious", overwrite=True)
    assert (tmp_path / "precious" / "thesis.txt").exists()


def test_failed_save_leaves_nothing_behind(
    fixture_dataset: ia.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import identity_analytics.store as store_module

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(store_module.pq, "write_table", boom)
    with pytest.raises(OSError, match="disk full"):
        fixture_dataset.save(tmp_path / "store")
    assert list(tmp_path.iterdir()) == []


def test_opening_with_another_key_warns(fixture_dataset: ia.Dataset, tmp_path: Path) -> None:
    store = fixture_dataset.save(tmp_path / "store")
    with pytest.warns(ia.PseudonymKeyWarning, match="another pseudonym key"):
        ia.Dataset.open(store, policy=ia.PrivacyPolicy(pseudonym_key=b"other"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ia.Dataset.open(store, policy=ia.PrivacyPolicy(pseudonym_key=TEST_KEY))


def test_opening_something_else_raises_load_error(tmp_path: Path) -> None:
    with pytest.raises(ia.LoadError, match="manifest.json is missing"):
        ia.Dataset.open(tmp_path)


def test_from_files_can_write_straight_to_a_store(tmp_path: Path, policy: ia.PrivacyPolicy) -> None:
    ds = ia.Dataset.from_files(
        FIXTURES / "kratos_list_page.json",
        policy=policy,
        store=tmp_path / "s",
        memory_limit="256MB",
        temp_directory=tmp_path / "spill",
    )
    assert ia.Dataset.open(tmp_path / "s", policy=policy).identities.num_rows == len(ds) == 30
