"""``iotiam init`` and ``iotiam serve``: the two commands that run locally."""

from __future__ import annotations

import logging
import os
import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from iotiam.cli.entry import UsageError
from iotiam.cli.inputs import parse_duration
from iotiam.cli.main import Context, console
from iotiam.config import (
    BROKER_AUTHS,
    BROKER_MODES,
    MAX_LEARNING_SECONDS,
    check_events_url,
    check_log_format,
    load_settings,
)
from iotiam.hsm.uri import CaKeyUris
from iotiam.pki.models import KeyAlgorithm

if TYPE_CHECKING:
    from iotiam.config import Settings
    from iotiam.installation import InitResult


def register(app: typer.Typer) -> None:
    """Add ``init`` and ``serve``."""
    app.command("init")(init)
    app.command("serve")(serve)


def _port(value: int | None, name: str) -> int | None:
    if value is not None and not 1 <= value <= 65535:
        raise UsageError(f"{name} must be between 1 and 65535")
    return value


def init(
    ctx: typer.Context,
    port: Annotated[int | None, typer.Option(help="HTTPS API port (default 8443).")] = None,
    http_port: Annotated[int | None, typer.Option(
        help="Plain-HTTP port for OCSP, CRL and CA certificates (default 8080).")] = None,
    host: Annotated[str | None, typer.Option(help="Address to listen on (default 127.0.0.1).")
                    ] = None,
    public_url: Annotated[str | None, typer.Option(
        help="Base URL put in certificates for OCSP/CRL/CA (default http://HOST:HTTP_PORT).")
    ] = None,
    name: Annotated[list[str] | None, typer.Option(
        "--name", help="Extra DNS name or IP for the server certificate (repeatable).")] = None,
    key_algorithm: Annotated[KeyAlgorithm, typer.Option(
        help="Key algorithm of the CAs.")] = KeyAlgorithm.EC_P256,
    organization: Annotated[str, typer.Option(help="Organization name in CA subjects.")
                            ] = "iotiam",
    broker_port: Annotated[int | None, typer.Option(
        help="mTLS port of the managed Mosquitto (default 8883).")] = None,
    broker_psk_port: Annotated[int | None, typer.Option(
        help="TLS-PSK port of the managed Mosquitto (default 8884).")] = None,
    broker_admin_port: Annotated[int | None, typer.Option(
        help="Loopback port of the broker's dynsec admin listener (default 18883).")] = None,
    broker: Annotated[str | None, typer.Option(
        help="Data plane: managed (run Mosquitto when installed), external, or off.")] = None,
    no_broker: Annotated[bool, typer.Option(
        "--no-broker", help="Same as --broker off.")] = False,
    broker_auth: Annotated[str | None, typer.Option(
        help="How the managed broker authorizes devices: dynsec (its dynamic-security "
             "plugin holds the fleet's ACLs; default) or plugin (it asks iotiam; for "
             "large fleets, docs/broker-plugin.md).")] = None,
    events_url: Annotated[str | None, typer.Option(
        help="NATS JetStream for detection events (nats://HOST:4222; default: none, "
             "scored in process).")] = None,
    learning_period: Annotated[str | None, typer.Option(
        help="How long a new device's baselines learn before it is judged by its own "
             "(e.g. 1h, 7d; at most 30d; default 1h).")] = None,
    ca_key: Annotated[str | None, typer.Option(help=(
        "Issuing CA key in a PKCS#11 token, e.g. 'pkcs11:token=iotiam;object=issuing-ca'; "
        "root and OCSP keys go beside it (root-ca, ocsp-responder); docs/hsm.md."))] = None,
    root_key: Annotated[str | None, typer.Option(help="Root CA key's PKCS#11 URI.")] = None,
    ocsp_key: Annotated[str | None, typer.Option(help="OCSP key's PKCS#11 URI.")] = None,
) -> None:
    """Create the data directory, database, CAs, TLS certificate and a local admin profile."""
    from iotiam.installation import initialize

    obj: Context = ctx.obj
    changes = _recorded_choices(port=port, http_port=http_port, host=host,
                                public_url=public_url, name=name, broker_port=broker_port,
                                broker_psk_port=broker_psk_port,
                                broker_admin_port=broker_admin_port, broker=broker,
                                no_broker=no_broker, broker_auth=broker_auth,
                                events_url=events_url, learning_period=learning_period)
    # the settings check the ports together (all distinct) as they are made
    settings = load_settings(obj.data_dir).with_overrides(**changes)
    result = initialize(settings, key_algorithm=key_algorithm, organization=organization,
                        ca_keys=_ca_keys(ca_key, root_key, ocsp_key))
    _print_init(settings, result)


def _ca_keys(ca_key: str | None, root_key: str | None,
             ocsp_key: str | None) -> CaKeyUris | None:
    if ca_key is None:
        if root_key or ocsp_key:
            raise UsageError("--root-key and --ocsp-key go with --ca-key")
        return None
    return CaKeyUris.parse(ca_key, root=root_key, responder=ocsp_key)


def _print_init(settings: Settings, result: InitResult) -> None:
    console.print(f"data directory  {settings.data_dir}")
    console.print(f"CA              {'created' if result.created_ca else 'kept (already there)'}")
    console.print(f"admin profile   {result.profile_path}"
                  f"{' (new admin token)' if result.created_token else ''}")
    console.print(f"API (HTTPS)     {result.api_url}  docs: {result.api_url}/docs")
    console.print(f"OCSP/CRL (HTTP) {result.http_url}")
    console.print(f"audit key       {settings.audit_dir / 'checkpoint.vkey'}  (give it to "
                  "your auditors: it checks the signed audit checkpoints)", markup=False)
    console.print("next: `iotiam serve`, then e.g. `iotiam device add dev-1 --type sensor`")


def _recorded_choices(*, port: int | None, http_port: int | None, host: str | None,
                      public_url: str | None, name: list[str] | None,
                      broker_port: int | None, broker_psk_port: int | None,
                      broker_admin_port: int | None, broker: str | None,
                      no_broker: bool, broker_auth: str | None = None,
                      events_url: str | None = None,
                      learning_period: str | None = None) -> dict[str, Any]:
    """The settings ``init``'s options change (it records them in ``config.json``)."""
    changes: dict[str, Any] = {}
    for option, value in (("port", port), ("http_port", http_port),
                          ("broker_port", broker_port), ("broker_psk_port", broker_psk_port),
                          ("broker_admin_port", broker_admin_port)):
        if (p := _port(value, "--" + option.replace("_", "-"))) is not None:
            changes[option] = p
    if host:
        changes["host"] = host
    if public_url:
        if not public_url.startswith(("http://", "https://")):
            raise UsageError("--public-url must start with http:// or https://")
        changes["public_base_url"] = public_url.rstrip("/")
    if name:
        changes["server_names"] = tuple(dict.fromkeys(("localhost", "127.0.0.1", *name)))
    if no_broker or broker:
        mode = "off" if no_broker else broker
        if mode not in BROKER_MODES:
            raise UsageError(f"--broker must be one of {', '.join(BROKER_MODES)}")
        changes["broker_mode"] = mode
    if broker_auth:
        if broker_auth not in BROKER_AUTHS:
            raise UsageError(f"--broker-auth must be one of {', '.join(BROKER_AUTHS)}")
        changes["broker_auth"] = broker_auth
    if events_url:
        changes["events_url"] = check_events_url(events_url)
    if learning_period:
        seconds = parse_duration(learning_period).total_seconds()
        if seconds > MAX_LEARNING_SECONDS:
            raise UsageError(f"--learning-period is at most {MAX_LEARNING_SECONDS // 86400}d")
        changes["detection_learning_seconds"] = seconds
    return changes


def serve(
    ctx: typer.Context,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
    workers: Annotated[int | None, typer.Option(
        min=1, max=64, show_default=False,
        help="Serving processes sharing the ports (signing is CPU-bound: up to one per core; "
             "default $IOTIAM_WORKERS, else 1)."
    )] = None,
    log_format: Annotated[str | None, typer.Option(
        show_default=False,
        help="Log lines as 'text' or 'json' (one object a line; default "
             "$IOTIAM_LOG_FORMAT, else text)."
    )] = None,
) -> None:
    """Run the HTTPS API and the plain-HTTP OCSP/CRL endpoints."""
    from iotiam.api.server import serve as run_server
    from iotiam.bootstrap import build_services
    from iotiam.json_logs import configure_logging
    from iotiam.metrics import Metrics, share_between_processes

    obj: Context = ctx.obj
    settings = load_settings(obj.data_dir)
    if log_format is not None:
        settings = settings.with_overrides(log_format=check_log_format(log_format))
    configure_logging(log_level, settings.log_format)
    # before anything counts: every worker writes to files the scraped one sums
    share_between_processes(settings.metrics_dir)
    services = build_services(settings, metrics=Metrics(shared_dir=settings.metrics_dir))
    where = {"iotiam API": f"{settings.api_url}  (docs: {settings.api_url}/docs)",
             "OCSP/CRL/CA": f"http://{settings.host}:{settings.http_port}  (and /metrics)",
             "CLI profile": str(settings.data_dir / "profile.json")}
    for name, value in where.items():
        if settings.log_format == "json":  # stdout too stays one object a line
            logging.getLogger("iotiam.server").info("%s %s", name, value)
        else:
            console.print(f"{name:<14} {value}")
    try:
        run_server(services, log_level=log_level, workers=workers or settings.workers)
    finally:
        services.close()
    # Everything is stopped and closed. Skip interpreter finalization: a daemon thread a
    # library left behind (paho's network loop, a resolver) can hold a libc lock that the
    # final garbage collection then waits on forever.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
