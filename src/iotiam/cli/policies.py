"""``iotiam policy`` (documents, attachments, decisions, questions) and ``iotiam site``.

A negative answer is not an error: ``policy test`` exits 2 on Deny and ``policy lint``
exits 2 when a finding reaches ``--fail-on``; errors exit 1 with one ``error:`` line.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from iotiam.cli.client import api_path
from iotiam.cli.entry import UsageError
from iotiam.cli.main import Context
from iotiam.cli.output import print_json, print_line, print_table
from iotiam.errors import InvalidInput

policy_app = typer.Typer(help="Policies: write, attach, test and ask who may do what.",
                         no_args_is_help=True)
site_app = typer.Typer(help="Sites: time zones and networks named in policy conditions.",
                       no_args_is_help=True)

#: exit code of a negative answer (Deny, lint findings); errors exit 1
NEGATIVE = 2
SEVERITIES = ("info", "low", "medium", "high", "critical")
#: short action names the CLI accepts, e.g. ``--action publish``
SHORT_ACTIONS = {"publish": "mqtt:publish", "subscribe": "mqtt:subscribe",
                 "receive": "mqtt:receive", "connect": "mqtt:connect", "enroll": "est:enroll"}
_MEDIA = {".json": "application/json", ".yaml": "application/yaml",
          ".yml": "application/yaml"}


def register(app: typer.Typer) -> None:
    """Add ``policy`` and ``site``."""
    app.add_typer(policy_app, name="policy")
    app.add_typer(site_app, name="site")


def _say(text: str) -> None:
    """A line as is (reasons and topics may hold ``[...]``, which is not markup)."""
    print_line(text)


def _read_document(path: Path) -> tuple[bytes, str]:
    """A policy file (``-`` for stdin) and the media type its name suggests."""
    if str(path) == "-":
        return sys.stdin.buffer.read(), "text/plain"
    try:
        return path.read_bytes(), _MEDIA.get(path.suffix.lower(), "text/plain")
    except OSError as e:
        raise InvalidInput(f"cannot read {path}: {e.strerror or e}") from e


def _action(text: str) -> str:
    return SHORT_ACTIONS.get(text, text)


def _target(org: str | None, device_type: str | None, group: str | None,
            device: str | None) -> dict[str, str]:
    given = [(kind, value) for kind, value in (("org-unit", org), ("device-type", device_type),
                                                ("group", group), ("device", device))
             if value is not None]
    if len(given) != 1:
        raise UsageError("name exactly one target: --org, --type, --group or --device")
    kind, value = given[0]
    return {"kind": kind, "id": value}


def _at(text: str | None) -> str | None:
    if text is None:
        return None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError as e:
        raise InvalidInput(f"--at {text!r} is not an ISO 8601 time "
                           "(e.g. 2026-03-02T10:00 or 2026-03-02T10:00+01:00)") from e
    if instant.tzinfo is None:
        instant = instant.replace(tzinfo=UTC)
    return instant.isoformat()


def _finding_line(finding: dict[str, Any]) -> str:
    return f"  {finding['text']}"


# -- documents -------------------------------------------------------------------------


@policy_app.command("put")
def policy_put(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="YAML or JSON policy document ('-': stdin).")],
    owner: Annotated[str | None, typer.Option(help="Owning org unit (default: yours).")
                     ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Store the next version of a policy; prints lint findings and what changed."""
    obj: Context = ctx.obj
    content, media = _read_document(file)
    params = {"owner": owner} if owner else {}
    body = obj.client().request("PUT", "/v1/policies", content=content, params=params,
                                headers={"Content-Type": media}).json()
    if as_json:
        print_json(body)
        return
    _say(f"stored {body['name']} version {body['version']} (owner {body['owner_path']})")
    for line in body["diff"]:
        _say(f"  {line}")
    if body["findings"]:
        _say(f"{len(body['findings'])} lint finding(s):")
        for finding in body["findings"]:
            _say(_finding_line(finding))


@policy_app.command("list")
def policy_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Policies you may see, with where they are attached."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/policies")["items"]
    if as_json:
        print_json(items)
        return
    print_table(f"{len(items)} policies", ["name", "version", "owner", "guardrail", "attached to"],
                [[p["name"], p["version"], p["owner_path"],
                  "yes" if p["guardrail"] else "",
                  ", ".join(f"{a['target']['kind']} {a['target']['id']}"
                            for a in p["attachments"])] for p in items])


@policy_app.command("show")
def policy_show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    version: Annotated[int | None, typer.Option(help="This version (default: the latest).")
                       ] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """One version of a policy: where it applies, then its source."""
    obj: Context = ctx.obj
    body = obj.client().get(api_path("/v1/policies", name), version=version)
    if as_json:
        print_json(body)
        return
    versions = ", ".join(str(v) for v in body["versions"])
    _say(f"# {body['name']} version {body['version']} of [{versions}], owner "
         f"{body['owner_path']}, by {body['created_by']} at {body['created_at']}")
    for attachment in body["attachments"]:
        target = attachment["target"]
        _say(f"# attached to {target['kind']} {target['id']} (scope {attachment['scope']})")
    sys.stdout.write(body["source"] if body["source"].endswith("\n") else body["source"] + "\n")


@policy_app.command("diff")
def policy_diff(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    old: Annotated[int, typer.Argument(metavar="FROM")],
    new: Annotated[int, typer.Argument(metavar="TO")],
) -> None:
    """What changed between two versions."""
    obj: Context = ctx.obj
    body = obj.client().get(api_path("/v1/policies", name, "diff"), **{"from": old, "to": new})
    if not body["lines"]:
        _say(f"{name}: versions {old} and {new} do not differ")
    for line in body["lines"]:
        _say(line)


@policy_app.command("lint")
def policy_lint(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="YAML or JSON policy document ('-': stdin).")],
    fail_on: Annotated[str, typer.Option(help="Exit 2 on a finding this severe or worse "
                                              f"({', '.join(SEVERITIES)}).")] = "high",
) -> None:
    """Check a document without storing it (syntax errors exit 1, findings exit 2)."""
    obj: Context = ctx.obj
    if fail_on not in SEVERITIES:
        raise InvalidInput(f"--fail-on must be one of {', '.join(SEVERITIES)}")
    content, media = _read_document(file)
    body = obj.client().request("POST", "/v1/policies/lint", content=content,
                                headers={"Content-Type": media}).json()
    findings = body["findings"]
    if not findings:
        _say(f"{body['name']} version {body['version']}: no findings")
        return
    _say(f"{body['name']} version {body['version']}: {len(findings)} finding(s)")
    for finding in findings:
        _say(_finding_line(finding))
    threshold = SEVERITIES.index(fail_on)
    if any(SEVERITIES.index(f["severity"]) >= threshold for f in findings):
        raise typer.Exit(code=NEGATIVE)


# -- attachments -----------------------------------------------------------------------


@policy_app.command("attach")
def policy_attach(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    org: Annotated[str | None, typer.Option(help="Org unit id.")] = None,
    device_type: Annotated[str | None, typer.Option("--type", help="Device type name.")
                           ] = None,
    group: Annotated[str | None, typer.Option(help="Group id.")] = None,
    device: Annotated[str | None, typer.Option(help="Device id.")] = None,
    scope: Annotated[str | None, typer.Option(help="With --type: the org unit whose devices "
                                                   "of that type get it (default: yours).")
                     ] = None,
) -> None:
    """Attach a policy to exactly one target."""
    obj: Context = ctx.obj
    body = _target(org, device_type, group, device)
    if scope is not None:
        body["scope"] = scope
    attached = obj.client().post(api_path("/v1/policies", name, "attachments"), body)
    target = attached["target"]
    _say(f"attached {name} to {target['kind']} {target['id']} (scope {attached['scope']})")


@policy_app.command("detach")
def policy_detach(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    org: Annotated[str | None, typer.Option(help="Org unit id.")] = None,
    device_type: Annotated[str | None, typer.Option("--type", help="Device type name.")
                           ] = None,
    group: Annotated[str | None, typer.Option(help="Group id.")] = None,
    device: Annotated[str | None, typer.Option(help="Device id.")] = None,
) -> None:
    """Remove an attachment."""
    obj: Context = ctx.obj
    target = _target(org, device_type, group, device)
    obj.client().request("DELETE", api_path("/v1/policies", name, "attachments"), params=target)
    _say(f"detached {name} from {target['kind']} {target['id']}")


# -- decisions and questions -----------------------------------------------------------


@policy_app.command("test")
def policy_test(
    ctx: typer.Context,
    device: Annotated[str, typer.Option(help="Device id.")],
    action: Annotated[str, typer.Option(help="publish, subscribe, receive, connect or a full "
                                             "action such as http:GET.")] = "publish",
    topic: Annotated[str | None, typer.Option(help="Topic (filter, to subscribe).")] = None,
    resource: Annotated[str | None, typer.Option(help="Client id or path, for other "
                                                      "actions.")] = None,
    at: Annotated[str | None, typer.Option(help="Decide as if at this ISO 8601 time (UTC "
                                                "without an offset); changes nothing.")
                  ] = None,
    source: Annotated[str | None, typer.Option("--from", help="Source IP address.")] = None,
    trust: Annotated[float | None, typer.Option(help="Trust score 0-100.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Would DEVICE be allowed ACTION on TOPIC? Exit 0 on Permit, 2 on Deny."""
    obj: Context = ctx.obj
    full_action = _action(action)
    wanted = topic if topic is not None else resource
    if wanted is None:
        if full_action != "mqtt:connect":
            raise InvalidInput("say what to test: --topic T (or --resource R)")
        wanted = device
    body: dict[str, Any] = {"device": device, "action": full_action, "resource": wanted}
    for key, value in (("at", _at(at)), ("source_ip", source), ("trust_score", trust)):
        if value is not None:
            body[key] = value
    answer = obj.client().post("/v1/decisions", body)
    if as_json:
        print_json(answer)
    else:
        verdict = "Permit" if answer["decision"] == "permit" else "Deny"
        _say(f"{verdict}: {device} {full_action} {wanted!r}" + (f" at {body['at']}"
                                                                  if "at" in body else ""))
        _say(f"  reason: {answer['reason']}")
        for statement in answer["statements"]:
            _say(f"  {statement['effect']}: {statement['text']}")
    if answer["decision"] != "permit":
        raise typer.Exit(code=NEGATIVE)


@policy_app.command("who-can")
def policy_who_can(
    ctx: typer.Context,
    topic: Annotated[str, typer.Option(help="Topic (or client id / path, with --action).")],
    action: Annotated[str, typer.Option(help="publish, subscribe, receive, ...")
                      ] = "publish",
    source: Annotated[str | None, typer.Option("--from", help="Source IP address.")] = None,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Which devices you can see may do ACTION on TOPIC now, and through which policies."""
    obj: Context = ctx.obj
    full_action = _action(action)
    devices: list[dict[str, Any]] = []
    targets: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = obj.client().get("/v1/policies/who-can", action=full_action, topic=topic,
                                source_ip=source, after=after, limit=1000)
        devices += page["devices"]
        targets = page["targets"]
        after = page["next"]
        if after is None:
            break
    if as_json:
        print_json({"action": full_action, "topic": topic, "devices": devices,
                    "targets": targets})
        return
    print_table(f"{len(devices)} devices may {full_action} on {topic!r}",
                ["device", "org", "allowed by"],
                [[d["device"], d["org_path"], "; ".join(s["text"] for s in d["statements"])]
                 for d in devices])
    for grant in targets:
        target = grant["attachment"]["target"]
        note = " (depends on the device or conditions)" if grant["conditional"] else ""
        _say(f"granted through {target['kind']} {target['id']}: {grant['source']['text']}, "
             f"pattern {grant['pattern']!r}{note}")


@policy_app.command("what-can")
def policy_what_can(
    ctx: typer.Context,
    device: Annotated[str, typer.Option(help="Device id.")],
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Everything DEVICE may do (variables substituted), denies first."""
    obj: Context = ctx.obj
    body = obj.client().get(api_path("/v1/devices", device, "permissions"))
    if as_json:
        print_json(body)
        return
    if not body["lines"]:
        _say(f"{device} may do nothing: no policy applies")
    for line in body["lines"]:
        _say(line)


# -- sites -----------------------------------------------------------------------------


@site_app.command("set")
def site_set(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument()],
    tz: Annotated[str, typer.Option("--tz", help="IANA time zone, e.g. Europe/Berlin.")],
    network: Annotated[list[str] | None, typer.Option(help="CIDR of the site (repeatable).")
                       ] = None,
) -> None:
    """Create or replace a site (root admins)."""
    obj: Context = ctx.obj
    response = obj.client().request("PUT", api_path("/v1/sites", name),
                                    json={"timezone": tz, "networks": network or []})
    site = response.json()
    verb = "created" if response.status_code == 201 else "updated"
    networks = ", ".join(site["networks"]) or "no networks"
    _say(f"{verb} site {site['name']} ({site['timezone']}; {networks})")


@site_app.command("list")
def site_list(
    ctx: typer.Context,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Every site."""
    obj: Context = ctx.obj
    items = obj.client().get("/v1/sites")["items"]
    if as_json:
        print_json(items)
        return
    print_table(f"{len(items)} sites", ["name", "time zone", "networks"],
                [[s["name"], s["timezone"], ", ".join(s["networks"])] for s in items])
