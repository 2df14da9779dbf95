"""The payment provider boundary: the one true outside party of the bookings service.

`SimulatedProvider` stands in for a real provider in dev and tests. Its rule is
documented and deterministic: a token that starts with `tok_decline` is declined
("card declined"); every other token, and no token, is charged.
"""

from decimal import Decimal
from typing import Protocol


class PaymentDeclined(Exception):
    """The provider refused the charge; `reason` is safe to show the driver."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class PaymentProvider(Protocol):
    """Charges and refunds, keyed by an idempotency key (the booking id or renewal id)."""

    async def charge(self, key: str, amount: Decimal, currency: str, token: str | None) -> str:
        """Charge `amount`; return the provider's charge id; raise PaymentDeclined."""
        ...

    async def refund(self, key: str, amount: Decimal, currency: str) -> None:
        """Refund a charge made under `key`."""
        ...


class SimulatedProvider:
    """Deterministic provider for dev and tests: declines tokens starting `tok_decline`."""

    DECLINE_PREFIX = "tok_decline"

    def __init__(self) -> None:
        self.charges: dict[str, Decimal] = {}
        self.refunds: dict[str, Decimal] = {}

    async def charge(self, key: str, amount: Decimal, currency: str, token: str | None) -> str:
        if token is not None and token.startswith(self.DECLINE_PREFIX):
            raise PaymentDeclined("card declined")
        self.charges[key] = amount
        return f"sim_{key}"

    async def refund(self, key: str, amount: Decimal, currency: str) -> None:
        self.refunds[key] = amount
