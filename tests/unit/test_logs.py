"""Log set-up (services/runtime/logs.py): the format PARKMATE_LOG_FORMAT chooses, the
service and bound ids on every line, ours and the standard library's; and the request
ids of the api (services/api/requestids.py) and micro services."""

import asyncio
import io
import json
import logging

import pytest
import structlog

from services.api.requestids import request_id
from services.contracts.bookings import Actor, GetBooking
from services.contracts.notifier import UserRef
from services.runtime import logs
from services.runtime.config import SettingError
from services.runtime.micro import _user_id
from tests.support import json_logs, reset_logging


def test_json_is_the_default_and_console_or_json_may_be_chosen(monkeypatch):
    monkeypatch.delenv("PARKMATE_LOG_FORMAT", raising=False)
    assert logs.log_format() == "json"
    monkeypatch.setenv("PARKMATE_LOG_FORMAT", "Console")
    assert logs.log_format() == "console"
    monkeypatch.setenv("PARKMATE_LOG_FORMAT", "xml")
    with pytest.raises(SettingError, match="PARKMATE_LOG_FORMAT must be one of json, console"):
        logs.log_format()
    with pytest.raises(ValueError):
        logs.renderer("xml")


def test_json_lines_name_the_service_for_our_lines_and_the_libraries():
    with json_logs("bookings") as lines:
        structlog.get_logger().info("ready", port=1)
        logging.getLogger("uvicorn.error").warning("listening on %s", "x")
        try:
            raise ZeroDivisionError("boom")
        except ZeroDivisionError:
            structlog.get_logger().exception("failed")
        ours, theirs, failed = lines()
    assert ours["service"] == "bookings" and ours["event"] == "ready" and ours["port"] == 1
    assert ours["level"] == "info" and ours["timestamp"].endswith("Z")
    assert theirs["service"] == "bookings" and theirs["event"] == "listening on x"
    assert theirs["logger"] == "uvicorn.error" and theirs["level"] == "warning"
    assert failed["level"] == "error" and "ZeroDivisionError: boom" in failed["exception"]


def test_console_lines_are_for_people_and_debug_is_filtered_at_info():
    stream = io.StringIO()
    try:
        logs.setup("timers", fmt="console", stream=stream)
        structlog.get_logger().debug("hidden")
        structlog.get_logger().info("fired", kind="expiry")
    finally:
        reset_logging()
    (line,) = stream.getvalue().splitlines()
    assert "fired" in line and "kind=expiry" in line and "service=timers" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


async def test_ids_bound_in_a_task_are_on_its_lines_only():
    with json_logs("notifier") as lines:

        async def handle(event_id: str) -> None:
            with structlog.contextvars.bound_contextvars(event_id=event_id):
                await asyncio.sleep(0)
                structlog.get_logger().warning("inside", n=event_id)
            structlog.get_logger().warning("after", n=event_id)

        await asyncio.gather(handle("e1"), handle("e2"))
        got = lines()
    inside = {line["n"]: line for line in got if line["event"] == "inside"}
    assert inside["e1"]["event_id"] == "e1" and inside["e2"]["event_id"] == "e2"
    assert all("event_id" not in line for line in got if line["event"] == "after")
    assert all(line["service"] == "notifier" for line in got)


def test_a_sane_request_id_is_kept_and_anything_else_replaced():
    assert request_id(b"abc-123_x.y:z") == "abc-123_x.y:z"
    for bad in (None, b"", b"a b", b"x" * 129, b"id\r\nX-Evil: 1", "é".encode()):
        generated = request_id(bad)
        assert len(generated) == 16 and int(generated, 16) >= 0


def test_the_user_of_a_service_request_is_its_actor_or_its_user_id():
    actor = Actor(user_id="u-actor", roles=["driver"])
    assert _user_id(GetBooking(actor=actor, booking_id="b")) == "u-actor"
    assert _user_id(UserRef(user_id="u-owner")) == "u-owner"
    assert _user_id(object()) is None
