"""``serve --log-format json``: a record, its traceback included, is one JSON line."""

from __future__ import annotations

import json
import logging

from iotiam.json_logs import JsonLineFormatter


def record(message: str, *args: object, exc: bool = False) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise ValueError("bad value")
        except ValueError:
            import sys
            exc_info = sys.exc_info()
    return logging.LogRecord("iotiam.server", logging.WARNING, __file__, 1, message, args,
                             exc_info)


def test_json_line_ok_fields() -> None:
    line = JsonLineFormatter().format(record("worker %d did not stop; \"%s\"", 7, "x\ny"))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed.keys() == {"ts", "level", "logger", "message"}
    assert parsed["message"] == 'worker 7 did not stop; "x\ny"'
    assert (parsed["level"], parsed["logger"]) == ("WARNING", "iotiam.server")
    assert parsed["ts"].endswith("+00:00")


def test_json_line_ok_exception_is_a_field() -> None:
    line = JsonLineFormatter().format(record("a consumer failed", exc=True))
    assert "\n" not in line
    parsed = json.loads(line)
    assert parsed["message"] == "a consumer failed"
    assert parsed["exception"].startswith("Traceback")
    assert parsed["exception"].endswith("ValueError: bad value")
