from __future__ import annotations

import hashlib
import hmac
import warnings

import pytest
from hypothesis import given
from hypothesis import strategies as st

import identity_analytics as ia
from identity_analytics.policy import PSEUDONYM_KEY_ENV


def test_defaults_are_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "env-key")
    policy = ia.PrivacyPolicy()
    assert policy.k == 10 and policy.include_inactive is False
    assert policy.public_fields == frozenset({"name", "username", "picture"})


@given(identity_id=st.text(), key=st.binary(min_size=1, max_size=200))
def test_pseudonym_is_lowercase_hex_hmac_sha256_of_utf8_id(identity_id: str, key: bytes) -> None:
    policy = ia.PrivacyPolicy(pseudonym_key=key)
    expected = hmac.new(key, identity_id.encode("utf-8"), hashlib.sha256).hexdigest()
    assert policy.pseudonym(identity_id) == expected


def test_key_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PSEUDONYM_KEY_ENV, "shared-secret")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        policy = ia.PrivacyPolicy()
    assert policy.pseudonym("abc") == hmac.new(b"shared-secret", b"abc", hashlib.sha256).hexdigest()


def test_without_key_a_random_process_key_is_used_with_a_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(PSEUDONYM_KEY_ENV, raising=False)
    with pytest.warns(ia.PseudonymKeyWarning, match="will not join across runs"):
        first = ia.PrivacyPolicy()
    with pytest.warns(ia.PseudonymKeyWarning) as caught:
        second = ia.PrivacyPolicy()
    assert first.uses_process_key and first.pseudonym("x") == second.pseudonym("x")
    assert caught[0].filename == __file__  # the warning points at the line that built the policy


def test_key_never_appears_in_repr_str_or_dumps() -> None:
    policy = ia.PrivacyPolicy(pseudonym_key=b"SUPER-SECRET-KEY")
    for text in (repr(policy), str(policy), policy.model_dump_json(), str(policy.model_dump()), str(policy.settings())):
        assert "SUPER-SECRET-KEY" not in text


@pytest.mark.parametrize("k", [0, 1, -5])
def test_k_below_two_is_refused(k: int) -> None:
    with pytest.raises(ValueError, match="k"):
        ia.PrivacyPolicy(k=k, pseudonym_key=b"x")


def test_empty_key_is_refused() -> None:
    with pytest.raises(ValueError, match="pseudonym_key must not be empty"):
        ia.PrivacyPolicy(pseudonym_key=b"")


def test_hmac_pads_reproduce_hmac_for_long_keys() -> None:
    key = b"k" * 100
    policy = ia.PrivacyPolicy(pseudonym_key=key)
    ipad, opad = policy.hmac_pads()
    inner = hashlib.sha256(ipad + b"id-1").digest()
    assert hashlib.sha256(opad + inner).hexdigest() == policy.pseudonym("id-1")
