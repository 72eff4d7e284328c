"""A SoftHSM2 token of a test's own (Debian package ``softhsm2``), in a temp directory."""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from iotiam.config import DEFAULT_PKCS11_MODULE
from iotiam.testing.environment import require


@dataclass(frozen=True)
class SoftHsmToken:
    """An initialised token: its store's config file, label and PINs."""

    conf: Path
    label: str
    pin: str
    so_pin: str
    module: str = DEFAULT_PKCS11_MODULE

    def environment(self) -> dict[str, str]:
        """What a process needs to reach it (SoftHSM2 reads SOFTHSM2_CONF at start)."""
        return {"SOFTHSM2_CONF": str(self.conf), "IOTIAM_PKCS11_PIN": self.pin,
                "IOTIAM_PKCS11_MODULE": self.module}


def softhsm_missing() -> str | None:
    """Why no SoftHSM2 token can be made here, or ``None`` if one can."""
    if shutil.which("softhsm2-util") is None:
        return "the 'softhsm2-util' binary is not installed (Debian package softhsm2)"
    if not Path(DEFAULT_PKCS11_MODULE).is_file():
        return f"the SoftHSM2 module {DEFAULT_PKCS11_MODULE} is not installed"
    return None


def pkcs11_engine_missing() -> str | None:
    """Why OpenSSL has no pkcs11 engine here (Debian package libengine-pkcs11-openssl),
    or ``None`` if it has one."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return "the 'openssl' binary is not installed"
    answer = subprocess.run([openssl, "version", "-e"], capture_output=True, text=True)
    # 'ENGINESDIR: "/usr/lib/x86_64-linux-gnu/engines-3"'
    directory = answer.stdout.partition(":")[2].strip().strip('"')
    if not (Path(directory) / "pkcs11.so").is_file():
        return (f"OpenSSL has no pkcs11 engine in {directory or '(no ENGINESDIR)'} "
                "(Debian package libengine-pkcs11-openssl)")
    return None


def require_pkcs11_engine() -> None:
    """Skip (or fail, under IOTIAM_REQUIRE_INTEGRATION) without OpenSSL's pkcs11 engine."""
    missing = pkcs11_engine_missing()
    require(missing is None, missing or "")


def create_token(directory: Path, label: str = "iotiam", pin: str = "4711-test",
                 so_pin: str = "so-4711-test") -> SoftHsmToken:
    """:func:`init_token` for a test: skips (or fails, under IOTIAM_REQUIRE_INTEGRATION)
    without SoftHSM2."""
    missing = softhsm_missing()
    require(missing is None, missing or "")
    return init_token(directory, label, pin, so_pin)


def init_token(directory: Path, label: str = "iotiam", pin: str = "4711-test",
               so_pin: str = "so-4711-test") -> SoftHsmToken:
    """Initialise a token in a store of its own under ``directory``."""
    util = shutil.which("softhsm2-util") or "softhsm2-util"
    store = directory / "softhsm-tokens"
    store.mkdir(parents=True, exist_ok=True)
    conf = directory / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {store}\nobjectstore.backend = file\n"
                    "log.level = ERROR\nslots.removable = false\n")
    subprocess.run([util, "--init-token", "--free", "--label", label, "--pin", pin,
                    "--so-pin", so_pin], check=True, capture_output=True,
                   env={"SOFTHSM2_CONF": str(conf), "PATH": "/usr/bin:/bin"})
    return SoftHsmToken(conf=conf, label=label, pin=pin, so_pin=so_pin)
