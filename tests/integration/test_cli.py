"""The ``iotiam`` CLI against a live server: every command once, bulk import, and G10.

Every invocation goes through ``Server.cli``, which also fails the test on any
traceback in the output.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from iotiam.testing import free_port

from .live_server import CliResult, Server
from .relying_party import openssl_key_and_csr, run

pytestmark = pytest.mark.integration

SYSLOG_LINE = re.compile(
    r'<(?P<pri>\d{1,3})>1 (?P<ts>\S+Z) (?P<host>\S+) iotiam - (?P<msgid>\S+) '
    r'\[iotiam@32473 seq="(?P<seq>\d+)" tag="(?P<tag>[^"]+)" [^\]]*\] \ufeff(?P<msg>\{.*\})'
)


def _suffix() -> str:
    return secrets.token_hex(3)


def _json(result: CliResult) -> Any:
    return json.loads(result.out)


def assert_one_line_error(result: CliResult, *, quiet_stdout: bool = True) -> str:
    """G10 on the CLI: non-zero exit, one ``error:`` line on stderr (and nothing on stdout)."""
    assert result.rc != 0, result
    lines = result.err.strip().splitlines()
    assert len(lines) == 1, result
    assert lines[0].startswith("error: "), result
    if quiet_stdout:
        assert result.out == "", result
    return lines[0]


def _issue_through_api(server: Server, device_id: str, openssl: str) -> dict[str, Any]:
    server.register(device_id)
    _, csr = openssl_key_and_csr(openssl, server.work_dir, device_id)
    with server.api() as api:
        answer = api.post("/v1/certificates", json={"device": device_id,
                                                    "csr": csr.read_text()})
    assert answer.status_code == 201, answer.text
    issued: dict[str, Any] = answer.json()
    return issued


# -- init and identity -----------------------------------------------------------------


def test_init_again_keeps_ca_and_admin_token_ok(server: Server, openssl: str) -> None:
    before = server.cli("ca", "show", "--chain").out
    assert before == server.chain_pem.read_text()  # issuing CA, then the root
    token = server.token
    again = server.init()
    assert "kept (already there)" in again.out
    assert "new admin token" not in again.out
    assert server.token == token
    assert server.cli("ca", "show", "--chain").out == before
    issuing = server.work_dir / "ca-show.pem"
    issuing.write_text(server.cli("ca", "show").out)
    assert issuing.read_text() == server.issuing_pem.read_text()
    subject = run(openssl, "x509", "-in", issuing, "-noout", "-subject").stdout
    assert "Issuing CA" in subject
    whoami = server.cli("whoami").out
    assert re.search(r"^role\s+admin$", whoami, re.MULTILINE), whoami
    assert re.search(r"^org\s+root$", whoami, re.MULTILINE), whoami


def test_token_create_and_whoami_ok(server: Server) -> None:
    tenant = f"tenant-{_suffix()}"
    with server.api() as api:
        assert api.post("/v1/org-units", json={"id": tenant, "kind": "tenant",
                                               "parent": "root"}).status_code == 201
    created = server.cli("token", "create", "--name", "ops", "--role", "operator",
                         "--org", tenant)
    assert "store it now" in created.out
    secret = created.out.strip().splitlines()[-1]
    assert secret.startswith("iotiam_")
    whoami = server.cli("--token", secret, "whoami").out
    assert re.search(r"^role\s+operator$", whoami, re.MULTILINE), whoami
    assert re.search(rf"^org\s+{tenant}$", whoami, re.MULTILINE), whoami


# -- inventory -------------------------------------------------------------------------


def test_org_and_device_commands_ok(server: Server) -> None:
    tenant, device = f"acme-{_suffix()}", f"dev-{_suffix()}"
    created = server.cli("org", "create", tenant, "--kind", "tenant", "--parent", "root")
    assert created.out.strip() == f"created tenant {tenant} at /root/{tenant}/"

    added = server.cli("device", "add", device, "--type", "sensor", "--org", tenant,
                       "--attr", "site=plant-7", "--attr", "fw=1.2.3")
    assert added.out.strip() == f"registered {device} (sensor, org {tenant}, pending)"

    listed = _json(server.cli("device", "list", "--json", "--limit", "1000"))
    assert {"id": device, "org": tenant, "state": "pending"}.items() <= next(
        d for d in listed if d["id"] == device).items()

    shown = _json(server.cli("device", "show", device, "--json"))
    assert shown["attributes"] == {"site": "plant-7", "fw": "1.2.3"}
    assert shown["org"] == tenant

    moved = server.cli("device", "set-state", device, "active", "--reason", "commissioned")
    assert moved.out.strip() == f"{device} is now active"

    report = _json(server.cli("inventory", "--json"))
    assert report["total"] >= 1
    assert report["by_type"]["sensor"] >= 1
    assert report["by_state"]["active"] >= 1


def test_device_import_lands_good_rows_and_reports_bad_ones(server: Server) -> None:
    s = _suffix()
    csv_file = server.work_dir / f"import-{s}.csv"
    csv_file.write_text(
        "id,type,org,site,fw\n"              # line 1
        f"imp-a-{s},sensor,root,plant-1,1.0\n"  # 2 ok
        f"imp-b-{s},gateway,,plant-2,2.0\n"     # 3 ok (org defaults to the token's)
        ",sensor,root,,\n"                      # 4 missing id
        f"imp-c-{s},toaster,root,,\n"           # 5 unknown type
        f"imp-a-{s},sensor,root,,\n"            # 6 duplicate of line 2
        f"imp-d-{s},sensor,no-such-org,,\n"     # 7 unknown org
        f"imp-e-{s},controller,root,plant-3,3.1\n"  # 8 ok
    )
    report = server.work_dir / f"import-{s}-report.csv"
    result = server.cli("device", "import", csv_file, "--report", report, check=False)
    assert result.rc == 3, result
    assert "imported 3, failed 4 of 7 rows" in result.out, result
    for line in (4, 5, 6, 7):
        assert re.search(rf"^\s*row {line}: ", result.out, re.MULTILINE), result.out
    for line in (2, 3, 8):
        assert not re.search(rf"^\s*row {line}: ", result.out, re.MULTILINE), result.out
    assert f"row 5: imp-c-{s}:" in result.out
    reported = report.read_text().splitlines()
    assert reported[0] == "row,device,error"
    assert sorted(int(r.split(",")[0]) for r in reported[1:]) == [4, 5, 6, 7]

    ids = {d["id"] for d in _json(server.cli("device", "list", "--json", "--limit", "1000"))}
    assert {f"imp-a-{s}", f"imp-b-{s}", f"imp-e-{s}"} <= ids
    assert not {f"imp-c-{s}", f"imp-d-{s}"} & ids
    imported = _json(server.cli("device", "show", f"imp-e-{s}", "--json"))
    assert imported["type"] == "controller"
    assert imported["site"] == "plant-3"


# -- certificates and the CA -----------------------------------------------------------


def test_cert_commands_ok(server: Server, openssl: str) -> None:
    device = f"cert-{_suffix()}"
    server.register(device)
    _, csr = openssl_key_and_csr(openssl, server.work_dir, device)
    leaf, chain = server.work_dir / f"{device}.pem", server.work_dir / f"{device}-chain.pem"
    issued = server.cli("cert", "issue", "--device", device, "--csr", csr, "--out", leaf,
                        "--chain-out", chain)
    serial = re.search(r"issued serial ([0-9a-f]+) for " + re.escape(device), issued.out)
    assert serial, issued
    assert chain.read_text() == server.chain_pem.read_text()
    printed = run(openssl, "x509", "-in", leaf, "-noout", "-serial").stdout.strip()
    assert printed == f"serial={serial.group(1).upper()}"

    # without --out the certificate goes to stdout and the serial line to stderr
    again = server.cli("cert", "issue", "--device", device, "--csr", csr)
    assert again.out.startswith("-----BEGIN CERTIFICATE-----"), again
    assert again.err.startswith("issued serial "), again

    listed = _json(server.cli("cert", "list", "--device", device, "--json"))
    assert len(listed) == 2
    assert serial.group(1) in {c["serial"] for c in listed}
    assert {c["status"] for c in listed} == {"issued"}

    shown = _json(server.cli("cert", "show", serial.group(1), "--json"))
    assert shown["device"] == device
    assert shown["pem"] == leaf.read_text()
    assert shown["status"] == "issued"

    revoked = server.cli("cert", "revoke", serial.group(1), "--reason", "superseded")
    assert revoked.out.strip() == f"revoked {serial.group(1)} (superseded)"
    after = _json(server.cli("cert", "show", serial.group(1), "--json"))
    assert after["status"] == "revoked"
    assert after["revocation_reason"] == "superseded"


def test_ca_crl_command_ok(server: Server, openssl: str) -> None:
    fields = server.cli("ca", "crl").out
    number = re.search(r"^number\s+(\d+)$", fields, re.MULTILINE)
    assert number, fields
    assert re.search(rf"^url\s+{re.escape(server.http_url)}/crl/\S+\.crl$", fields,
                     re.MULTILINE), fields

    der = server.work_dir / "ca-crl.der"
    pem = server.cli("ca", "crl", "--out", der, "--pem").out
    assert pem.startswith("-----BEGIN X509 CRL-----")
    from_der = run(openssl, "crl", "-inform", "DER", "-in", der, "-noout", "-crlnumber")
    pem_file = server.work_dir / "ca-crl.pem"
    pem_file.write_text(pem)
    from_pem = run(openssl, "crl", "-in", pem_file, "-noout", "-crlnumber")
    assert from_der.stdout == from_pem.stdout
    assert int(from_pem.stdout.strip().removeprefix("crlNumber=0x"), 16) >= int(number.group(1))
    checked = run(openssl, "crl", "-in", pem_file, "-noout", "-CAfile", server.chain_pem,
                  check=False)
    assert "verify OK" in checked.stderr + checked.stdout, checked


# -- audit -----------------------------------------------------------------------------


def test_audit_verify_and_export_ok(server: Server) -> None:
    verified = server.cli("audit", "verify")
    assert verified.out.startswith("audit chain OK: "), verified

    records = [json.loads(line) for line in
               server.cli("audit", "export", "--format", "jsonl").out.splitlines()]
    # the signed checkpoint comes last, for the SIEM to hold the records to (G7)
    checkpoint = records.pop()
    assert checkpoint["checkpoint"].split("\n")[1] == str(checkpoint["size"])
    assert records and [r["seq"] for r in records] == list(range(1, len(records) + 1))
    assert records[0]["tag"] == "pki:ca:created"
    assert all(r["prev_hash"] == p["hash"] for p, r in itertools.pairwise(records))

    lines = server.cli("audit", "export", "--format", "syslog").out.splitlines()
    assert "audit:checkpoint:signed" in lines.pop()
    assert len(lines) >= len(records)
    by_seq = {}
    for line in lines:
        match = SYSLOG_LINE.fullmatch(line)
        assert match, f"not an RFC 5424 line: {line!r}"
        assert 80 <= int(match["pri"]) <= 87  # facility 10 (authpriv)
        assert match["msgid"] == match["tag"]
        json.loads(match["msg"])
        by_seq[int(match["seq"])] = match["tag"]
    assert all(by_seq[r["seq"]] == r["tag"] for r in records)


def _tamper(server: Server, statement: str, **params: Any) -> None:
    """Edit the database behind the server's back."""
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.data_dir / "iotiam.db")
        try:
            with conn:
                conn.execute(statement, params)
        finally:
            conn.close()
    else:
        server.sql(statement, **params)


def _row(server: Server, seq: int) -> dict[str, Any]:
    if server.backend == "sqlite":
        conn = sqlite3.connect(server.data_dir / "iotiam.db")
        conn.row_factory = sqlite3.Row
        try:
            return dict(conn.execute("SELECT * FROM audit_records WHERE seq = :seq",
                                     {"seq": seq}).fetchone())
        finally:
            conn.close()
    return dict(server.sql("SELECT * FROM audit_records WHERE seq = :seq", seq=seq)[0]._mapping)


def _api_verify(server: Server) -> dict[str, Any]:
    with server.api() as api:
        report: dict[str, Any] = api.get("/v1/audit/verify").json()
    return report


# -- bad input (G10) -------------------------------------------------------------------


def _garbage_csr(server: Server, openssl: str) -> list[str | Path]:
    device = f"bad-{_suffix()}"
    server.register(device)
    garbage = server.work_dir / "garbage.csr"
    garbage.write_bytes(b"-----BEGIN CERTIFICATE REQUEST-----\nbm90IGEgY3Ny\n"
                        b"-----END CERTIFICATE REQUEST-----\n")
    return ["cert", "issue", "--device", device, "--csr", garbage]


def _binary_garbage_csr(server: Server, openssl: str) -> list[str | Path]:
    device = f"bad-{_suffix()}"
    server.register(device)
    garbage = server.work_dir / "garbage.der"
    garbage.write_bytes(secrets.token_bytes(300))
    return ["cert", "issue", "--device", device, "--csr", garbage]


def _unknown_device(server: Server, openssl: str) -> list[str | Path]:
    _, csr = openssl_key_and_csr(openssl, server.work_dir, "ghost")
    return ["cert", "issue", "--device", f"ghost-{_suffix()}", "--csr", csr]


def _rsa_1024(server: Server, openssl: str) -> list[str | Path]:
    device = f"weak-{_suffix()}"
    server.register(device)
    _, csr = openssl_key_and_csr(openssl, server.work_dir, device, newkey="rsa:1024")
    return ["cert", "issue", "--device", device, "--csr", csr]


def _revoke_twice(server: Server, openssl: str) -> list[str | Path]:
    serial = _issue_through_api(server, f"twice-{_suffix()}", openssl)["serial"]
    with server.api() as api:
        assert api.post(f"/v1/certificates/{serial}/revoke", json={}).status_code == 200
    return ["cert", "revoke", serial.upper()]


def _viewer_revokes(server: Server, openssl: str) -> list[str | Path]:
    serial = _issue_through_api(server, f"viewed-{_suffix()}", openssl)["serial"]
    with server.api() as api:
        viewer = api.post("/v1/tokens", json={"name": "viewer", "role": "viewer"}).json()
    return ["--token", viewer["token"], "cert", "revoke", serial, "--reason", "keyCompromise"]


def _unreachable(server: Server, openssl: str) -> list[str | Path]:
    return ["--url", f"https://127.0.0.1:{free_port()}", "whoami"]


def _missing_csr_file(server: Server, openssl: str) -> list[str | Path]:
    return ["cert", "issue", "--device", "whatever", "--csr", server.work_dir / "nope.csr"]


def _serve_on_taken_ports(server: Server, openssl: str) -> list[str | Path]:
    # the module's server already listens on both ports of this data directory; at
    # ``warning`` the only thing on stderr is what went wrong (no start-up INFO logs)
    return ["--data-dir", server.data_dir, "serve", "--log-level", "warning"]


BAD_INPUT: dict[str, tuple[Callable[[Server, str], list[str | Path]], str]] = {
    "fail/garbage-csr": (_garbage_csr, "HTTP 400"),
    "fail/binary-garbage-csr": (_binary_garbage_csr, "HTTP 400"),
    "fail/unknown-device": (_unknown_device, "HTTP 404"),
    "fail/rsa-1024-csr": (_rsa_1024, "HTTP 400"),
    "fail/revoke-twice": (_revoke_twice, "HTTP 409"),
    "fail/viewer-revokes": (_viewer_revokes, "HTTP 403"),
    "fail/unreachable-server": (_unreachable, "cannot reach iotiam"),
    "fail/missing-csr-file": (_missing_csr_file, "cannot read"),
    "fail/serve-port-taken": (_serve_on_taken_ports, "Address already in use"),
}


@pytest.mark.parametrize("case", list(BAD_INPUT), ids=list(BAD_INPUT))
def test_bad_input_gives_one_line_error(server: Server, openssl: str, case: str) -> None:
    prepare, expected = BAD_INPUT[case]
    args = prepare(server, openssl)
    with server.api() as api:
        before = api.get("/v1/certificates", params={"limit": 1000}).json()["items"]
    # `serve` prints where it will listen before it tries to
    line = assert_one_line_error(server.cli(*args, check=False, timeout=30),
                                 quiet_stdout=case != "fail/serve-port-taken")
    assert expected in line, line
    # nothing was stored: no new certificate, none changed state
    with server.api() as api:
        after = api.get("/v1/certificates", params={"limit": 1000}).json()["items"]
    assert after == before


def test_audit_verify_detects_edit_removal_and_truncation(server: Server) -> None:
    """G7 end to end: the database edited behind the server's back, each edit then undone.

    Last in the module: every edit is put back (and checked) so the chain ends valid.
    """
    server.register(f"audit-{_suffix()}")
    with server.api() as api:
        # settle the CRLs so the background refresher appends nothing while we tamper
        assert api.get("/v1/ca/crl").status_code == 200
    ok = server.cli("audit", "verify")
    assert ok.rc == 0 and ok.out.startswith("audit chain OK"), ok
    head = _api_verify(server)["head_seq"]
    assert head >= 4
    insert = ("INSERT INTO audit_records (seq, at, tag, actor, org_path, subject, outcome, "
              "reason, details, prev_hash, hash) VALUES (:seq, :at, :tag, :actor, :org_path, "
              ":subject, :outcome, :reason, :details, :prev_hash, :hash)")
    edited_row, middle_row, tail_row = _row(server, 2), _row(server, 3), _row(server, head)

    _tamper(server, "UPDATE audit_records SET subject = 'ca:forged' WHERE seq = 2")
    try:
        edited = server.cli("audit", "verify", check=False)
    finally:
        _tamper(server, "UPDATE audit_records SET subject = :subject WHERE seq = 2",
                subject=edited_row["subject"])
    assert edited.rc == 1, edited
    assert "audit chain BROKEN: record 2 was altered" in edited.out, edited
    assert _api_verify(server)["ok"] is True

    _tamper(server, "DELETE FROM audit_records WHERE seq = 3")
    try:
        removed = server.cli("audit", "verify", check=False)
    finally:
        _tamper(server, insert, **middle_row)
    assert removed.rc == 1, removed
    assert "audit chain BROKEN: expected record 3, found 4: a record was removed" in \
        removed.out, removed
    assert _api_verify(server)["ok"] is True

    _tamper(server, "DELETE FROM audit_records WHERE seq = :seq", seq=head)
    try:
        truncated = server.cli("audit", "verify", check=False)
    finally:
        _tamper(server, insert, **tail_row)
    assert truncated.rc == 1, truncated
    assert f"the chain ends at record {head - 1} but the head says {head}" in \
        truncated.out, truncated
    assert server.cli("audit", "verify").out.startswith("audit chain OK")


def test_device_list_ok_says_the_total_and_how_to_page(server: Server) -> None:
    prefix = f"page-{_suffix()}"
    with server.api() as api:
        rows = [{"row": i + 1, "data": {"id": f"{prefix}-{i}", "type": "sensor"}}
                for i in range(3)]
        assert api.post("/v1/devices/import", json={"rows": rows}).json()["imported"] == 3
        total = api.get("/v1/devices", params={"limit": 1}).json()["total"]
    assert total >= 3
    first = server.cli("device", "list", "--limit", "2").out
    assert f"2 of {total} devices" in first
    last_shown = sorted(json.loads(server.cli("device", "list", "--json", "--limit", "2").out),
                        key=lambda d: d["id"])[-1]["id"]
    assert f"iotiam device list --after {last_shown}" in first
    rest = json.loads(server.cli("device", "list", "--json", "--after", last_shown,
                                 "--limit", "1000").out)
    assert len(rest) == total - 2


# -- ids stay inside their path segment (issue 12 item 3) -------------------------------


def test_ids_that_look_like_paths_name_nothing_else(server: Server, openssl: str) -> None:
    victim = f"victim-{_suffix()}"
    issued = _issue_through_api(server, victim, openssl)
    with server.api() as api:
        before = api.get(f"/v1/certificates/{issued['serial']}").json()
    attacks = {
        # would revoke the victim's certificates if the id left its segment
        "psk": ["psk", "create", "--device", f"x/../{victim}/revoke-certificates?"],
        "dot-dot": ["device", "show", "../whoami"],
        # the server must not decode %2F into a separator that reaches another route
        "slash": ["device", "show", "a/b"],
        "other-route": ["device", "show", f"{victim}/trust"],
        "encoded": ["device", "show", f"{victim}%2Ftrust"],
    }
    for name, args in attacks.items():
        line = assert_one_line_error(server.cli(*args, check=False, timeout=30))
        assert "HTTP 404" in line, (name, line)
    line = assert_one_line_error(server.cli("device", "show", "a\x01b", check=False))
    assert "control character" in line
    with server.api() as api:
        after = api.get(f"/v1/certificates/{issued['serial']}").json()
    assert after == before
    assert after["status"] != "revoked"
