"""Structured JSON logging (structlog) with request ids and personal data masked."""

from __future__ import annotations

import logging
import re
import sys
from typing import Any

import structlog
from structlog.typing import EventDict, WrappedLogger

from hostwarden.core.masking import mask_value

# Keys whose values are secrets: dropped from every log line whatever their content.
_SECRET_KEYS = frozenset({"password", "token", "secret", "authorization", "cookie", "session"})


def _is_secret_key(key: str) -> bool:
    """``password`` and also ``db_password``, ``api-token``: any word of the key counts."""
    return any(part in _SECRET_KEYS for part in re.split(r"[^a-z0-9]+", key.lower()))


def _mask_personal_data(_logger: WrappedLogger, _name: str, event: EventDict) -> EventDict:
    for key in list(event):
        if _is_secret_key(key):
            event[key] = "***"
        elif key not in ("timestamp", "level", "request_id", "logger"):
            event[key] = mask_value(event[key])
    return event


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    """Route structlog and the standard library through one JSON (or console) renderer."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        # Before masking, so that personal data in an exception's text is masked too.
        structlog.processors.format_exc_info,
        _mask_personal_data,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer(ensure_ascii=False)
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=shared,
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            renderer,
        ],
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access", "apscheduler", "alembic"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
    # Alembic and APScheduler narrate every readiness probe and job start at INFO.
    for name in ("alembic", "apscheduler"):
        logging.getLogger(name).setLevel(max(logging.WARNING, root.level))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)


def bind_request_id(request_id: str) -> None:
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
