"""Logging set-up: plain text or JSON lines, with a filter that masks secrets wherever
they would appear, and the context of the edit being worked on (job, generation, server)."""

from __future__ import annotations

import contextvars
import json
import logging
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import IO

MASK = "***"
TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# What a JSON line may carry about the edit being worked on, besides the message. They
# come from the context (`bind`) or from a call's `extra=`.
CONTEXT_FIELDS = (
    "job_id",
    "generation_id",
    "guild_id",
    "source",
    "status",
    "cost",
    "duration_s",
)

_context: contextvars.ContextVar[Mapping[str, object]] = contextvars.ContextVar(
    "kontext_log_context", default=MappingProxyType({})
)


def bind(**fields: object) -> None:
    """Add fields to every record logged from now on in this task (and the tasks it
    starts): a job's task binds its job id, the pipeline adds the generation id."""
    _context.set({**_context.get(), **{k: v for k, v in fields.items() if v is not None}})


class RedactingFilter(logging.Filter):
    """Replaces every known secret in a record's final text with `***`."""

    def __init__(self, secrets: Iterable[str]) -> None:
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = self.redact(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if clean != message:
            record.msg, record.args = clean, None
        return True


class ContextFilter(logging.Filter):
    """Copies the task's bound fields onto the record (a call's own `extra=` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, the edit's context, and
    the traceback as one string. `redact` cleans every string field too."""

    def __init__(self, redact: Callable[[str], str] = str) -> None:
        super().__init__()
        self._redact = redact

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in CONTEXT_FIELDS:
            value = getattr(record, key, None)
            if value is not None:
                line[key] = value if isinstance(value, int | float | bool) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exc"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        clean = {k: self._redact(v) if isinstance(v, str) else v for k, v in line.items()}
        return json.dumps(clean, ensure_ascii=False, default=str)


def setup_logging(
    level: str, secrets: Iterable[str], *, fmt: str = "text", stream: IO[str] | None = None
) -> None:
    """Log to stderr (or `stream`) at `level`, as text or JSON lines; every handler masks
    the secrets."""
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    redactor = RedactingFilter(secrets)
    if fmt == "json":
        handler.setFormatter(JsonFormatter(redactor.redact))
        # Python's warnings would otherwise be plain text in the middle of the JSON lines.
        logging.captureWarnings(True)
    else:
        handler.setFormatter(logging.Formatter(TEXT_FORMAT))
    handler.addFilter(ContextFilter())
    handler.addFilter(redactor)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # discord.py's gateway chatter is noise at INFO.
    logging.getLogger("discord.gateway").setLevel(max(logging.getLevelName(level), logging.INFO))
    logging.getLogger("httpx").setLevel(logging.WARNING)
