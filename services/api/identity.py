"""Identity rules, with no I/O: emails, passwords, roles and JWT access tokens.

Tokens are HS256 JWTs with claims `sub` (user id), `roles`, `iat`, `exp` (Unix
seconds), as docs/contract.md, "Authentication", says, and a `kid` header naming the
key that signed them, so the signing secret can be rotated while tokens signed with the
previous one still verify (docs/security.md). Password hashes are argon2id (argon2-cffi).
"""

import functools
import hashlib
import secrets
import time
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.contracts.errors import DomainError

ROLES = ("driver", "owner", "employee", "admin")
MIN_PASSWORD = 8
MIN_SECRET_BYTES = 32
# Secrets that were published (in this repository's code and manifests): anyone can
# sign a token with them.
PUBLISHED_SECRETS = frozenset(
    {
        "parkmate-dev-secret-change-me-in-production",
        "change-me-to-32-random-bytes-or-more",
    }
)

_hasher = PasswordHasher()
# Tokens a keyring remembers having verified (about 0.6 KB each): more than the drivers
# of a whole city's day active at once, so a replay's peak does not churn them.
VERIFIED_TOKENS = 50_000


def normalise_email(email: str) -> str:
    """Trimmed and lower-cased; raises DomainError("invalid") unless it looks like a@b.c."""
    value = email.strip().lower()
    local, _, domain = value.partition("@")
    if not local or "." not in domain or " " in value or len(value) > 254:
        raise DomainError("invalid", "email must be an address like name@example.com.")
    return value


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise DomainError("invalid", f"password must have at least {MIN_PASSWORD} characters.")


def check_roles(roles: list[str]) -> list[str]:
    """Known roles, deduplicated in the order given; raises DomainError naming an unknown one."""
    if not roles:
        raise DomainError("invalid", "roles must name at least one of " + ", ".join(ROLES) + ".")
    for role in roles:
        if role not in ROLES:
            raise DomainError("invalid", f"Unknown role {role!r}; use " + ", ".join(ROLES) + ".")
    return list(dict.fromkeys(roles))


def hash_password(password: str) -> str:
    """argon2id hash (CPU-heavy: call from a thread in async code)."""
    return _hasher.hash(password)


@functools.cache
def dummy_hash() -> str:
    """The argon2id hash of a random password nobody knows, made once per process with
    the same parameters as every real hash (CPU-heavy the first time: warm it at start)."""
    return _hasher.hash(secrets.token_urlsafe(24))


def verify_password(hashed: str | None, password: str) -> bool:
    """True when `password` matches the argon2 hash `hashed` (CPU-heavy: call from a
    thread in async code).

    For no account (`hashed` None) or one without a password hash (bulk accounts store
    a marker that is not a hash), the password is verified against `dummy_hash()` and
    False returned: the same argon2 work as a wrong password, so how long a login takes
    does not tell whether the email has an account."""
    if hashed is None or not hashed.startswith("$argon2"):
        _verify(dummy_hash(), password)
        return False
    return _verify(hashed, password)


def _verify(hashed: str, password: str) -> bool:
    try:
        return _hasher.verify(hashed, password)
    except (VerificationError, InvalidHashError):
        return False


@dataclass(frozen=True)
class Claims:
    """A verified token: user id, roles, expiry (Unix seconds)."""

    user_id: str
    roles: list[str]
    exp: int


def secret_problem(secret: str) -> str | None:
    """Why `secret` may not sign tokens (a phrase to follow the variable's name), or None.

    Refused: fewer than MIN_SECRET_BYTES bytes (UTF-8), a published value, or a
    placeholder (it contains "change-me" or "changeme").
    """
    if len(secret.encode()) < MIN_SECRET_BYTES:
        return (
            f"must be at least {MIN_SECRET_BYTES} bytes of random text (generate one with "
            "`openssl rand -base64 48`)"
        )
    lowered = secret.lower()
    if secret in PUBLISHED_SECRETS or "change-me" in lowered or "changeme" in lowered:
        return (
            "is a published placeholder that anyone could sign tokens with; generate one "
            "with `openssl rand -base64 48`"
        )
    return None


def key_id(secret: str) -> str:
    """The `kid` of tokens signed with `secret`: 16 hex digits of a SHA-256 of it, the same
    on every replica, revealing nothing an HS256 signature does not."""
    return hashlib.sha256(b"parkmate-jwt-kid\0" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Keyring:
    """The HS256 secrets by key id: `signing` (a kid) signs new tokens; every key in
    `secrets` (kid -> secret) verifies, the signing one included. `verified` holds the
    tokens `verify_token` accepted with these keys (token -> Claims, oldest first)."""

    signing: str
    secrets: Mapping[str, str]
    # An OrderedDict: dropping the oldest of a plain dict again and again scans past
    # every key dropped before (services/timers/domain.py, ScheduleBook).
    verified: OrderedDict[str, "Claims"] = field(
        default_factory=OrderedDict, compare=False, hash=False, repr=False
    )

    @classmethod
    def of(cls, current: str, others: Iterable[str] = ()) -> "Keyring":
        """`current` signs and verifies; each of `others` (the previous secret after a
        rotation, or the next one ahead of it) only verifies."""
        secrets = {key_id(secret): secret for secret in (*others, current)}
        return cls(signing=key_id(current), secrets=secrets)


def issue_token(
    keys: Keyring,
    user_id: str,
    roles: list[str],
    lifetime_seconds: int,
    now: float | None = None,
) -> str:
    """An access token for `user_id` with `roles`, valid `lifetime_seconds` from `now`
    (Unix seconds; default: the current time), signed with the signing key."""
    iat = int(now if now is not None else time.time())
    return jwt.encode(
        {"sub": user_id, "roles": roles, "iat": iat, "exp": iat + lifetime_seconds},
        keys.secrets[keys.signing],
        algorithm="HS256",
        headers={"kid": keys.signing},
    )


class BadToken(Exception):
    """The token is missing, malformed, badly signed, signed with an unknown key, or
    expired; str() says which and what to do."""


def verify_token(keys: Keyring, token: str) -> Claims:
    """Decode and check a token against the key its `kid` names; raises BadToken.

    A token these keys verified before is answered from `keys.verified` until its `exp`
    (Unix seconds; expired from that second on, as PyJWT has it): the HS256 check and
    decoding cost about 48 us of the api's CPU per request, and a driver sends the same
    token for an hour. The keys of a Keyring never change, so a token they accepted
    once stays accepted until it expires. At most VERIFIED_TOKENS are kept, the oldest
    dropped first."""
    known = keys.verified.get(token)
    if known is not None:
        if time.time() < known.exp:
            return known
        keys.verified.pop(token, None)  # and the full check says it expired
    try:
        kid = jwt.get_unverified_header(token).get("kid")
    except jwt.PyJWTError:
        raise BadToken("invalid token; log in again") from None
    secret = keys.secrets.get(kid) if isinstance(kid, str) else None
    if secret is None:
        raise BadToken("token signed with a key this server does not accept; log in again")
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], options={"require": ["sub", "exp", "iat"]}
        )
    except jwt.ExpiredSignatureError:
        raise BadToken("token expired; log in again") from None
    except jwt.PyJWTError:
        raise BadToken("invalid token; log in again") from None
    roles = claims.get("roles")
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise BadToken("invalid token; log in again")
    verified = Claims(user_id=str(claims["sub"]), roles=roles, exp=int(claims["exp"]))
    if len(keys.verified) >= VERIFIED_TOKENS:
        keys.verified.popitem(last=False)
    keys.verified[token] = verified
    return verified
