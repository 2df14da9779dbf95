"""What Parkmate's services share: subject names, message types, the CloudEvents envelope.

Nothing here does I/O or holds business rules; every NATS message is a msgspec Struct
defined in one module of this package, named after the service that produces it.
"""
