"""Identity rules, with no I/O: emails, passwords, roles and JWT access tokens.

Tokens are HS256 JWTs with claims `sub` (user id), `roles`, `iat`, `exp` (Unix
seconds), as docs/contract.md, "Authentication", says. Password hashes are argon2id (argon2-cffi).
"""

import time
from dataclasses import dataclass

import jwt
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.contracts.errors import DomainError

ROLES = ("driver", "owner", "employee", "admin")
MIN_PASSWORD = 8

_hasher = PasswordHasher()


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


def verify_password(hashed: str, password: str) -> bool:
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


def issue_token(
    secret: str, user_id: str, roles: list[str], lifetime_seconds: int, now: float | None = None
) -> str:
    iat = int(now if now is not None else time.time())
    return jwt.encode(
        {"sub": user_id, "roles": roles, "iat": iat, "exp": iat + lifetime_seconds},
        secret,
        algorithm="HS256",
    )


class BadToken(Exception):
    """The token is missing, malformed, badly signed or expired."""


def verify_token(secret: str, token: str) -> Claims:
    """Decode and check a token; raises BadToken saying why."""
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
    return Claims(user_id=str(claims["sub"]), roles=roles, exp=int(claims["exp"]))
