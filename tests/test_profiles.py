"""Profile views: API shapes key for key (seed golden files), visibility, inactive, unknown ids."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import identity_analytics as ia
from tests.conftest import REFERENCE_DATE, write_lines
from tests.seeds import klustr_payloads

GOLDEN = Path(__file__).parent / "golden"
SEED_IDENTITY = klustr_payloads()["/identities/me"]


@pytest.fixture
def seed_dataset(tmp_path: Path, policy: ia.PrivacyPolicy) -> ia.Dataset:
    inactive = dict(SEED_IDENTITY, id="sleeper", state="inactive")
    other_schema = {"id": "multi", "state": "active", "traits": {"emails": ["a@x.org"], "username": "m"}}
    lines = [json.dumps(dict(SEED_IDENTITY, state="active")), json.dumps(inactive), json.dumps(other_schema)]
    return ia.Dataset.from_files(
        write_lines(tmp_path / "ids.ndjson", lines), policy=policy, reference_date=REFERENCE_DATE
    )


def test_profile_equals_the_seed_key_for_key(seed_dataset: ia.Dataset) -> None:
    golden = json.loads((GOLDEN / "profile.json").read_text())
    assert json.loads(seed_dataset.profiles.get("text").model_dump_json()) == golden


def test_public_profile_shows_only_public_fields_with_the_other_keys_null(seed_dataset: ia.Dataset) -> None:
    golden = json.loads((GOLDEN / "public_profile.json").read_text())
    public = seed_dataset.profiles.public("text")
    assert isinstance(public, ia.PublicProfile)
    assert json.loads(public.model_dump_json()) == golden
    # the same views by the names of the specification
    assert seed_dataset.public_profile("text") == public
    assert seed_dataset.profile("text") == seed_dataset.profiles.get("text")
    with pytest.raises(ia.NotFound):
        seed_dataset.profile("nobody")


def test_visibility_policy_decides_what_is_public(tmp_path: Path) -> None:
    policy = ia.PrivacyPolicy(pseudonym_key=b"k", public_fields=frozenset({"locale", "emails"}))
    lines = [
        json.dumps(dict(SEED_IDENTITY, state="active")),
        json.dumps({"id": "multi", "traits": {"emails": ["a@x.org"]}}),
    ]
    ds = ia.Dataset.from_files(write_lines(tmp_path / "ids.ndjson", lines), policy=policy)
    public = ds.profiles.public("text").to_json_dict()
    assert (
        public["traits"]["locale"] == "text"
        and public["traits"]["name"] is None
        and public["metadata_public"] == {"picture": None}
    )
    assert ds.profiles.public("multi").to_json_dict()["traits"]["emails"] == ["a@x.org"]


def test_unknown_traits_of_other_schemas_are_kept_in_the_profile(seed_dataset: ia.Dataset) -> None:
    profile = seed_dataset.profiles.get("multi").to_json_dict()
    assert profile["traits"]["emails"] == ["a@x.org"] and profile["traits"]["email"] is None
    # the public profile has every key the profile has (other schemas' too), null unless public
    assert seed_dataset.profiles.public("multi").to_json_dict()["traits"]["emails"] is None


def test_unknown_id_and_inactive_public_profile_are_not_found(seed_dataset: ia.Dataset) -> None:
    with pytest.raises(ia.NotFound, match="'nobody'"):
        seed_dataset.profiles.get("nobody")
    assert seed_dataset.profiles.get("sleeper").traits.username == "text"
    with pytest.raises(ia.NotFound, match="not active"):
        seed_dataset.profiles.public("sleeper")


def test_profiles_never_hold_credentials_or_admin_metadata(seed_dataset: ia.Dataset) -> None:
    text = seed_dataset.profiles.get("text").model_dump_json()
    assert "person_id" not in text and "password" not in text and "credentials" not in text


def test_batch_form_to_arrow(seed_dataset: ia.Dataset) -> None:
    table = seed_dataset.profiles.table(["sleeper", "nobody", "text"], public=True)
    assert table.column_names == ["id", "found", "traits", "metadata_public"]
    rows = table.to_pylist()
    assert [r["found"] for r in rows] == [False, False, True]
    assert rows[2]["traits"]["username"] == "text" and rows[2]["traits"]["email"] is None
    assert rows[2]["metadata_public"] == {"picture": "text"}
    full = seed_dataset.profiles.table(["text"]).to_pylist()[0]
    assert full["traits"]["email"] == "text" and full["traits"]["name"]["given_name"] == "text"


def test_profiles_survive_a_store_round_trip(
    seed_dataset: ia.Dataset, tmp_path: Path, policy: ia.PrivacyPolicy
) -> None:
    reopened = ia.Dataset.open(seed_dataset.save(tmp_path / "store"), policy=policy)
    assert reopened.profiles.get("text") == seed_dataset.profiles.get("text")
    with pytest.raises(ia.NotFound):
        reopened.profiles.public("sleeper")


def test_datasets_without_a_profile_store_have_no_profiles(
    fixture_dataset: ia.Dataset, policy: ia.PrivacyPolicy
) -> None:
    analytics_only = ia.Dataset.from_arrow(fixture_dataset.identities, policy=policy)
    assert len(analytics_only.profiles) == 0
    with pytest.raises(ia.NotFound):
        analytics_only.profiles.get("fixture-00001")


def _keys(value: object) -> object:
    """The key structure of a JSON value (dict keys recursively, leaves dropped)."""
    return {k: _keys(v) for k, v in value.items()} if isinstance(value, dict) else None


def test_golden_files_are_the_seed_payloads() -> None:
    payloads = klustr_payloads()
    assert json.loads((GOLDEN / "profile.json").read_text()) == payloads["/identities/me/profile"]
    public = json.loads((GOLDEN / "public_profile.json").read_text())
    assert _keys(public) == _keys(payloads["/identities/public/{userId}/profile"])


def test_public_profile_of_an_unknown_id_is_not_found(seed_dataset: ia.Dataset) -> None:
    with pytest.raises(ia.NotFound, match="'nobody'"):
        seed_dataset.profiles.public("nobody")
