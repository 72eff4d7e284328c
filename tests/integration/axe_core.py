"""axe-core, the accessibility engine, for the console's browser tests: installed once
with ``npm ci`` into the tests' cache (version pinned by ``tests/integration/axe/``'s
lock file, nothing installed into the repository), then evaluated in each page.

It is evaluated through the DevTools protocol (``page.evaluate``), which the page's
Content-Security-Policy does not govern: the console's policy stays as strict as it is
(no inline script, nothing from another origin) while the check runs.
"""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path
from typing import Any

from iotiam.testing import require, require_binary

from .oidc_provider import INSTALL_SECONDS, _cache_root

SOURCE = Path(__file__).with_name("axe")
#: what fails the check: axe's two worst impact levels
FAILING_IMPACTS = ("serious", "critical")


def script() -> str:
    """The text of ``axe.min.js`` (``npm ci`` the first time)."""
    npm = require_binary("npm")
    lock = (SOURCE / "package-lock.json").read_bytes()
    target = _cache_root() / f"axe-core-{hashlib.sha256(lock).hexdigest()[:16]}"
    target.mkdir(parents=True, exist_ok=True)
    engine = target / "node_modules" / "axe-core" / "axe.min.js"
    with (target / ".lock").open("w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        if not engine.exists():
            for name in ("package.json", "package-lock.json"):
                shutil.copyfile(SOURCE / name, target / name)
            done = subprocess.run([npm, "ci", "--no-audit", "--no-fund", "--omit=dev"],
                                  cwd=target, capture_output=True, text=True,
                                  timeout=INSTALL_SECONDS)
            require(done.returncode == 0, f"npm ci of axe-core failed: {done.stderr[-2000:]}")
    return engine.read_text()


def violations(page: Any, engine: str) -> list[str]:
    """The serious and critical WCAG 2.x A/AA violations axe finds in the page, one line
    each (rule, impact, the first offending elements)."""
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        page.evaluate(engine + "\n;undefined")
    found: list[dict[str, Any]] = page.evaluate("""async () => {
        const result = await axe.run(document, {runOnly: {type: 'tag',
            values: ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa', 'best-practice']}});
        return result.violations.map(v => ({id: v.id, impact: v.impact,
            nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}));
    }""")
    return [f"{v['id']} ({v['impact']}): {', '.join(v['nodes'])}" for v in found
            if v["impact"] in FAILING_IMPACTS]
