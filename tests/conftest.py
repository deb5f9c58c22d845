"""Shared fixtures: paths of the committed fixtures, a policy with a fixed key, helpers."""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest

import identity_analytics as ia

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "data" / "fixtures"
REFERENCE = Path(__file__).resolve().parent / "reference"

#: Marker contained in every secret planted in the fixtures (credentials, metadata_admin).
SECRET_MARKER = "PLANTED-SECRET"
TEST_KEY = b"test-pseudonym-key"
REFERENCE_DATE = datetime.date(2026, 11, 1)


@pytest.fixture
def policy() -> ia.PrivacyPolicy:
    return ia.PrivacyPolicy(pseudonym_key=TEST_KEY)


@pytest.fixture
def fixture_dataset() -> ia.Dataset:
    """The committed fixtures (identities + demographics), loaded for each test: a Dataset
    remembers what it released (its release ledger), so tests must not share one."""
    return load_fixtures()


def load_fixtures() -> ia.Dataset:
    """A Dataset of the committed fixtures (identities + demographics)."""
    return ia.Dataset.from_files(
        FIXTURES / "identities.ndjson",
        FIXTURES / "demographics.ndjson",
        policy=ia.PrivacyPolicy(pseudonym_key=TEST_KEY),
        reference_date=REFERENCE_DATE,
    )


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n", "utf-8")
    return path
