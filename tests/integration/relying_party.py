"""What a device maker and a relying party do with stock tools: openssl and curl.

Nothing here uses iotiam's code to make or check a credential: keys and CSRs come from
``openssl req``, URLs are read out of the certificate with ``openssl x509``, CRLs are
fetched with curl and checked with ``openssl verify``, status with ``openssl ocsp``.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from .live_server import Server

TOOL_SECONDS = 60.0


def run(*args: str | Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a tool; with ``check`` a non-zero exit fails the test with its output."""
    proc = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                          timeout=TOOL_SECONDS, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(f"`{' '.join(map(str, args))}` exited {proc.returncode}\n"
                             f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
    return proc


def openssl_key_and_csr(openssl: str, directory: Path, common_name: str,
                        newkey: str = "ec") -> tuple[Path, Path]:
    """A private key and PKCS#10 request made by ``openssl req`` (EC P-256 unless told)."""
    key, csr = directory / f"{common_name}.key", directory / f"{common_name}.csr"
    key_args = (["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"] if newkey == "ec"
                else ["-newkey", newkey])
    run(openssl, "req", "-new", *key_args, "-nodes", "-keyout", key, "-out", csr,
        "-subj", f"/CN={common_name}")
    return key, csr


@dataclass(frozen=True)
class DeviceCredential:
    """A device's key and the certificate iotiam issued for it, as files."""

    device_id: str
    key: Path
    csr: Path
    leaf: Path
    chain: Path
    serial: str  # as ``openssl x509 -serial`` prints it: upper-case hex, no colons

    @property
    def serial_int(self) -> int:
        """The serial as a number."""
        return int(self.serial, 16)


def enroll(server: Server, openssl: str, device_id: str, device_type: str = "sensor"
           ) -> DeviceCredential:
    """Register a device, make its key + CSR with openssl, ``iotiam cert issue`` it."""
    server.register(device_id, device_type)
    key, csr = openssl_key_and_csr(openssl, server.work_dir, device_id)
    leaf = server.work_dir / f"{device_id}.pem"
    chain = server.work_dir / f"{device_id}-chain.pem"
    server.cli("cert", "issue", "--device", device_id, "--csr", csr, "--out", leaf,
               "--chain-out", chain)
    printed = run(openssl, "x509", "-in", leaf, "-noout", "-serial").stdout.strip()
    assert printed.startswith("serial="), printed
    return DeviceCredential(device_id, key, csr, leaf, chain, printed.removeprefix("serial="))


def ocsp_url(openssl: str, cert: Path) -> str:
    """The AIA OCSP URL, as ``openssl x509 -ocsp_uri`` reads it."""
    url = run(openssl, "x509", "-in", cert, "-noout", "-ocsp_uri").stdout.strip()
    assert url.startswith("http://"), f"no OCSP URL in {cert}: {url!r}"
    return url


def crl_url(openssl: str, cert: Path) -> str:
    """The CRL Distribution Point URL, from ``openssl x509 -ext crlDistributionPoints``."""
    text = run(openssl, "x509", "-in", cert, "-noout", "-ext", "crlDistributionPoints").stdout
    urls: list[str] = re.findall(r"URI:(\S+)", text)
    assert len(urls) == 1, f"expected one CDP URI in {cert}: {text}"
    return urls[0]


def fetch_crl(openssl: str, curl: str, url: str, directory: Path, name: str) -> Path:
    """GET a CRL with curl (DER on the wire) and convert it to PEM with ``openssl crl``."""
    der, pem = directory / f"{name}.crl", directory / f"{name}.crl.pem"
    run(curl, "--fail", "--silent", "--show-error", "--max-time", "10", "-o", der, url)
    run(openssl, "crl", "-inform", "DER", "-in", der, "-out", pem)
    return pem


def crl_serials(openssl: str, crl_pem: Path) -> set[int]:
    """Serials listed on a CRL, as ``openssl crl -text`` shows them."""
    text = run(openssl, "crl", "-in", crl_pem, "-noout", "-text").stdout
    return {int(s, 16) for s in re.findall(r"Serial Number: ([0-9A-Fa-f]+)", text)}


def crl_number(openssl: str, crl_pem: Path) -> int:
    """The CRL number, as ``openssl crl -crlnumber`` prints it."""
    printed = run(openssl, "crl", "-in", crl_pem, "-noout", "-crlnumber").stdout.strip()
    return int(printed.removeprefix("crlNumber=").removeprefix("0x"), 16)


def verify(openssl: str, server: Server, leaf: Path, *options: str | Path
           ) -> subprocess.CompletedProcess[str]:
    """``openssl verify -CAfile root -untrusted issuing [options] leaf`` (not checked)."""
    return run(openssl, "verify", "-CAfile", server.root_pem, "-untrusted",
               server.issuing_pem, *options, leaf, check=False)


def ocsp(openssl: str, server: Server, leaf: Path, *options: str | Path, sha256: bool = False
         ) -> subprocess.CompletedProcess[str]:
    """``openssl ocsp`` against the URL in the certificate's AIA, trusting only the root."""
    # a CertID digest option must come before -cert, or openssl refuses it
    digest = ["-sha256"] if sha256 else []
    return run(openssl, "ocsp", "-issuer", server.issuing_pem, *digest, "-cert", leaf,
               "-url", ocsp_url(openssl, leaf), "-CAfile", server.root_pem, *options)


def ocsp_status(result: subprocess.CompletedProcess[str], leaf: Path) -> str:
    """The status word openssl printed for ``leaf`` after checking the response signature."""
    assert result.returncode == 0, result
    assert "Response verify OK" in result.stderr, result
    # when openssl sent a nonce (its default), the responder must have echoed it
    assert "WARNING: no nonce in response" not in result.stdout + result.stderr, result
    match = re.search(rf"^{re.escape(str(leaf))}: (\w+)$", result.stdout, re.MULTILINE)
    assert match, f"no status line for {leaf}: {result.stdout}"
    return match.group(1)
