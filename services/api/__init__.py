"""The api service: HTTP (Litestar), the WebSocket gateway, users and credentials.

Rooms: `identity.py` (password and token rules), `storage.py` (schema `identity`),
`idempotency.py` (Idempotency-Key on every POST), `errors.py` (service errors to HTTP),
`routes/` (thin controllers), `ws.py` (the gateway), `app.py` (wiring),
`entrypoints.py`, `config.py`, `__main__.py`.
"""
