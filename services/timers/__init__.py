"""The timers service: turns booking events into JetStream message schedules on TIMERS.

It owns nothing but JetStream state. The NATS server fires the schedules, so a
warning and an expiry happen even while this process is down.
Rooms: `domain.py` (what to schedule), `handlers.py`, `entrypoints.py`, `config.py`.
"""
