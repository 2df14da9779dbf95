import pytest

from services.api import identity
from services.contracts.errors import DomainError

SECRET = "a-test-secret-of-at-least-32-bytes"


def test_token_round_trip_and_expiry():
    token = identity.issue_token(SECRET, "u1", ["driver"], 60, now=1_000)
    with pytest.raises(identity.BadToken, match="expired"):
        identity.verify_token(SECRET, token)
    fresh = identity.issue_token(SECRET, "u1", ["driver", "owner"], 60)
    claims = identity.verify_token(SECRET, fresh)
    assert claims.user_id == "u1" and claims.roles == ["driver", "owner"]


def test_token_with_another_secret_is_rejected():
    with pytest.raises(identity.BadToken):
        identity.verify_token(
            "another-secret-of-thirty-two-bytes!",
            identity.issue_token(SECRET, "u1", ["driver"], 60),
        )


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
