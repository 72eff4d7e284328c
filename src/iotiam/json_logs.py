"""``serve --log-format json``: one JSON object a line, for log shippers.

Every record, uvicorn's included (``serve`` leaves uvicorn's own handlers out, so its
loggers reach the root one), becomes ``{"ts", "level", "logger", "message"}`` plus
``exception`` (the traceback's text) when one was logged. The default stays the text
lines ``serve`` always wrote.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

TEXT_FORMAT = "%(asctime)s %(name)s %(message)s"


class JsonLineFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def format(self, record: logging.LogRecord) -> str:
        """The record's fields; a traceback stays inside the one line."""
        line = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


def configure_logging(level: str, log_format: str) -> None:
    """Set up the root logger for ``serve`` (``log_format``: "text" or "json").

    Only a root logger nothing configured yet is set up (a ``serve`` process's own): one
    that has handlers already — a test runner calling ``serve`` in process — is left as
    it is, with its level, so nothing outlives the call."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLineFormatter() if log_format == "json"
                         else logging.Formatter(TEXT_FORMAT))
    logging.basicConfig(level=level.upper(), handlers=[handler])
    logging.getLogger("alembic").setLevel(logging.WARNING)
