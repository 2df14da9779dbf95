"""Plumbing every service uses the same way: NATS and database connections, the service
lifecycle, micro-service endpoints, migrations and the embedded dev servers.
No business rules live here.
"""
