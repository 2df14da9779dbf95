"""The notifier service: every domain event becomes notifications for the right people,
and the notification center behind /api/v1/notifications (inbox, preferences,
templates, admin sends).

Each notification is stored in the recipient's inbox with a per-user `seq` (schema
`notifier`) before it is published live on notify.user.<id>.
Rooms: rules with no I/O in `domain.py` (who hears what, rendering), `prefs.py` (mutes,
quiet hours), `templates.py` (placeholders, overrides) and `paging.py` (cursors);
`storage.py`; `handlers.py` (events, inbox, preferences), `admin.py` (templates, admin
sends), `retention.py` (purge); `entrypoints.py`, `config.py`, `__main__.py`.
"""
