import base64
import time

import jwt
import pytest

from services.api import identity
from services.contracts.errors import DomainError

SECRET = "a-test-secret-of-at-least-32-bytes"
NEXT = "the-next-secret-after-a-rotation-1234"
THIRD = "a-third-secret-that-is-long-enough-too"
KEYS = identity.Keyring.of(SECRET)


def test_token_round_trip_and_expiry():
    token = identity.issue_token(KEYS, "u1", ["driver"], 60, now=1_000)
    with pytest.raises(identity.BadToken, match="expired"):
        identity.verify_token(KEYS, token)
    fresh = identity.issue_token(KEYS, "u1", ["driver", "owner"], 60)
    claims = identity.verify_token(KEYS, fresh)
    assert claims.user_id == "u1" and claims.roles == ["driver", "owner"]


def test_tokens_name_the_key_that_signed_them():
    token = identity.issue_token(KEYS, "u1", ["driver"], 60)
    assert jwt.get_unverified_header(token) == {
        "alg": "HS256",
        "typ": "JWT",
        "kid": identity.key_id(SECRET),
    }
    assert identity.key_id(SECRET) != identity.key_id(NEXT)
    assert len(identity.key_id(SECRET)) == 16


def test_a_token_signed_with_the_previous_key_verifies_after_rotation():
    before = identity.issue_token(KEYS, "u1", ["driver"], 60)
    rotated = identity.Keyring.of(NEXT, [SECRET])
    assert identity.verify_token(rotated, before).user_id == "u1"
    after = identity.issue_token(rotated, "u2", ["owner"], 60)
    assert jwt.get_unverified_header(after)["kid"] == identity.key_id(NEXT)
    # Staged ahead of the rotation: replicas that still sign with the old key accept it.
    staged = identity.Keyring.of(SECRET, [NEXT])
    assert identity.verify_token(staged, after).user_id == "u2"


def test_a_token_signed_with_a_removed_key_is_refused():
    before = identity.issue_token(KEYS, "u1", ["driver"], 60)
    with pytest.raises(identity.BadToken, match="key this server does not accept"):
        identity.verify_token(identity.Keyring.of(NEXT), before)


def test_an_unknown_or_missing_kid_is_refused_even_with_a_good_signature():
    claims = {"sub": "u1", "roles": ["admin"], "iat": 1, "exp": 2**40}
    for headers in ({"kid": "0123456789abcdef"}, {}):
        token = jwt.encode(claims, SECRET, algorithm="HS256", headers=headers)
        with pytest.raises(identity.BadToken, match="key this server does not accept"):
            identity.verify_token(KEYS, token)
    # A kid that is not a string: PyJWT will not even write one, so by hand.
    header = base64.urlsafe_b64encode(b'{"alg":"HS256","kid":["x"]}').rstrip(b"=").decode()
    _, payload, signature = jwt.encode(claims, SECRET, algorithm="HS256").split(".")
    with pytest.raises(identity.BadToken):
        identity.verify_token(KEYS, f"{header}.{payload}.{signature}")


def test_a_known_kid_with_another_secret_or_algorithm_is_refused():
    claims = {"sub": "u1", "roles": ["admin"], "iat": 1, "exp": 2**40}
    forged = jwt.encode(claims, THIRD, algorithm="HS256", headers={"kid": KEYS.signing})
    with pytest.raises(identity.BadToken, match="invalid token"):
        identity.verify_token(KEYS, forged)
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": KEYS.signing})
    with pytest.raises(identity.BadToken, match="invalid token"):
        identity.verify_token(KEYS, unsigned)
    with pytest.raises(identity.BadToken, match="invalid token"):
        identity.verify_token(KEYS, "not.a.token")


def test_a_verified_token_is_remembered_until_its_exp_and_then_refused():
    keys = identity.Keyring.of(SECRET)
    now = time.time()
    token = identity.issue_token(keys, "u1", ["driver"], 60, now=now - 59)
    first = identity.verify_token(keys, token)
    assert identity.verify_token(keys, token) is first  # from keys.verified
    time.sleep(max(0.0, first.exp - time.time()) + 0.05)  # on purpose: past its exp
    with pytest.raises(identity.BadToken, match="expired"):
        identity.verify_token(keys, token)
    assert token not in keys.verified


def test_remembered_tokens_are_per_keyring_and_bounded(monkeypatch):
    keys = identity.Keyring.of(SECRET)
    token = identity.issue_token(keys, "u1", ["driver"], 60)
    identity.verify_token(keys, token)
    with pytest.raises(identity.BadToken, match="key this server does not accept"):
        identity.verify_token(identity.Keyring.of(NEXT), token)
    head, payload, signature = token.split(".")
    other = "A" if signature[0] != "A" else "B"
    with pytest.raises(identity.BadToken, match="invalid token"):
        identity.verify_token(keys, f"{head}.{payload}.{other}{signature[1:]}")
    monkeypatch.setattr(identity, "VERIFIED_TOKENS", 2)
    tokens = [identity.issue_token(keys, f"u{i}", ["driver"], 60) for i in range(2, 4)]
    for t in tokens:
        identity.verify_token(keys, t)
    assert list(keys.verified) == tokens  # the oldest, `token`, was dropped


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "short",
        "x" * 31,
        "é" * 15,  # 30 bytes in UTF-8
        "parkmate-dev-secret-change-me-in-production",
        "change-me-to-32-random-bytes-or-more",
        "please-CHANGEME-before-going-live-0123456789",
    ],
)
def test_short_published_and_placeholder_secrets_are_refused(secret):
    assert identity.secret_problem(secret) is not None


def test_a_long_random_secret_is_accepted():
    assert identity.secret_problem("x" * 32) is None
    assert identity.secret_problem("é" * 16) is None


def test_password_hash_verifies_only_the_right_password():
    hashed = identity.hash_password("correct horse")
    assert identity.verify_password(hashed, "correct horse")
    assert not identity.verify_password(hashed, "wrong horse")


@pytest.mark.parametrize("email", ["", "no-at", "a@b", "a b@c.de"])
def test_bad_emails_are_refused(email):
    with pytest.raises(DomainError):
        identity.normalise_email(email)


def test_email_is_normalised_and_roles_checked():
    assert identity.normalise_email("  Ann@Example.COM ") == "ann@example.com"
    assert identity.check_roles(["owner", "owner", "driver"]) == ["owner", "driver"]
    with pytest.raises(DomainError, match="Unknown role"):
        identity.check_roles(["king"])
