"""Options that parse but do not go together are usage errors: exit 2, like click's own.

docs/cli.md: exit 2 for "a command line that does not parse or does not make sense".
Issue 12 (tester): ``iotiam audit prove`` with no arguments exited 1, and ``iotiam cert
revoke`` with none said "give either a SERIAL or --device, not both".
"""

from __future__ import annotations

from pathlib import Path

import pytest

from .commands import CLIS, assert_one_line_error, invoke

#: the command line after the global options, and the line it must fail with
CASES = {
    "fail/audit-prove-nothing": (["audit", "prove"],
                                 "give --record N (inclusion) or --from SIZE (consistency)"),
    "fail/audit-prove-both": (["audit", "prove", "--record", "1", "--from", "1"],
                              "give --record N (inclusion) or --from SIZE (consistency)"),
    "fail/audit-export-format": (["audit", "export", "--format", "xml"],
                                 "--format must be jsonl or syslog"),
    "fail/cert-revoke-nothing": (["cert", "revoke"], "give a SERIAL or --device"),
    "fail/cert-revoke-both": (["cert", "revoke", "0a", "--device", "d-1"],
                              "give a SERIAL or --device, not both"),
    "fail/detect-mode-without-mode": (["detect", "mode", "sensor"],
                                      "give both a device type and a mode (learn, monitor, "
                                      "enforce)"),
    "fail/policy-attach-no-target": (["policy", "attach", "p-1"],
                                     "name exactly one target: --org, --type, --group or "
                                     "--device"),
    "fail/simulate-no-devices": (["simulate", "--devices", "0"],
                                 "--devices must be between 1 and 1,000,000"),
    "fail/init-port": (["init", "--port", "0"], "--port must be between 1 and 65535"),
    "fail/init-broker": (["init", "--broker", "sideways"],
                         "--broker must be one of managed, external, off"),
    "fail/init-broker-auth": (["init", "--broker-auth", "acl-file"],
                              "--broker-auth must be one of dynsec, plugin"),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_usage_error(case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    words, expected = CASES[case]
    argv = ["--data-dir", str(tmp_path / "data"), "--url", "http://127.0.0.1:9",
            "--token", "t", *words]
    result = invoke(CLIS[0], argv, capsys)
    line = assert_one_line_error(result, argv)
    assert (result.rc, line) == (2, f"error: {expected}")
    assert not (tmp_path / "data").exists()  # refused before anything was done
