from __future__ import annotations

import json

import pytest

import identity_analytics as ia
from tests.seeds import klustr_payloads, kratos_get_identity, kratos_snapshots

PAYLOADS = klustr_payloads()


def test_seed_document_has_every_klustr_endpoint() -> None:
    assert set(PAYLOADS) == {
        "/identities/me",
        "/identities/me/demographics",
        "/identities/me/profile",
        "/identities/public/{userId}/profile",
    }


def test_identity_parses_klustr_seed_verbatim_and_drops_secrets() -> None:
    identity = ia.Identity.model_validate(PAYLOADS["/identities/me"])
    assert identity.id == "text"
    assert identity.traits.name is not None and identity.traits.name.given_name == "text"  # type: ignore[union-attr]
    assert identity.traits.birthdate == "2026-02-13"
    assert identity.verifiable_addresses[0].verified is True
    assert identity.metadata_public == {"picture": "text"}
    dumped = identity.model_dump_json()
    assert "credentials" not in dumped and "metadata_admin" not in dumped and "person_id" not in dumped


def test_identity_parses_kratos_seed_with_placeholder_values() -> None:
    identity = ia.Identity.model_validate(kratos_get_identity())
    assert identity.id == "<uuid>"
    assert identity.state == "inactive"
    assert identity.verifiable_addresses[0].verified == "<boolean>"
    assert "credentials" not in identity.model_dump()


@pytest.mark.parametrize("name", sorted(kratos_snapshots()))
def test_identity_parses_every_kratos_snapshot(name: str) -> None:
    raw = kratos_snapshots()[name]
    identity = ia.Identity.model_validate(raw)
    assert identity.state == "active"
    dumped = json.dumps(identity.model_dump(mode="json"))
    for secret in ("secret", "user_handle", "initial_access_token", "admin-0"):
        assert secret not in dumped


def test_identity_keeps_traits_of_other_schemas() -> None:
    raw = kratos_snapshots()["PATCH_identities-success-assert_identity_0"]
    identity = ia.Identity.model_validate(raw)
    assert identity.traits.model_extra == {"emails": raw["traits"]["emails"]}
    assert identity.traits.email is None
    assert identity.traits.username == "Batch-Import-0-0@ory.sh"


def test_demographics_parses_seed() -> None:
    demographics = ia.Demographics.model_validate(PAYLOADS["/identities/me/demographics"])
    assert demographics.age == "_0_to_14" and demographics.household is True


@pytest.mark.parametrize(
    ("path", "model"),
    [("/identities/me/profile", ia.Profile), ("/identities/public/{userId}/profile", ia.PublicProfile)],
)
def test_profiles_dump_exactly_the_seed_shape(path: str, model: type[ia.Profile]) -> None:
    seed = PAYLOADS[path]
    profile = model.model_validate(seed)
    assert json.loads(profile.model_dump_json()) == seed


def test_profile_of_identity_without_traits_has_every_key_null() -> None:
    profile = ia.Profile.model_validate({"traits": None, "metadata_public": None})
    dumped = profile.to_json_dict()
    assert list(dumped) == ["traits", "metadata_public"]
    assert set(dumped["traits"]) == {"name", "birthdate", "email", "username", "gender", "citizenship", "locale"}
    assert all(v is None for v in dumped["traits"].values())
    assert dumped["metadata_public"] == {"picture": None}
