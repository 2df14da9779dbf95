"""Stable error codes that request/reply services send back; the api maps them to HTTP."""

from typing import Any, Literal

import msgspec

ErrorCode = Literal[
    "invalid",  # 400: the request breaks a rule the caller can fix
    "unauthorized",  # 401
    "payment_required",  # 402
    "forbidden",  # 403: the caller sees the resource but may not act on it
    "not_found",  # 404: missing, or the caller has no role on it at all
    "conflict",  # 409: the state does not allow it (slot taken, already expired)
    "unprocessable",  # 422
]


class ErrorBody(msgspec.Struct):
    """Body of a micro service error reply; header Nats-Service-Error-Code holds `code`."""

    code: str
    detail: str
    extra: dict[str, Any] | None = None


class DomainError(Exception):
    """A rule said no. Raised by domain code, turned into an error reply by handlers.

    `code` is an `ErrorCode`, `detail` a human sentence that says what to do, `extra`
    machine-readable context (for example the end time of the booking holding a slot).
    """

    def __init__(self, code: ErrorCode, detail: str, extra: dict[str, Any] | None = None):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra
