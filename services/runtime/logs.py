"""structlog set up once per process: JSON lines bound with the service name."""

import logging
import sys

import structlog


def setup(service: str, level: str = "INFO") -> structlog.stdlib.BoundLogger:
    """Configure structlog for this process and return a logger bound to `service`."""
    logging.basicConfig(stream=sys.stderr, level=level, format="%(message)s")
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        cache_logger_on_first_use=True,
    )
    # Every line names the service, those of shared modules (runtime/) included.
    structlog.contextvars.bind_contextvars(service=service)
    return structlog.get_logger(service=service)


def get(service: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to `service` (after `setup`, or with structlog's defaults in tests)."""
    return structlog.get_logger(service=service)
