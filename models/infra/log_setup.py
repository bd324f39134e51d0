"""Logs of the farm's services: one JSON object per line, or text for people.

A JSON line carries ``ts``, ``level``, ``logger``, ``msg``, any ``extra=`` fields,
and the ids of the work in hand (``job_id``, ``shard_id``, ``cells``) that the
runner or the API put in :func:`log_context`.
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType
from typing import TextIO

from models.infra.settings import Settings

HANDLER_NAME = "farm"
_EMPTY: Mapping[str, object] = MappingProxyType({})
_CONTEXT: ContextVar[Mapping[str, object]] = ContextVar("farm_log_context", default=_EMPTY)
# A record's own attributes; anything else on it came from ``extra=`` or log_context.
_STANDARD_ATTRS = frozenset(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


@contextmanager
def log_context(**fields: object) -> Iterator[None]:
    """Every record logged inside the block (in this thread or task) carries ``fields``.

    Fields that are None are left out; nested blocks add to the outer one.
    """
    added = {k: v for k, v in fields.items() if v is not None}
    token = _CONTEXT.set(MappingProxyType({**_CONTEXT.get(), **added}))
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def current_log_context() -> Mapping[str, object]:
    return _CONTEXT.get()


class ContextFilter(logging.Filter):
    """Copies the current :func:`log_context` onto each record (``extra=`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _CONTEXT.get().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


class JsonLineFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, ``msg``, the extra
    fields, and ``exc_info`` / ``stack_info`` text when there are any. Lean on purpose:
    the API writes one line per request (a generic JSON formatter cost ~10% of a poll).
    """

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["exc_info"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack_info"] = self.formatStack(record.stack_info)
        return json.dumps(line, default=str)


def json_formatter() -> logging.Formatter:
    return JsonLineFormatter()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``, the extra fields at the end."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        extras = [
            f"{key}={value}"
            for key, value in record.__dict__.items()
            if key not in _STANDARD_ATTRS and not key.startswith("_")
        ]
        if not extras:
            return text
        head, newline, rest = text.partition("\n")  # keep a traceback below the line
        return f"{head} {' '.join(extras)}{newline}{rest}"


def adopt_library_logs(*libraries: str) -> None:
    """Send the records of libraries that keep a stderr handler of their own
    (transformers, diffusers: ``library.utils.logging``) through the root logger,
    so that they take the farm's format. Imports the library: call it only where
    it is used anyway, before it is first imported, to catch import-time lines.
    """
    for library in libraries:
        try:
            module = importlib.import_module(f"{library}.utils.logging")
        except ImportError:
            continue
        module.disable_default_handler()
        module.enable_propagation()


def wants_json(settings: Settings, stream: TextIO | None = None) -> bool:
    """``auto`` means JSON unless the stream is a terminal (a person is reading)."""
    if settings.log_format == "auto":
        return not (stream or sys.stderr).isatty()
    return settings.log_format == "json"


def setup_logging(settings: Settings, stream: TextIO | None = None) -> None:
    """Route the root logger to ``stream`` (stderr) in the configured format and level.

    Idempotent: it replaces the handler it installed before and leaves others alone.
    """
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(json_formatter() if wants_json(settings, stream) else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    logging.captureWarnings(True)  # warnings become records too: one format on the stream
