"""The Mosquitto authorization plugin, compiled from its C source in the package.

``make install`` builds it next to its source (``make plugin``); where that copy is
missing or older than the source, the managed broker builds its own into its data
directory on start. Building needs gcc and Debian's ``mosquitto-dev`` and
``libmosquitto-dev`` headers.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from iotiam.errors import SetupError

SOURCE = Path(__file__).parent / "plugin" / "iotiam_auth.c"
HEADER = Path("/usr/include/mosquitto_broker.h")
CFLAGS = ("-std=c11", "-D_GNU_SOURCE", "-O2", "-Wall", "-Wextra", "-fPIC", "-shared")


def auth_plugin_library(build_dir: Path) -> Path:
    """The compiled plugin: the one ``make plugin`` built if current, else one built now."""
    prebuilt = SOURCE.with_suffix(".so")
    if _current(prebuilt):
        return prebuilt
    target = build_dir / "iotiam_auth.so"
    if not _current(target):
        compile_plugin(target)
    return target


def compile_plugin(target: Path) -> None:
    """Compile the plugin into ``target`` (replaced atomically); SetupError if it cannot."""
    compiler = shutil.which("gcc") or shutil.which("cc")
    if compiler is None:
        raise SetupError("building the broker plugin needs a C compiler (apt-get install gcc)")
    if not HEADER.exists():
        raise SetupError("building the broker plugin needs Mosquitto's plugin headers "
                         "(apt-get install mosquitto-dev libmosquitto-dev)")
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + f".{os.getpid()}.tmp")
    done = subprocess.run([compiler, *CFLAGS, "-o", str(partial), str(SOURCE)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        lines = (done.stderr or done.stdout).strip().splitlines()
        raise SetupError(f"building the broker plugin failed: {lines[0] if lines else '?'}")
    partial.replace(target)


def _current(library: Path) -> bool:
    try:
        return library.stat().st_mtime >= SOURCE.stat().st_mtime
    except FileNotFoundError:
        return False
