"""Audit export for a SIEM: JSON lines and RFC 5424 syslog, limited to the caller's subtree."""

from __future__ import annotations

import itertools
import json
import re
from typing import Any

import pytest
from expect import audit_records
from fleet import add_device, add_org_unit

from conftest import Installation
from iotiam.audit.chain import GENESIS_HASH

# RFC 5424 §6: HEADER SP STRUCTURED-DATA SP MSG, with our app name and SD-ID
SYSLOG = re.compile(
    r"^<(?P<pri>\d{1,3})>1 "
    r"(?P<timestamp>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?Z) "
    r"(?P<host>[\x21-\x7e]{1,255}) iotiam - (?P<msgid>[\x21-\x7e]{1,32}) "
    r'(?P<sd>\[iotiam@32473(?: [^= \]"]{1,32}="(?:[^"\\\]]|\\["\\\]])*")+\]) '
    r"\ufeff(?P<msg>.*)$"
)
SD_PARAM = re.compile(r' ([^= \]"]{1,32})="((?:[^"\\\]]|\\["\\\]])*)"')


@pytest.fixture
def fleet(installation: Installation) -> Installation:
    """Root and tenant records, one refusal, and an actor name syslog has to escape."""
    api = installation.api()
    add_org_unit(api, "acme", "tenant")
    tricky = api.post("/v1/tokens", json={"name": 'ops "night" \\ [eu]', "role": "admin"})
    tricky_api = installation.api(tricky.json()["token"])
    add_device(tricky_api, "dev-1", org="acme")
    add_device(api, "dev-2")
    api.post("/v1/devices", json={"id": "admin", "type": "sensor"})  # refused
    installation.services.checkpoints.write()  # as `serve` does every N records or minute
    return installation


def export(installation: Installation, fmt: str, token: str | None = None) -> list[str]:
    answer = installation.api(token).get("/v1/audit/export", params={"format": fmt})
    assert answer.status_code == 200, answer.text
    return answer.text.splitlines()


def sd_params(line: str) -> dict[str, str]:
    match = SYSLOG.match(line)
    assert match, line
    unescape = re.compile(r"\\([\"\\\]])")
    return {k: unescape.sub(r"\1", v) for k, v in SD_PARAM.findall(match["sd"])}


def test_export_jsonl_ok(fleet: Installation) -> None:
    answer = fleet.api().get("/v1/audit/export", params={"format": "jsonl"})
    assert answer.headers["content-type"] == "application/jsonl"
    lines = [json.loads(line) for line in answer.text.splitlines()]
    # the signed tree head over the exported records comes last (G7)
    checkpoint = lines.pop()
    assert lines == audit_records(fleet.api())
    assert checkpoint["size"] == len(lines)
    assert checkpoint["checkpoint"].split("\n")[1] == str(len(lines))
    assert [r["seq"] for r in lines] == list(range(1, len(lines) + 1))
    assert lines[0]["prev_hash"] == GENESIS_HASH
    for earlier, later in itertools.pairwise(lines):
        assert later["prev_hash"] == earlier["hash"]
    assert all(re.fullmatch(r"[0-9a-f]{64}", r["hash"]) for r in lines)


def test_export_jsonl_is_the_default(fleet: Installation) -> None:
    assert export(fleet, "jsonl") == fleet.api().get("/v1/audit/export").text.splitlines()


def test_export_syslog_ok_rfc5424(fleet: Installation) -> None:
    records = audit_records(fleet.api())
    lines = export(fleet, "syslog")
    checkpoint = lines.pop()
    assert len(lines) == len(records)
    assert SYSLOG.match(checkpoint), checkpoint
    assert sd_params(checkpoint)["size"] == str(len(records))
    assert SYSLOG.match(checkpoint)["msgid"] == "audit:checkpoint:signed"  # type: ignore[index]
    note = json.loads(SYSLOG.match(checkpoint)["msg"])["checkpoint"]  # type: ignore[index]
    assert note.split("\n")[1] == str(len(records))
    for line, record in zip(lines, records, strict=True):
        match = SYSLOG.match(line)
        assert match, line
        # facility 10 (security/authorization); severity 6 informational, 4 warning
        severity = 6 if record["outcome"] == "success" else 4
        assert int(match["pri"]) == 10 * 8 + severity
        assert match["timestamp"] == record["at"].replace("+00:00", "Z")
        assert match["msgid"] == record["tag"][:32]
        assert json.loads(match["msg"]) == record["details"]
        params = sd_params(line)
        assert params["seq"] == str(record["seq"])
        assert (params["tag"], params["actor"], params["org"], params["subject"],
                params["outcome"], params["hash"]) == (
            record["tag"], record["actor"], record["org_path"], record["subject"],
            record["outcome"], record["hash"])
        assert params.get("reason") == record["reason"]


def test_export_syslog_ok_escapes_param_values(fleet: Installation) -> None:
    line = next(x for x in export(fleet, "syslog") if "dev-1" in x and "registered" in x)
    assert 'actor="token:ops \\"night\\" \\\\ [eu\\]"' in line
    assert sd_params(line)["actor"] == 'token:ops "night" \\ [eu]'


def test_export_syslog_ok_refusal_is_a_warning(fleet: Installation) -> None:
    line = export(fleet, "syslog")[-2]  # the last record; the checkpoint follows it
    params = sd_params(line)
    assert line.startswith("<84>1 ")
    assert params["outcome"] == "failure"
    assert params["reason"] == "device id 'admin' is reserved"
    # the 33-character tag is cut to the 32 characters RFC 5424 allows in MSGID
    assert SYSLOG.match(line)["msgid"] == "admin:device:registration-refuse"  # type: ignore[index]


@pytest.mark.parametrize("fmt", ["jsonl", "syslog"])
def test_export_ok_tenant_subtree_only(fleet: Installation, fmt: str) -> None:
    token = fleet.token("admin", "acme")
    lines = export(fleet, fmt, token)
    if fmt == "jsonl":
        paths = [json.loads(line)["org_path"] for line in lines]
    else:
        paths = [sd_params(line)["org"] for line in lines]
    assert paths
    # no checkpoint line: it counts every tenant's records (G9)
    assert all(p.startswith("/root/acme/") for p in paths)
    everything = export(fleet, fmt)
    assert len(lines) < len(everything)


def test_export_ok_more_than_one_page(installation: Installation) -> None:
    api = installation.api()
    for i in range(12):
        add_device(api, f"dev-{i}")
    caller = installation.services.admin_tokens.authenticate(installation.admin_token)
    paged: list[Any] = list(installation.services.audit.iter_all(caller, page=5))
    assert [r.seq for r in paged] == list(range(1, 20))  # 7 from init, 12 registrations
    assert len(export(installation, "jsonl")) == 19 + 1  # and the checkpoint
