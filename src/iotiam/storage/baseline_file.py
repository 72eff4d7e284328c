"""The detection engine's learned baselines, kept in a file in the data directory.

Baselines are rebuilt from events and are worth hours or days of learning, not a
transaction log: a JSON file written atomically (temp file, fsync, rename) now and then
is enough, and it keeps tens of megabytes of counters out of the database. A damaged
file is set aside, never trusted, and learning starts over.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)


class BaselineFile:
    """Load and save one JSON snapshot, atomically, mode 0600."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, Any] | None:
        """The saved snapshot, or None (missing or damaged: a damaged one is renamed)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as e:
            self._set_aside(f"unreadable: {e}")
            return None
        if not isinstance(data, dict):
            self._set_aside("not a JSON object")
            return None
        return data

    def set_aside(self, why: str) -> None:
        """Move a snapshot that could not be used out of the way (kept for inspection)."""
        self._set_aside(why)

    def _set_aside(self, why: str) -> None:
        damaged = self.path.with_suffix(".damaged")
        log.warning("detection baselines %s are %s; learning starts over (kept as %s)",
                    self.path, why, damaged)
        with contextlib.suppress(OSError):
            os.replace(self.path, damaged)

    def save(self, snapshot: dict[str, Any]) -> None:
        """Replace the file with ``snapshot``; a crash leaves the old one or the new one."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        temporary = self.path.with_suffix(".tmp")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump(snapshot, out, separators=(",", ":"))
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, self.path)
