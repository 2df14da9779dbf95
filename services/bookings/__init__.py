"""The bookings service: lots, slots and bookings (schema `bookings`).

Rooms: `domain.py` (rules, no I/O), `storage.py` (tables and queries), `handlers.py`
(one async function per request or event), `outbox.py` (publishes committed events),
`entrypoints.py` (NATS wiring), `config.py`, `__main__.py`.
"""
