"""Pydantic models of the API payloads the library reads and serves.

They follow the Klustr identity APIs and the Kratos admin API (see SPEC §1). Parsing is
lenient about what the platforms add (unknown keys are kept where they may matter for
profile views) and strict about privacy: ``credentials`` and ``metadata_admin`` are
accepted on input and dropped at once, so no model instance ever holds them.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, JsonValue, model_validator

#: Keys of an identity payload that are dropped on parse and never kept anywhere.
DROPPED_IDENTITY_KEYS: frozenset[str] = frozenset({"credentials", "metadata_admin"})

#: The trait keys of the Klustr identity schema; every profile carries them (null when absent).
PROFILE_TRAIT_KEYS: tuple[str, ...] = (
    "name",
    "birthdate",
    "email",
    "username",
    "gender",
    "citizenship",
    "locale",
)
#: The metadata_public keys every profile carries.
PROFILE_METADATA_KEYS: tuple[str, ...] = ("picture",)


class _Open(BaseModel):
    """A payload object whose unknown keys are kept."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class Name(_Open):
    given_name: str | None = None
    family_name: str | None = None
    middle_name: str | None = None


class Traits(_Open):
    """Identity traits: the Klustr schema's keys always present (null when absent), other keys kept.

    Values are kept as the platform sends them (traits are schema-defined JSON).
    """

    name: Annotated[Name | JsonValue, Field(union_mode="left_to_right")] = None
    birthdate: JsonValue = None
    email: JsonValue = None
    username: JsonValue = None
    gender: JsonValue = None
    citizenship: JsonValue = None
    locale: JsonValue = None


class VerifiableAddress(_Open):
    id: str | None = None
    value: str | None = None
    verified: bool | str | None = None
    via: str | None = None
    status: str | None = None
    verified_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


class RecoveryAddress(_Open):
    id: str | None = None
    value: str | None = None
    via: str | None = None
    created_at: str | None = None
    updated_at: str | None = None


def _drop_secrets(data: Any) -> Any:
    if isinstance(data, dict):
        return {k: v for k, v in data.items() if k not in DROPPED_IDENTITY_KEYS}
    return data


class Identity(BaseModel):
    """An identity as Klustr ``GET /identities/me`` and Kratos ``GET /admin/identities/{id}`` return it.

    ``credentials`` and ``metadata_admin`` are dropped on parse. ``id`` is optional here only
    because stored snapshots strip it; the loaders quarantine records without a string ``id``.
    """

    model_config = ConfigDict(extra="ignore")

    id: str | None = None
    schema_id: str | None = None
    schema_url: str | None = None
    source: str | None = None
    organization_id: str | None = None
    external_id: str | None = None
    state: str | None = None
    state_changed_at: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    traits: Traits = Field(default_factory=Traits)
    verifiable_addresses: list[VerifiableAddress] = Field(default_factory=list)
    recovery_addresses: list[RecoveryAddress] = Field(default_factory=list)
    metadata_public: JsonValue = None

    @model_validator(mode="before")
    @classmethod
    def _drop(cls, data: Any) -> Any:
        data = _drop_secrets(data)
        if isinstance(data, dict):
            for key in ("traits", "verifiable_addresses", "recovery_addresses"):
                if data.get(key) is None:
                    data.pop(key, None)
            if not isinstance(data.get("traits", {}), dict):
                data.pop("traits")  # traits are schema-defined JSON; only an object has trait keys
        return data


class Demographics(_Open):
    """Demographics as Klustr ``GET /identities/me/demographics`` returns them.

    Files add ``identity_id`` to join them to identities.
    """

    identity_id: str | None = None
    age: str | None = None
    income: str | None = None
    gender: str | None = None
    household: bool | None = None
    relationship_status: str | None = None
    parental_status: str | None = None


class ProfileMetadata(_Open):
    picture: JsonValue = None


class Profile(BaseModel):
    """``GET /identities/me/profile``: traits and metadata_public, key for key as the API shapes it.

    Every Klustr trait key is present (null when the identity lacks it); traits of other
    schemas are kept after them.
    """

    model_config = ConfigDict(extra="ignore")  # a gateway may add keys; the shape stays the API's

    traits: Traits = Field(default_factory=Traits)
    metadata_public: ProfileMetadata = Field(default_factory=ProfileMetadata)

    @model_validator(mode="before")
    @classmethod
    def _nulls_to_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            data = dict(data)
            for key in ("traits", "metadata_public"):
                if not isinstance(data.get(key), dict):
                    data[key] = {}
        return data

    def to_json_dict(self) -> dict[str, Any]:
        """The JSON object the API returns, null keys included."""
        return self.model_dump(mode="json")


class PublicProfile(Profile):
    """``GET /identities/public/{userId}/profile``: the profile with non-public fields set to null."""
