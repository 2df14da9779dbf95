"""structlog set up once per process: one line per event, JSON or readable.

Every line, ours and those of libraries using the standard `logging` module (uvicorn,
nats-py, SQLAlchemy), goes through one handler on the root logger whose structlog
formatter renders it: JSON objects in production (PARKMATE_LOG_FORMAT=json, the
default), `key=value` lines for a person (`console`, what `parkmate dev` sets).

Context comes from structlog's contextvars: `setup` binds `service`; message handlers
bind `event_id` (runtime/consumer.py), `request_id` and `user_id` (runtime/micro.py,
the api), so every line logged while one is handled carries them without a log call
of its own on the hot path.
"""

import logging
import sys
from typing import TextIO

import structlog
from structlog.typing import Processor

from services.runtime.config import SettingError, env

FORMATS = ("json", "console")
DEFAULT_FORMAT = "json"
_HANDLER_NAME = "parkmate"


def log_format() -> str:
    """PARKMATE_LOG_FORMAT: `json` (the default) or `console`. Raises SettingError
    naming the variable for anything else."""
    value = env("LOG_FORMAT", DEFAULT_FORMAT).strip().lower()
    if value not in FORMATS:
        raise SettingError(
            f"PARKMATE_LOG_FORMAT must be one of {', '.join(FORMATS)}, not {value!r}."
        )
    return value


def renderer(fmt: str, colors: bool = False) -> list[Processor]:
    """The last processors of a line in format `fmt` (one of FORMATS, else ValueError):
    JSON with the traceback as a string, or structlog's ConsoleRenderer (`colors`:
    ANSI colours), which lays out tracebacks itself."""
    if fmt == "json":
        return [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    if fmt == "console":
        return [structlog.dev.ConsoleRenderer(colors=colors)]
    raise ValueError(f"unknown log format {fmt!r}; expected one of {FORMATS}")


def setup(
    service: str, level: str = "INFO", fmt: str | None = None, stream: TextIO | None = None
) -> structlog.stdlib.BoundLogger:
    """Configure logging for this process and return a logger bound to `service`.

    `fmt`: one of FORMATS, or None to read PARKMATE_LOG_FORMAT (SettingError when it
    is bad). `stream`: where lines go, stderr by default. Calling it again replaces
    the previous set-up (tests do).
    """
    fmt = fmt or log_format()
    stream = stream or sys.stderr
    timestamper = structlog.processors.TimeStamper(fmt="iso", utc=True)
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            # Lines from `logging` get the same context and fields as ours.
            foreign_pre_chain=[
                structlog.contextvars.merge_contextvars,
                structlog.stdlib.add_log_level,
                structlog.stdlib.add_logger_name,
                timestamper,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *renderer(fmt, colors=fmt == "console" and stream.isatty()),
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.name == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            timestamper,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # Rendering happens in the handler, so loggers cached on first use follow a
        # later `setup` too.
        logger_factory=structlog.stdlib.LoggerFactory(),
        cache_logger_on_first_use=True,
    )
    # Every line names the service, those of shared modules (runtime/) included.
    structlog.contextvars.bind_contextvars(service=service)
    return structlog.get_logger(service=service)


def get(service: str) -> structlog.stdlib.BoundLogger:
    """A logger bound to `service` (after `setup`, or with structlog's defaults in tests)."""
    return structlog.get_logger(service=service)
