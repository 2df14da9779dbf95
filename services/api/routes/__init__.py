"""Thin HTTP controllers: parse, call a use case or a service over NATS, shape the answer."""
