"""`services.backup` against a real nats-server and PostgreSQL: a stream snapshot and
its restore keep messages and consumer positions; a whole backup restores into an empty
database; and each refusal says what to do. The restore of a whole running system, with
timers firing afterwards, is tests/e2e/test_restore.py."""

import nats
import pytest
import sqlalchemy as sa
from nats.js.api import AckPolicy, ConsumerConfig

from services import backup
from services.runtime import natsconn
from services.runtime.db import make_engine
from tests.conftest import _admin_execute, _with_db


async def test_a_stream_snapshot_restores_its_messages_and_consumers(nats_url, tmp_path):
    nc = await nats.connect(nats_url)
    try:
        js = nc.jetstream()
        await natsconn.ensure_streams(js)
        for i in range(5):
            await js.publish("booking.created", f"e{i}".encode())
        await js.add_consumer(
            "EVENTS", ConsumerConfig(durable_name="d", ack_policy=AckPolicy.EXPLICIT)
        )
        sub = await js.pull_subscribe_bind("d", stream="EVENTS")
        for msg in await sub.fetch(2, timeout=5):
            await msg.ack_sync()
        state = await backup.snapshot_stream(nc, "EVENTS", tmp_path / "EVENTS")
        assert state["messages"] == 5
        await js.delete_stream("EVENTS")

        restored = await backup.restore_stream(nc, tmp_path / "EVENTS")
        assert restored["messages"] == 5
        info = await js.consumer_info("EVENTS", "d")
        assert info.ack_floor.stream_seq == 2 and info.num_pending == 3
        sub = await js.pull_subscribe_bind("d", stream="EVENTS")
        assert [m.data for m in await sub.fetch(3, timeout=5)] == [b"e2", b"e3", b"e4"]

        with pytest.raises(backup.BackupError, match="restore of EVENTS refused"):
            await backup.restore_stream(nc, tmp_path / "EVENTS")
    finally:
        await nc.close()


async def test_a_backup_restores_into_an_empty_database_and_refuses_existing_streams(
    nats_url, database_url, pg_admin_url, tmp_path
):
    nc = await nats.connect(nats_url)
    empty = "parkmate_restore_target"
    await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{empty}"')
    await _admin_execute(pg_admin_url, f'CREATE DATABASE "{empty}"')
    try:
        js = nc.jetstream()
        await natsconn.ensure_streams(js)
        await js.publish("timers.anything", b"t")
        with pytest.raises(backup.BackupError, match="not empty"):
            (tmp_path / "full").mkdir()
            (tmp_path / "full" / "x").write_text("x")
            await backup.backup(nc, database_url, tmp_path / "full")

        with pytest.raises(backup.BackupError, match="pg_dump failed"):
            await backup.backup(nc, _with_db(pg_admin_url, "no_such_db"), tmp_path / "half")
        assert list((tmp_path / "half").iterdir()) == []  # nothing that looks like a backup

        manifest = await backup.backup(nc, database_url, tmp_path / "b")
        assert manifest.streams == {"EVENTS": 0, "TIMERS": 1, "DEAD": 0}
        # Streams still there: refused before anything is written.
        with pytest.raises(backup.BackupError, match="stream DEAD already exists"):
            await backup.restore(nc, _with_db(pg_admin_url, empty), tmp_path / "b")
        for stream in backup.STREAMS:
            await js.delete_stream(stream)

        counts = await backup.restore(nc, _with_db(pg_admin_url, empty), tmp_path / "b")
        assert counts == {"DEAD": 0, "EVENTS": 0, "TIMERS": 1}
        engine = make_engine(_with_db(pg_admin_url, empty), pool_size=1)
        try:
            async with engine.connect() as conn:
                tables = (
                    await conn.execute(
                        sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'bookings'")
                    )
                ).scalars()
                assert {"bookings", "lots", "outbox"} <= set(tables)
        finally:
            await engine.dispose()

        # Into a database that already holds the schemas: pg_restore's error, passed on.
        for stream in backup.STREAMS:
            await js.delete_stream(stream)
        with pytest.raises(backup.BackupError, match="restore into an empty database"):
            await backup.restore(nc, database_url, tmp_path / "b")
        with pytest.raises(backup.BackupError, match="not a Parkmate backup"):
            await backup.restore(nc, database_url, tmp_path)
    finally:
        await nc.close()
        await _admin_execute(pg_admin_url, f'DROP DATABASE IF EXISTS "{empty}" WITH (FORCE)')
