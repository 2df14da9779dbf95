"""The per-socket delivery rules (services/api/wsconn.py), without I/O: `hello` first,
each seq at most once and in order, gaps held for the gateway, counts never backwards,
a slow reader closed rather than skipped."""

import asyncio
import json
from datetime import UTC, datetime

from services.api.wsconn import Connection
from services.contracts import notifier as n


def item(seq: int, silent: bool = False) -> n.Notification:
    return n.Notification(
        id=f"id{seq}",
        seq=seq,
        type="announcement",
        level="info",
        priority="normal",
        title="t",
        body="b",
        data={},
        created_at=datetime(2026, 1, 15, 12, tzinfo=UTC),
        silent=silent,
    )


def note(seq: int, push: bool = True, count: int | None = None, version: int = 0):
    return n.LiveNotification(
        notification=item(seq, silent=not push), push=push, unread_count=count, version=version
    )


def sent(conn: Connection) -> list:
    """What was queued since the last call: seqs for notifications (with their count
    as (seq, count) when the frame carries one), (type, count) for other frames."""
    out = []
    while conn.queue:
        frame = json.loads(conn.queue.popleft())
        if frame["type"] == "notification":
            seq = frame["notification"]["seq"]
            out.append((seq, frame["unread_count"]) if "unread_count" in frame else seq)
        else:
            out.append((frame["type"], frame.get("count")))
    return out


def greeted(last_seq: int, version: int = 0, queue: int = 100) -> Connection:
    conn = Connection("u", queue)
    conn.greet(n.InboxSummary(unread_count=0, last_seq=last_seq, version=version))
    conn.finish_fetch()
    sent(conn)
    return conn


def test_hello_is_the_first_frame_whatever_arrived_before_it():
    conn = Connection("u", 100)
    conn.live(n.LiveUnreadCount(count=4, version=7))  # before hello: held
    conn.live(note(3, count=5, version=8))
    conn.live(n.LiveUpdate(id="id1", deleted=True))
    assert sent(conn) == []
    conn.greet(n.InboxSummary(unread_count=4, last_seq=2, version=7))
    gap = conn.finish_fetch()
    assert not gap
    assert sent(conn) == [("hello", None), ("notification_update", None), (3, 5)]


def test_seqs_go_out_in_order_once_and_a_gap_waits_for_the_gateway():
    conn = greeted(3)
    conn.live(note(5))  # 4 is not here yet
    assert sent(conn) == [] and conn.first_missing() == (3, 4)
    conn.live(note(4, push=False))  # silent, but it fills the gap
    assert sent(conn) == [5] and conn.first_missing() is None
    conn.live(note(5))  # a duplicate
    conn.live(note(2))  # older than hello
    assert sent(conn) == []


def test_a_gap_filled_from_the_inbox_sends_only_what_was_pushed_live():
    conn = greeted(3)
    conn.live(note(7))
    conn.busy = True  # the gateway fetches 4..6
    conn.live(note(8))
    conn.filled([item(4), item(5, silent=True)], up_to=6)  # 6 was deleted meanwhile
    assert not conn.finish_fetch()
    assert sent(conn) == [4, 7, 8]
    assert conn.last_seq == 8 and conn.withheld == {5}


def test_a_catch_up_drops_live_copies_it_already_sent():
    conn = greeted(0)
    conn.busy = True
    conn.live(note(2, count=2, version=2))
    conn.filled([item(1), item(2)], up_to=2)
    conn.finish_fetch()
    assert sent(conn) == [1, 2, ("unread_count", 2)]


def test_resume_never_sends_a_seq_twice_on_a_connection():
    conn = greeted(3)
    conn.live(note(4))
    assert sent(conn) == [4]
    everything = [item(s) for s in (1, 2, 3, 4)]
    conn.replayed(everything, after_seq=0)
    assert sent(conn) == [1, 2, 3]
    conn.replayed(everything, after_seq=0)  # the same resume again
    conn.replayed(everything[1:], after_seq=1)
    assert sent(conn) == []


def test_resume_sends_silent_ones_once_flagged():
    conn = greeted(0)
    conn.live(note(1, push=False))
    conn.live(note(2))
    assert sent(conn) == [2]
    conn.replayed([item(1, silent=True), item(2)], after_seq=0)
    assert sent(conn) == [1]
    conn.replayed([item(1, silent=True), item(2)], after_seq=0)
    assert sent(conn) == []


def test_a_replay_while_live_ones_wait_sends_each_once_in_order():
    conn = greeted(2)
    conn.busy = True  # a resume after_seq=0 starts
    conn.live(note(4))
    conn.live(note(3))
    conn.replayed([item(s) for s in (1, 2, 3)], after_seq=0)
    conn.finish_fetch()
    assert sent(conn) == [1, 2, 3, 4]


def test_unread_counts_never_go_backwards():
    conn = greeted(0, version=3)
    conn.live(n.LiveUnreadCount(count=7, version=5))
    conn.live(n.LiveUnreadCount(count=9, version=4))  # published late by another replica
    conn.live(note(1, count=8, version=6))
    conn.live(note(2, count=1, version=5))  # an older count rides along: left off
    conn.count(2, 1, always=True)  # an explicit get_unread_count answer
    assert sent(conn) == [("unread_count", 7), (1, 8), 2, ("unread_count", 2)]


def test_a_silent_notification_still_moves_the_count():
    conn = greeted(0)
    conn.live(note(1, push=False, count=3, version=1))
    assert sent(conn) == [("unread_count", 3)]


def test_slow_reader_is_closed_with_1013_not_skipped():
    conn = greeted(0, queue=2)
    for seq in (1, 2, 3):
        conn.live(note(seq))
    assert conn.closed and conn.close_code == 1013


async def test_frames_are_written_at_once_and_a_send_that_waits_keeps_the_order():
    written: list[str] = []
    writable = asyncio.Event()
    writable.set()

    async def asgi_send(message: dict) -> None:  # like uvicorn's: waits only when paused
        await writable.wait()
        written.append(json.loads(message["text"])["type"])

    conn = Connection("u", 100, asgi_send)
    conn.greet(n.InboxSummary(unread_count=0, last_seq=0, version=0))
    conn.finish_fetch()
    conn.live(note(1))
    assert written == ["hello", "notification"] and conn.writer is None  # no task needed
    writable.clear()  # the peer reads slowly: the transport paused writing
    conn.live(note(2))
    conn.count(5, 9)
    conn.live(note(3))
    assert written == ["hello", "notification"] and conn.writer is not None
    writable.set()
    await conn.flushed(1.0)
    assert written == ["hello", "notification", "notification", "unread_count", "notification"]
    assert conn.writer is None and not conn.queue


async def test_a_send_that_fails_closes_the_connection():
    async def gone(message: dict) -> None:
        raise ConnectionResetError

    conn = Connection("u", 100, gone)
    conn.greet(n.InboxSummary(unread_count=0, last_seq=0, version=0))
    assert conn.closed and not conn.queue
