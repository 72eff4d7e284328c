"""``iotiam-agent``: the device side, from the command line."""

from __future__ import annotations

import hashlib
import json
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from iotiam.agent.agent import Agent, EnrollmentPending
from iotiam.agent.claim import load_idevid
from iotiam.agent.files import write_atomically
from iotiam.agent.gateway import MAX_REFRESH, MIN_REFRESH, REFRESH_SECONDS, GatewayRelay, Upstream
from iotiam.agent.gateway_calls import child_keys
from iotiam.agent.gateway_reports import REPORT_MODES
from iotiam.agent.paths import AgentError
from iotiam.agent.token_key import parse_key_uri
from iotiam.broker.child_listener import ChildListener, ChildListenerConfig
from iotiam.broker.layout import mosquitto_binary
from iotiam.cli.entry import EXIT_FAILED, UsageError, run_app
from iotiam.errors import InvalidInput

#: exit code of `enroll` when the server still holds the request (run it again later)
EXIT_PENDING = 3
#: exit code of `attest` when the server judged the firmware non-compliant
EXIT_NONCOMPLIANT = 4

app = typer.Typer(name="iotiam-agent", help="The iotiam device agent.", no_args_is_help=True,
                  pretty_exceptions_enable=False, add_completion=False)

DirOption = Annotated[Path, typer.Option("--dir", help="Agent state directory.")]


@app.command()
def enroll(
    directory: DirOption,
    server: Annotated[str, typer.Option(help="iotiam HTTPS URL, e.g. https://127.0.0.1:8443")],
    ca: Annotated[Path, typer.Option(help="CA file to trust for the server's TLS certificate.")],
    device: Annotated[str | None, typer.Option(
        help="This device's id in the inventory (default with an IDevID: its serial).")] = None,
    claim: Annotated[str | None, typer.Option(
        help="One-time claim token from `iotiam claim create`.")] = None,
    idevid_cert: Annotated[Path | None, typer.Option(
        help="Manufacturer IDevID certificate (PEM), for zero-touch enrollment.")] = None,
    idevid_key: Annotated[Path | None, typer.Option(
        help="The IDevID's private key (PEM), e.g. exported by the secure element.")] = None,
    wait: Annotated[float, typer.Option(
        help="With an IDevID: seconds to keep polling a request held for approval.")
    ] = 3600.0,
    label: Annotated[str | None, typer.Option(help="EST label (certificate profile).")] = None,
    key: Annotated[str | None, typer.Option(
        help="Keep the device key in a PKCS#11 token, e.g. 'pkcs11:token=dev;object=device' "
             "(module and PIN: IOTIAM_PKCS11_MODULE, IOTIAM_PKCS11_PIN[_FILE]).")] = None,
) -> None:
    """Generate a key here and enroll with a claim token or a manufacturer IDevID.

    With --key the key is generated in (or taken from) a PKCS#11 token and never
    exists in a file; the agent keeps only its URI (docs/hsm.md).

    A held IDevID request (waiting for an admin) exits 3 once --wait is spent; running
    the same command again continues polling the same request.
    """
    with_idevid = idevid_cert is not None or idevid_key is not None
    if with_idevid == (claim is not None):
        raise UsageError("give either --claim or --idevid-cert with --idevid-key")
    if idevid_cert is None or idevid_key is None:
        if with_idevid:
            raise UsageError("--idevid-cert and --idevid-key go together")
        if device is None:
            raise UsageError("--device is required with --claim")
    elif device is None:
        device = load_idevid(idevid_cert, idevid_key)[1]
    if key is not None:
        parse_key_uri(key)  # a malformed URI is refused before anything is written
    agent = Agent(directory, server_url=server, device_id=device, server_ca=ca, label=label)
    if idevid_cert is not None and idevid_key is not None:
        cert = agent.enroll_with_idevid(idevid_cert, idevid_key, wait=wait, key_uri=key)
    else:
        assert claim is not None
        cert = agent.enroll(claim, key_uri=key)
    print(f"enrolled {device}: serial {cert.serial_number:x}, valid until "
          f"{cert.not_valid_after_utc.isoformat()}")


@app.command()
def renew(directory: DirOption) -> None:
    """Renew now (recovers instead when the certificate already expired)."""
    cert = Agent(directory).renew()
    print(f"renewed: serial {cert.serial_number:x}, valid until "
          f"{cert.not_valid_after_utc.isoformat()}")


@app.command("run")
def run_loop(directory: DirOption) -> None:
    """Keep the certificate renewed until stopped (SIGINT/SIGTERM); logs to stderr."""
    # each renewal and failure is one line on stderr, for journald or a container log
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s iotiam-agent %(levelname)s %(message)s")
    agent = Agent(directory)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    agent.run(stop)


@app.command()
def status(directory: DirOption) -> None:
    """Show what the agent holds and when it renews next."""
    print(json.dumps(Agent(directory).status(), indent=2))


@app.command()
def attest(
    directory: DirOption,
    firmware_version: Annotated[str, typer.Option(help="The running firmware's version.")],
    firmware_file: Annotated[Path, typer.Option(
        help="The running firmware image (its SHA-256 is attested).")],
    measurement: Annotated[list[str] | None, typer.Option(
        help="A boot measurement NAME=DIGEST (repeatable).")] = None,
) -> None:
    """Answer an attestation challenge: prints the verdict; exit 4 when non-compliant."""
    measurements: dict[str, str] = {}
    for item in measurement or []:
        name, sep, value = item.partition("=")
        if not sep or not name or not value:
            raise UsageError(f"--measurement {item!r}: use NAME=DIGEST")
        measurements[name] = value
    digest = hashlib.sha256()
    try:
        with firmware_file.open("rb") as image:
            for chunk in iter(lambda: image.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as e:
        raise InvalidInput(f"cannot read {firmware_file}: {e.strerror or e}") from e
    verdict = Agent(directory).attest(firmware_version, digest.hexdigest(), measurements)
    print(json.dumps(verdict, indent=2))
    if not verdict.get("compliant"):
        sys.exit(EXIT_NONCOMPLIANT)


@app.command("gateway-keys")
def gateway_keys(
    directory: DirOption,
    out: Annotated[Path, typer.Option(help="Where to write the children's psk_file.")],
) -> None:
    """A gateway's children's PSKs, fetched over mTLS and opened with the device key,
    written (0600) as a Mosquitto ``psk_file`` for the listener that serves them."""
    keys = child_keys(Agent(directory))
    text = "".join(f"{identity}:{key.hex()}\n" for identity, key in sorted(keys.items()))
    try:
        write_atomically(out, text.encode(), 0o600)
    except OSError as e:
        raise InvalidInput(f"cannot write {out}: {e.strerror or e}") from e
    print(f"{len(keys)} child key(s) written to {out}")


@app.command("gateway")
def gateway_mode(
    directory: DirOption,
    port: Annotated[int, typer.Option(help="The children's TLS-PSK listener port.")] = 8884,
    host: Annotated[str, typer.Option(help="Address the children's listener binds.")
                    ] = "0.0.0.0",  # noqa: S104 - the children reach the gateway over its LAN
    local_port: Annotated[int, typer.Option(
        help="Loopback port of the agent's own login to its broker.")] = 18884,
    refresh: Annotated[float, typer.Option(
        help="Seconds between fetches of the children (a removed child's key works at "
             "most this long).")] = REFRESH_SECONDS,
    upstream: Annotated[str | None, typer.Option(
        help="HOST:PORT of the central broker (mTLS) relayed messages are published to.")
    ] = None,
    reports: Annotated[str | None, typer.Option(
        help="How sightings and events are reported: 'mqtt' (on the gateway's report "
             "topics upstream; needs --upstream) or 'https' (the gateway API). Default: "
             "mqtt with --upstream, else https.")] = None,
) -> None:
    """Serve this gateway's children over TLS-PSK (a local Mosquitto) and relay their
    messages upstream, judged as theirs; runs until SIGINT/SIGTERM, logs to stderr."""
    if not MIN_REFRESH <= refresh <= MAX_REFRESH:
        raise UsageError(f"--refresh must be between {MIN_REFRESH:g} and {MAX_REFRESH:g} "
                         "seconds")
    for name, value in (("--port", port), ("--local-port", local_port)):
        if not 1 <= value <= 65535:
            raise UsageError(f"{name} {value} is not a TCP port")
    if port == local_port:
        raise UsageError("--port and --local-port must differ")
    target = _upstream(upstream) if upstream is not None else None
    mode = reports or ("mqtt" if target is not None else "https")
    if mode not in REPORT_MODES:
        raise UsageError(f"--reports {mode!r}: use {' or '.join(REPORT_MODES)}")
    if mode == "mqtt" and target is None:
        raise UsageError("--reports mqtt needs --upstream HOST:PORT (the central broker)")
    binary = mosquitto_binary()
    if binary is None:
        raise AgentError("the gateway mode needs Mosquitto (Debian: apt install mosquitto)")
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s iotiam-agent %(levelname)s %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line a relayed message
    agent = Agent(directory)
    listener = ChildListener(binary, ChildListenerConfig(host, port, local_port),
                             agent.files.root / "gateway-broker")
    relay = GatewayRelay(agent, listener, refresh_seconds=refresh, upstream=target,
                         reports=mode)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    relay.start()
    try:
        logging.getLogger("iotiam.agent").info(
            "gateway %s serving %d child(ren) on %s:%d; reports over %s", agent.device_id,
            len(listener.children), host, port, mode.upper())
        relay.run(stop)
    finally:
        relay.stop()


def _upstream(value: str) -> Upstream:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise UsageError(f"--upstream {value!r}: use HOST:PORT")
    return Upstream(host.strip("[]"), int(port))


def run(argv: Sequence[str] | None = None) -> None:
    """Console entry point: one line on stderr; exit 1 for any refusal, 3 for still pending."""
    run_app(app, argv, exit_code=lambda e: EXIT_PENDING if isinstance(e, EnrollmentPending)
            else EXIT_FAILED)
