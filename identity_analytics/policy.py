"""The privacy policy: k, the pseudonym key, inactive identities and profile visibility."""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import secrets
import sys
import warnings
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretBytes, field_validator, model_validator

PSEUDONYM_KEY_ENV = "IDENTITY_ANALYTICS_PSEUDONYM_KEY"

#: Profile fields shown by public profiles unless the policy says otherwise.
DEFAULT_PUBLIC_FIELDS: frozenset[str] = frozenset({"name", "username", "picture"})

logger = logging.getLogger(__name__)


class PseudonymKeyWarning(UserWarning):
    """No pseudonym key was configured, so pseudonyms will not join across runs."""


_PROCESS_KEY: bytes | None = None


def _process_key() -> bytes:
    """A random key shared by every policy of this process that was given no key."""
    global _PROCESS_KEY
    if _PROCESS_KEY is None:
        _PROCESS_KEY = secrets.token_bytes(32)
    return _PROCESS_KEY


def _outside_stacklevel() -> int:
    """``stacklevel`` for a warning raised in the caller: the first frame outside this package
    and pydantic, whether the policy is built directly or inside ``Dataset.from_*``."""
    frame = sys._getframe(1)
    level = 1
    while frame.f_back is not None:
        module = str(frame.f_globals.get("__name__", ""))
        if module.split(".")[0] not in ("identity_analytics", "pydantic", "pydantic_core"):
            break
        frame = frame.f_back
        level += 1
    return level


class PrivacyPolicy(BaseModel):
    """Privacy settings of a Dataset; every default is the safe one.

    The pseudonym key comes from ``pseudonym_key``, else from the environment variable
    ``IDENTITY_ANALYTICS_PSEUDONYM_KEY`` (its UTF-8 bytes), else a random key of this process
    is used with a :class:`PseudonymKeyWarning`. The key never appears in a repr or dump.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    k: int = Field(10, ge=2, description="smallest publishable count")
    pseudonym_key: SecretBytes = Field(
        default=None,  # resolved from the environment or a process key by the validator below
        description="HMAC-SHA256 key of the pseudonyms",
        validate_default=True,
    )
    include_inactive: bool = Field(False, description="count inactive identities in analytics")
    public_fields: frozenset[str] = Field(
        DEFAULT_PUBLIC_FIELDS,
        description="profile fields public profiles show (trait keys, 'name' parts as 'name', metadata_public keys)",
    )

    @field_validator("pseudonym_key", mode="before")
    @classmethod
    def _resolve_key(cls, value: Any) -> Any:
        if value is None:
            from_env = os.environ.get(PSEUDONYM_KEY_ENV)
            if from_env:
                return from_env.encode("utf-8")
            warnings.warn(
                f"no pseudonym key given and {PSEUDONYM_KEY_ENV} is not set: using a random key "
                "for this process, so pseudonyms will not join across runs",
                PseudonymKeyWarning,
                stacklevel=_outside_stacklevel(),
            )
            return _process_key()
        if isinstance(value, str):
            value = value.encode("utf-8")
        return value

    @model_validator(mode="after")
    def _check_key(self) -> PrivacyPolicy:
        if not self.pseudonym_key.get_secret_value():
            raise ValueError("pseudonym_key must not be empty")
        return self

    @property
    def uses_process_key(self) -> bool:
        """True when the key is this process's random key (pseudonyms will not join across runs)."""
        return _PROCESS_KEY is not None and hmac.compare_digest(self.pseudonym_key.get_secret_value(), _PROCESS_KEY)

    def pseudonym(self, identity_id: str) -> str:
        """The pseudonym of one identity id: lowercase hex HMAC-SHA256 of its UTF-8 bytes."""
        key = self.pseudonym_key.get_secret_value()
        return hmac.new(key, identity_id.encode("utf-8"), hashlib.sha256).hexdigest()

    def hmac_pads(self) -> tuple[bytes, bytes]:
        """The inner and outer HMAC key blocks, so SQL engines can compute pseudonyms in bulk."""
        key = self.pseudonym_key.get_secret_value()
        if len(key) > 64:
            key = hashlib.sha256(key).digest()
        block = key.ljust(64, b"\0")
        return bytes(b ^ 0x36 for b in block), bytes(b ^ 0x5C for b in block)

    def key_id(self) -> str:
        """A short fingerprint of the key, to tell whether two stores share pseudonyms."""
        return self.pseudonym("identity-analytics key id")[:16]

    def settings(self) -> dict[str, Any]:
        """The policy without its key, for manifests and audit records."""
        return {
            "k": self.k,
            "include_inactive": self.include_inactive,
            "public_fields": sorted(self.public_fields),
            "pseudonym_key_id": self.key_id(),
        }
