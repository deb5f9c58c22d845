"""Planted secrets never reach any output: tables, quarantine, report, store files, logs, reprs, errors."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import identity_analytics as ia
from tests.conftest import FIXTURES, REFERENCE_DATE, SECRET_MARKER

PLANTED_KEY = b"PLANTED-KEY-0123456789"


def _all_text(table: pa.Table) -> str:
    return json.dumps(table.to_pylist(), default=str)


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> tuple[ia.Dataset, Path, str]:
    logger = logging.getLogger("identity_analytics")
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(self.format(record))

    handler = Collect(level=logging.DEBUG)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        ds = ia.Dataset.from_files(
            [FIXTURES / "identities.ndjson", FIXTURES / "combined.ndjson"],
            FIXTURES / "demographics.ndjson",
            policy=ia.PrivacyPolicy(pseudonym_key=PLANTED_KEY),
            reference_date=REFERENCE_DATE,
        )
        store = ds.save(tmp_path_factory.mktemp("store") / "store")
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    return ds, store, "\n".join(records)


def _outputs(ds: ia.Dataset, store: Path, logs: str) -> dict[str, str]:
    outputs = {
        "identities": _all_text(ds.identities),
        "quarantine": _all_text(ds.quarantine),
        "load_report": ds.load_report.model_dump_json() + str(ds.load_report),
        "repr": repr(ds) + repr(ds.policy) + str(ds.policy.model_dump()),
        "profiles": _all_text(ds.connection.sql("SELECT * FROM profiles").to_arrow_table()),
        "logs": logs,
    }
    for path in sorted(store.rglob("*")):
        if path.suffix == ".parquet":
            outputs[f"store:{path.name}"] = _all_text(pq.read_table(path))
        outputs[f"store-bytes:{path.name}"] = path.read_bytes().decode("utf-8", "replace")
    return outputs


def test_logs_were_captured(loaded: tuple[ia.Dataset, Path, str]) -> None:
    assert "loaded identities" in loaded[2]


def test_no_planted_credential_or_admin_secret_in_any_output(loaded: tuple[ia.Dataset, Path, str]) -> None:
    assert SECRET_MARKER in (FIXTURES / "identities.ndjson").read_text()
    for name, text in _outputs(*loaded).items():
        assert SECRET_MARKER not in text, name
        assert "hashed_password" not in text and "initial_access_token" not in text, name


def test_pseudonym_key_never_leaves_the_policy(loaded: tuple[ia.Dataset, Path, str]) -> None:
    for name, text in _outputs(*loaded).items():
        assert PLANTED_KEY.decode() not in text, name


def test_no_direct_identifier_in_the_analytics_table_or_its_store_file(loaded: tuple[ia.Dataset, Path, str]) -> None:
    ds, store, _ = loaded
    profiles = ds.connection.sql("SELECT id, traits, metadata_public FROM profiles").fetchall()
    identifiers = set()
    for identity_id, traits, metadata in profiles:
        identifiers.add(identity_id)
        traits = json.loads(traits) if traits else {}
        for key in ("email", "username"):
            if isinstance(traits.get(key), str):
                identifiers.add(traits[key])
        if isinstance(traits.get("name"), dict):
            identifiers.update(v for v in traits["name"].values() if v)
        if metadata:
            identifiers.update(v for v in json.loads(metadata).values() if isinstance(v, str))
    identifiers.discard("")
    assert len(identifiers) > 4000
    for table in (ds.identities, pq.read_table(store / "identities.parquet")):
        assert table.num_rows == 2000
        for row in table.to_pylist():
            assert not set(row.values()) & identifiers


def test_profile_store_holds_no_credentials_or_admin_metadata(loaded: tuple[ia.Dataset, Path, str]) -> None:
    ds = loaded[0]
    assert ds.connection.sql("SELECT * FROM profiles").columns == ["id", "state", "traits", "metadata_public"]
    assert "credentials" not in _all_text(ds.connection.sql("SELECT * FROM profiles").to_arrow_table())


def test_errors_name_the_file_but_hold_no_record_content(tmp_path: Path) -> None:
    path = tmp_path / "ids.ndjson"
    path.write_text('{"id": {"credentials": "' + SECRET_MARKER + '"}}\n')
    with pytest.raises(ia.LoadError) as raised:
        ia.Dataset.from_files(path, policy=ia.PrivacyPolicy(pseudonym_key=PLANTED_KEY), strict=True)
    assert str(path) in str(raised.value)
    assert SECRET_MARKER not in str(raised.value) and PLANTED_KEY.decode() not in str(raised.value)
