"""How the replay's client reads an overloaded api's Retry-After (no services)."""

from multidict import CIMultiDict

from services.replay.simulation import MAX_RETRY_AFTER, Answer, retry_after


def answer(value: str | None) -> Answer:
    # Headers as aiohttp gives them: names case-insensitive.
    return Answer(503, CIMultiDict({} if value is None else {"Retry-After": value}), b"")


def test_retry_after_in_seconds_is_read_and_capped():
    assert retry_after(answer("2")) == 2.0
    assert retry_after(answer("0")) == 0.0
    assert retry_after(answer("86400")) == MAX_RETRY_AFTER


def test_no_or_an_unread_retry_after_falls_back_to_the_backoff():
    assert retry_after(answer(None)) is None
    assert retry_after(answer("Wed, 21 Oct 2015 07:28:00 GMT")) is None
    assert retry_after(answer("nan")) is None
