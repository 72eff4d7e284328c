"""The README pasted block by block into a shell on a fresh ``make run``.

Every ```` ```bash ```` block of README.md, then of docs/policies.md (its worked
example), is run in order with ``bash -e -o pipefail``,
as a newcomer would paste it into one terminal: variables and the working directory
carry from one block to the next. The block that starts the control plane
(``<!-- readme-test: server -->``, i.e. ``make run``) is done by the test itself: ``iotiam
init`` and ``iotiam serve`` in a fresh data directory under a temporary HOME, on free
ports, the data plane off. A block that cannot run here says why in the README source
(``<!-- readme-test: skip: <reason> -->``) and is listed in the test's output. Any other
shell fence (``sh``, ``shell``, ``console``) is refused, so no example escapes the check.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import serve_live
from .live_server import Server

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
#: pasted in this order, into the same shell session
DOCUMENTS = (README, ROOT / "docs" / "policies.md")
FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*$")
MARK = re.compile(r"^<!--\s*readme-test:\s*(?P<kind>[a-z]+)\s*(?::\s*(?P<why>.*?))?\s*-->$")
UNCHECKED_SHELLS = {"sh", "shell", "console", "zsh"}
BLOCK_SECONDS = 120
#: what a block's shell keeps for the next one: the variables it exported (every
#: assignment, under ``set -a``) and where it stood
CARRY = """
export -p | grep -Ev '^declare -[a-zA-Z]*r|^declare -x (_|OLDPWD|PWD|SHLVL)=' > "$README_STATE/env"
pwd > "$README_STATE/cwd"
"""


@dataclass(frozen=True)
class Block:
    """One fenced block of the README: where it starts, its language, code and marker."""

    line: int
    language: str
    code: str
    mark: str | None = None
    why: str = ""


def readme_blocks(text: str) -> list[Block]:
    """Every fenced block, with the ``readme-test`` marker on the line before it (if any)."""
    blocks: list[Block] = []
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        opened = FENCE.match(lines[index])
        if not opened:
            index += 1
            continue
        start = index
        index += 1
        body: list[str] = []
        while index < len(lines) and not lines[index].startswith("```"):
            body.append(lines[index])
            index += 1
        previous = next((lines[i].strip() for i in range(start - 1, -1, -1)
                         if lines[i].strip()), "")
        marked = MARK.match(previous)
        blocks.append(Block(start + 1, opened[1].lower(), "\n".join(body) + "\n",
                            marked["kind"] if marked else None,
                            (marked["why"] or "") if marked else ""))
        index += 1
    return blocks


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda d: f"ok/{d.name}")
def test_ok_no_unchecked_shell_fence(document: Path) -> None:
    blocks = readme_blocks(document.read_text())
    unchecked = [b.line for b in blocks if b.language in UNCHECKED_SHELLS]
    assert not unchecked, f"{document.name} lines {unchecked}: use ```bash (run by this test)"
    assert any(b.language == "bash" and b.mark is None for b in blocks)


def test_ok_readme_markers() -> None:
    blocks = readme_blocks(README.read_text())
    marks = [b for b in blocks if b.mark is not None]
    assert all(b.mark in ("skip", "server") for b in marks), \
        [(b.line, b.mark) for b in marks if b.mark not in ("skip", "server")]
    assert all(b.why for b in marks if b.mark == "skip"), "a skipped block must say why"
    (server,) = [b for b in blocks if b.mark == "server"]
    assert "make run" in server.code
    assert sum(1 for b in blocks if b.language == "bash" and b.mark is None) >= 7


@pytest.fixture(scope="module")
def fresh_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """What ``make run`` leaves: ``iotiam init`` then ``iotiam serve``, in a new HOME."""
    home = tmp_path_factory.mktemp("readme-home")
    base = home / ".local" / "share"
    base.mkdir(parents=True)
    # a new data directory: `init` migrates its new database itself
    yield from serve_live("sqlite", base, {"HOME": str(home)}, migrated=False)


def run_block(block: Block, env: dict[str, str], state: Path) -> subprocess.CompletedProcess[str]:
    """One block in a new ``bash -e``, continuing from the previous block's state."""
    script = "\n".join([
        "set -a",
        f'cd "$(cat {shlex.quote(str(state / "cwd"))})"',
        f'[ ! -f {shlex.quote(str(state / "env"))} ] || . {shlex.quote(str(state / "env"))}',
        block.code,
        CARRY,
    ])
    return subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], env=env,
                          capture_output=True, text=True, timeout=BLOCK_SECONDS,
                          stdin=subprocess.DEVNULL, check=False)


def test_ok_readme_pasted_block_by_block(fresh_run: Server, tmp_path: Path) -> None:
    work, state = tmp_path / "checkout", tmp_path / "state"
    work.mkdir()
    state.mkdir()
    # the newcomer's checkout after `make run`: its .venv is the one running this test
    (work / ".venv").symlink_to(Path(sys.executable).parent.parent)
    (state / "cwd").write_text(str(work))
    # the blocks find the profile where `make run` leaves it: ~/.local/share/iotiam
    (fresh_run.data_dir.parent / "iotiam").symlink_to(fresh_run.data_dir)
    env = {k: v for k, v in fresh_run.env.items() if k != "IOTIAM_DATA_DIR"}
    env.update({"README_STATE": str(state), "PYTHONUNBUFFERED": "1"})
    if os.environ.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    skipped: list[str] = []
    for document, block in [(d, b) for d in DOCUMENTS for b in readme_blocks(d.read_text())]:
        where = f"{document.relative_to(ROOT)}:{block.line}"
        if block.language != "bash" or block.mark == "server":
            continue
        if block.mark == "skip":
            skipped.append(f"{where}: {block.why}")
            continue
        done = run_block(block, env, state)
        assert done.returncode == 0, (
            f"{where}: the block failed (exit {done.returncode}):\n"
            f"{block.code}\n--- stdout ---\n{done.stdout[-3000:]}\n"
            f"--- stderr ---\n{done.stderr[-3000:]}")
    print("not run here:", *skipped, sep="\n  ")
